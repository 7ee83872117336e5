"""Validation audio for the talker: what the model predicts for one utterance, as codes a codec can decode.

Teacher-forced: every frame's group 0 is the talker's argmax (real codes only, 0..codebook-1) from the
true history, and groups 1..15 are the code predictor's argmaxes given the true earlier groups, so one
forward pass gives a whole utterance to listen to. It shows what the model has learnt per frame; free-running
generation is the synthesizer's job.
"""

from __future__ import annotations

import torch

from qtts.models.talker.layout import IGNORE_INDEX


@torch.no_grad()
def teacher_forced_frames(hidden: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
                          code_labels: torch.Tensor, predictor_logits, codebook_size: int = 2048
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """One row: hidden (T, H), logits (T, V), labels (T,), code_labels (T, G-1) → (predicted, target) frames,
    each (F, G), for the F audio frames of the row (the positions whose label is a code, not EOS)."""
    frames = (labels != IGNORE_INDEX) & (code_labels[:, 0] != IGNORE_INDEX)
    target = torch.cat([labels[frames, None], code_labels[frames]], dim=-1)
    if len(target) == 0:
        return target, target
    first = logits[frames, :codebook_size].argmax(-1)
    rest = predictor_logits(hidden[frames], target).argmax(-1)  # (F, G-1), teacher-forced on the true groups
    return torch.cat([first[:, None], rest], dim=-1), target
