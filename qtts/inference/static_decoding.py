"""Generation on static shapes: preallocated KV caches, and on CUDA each step captured once and replayed as a graph.

Why: a frame is one talker step (28 layers) and 15 code-predictor steps (5 layers each), thousands of small kernels.
Launched one by one from Python the GPU waits on the CPU between them: ~97 ms per 80 ms frame on an H200 at batch 1,
for the 0.6B and the 1.7B model alike. A CUDA graph replays a captured sequence of kernels with one launch, but only
on the same addresses and shapes, so everything a step reads or writes lives in buffers made once: KV caches of a
fixed capacity written at a position held on the device (``StaticKVCache``), each row's position and padding mask,
the step's inputs. A frame is then two replays, the code predictor's 15 groups with their sampling and the talker's
next step, plus the eager group-0 choice (a few kernels).

The prefill stays eager (its length varies) and writes into the same caches. A cache grows in powers of two when a
sequence fills it (its content moves to a larger step object, with its own graph), so attention never reads far past
the sequence. Step objects are kept across calls, keyed by batch size and capacity (talker) or batch size and
sub-talker sampling settings (code predictor); the first call of a shape pays the warm-up and capture.

Without graphs (``graphs=False``, e.g. on CPU) the same steps run eagerly: that is how the tests check, on CPU, that
this path chooses the same codes as the growing caches of ``generate_frames``'s default path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

from qtts.inference.sampling import CodeSampler, SamplingConfig, choose_residual
from qtts.models.talker.talker import Talker

T = TypeVar("T")

WARMUP_RUNS = 3  # the PyTorch docs warm up a few iterations before capturing


def capture(run: Callable[[], T], generator: torch.Generator | None = None) -> tuple[torch.cuda.CUDAGraph, T]:
    """Capture ``run()`` as a CUDA graph; return it and ``run``'s outputs (tensors that every replay rewrites).

    As the PyTorch docs require, ``run`` is first warmed up on a side stream (lazy initialisation, cuBLAS / attention
    workspaces); whatever state that changes the caller must reset. ``generator``: the one ``run`` draws from. It is
    registered with the graph, so each replay draws from its state at that moment and advances it as the eager calls
    would; the warm-up's draws are undone.
    """
    state = None if generator is None else generator.get_state()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(WARMUP_RUNS):
            run()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    if generator is not None:
        graph.register_generator_state(generator)
    with torch.cuda.graph(graph):
        outputs = run()
    if state is not None:
        generator.set_state(state)
    return graph, outputs


class TalkerStep:
    """The talker on a static cache of ``capacity`` positions for ``batch`` rows: the eager prefill, and the
    one-position step (a frame's codes + its text track → hidden, group-0 logits), captured when ``graphs``."""

    def __init__(self, talker: Talker, batch: int, capacity: int, graphs: bool):
        weight = talker.codec_head.weight
        self.talker, self.capacity = talker, capacity
        self.cache = talker.new_static_cache(batch, capacity)
        self.valid = torch.ones(batch, capacity, dtype=torch.bool, device=weight.device)  # False: prefill padding
        self.position = torch.zeros(batch, dtype=torch.long, device=weight.device)  # each row's next RoPE position
        self.codes = torch.zeros(batch, talker.config.num_code_groups, dtype=torch.long, device=weight.device)
        self.text = torch.zeros(batch, talker.config.hidden_size, dtype=weight.dtype, device=weight.device)
        self.length = 0  # positions in the cache, counted on the host: the caller moves on when it is full
        self.graph = self.outputs = None
        if graphs:
            self.graph, self.outputs = capture(self._step)

    def _step(self) -> tuple[torch.Tensor, torch.Tensor]:
        embeds = (self.talker.embed_frame(self.codes) + self.text).unsqueeze(1)
        out = self.talker(embeds, position_ids=self.position[:, None], attention_mask=self.valid, cache=self.cache)
        self.position += 1
        return out.hidden[:, -1], out.logits[:, -1]

    def prefill(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A new sequence: the prompt (B, T, H) with its left padding (B, T) → the last position's hidden, logits."""
        length = inputs_embeds.shape[1]
        mask = attention_mask.bool()
        for layer in self.cache:
            layer.reset()
        self.valid.fill_(True)
        self.valid[:, :length] = mask
        positions = (mask.long().cumsum(-1) - 1).masked_fill(~mask, 1)  # as Talker.forward numbers a padded prompt
        out = self.talker(inputs_embeds, position_ids=positions, attention_mask=self.valid, cache=self.cache)
        self.position.copy_(mask.sum(-1))
        self.length = length
        return out.hidden[:, -1], out.logits[:, -1]

    def __call__(self, codes: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """codes (B, G) and text (B, H) of the next position → its hidden (B, H) and logits (B, vocab); with a graph
        these are its output buffers, valid until the next call."""
        if self.length >= self.capacity:
            raise RuntimeError(f"the static cache is full ({self.capacity} positions)")
        self.codes.copy_(codes)
        self.text.copy_(text)
        self.length += 1
        if self.graph is None:
            return self._step()
        self.graph.replay()
        return self.outputs

    def load(self, other: TalkerStep) -> None:
        """Continue ``other``'s sequence (of a capacity up to this one's) here."""
        for mine, theirs in zip(self.cache, other.cache):
            mine.load(theirs)
        self.valid.fill_(True)
        self.valid[:, : other.capacity].copy_(other.valid)
        self.position.copy_(other.position)
        self.length = other.length


class CodeStep:
    """The code predictor's whole frame on a static cache: hidden (B, H) and group 0 (B,) → the frame's codes (B, G),
    groups 1..G-1 drawn with ``config``'s sub-talker settings from this step's own ``generator``; captured (sampling
    included) when ``graphs``. ``record``: also the log-probabilities of those draws, ``logprobs`` (B, G-1) after
    each call (``CodeSampler(record="all")``)."""

    def __init__(self, talker: Talker, batch: int, config: SamplingConfig, graphs: bool, record: bool = False):
        weight = talker.codec_head.weight
        self.talker, self.config, self.record = talker, config, record
        self.cache = talker.code_predictor.model.new_static_cache(batch, talker.config.num_code_groups)
        self.hidden = torch.zeros(batch, talker.config.hidden_size, dtype=weight.dtype, device=weight.device)
        self.first = torch.zeros(batch, dtype=torch.long, device=weight.device)
        self.generator = torch.Generator(weight.device)
        self._record: list[torch.Tensor] | None = None
        self.logprobs: torch.Tensor | None = None
        self.graph = self.outputs = None
        if graphs:
            self.graph, self.outputs = capture(self._frame, self.generator)

    def _frame(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        self._record = [] if self.record else None
        codes = self.talker.predict_codes(self.hidden, self.first, self._sample, self.cache)
        return codes, torch.stack(self._record, 1) if self.record else None

    def _sample(self, logits: torch.Tensor, group: int) -> torch.Tensor:
        return choose_residual(logits, self.config, self.generator, self._record)

    def __call__(self, hidden: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        self.hidden.copy_(hidden)
        self.first.copy_(first)
        if self.graph is None:
            codes, self.logprobs = self._frame()
            return codes
        self.graph.replay()
        codes, logprobs = self.outputs  # the caller keeps them; the next replay rewrites the graph's buffers
        self.logprobs = None if logprobs is None else logprobs.clone()
        return codes.clone()


class StaticDecoding:
    """The static step objects of one talker, kept across calls; each is lent to one generation at a time.

    ``graphs``: capture CUDA graphs (default: when the talker is on CUDA). ``min_capacity``: the smallest cache, in
    positions; larger ones double it. ``keep``: step objects kept while unused (each holds a KV cache); the least
    recently used beyond that are dropped. Graphs read the weights by address: build a new one after replacing
    parameters or switching adapters (in-place weight updates are seen).
    """

    def __init__(self, talker: Talker, graphs: bool | None = None, min_capacity: int = 256, keep: int = 8):
        self.device = talker.codec_head.weight.device
        self.graphs = self.device.type == "cuda" if graphs is None else graphs
        if self.graphs and self.device.type != "cuda":
            raise ValueError(f"CUDA graphs need the talker on a CUDA device, not {self.device}")
        self.talker, self.min_capacity, self.keep = talker, min_capacity, keep
        self._idle: list[tuple[tuple, TalkerStep | CodeStep]] = []  # least recently used first

    def capacity(self, length: int) -> int:
        """Cache size for ``length`` positions: ``min_capacity`` doubled until it holds them."""
        capacity = self.min_capacity
        while capacity < length:
            capacity *= 2
        return capacity

    def acquire(self, key: tuple, build: Callable[[], T]) -> T:
        """An idle step object of ``key``, else a new one from ``build()``; hand it back with ``release``."""
        for i, (k, step) in enumerate(self._idle):
            if k == key:
                del self._idle[i]
                return step
        return build()

    def release(self, key: tuple, step: TalkerStep | CodeStep) -> None:
        self._idle.append((key, step))
        del self._idle[: max(len(self._idle) - self.keep, 0)]

    def talker_step(self, batch: int, length: int) -> tuple[tuple, TalkerStep]:
        """(key, step) with room for ``length`` positions."""
        key = ("talker", batch, self.capacity(length))
        return key, self.acquire(key, lambda: TalkerStep(self.talker, batch, key[2], self.graphs))

    def code_step(self, batch: int, config: SamplingConfig, record: bool = False) -> tuple[tuple, CodeStep]:
        c = config
        key = ("codes", batch, c.subtalker_dosample, c.subtalker_temperature, c.subtalker_top_k, c.subtalker_top_p,
               record)
        return key, self.acquire(key, lambda: CodeStep(self.talker, batch, config, self.graphs, record))

    def begin(self, batch: int, sampler: CodeSampler) -> StaticSteps:
        return StaticSteps(self, batch, sampler)


class StaticSteps:
    """One generation's model calls (prefill, frame codes, talker step; see ``generate_frames``) on step objects of a
    ``StaticDecoding``, returned to it by ``close``.

    The sampler's group-0 draws move to the code step's generator (continuing the sampler's seeded state), so the
    eager group-0 draws and the graph's group 1..G-1 draws come from one generator in the order of the default
    path; an unseeded sampler gets a seed from torch's global generator.
    """

    def __init__(self, decoding: StaticDecoding, batch: int, sampler: CodeSampler):
        self.decoding, self.batch, self.sampler = decoding, batch, sampler
        self.code_key, self.code_step = decoding.code_step(batch, sampler.config, record=sampler.record == "all")
        generator = self.code_step.generator
        if sampler.generator is not None:
            generator.set_state(sampler.generator.get_state())
        else:
            generator.manual_seed(int(torch.randint(2**62, ()).item()))
        sampler.generator = generator
        self.talker_key, self.talker_step = None, None

    def prefill(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.talker_key, self.talker_step = self.decoding.talker_step(self.batch, inputs_embeds.shape[1] + 1)
        return self.talker_step.prefill(inputs_embeds, attention_mask)

    def codes(self, hidden: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        codes = self.code_step(hidden, first)
        if self.code_step.record:  # the sampler keeps the draws' log-probabilities, as on the default path
            self.sampler.residual_logprobs[-1].extend(self.code_step.logprobs.unbind(1))
        return codes

    def step(self, codes: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.talker_step.length == self.talker_step.capacity:  # full: move to a cache twice the size
            key, step = self.decoding.talker_step(self.batch, self.talker_step.length + 1)
            step.load(self.talker_step)
            self.decoding.release(self.talker_key, self.talker_step)
            self.talker_key, self.talker_step = key, step
        return self.talker_step(codes, text)

    def close(self) -> None:
        for key, step in ((self.code_key, self.code_step), (self.talker_key, self.talker_step)):
            if step is not None:
                self.decoding.release(key, step)
        self.code_step = self.talker_step = None
