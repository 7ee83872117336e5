"""The generation loop: prefill the talker once, then one whole 16-group frame per step.

Step k: the talker's last hidden state and logits give group 0 (or EOS); the code predictor adds groups 1..15
from that hidden state; the frame's summed embedding plus the text track of step k (trailing text, then
``tts_pad``) is the talker's next input, through its KV cache. This is what qwen-tts's ``generate`` computes,
without the ``transformers.generate`` machinery around each of the 16 model calls per frame.

Frames come out as they exist (a generator), so the streaming decoder can turn them into audio at once. The model
calls (prefill, a frame's codes, the talker's step) run on growing KV caches (``DynamicSteps``, any device), or on
static caches and CUDA graphs (``qtts.inference.static_decoding``), which choose the same codes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch

from qtts.inference.sampling import CodeSampler
from qtts.inference.static_decoding import StaticDecoding
from qtts.models.talker.talker import Talker


class Frame(NamedTuple):
    codes: torch.Tensor  # (B, G) long: this step's frame of every row
    alive: torch.Tensor  # (B,) bool: rows for which it is a real frame (not yet ended by EOS)


class DynamicSteps:
    """The model calls of one generation on KV caches that grow by a position per step (``KVCache``)."""

    def __init__(self, talker: Talker, sampler: CodeSampler):
        self.talker, self.sampler = talker, sampler
        self.cache, self.mask = talker.new_cache(), None

    def prefill(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = attention_mask.bool()
        # no padding: positions follow the cache, and single-query steps need no mask at all
        self.mask = None if bool(mask.all()) else mask
        out = self.talker(inputs_embeds, attention_mask=self.mask, cache=self.cache)
        return out.hidden[:, -1], out.logits[:, -1]

    def codes(self, hidden: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        return self.talker.predict_codes(hidden, first, self.sampler.residual)

    def step(self, codes: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mask is not None:
            self.mask = torch.cat([self.mask, self.mask.new_ones(len(codes), 1)], dim=1)
        out = self.talker((self.talker.embed_frame(codes) + text).unsqueeze(1), attention_mask=self.mask,
                          cache=self.cache)
        return out.hidden[:, -1], out.logits[:, -1]

    def close(self) -> None:
        self.cache = None


@torch.inference_mode()
def generate_frames(
    talker: Talker,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    trailing_text: torch.Tensor,
    text_pad: torch.Tensor,
    sampler: CodeSampler,
    max_frames: int,
    check_every: int = 1,
    static: StaticDecoding | None = None,
) -> Iterator[Frame]:
    """Yield up to ``max_frames`` frames of a left-padded batch of prefills.

    inputs_embeds (B, T, H) and attention_mask (B, T) (1 real, 0 left padding): the prefill;
    trailing_text (B, K, H): the text track of steps 0..K-1 (right-padded with ``text_pad`` (H,)), which
    every later step gets. The loop ends when every row has chosen EOS, checked every ``check_every`` steps
    (each check is a host sync on GPU; frames of ended rows come out with ``alive`` False until then).
    ``static``: run the model calls on its static caches (CUDA graphs when it has them) instead of growing ones.
    """
    if static is not None and static.talker is not talker:
        raise ValueError("the static decoding belongs to another talker")
    steps = DynamicSteps(talker, sampler) if static is None else static.begin(len(inputs_embeds), sampler)
    try:
        hidden, logits = steps.prefill(inputs_embeds, attention_mask)
        alive = torch.ones(inputs_embeds.shape[0], dtype=torch.bool, device=inputs_embeds.device)
        for step in range(max_frames):
            first = sampler.first(logits)
            alive = alive & (first != sampler.eos_id)
            if (step + 1) % check_every == 0 and not bool(alive.any()):
                return
            codes = steps.codes(hidden, first)
            yield Frame(codes, alive)
            if step + 1 == max_frames:
                return
            text = trailing_text[:, step] if step < trailing_text.shape[1] else text_pad.expand(len(codes), -1)
            hidden, logits = steps.step(codes, text)
    finally:
        steps.close()
