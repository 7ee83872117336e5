"""Rollouts for post-training: G sampled utterances per prompt, with their codes, log-probabilities and audio.

GSPO / GRPO compare the G samples of one prompt with each other (group-normalised advantages) and DPO mines its
pairs from them, so every prompt is repeated G times and the rows are sampled in batches through the Synthesizer
(the model code training runs). Each row keeps the log-probability of every step under the distribution it was
drawn from (``Synthesizer.generate_codes(return_logprobs=…)``): the old policy of GSPO's importance ratio, which
``Synthesizer.code_logprobs`` / ``qtts.inference.logprobs.sequence_logprobs`` recompute under the current weights
from ``Rollouts.requests`` and ``codes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from qtts.audio.io import SAMPLE_RATE
from qtts.inference.logprobs import PolicyGroups, SequenceLogProbs
from qtts.inference.synthesizer import Request, Synthesizer


@dataclass
class Rollouts:
    """``group_size`` samples of each prompt, prompt-major: row ``i · G + j`` is sample j of prompt i.

    requests: each row's request (the prompt's, repeated). codes: (frames, 16) per row, up to its EOS.
    logprobs: per row and step (``SequenceLogProbs``; ``.ended`` says which rows chose EOS). audio: the float32
    waveform of each row at ``sample_rate`` (None when not decoded).
    """

    requests: list[Request]
    codes: list[torch.Tensor]
    logprobs: SequenceLogProbs
    audio: list[torch.Tensor] | None
    group_size: int
    sample_rate: int

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def num_prompts(self) -> int:
        return len(self.codes) // self.group_size

    @property
    def prompt_index(self) -> torch.Tensor:
        """(rows,) the prompt each row samples."""
        return torch.arange(self.num_prompts).repeat_interleave(self.group_size)

    def group(self, prompt: int) -> slice:
        """The rows of one prompt's samples."""
        if not 0 <= prompt < self.num_prompts:
            raise IndexError(f"prompt {prompt} out of range ({self.num_prompts} prompts)")
        return slice(prompt * self.group_size, (prompt + 1) * self.group_size)


def sample_rollouts(synth: Synthesizer, requests: Sequence[Request], group_size: int, batch_size: int | None = None,
                    groups: PolicyGroups = "all", audio: bool = True, seed: int | None = None,
                    **sampling) -> Rollouts:
    """Sample ``group_size`` utterances of each request, ``batch_size`` rows per generation (default: all rows in
    one), under ``synth``'s sampling config with ``sampling``'s overrides, recording the log-probabilities of the
    policy over ``groups`` (``"all"`` 16 groups or group 0, ``"first"``); decode them to audio unless ``audio`` is
    False (a Synthesizer without codec samples codes only).
    ``seed``: batch k draws with seed ``seed + k`` (the same rollouts again for the same arguments); None
    draws from torch's global generator. A voice clone's prompt is encoded once by the caller
    (``Synthesizer.create_voice_prompt``) and shared by its rows."""
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not requests:
        raise ValueError("no requests to sample")
    if "seed" in sampling:
        raise TypeError("give the rollouts' seed as seed= (each batch draws with seed + its index)")
    rows = [r for r in requests for _ in range(group_size)]
    size = batch_size or len(rows)
    codes: list[torch.Tensor] = []
    parts: list[SequenceLogProbs] = []
    for k, first in enumerate(range(0, len(rows), size)):
        batch = rows[first:first + size]
        batch_codes, logprobs = synth.generate_codes(batch, return_logprobs=groups,
                                                     seed=None if seed is None else seed + k, **sampling)
        codes += batch_codes
        parts.append(logprobs)
    wavs = synth.decode(codes, [r.prompt for r in rows]) if audio else None
    # a Synthesizer without codec (codes only: GSPO on code-level rewards) has no rate of its own: the released one
    sample_rate = synth.sample_rate if synth.codec is not None else SAMPLE_RATE
    return Rollouts(rows, codes, SequenceLogProbs.cat(parts), wavs, group_size, sample_rate)
