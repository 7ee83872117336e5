"""The generation loop: prefill the talker once, then one whole 16-group frame per step.

Step k: the talker's last hidden state and logits give group 0 (or EOS); the code predictor adds groups 1..15
from that hidden state; the frame's summed embedding plus the text track of step k (trailing text, then
``tts_pad``) is the talker's next input, through its KV cache. This is what qwen-tts's ``generate`` computes,
without the ``transformers.generate`` machinery around each of the 16 model calls per frame.

Frames come out as they exist (a generator), so the streaming decoder can turn them into audio at once.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple

import torch

from qtts.inference.sampling import CodeSampler
from qtts.models.talker.talker import Talker


class Frame(NamedTuple):
    codes: torch.Tensor  # (B, G) long: this step's frame of every row
    alive: torch.Tensor  # (B,) bool: rows for which it is a real frame (not yet ended by EOS)


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
) -> Iterator[Frame]:
    """Yield up to ``max_frames`` frames of a left-padded batch of prefills.

    inputs_embeds (B, T, H) and attention_mask (B, T) (1 real, 0 left padding): the prefill;
    trailing_text (B, K, H): the text track of steps 0..K-1 (right-padded with ``text_pad`` (H,)), which
    every later step gets. The loop ends when every row has chosen EOS, checked every ``check_every`` steps
    (each check is a host sync on GPU; frames of ended rows come out with ``alive`` False until then).
    """
    cache = talker.new_cache()
    mask = attention_mask.bool()
    if bool(mask.all()):
        mask = None  # no padding: positions follow the cache, and single-query steps need no mask at all
    out = talker(inputs_embeds, attention_mask=mask, cache=cache)
    hidden, logits = out.hidden[:, -1], out.logits[:, -1]
    alive = torch.ones(inputs_embeds.shape[0], dtype=torch.bool, device=inputs_embeds.device)
    one = torch.ones_like(alive).unsqueeze(1)
    for step in range(max_frames):
        first = sampler.first(logits)
        alive = alive & (first != sampler.eos_id)
        if (step + 1) % check_every == 0 and not bool(alive.any()):
            return
        codes = talker.predict_codes(hidden, first, sampler.residual)
        yield Frame(codes, alive)
        if step + 1 == max_frames:
            return
        text = trailing_text[:, step] if step < trailing_text.shape[1] else text_pad.expand(len(codes), -1)
        mask = None if mask is None else torch.cat([mask, one], dim=1)
        out = talker((talker.embed_frame(codes) + text).unsqueeze(1), attention_mask=mask, cache=cache)
        hidden, logits = out.hidden[:, -1], out.logits[:, -1]
