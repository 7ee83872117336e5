"""Token choice for generation: the released generation config, and the logits rules applied before a choice.

Group 0 (the talker) follows Hugging Face ``generate`` as qwen-tts calls it, in the same order: repetition
penalty over the group-0 codes generated so far, EOS blocked before ``min_new_tokens``, every special id except
EOS suppressed, then temperature, top-k, top-p and a draw (or argmax when ``do_sample`` is off). Groups 1..15 (the
code predictor) use their own ``subtalker_*`` temperature / top-k / top-p and no penalty. All of it is tensor
arithmetic on the logits' device: no host sync per token.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from qtts.models.export import GENERATION_CONFIG


@dataclass
class SamplingConfig:
    """Defaults are qwen-tts's hard defaults; a model folder's ``generation_config.json`` overrides them.

    ``max_new_tokens`` bounds the frames of one utterance (80 ms each). Unlike qwen-tts, whose last sampled
    group-0 code never gets its other 15 groups, ``N`` here allows ``N`` whole frames (qwen-tts: ``N − 1``).
    """

    do_sample: bool = True
    temperature: float = 0.9
    top_k: int = 50
    top_p: float = 1.0
    repetition_penalty: float = 1.05
    subtalker_dosample: bool = True
    subtalker_temperature: float = 0.9
    subtalker_top_k: int = 50
    subtalker_top_p: float = 1.0
    max_new_tokens: int = 2048
    min_new_tokens: int = 2
    seed: int | None = None

    def __post_init__(self):
        for name in ("temperature", "subtalker_temperature"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0 (use do_sample=False for greedy), got {getattr(self, name)}")
        for name in ("top_p", "subtalker_top_p"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        for name in ("top_k", "subtalker_top_k", "min_new_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")

    @classmethod
    def from_folder(cls, folder: str | os.PathLike) -> SamplingConfig:
        """The folder's ``generation_config.json`` over the defaults (keys we do not use are ignored, as the
        ``transformers`` bookkeeping keys; a known key with a bad value names the file)."""
        path = Path(folder) / GENERATION_CONFIG
        if not path.is_file():
            return cls()
        try:
            values = json.loads(path.read_text())
            known = {f.name for f in dataclasses.fields(cls)}
            return cls(**{k: v for k, v in values.items() if k in known})
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path}: {e}") from e

    def replace(self, **overrides) -> SamplingConfig:
        """A copy with some fields changed; ``None`` values keep the current one; unknown names are an error."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"unknown sampling option(s) {unknown}; known: {sorted(known)}")
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


def penalize(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL-style repetition penalty: logits of ``seen`` ids are divided by ``penalty`` when positive and
    multiplied when negative (Keskar et al. 2019; Hugging Face's rule)."""
    if penalty == 1.0:
        return logits
    scaled = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, scaled, logits)


def warp(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Temperature, then top-k, then top-p (nucleus) filtering: the ids left out get ``-inf``."""
    logits = logits / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        ordered, order = logits.sort(dim=-1)
        drop = ordered.softmax(-1).cumsum(-1) <= 1 - top_p
        drop[..., -1] = False  # keep at least the most likely id
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def constrain(logits: torch.Tensor, seen: torch.Tensor, allowed: torch.Tensor, penalty: float) -> torch.Tensor:
    """Group 0's rules before the warp: the repetition penalty over ``seen`` (the group-0 ids of earlier frames) and
    ``-inf`` where not ``allowed`` (specials, and EOS before ``min_new_tokens``). Float logits (…, V), masks
    broadcastable to them."""
    return penalize(logits, seen, penalty).masked_fill(~allowed, float("-inf"))


def chosen_logprob(warped: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log p(ids) under the distribution a draw from ``warped`` (…, V) samples: ``log_softmax`` at ``ids`` (…),
    ``-inf`` for an id the warp left out (top-k / top-p / a suppressed id)."""
    return warped.log_softmax(-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)


def draw(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One id per row of ``probs`` (N, V): the draw of ``torch.multinomial(probs, 1)``, with the same random numbers
    and result (``argmax(p / q)``, ``q ~ Exp(1)``, its single-sample path), but without its input check, which reads
    a value back to the host (on some torch versions) and so cannot be captured in a CUDA graph."""
    return probs.div(torch.empty_like(probs).exponential_(1, generator=generator)).argmax(-1)


def choose(logits: torch.Tensor, do_sample: bool, temperature: float, top_k: int, top_p: float,
           generator: torch.Generator | None = None, record: list[torch.Tensor] | None = None) -> torch.Tensor:
    """(N, V) float logits → (N,) ids: argmax, or a draw from the warped distribution. ``record``: append the drawn
    ids' log-probabilities (N,) under that distribution to it (``chosen_logprob``; the draw is the same)."""
    if not do_sample:
        if record is not None:
            raise ValueError("greedy decoding (do_sample=False) has no log-probabilities to record")
        return logits.argmax(-1)
    warped = warp(logits, temperature, top_k, top_p)
    ids = draw(warped.softmax(-1), generator)
    if record is not None:
        record.append(chosen_logprob(warped, ids))
    return ids


def choose_residual(logits: torch.Tensor, config: SamplingConfig, generator: torch.Generator | None = None,
                    record: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Groups 1..G-1 (the code predictor's logits (N, V)): the ``subtalker_*`` temperature, top-k and top-p, no
    penalty; ``record`` as for ``choose``."""
    c = config
    return choose(logits.float(), c.subtalker_dosample, c.subtalker_temperature, c.subtalker_top_k, c.subtalker_top_p,
                  generator, record)


class CodeSampler:
    """Chooses the codes of one batch of utterances, frame after frame, keeping the group-0 history.

    ``first(logits)`` picks group 0 (or EOS) from the talker's logits; ``residual(logits, group)`` picks group
    ``group`` ≥ 1 from the code predictor's. ``allowed``: the group-0 ids that may be chosen at all (the
    codebook and EOS; the released config's other specials are suppressed).

    ``record``: also keep the log-probability of every id drawn, under the distribution it was drawn from (after
    penalty, suppression, temperature, top-k, top-p): ``"all"`` groups or group 0 only (``"first"``). Step s's are
    ``first_logprobs[s]`` (B,) and ``residual_logprobs[s][g - 1]`` (B,); ``qtts.inference.logprobs`` recomputes
    them teacher-forced. Recording needs sampling (``do_sample``, and ``subtalker_dosample`` for ``"all"``); the
    draws are the same as without it. None (the default) adds no work.
    """

    def __init__(self, config: SamplingConfig, batch: int, vocab_size: int, codebook_size: int, eos_id: int,
                 device: torch.device | str = "cpu", record: str | None = None):
        if record not in (None, "all", "first"):
            raise ValueError(f"record must be None, 'all' or 'first', got {record!r}")
        if record is not None and not config.do_sample:
            raise ValueError("greedy decoding (do_sample=False) has no log-probabilities to record")
        if record == "all" and not config.subtalker_dosample:
            raise ValueError("recording all groups needs subtalker_dosample=True (or record='first')")
        self.config, self.eos_id, self.record = config, eos_id, record
        self.first_logprobs: list[torch.Tensor] = []
        self.residual_logprobs: list[list[torch.Tensor]] = []
        self.allowed = torch.zeros(vocab_size, dtype=torch.bool, device=device)
        self.allowed[:codebook_size] = True
        self.allowed[eos_id] = True
        self.seen = torch.zeros(batch, vocab_size, dtype=torch.bool, device=device)
        self.steps = 0
        self.generator = None
        if config.seed is not None:
            self.generator = torch.Generator(device=device).manual_seed(config.seed)

    def first(self, logits: torch.Tensor) -> torch.Tensor:
        c = self.config
        allowed = self.allowed
        if self.steps < c.min_new_tokens:
            allowed = allowed.clone()
            allowed[self.eos_id] = False
        logits = constrain(logits.float(), self.seen, allowed, c.repetition_penalty)
        if self.record:
            self.residual_logprobs.append([])
        ids = choose(logits, c.do_sample, c.temperature, c.top_k, c.top_p, self.generator,
                     self.first_logprobs if self.record else None)
        self.seen.scatter_(1, ids.unsqueeze(1), True)
        self.steps += 1
        return ids

    def residual(self, logits: torch.Tensor, group: int) -> torch.Tensor:
        record = self.residual_logprobs[-1] if self.record == "all" else None
        return choose_residual(logits, self.config, self.generator, record)
