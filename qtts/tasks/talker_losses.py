"""The dual-track LM loss: group 0 from the talker, groups 1..15 from the code predictor.

Labels come from ``qtts.models.talker.layout`` already aligned: ``labels[t]`` is what the hidden state at
``t`` predicts, so nothing here shifts (upstream fine-tuning shifted twice). The code predictor is
teacher-forced on every supervised frame at once: its input is ``[hidden[t], E(c0), E(c1), …]`` of the
frame whose ``c0`` is ``labels[t]``, and its head k is scored against ``code_labels[t, k]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from qtts.models.talker.layout import IGNORE_INDEX


@dataclass
class DualTrackLoss:
    total: torch.Tensor
    talker: torch.Tensor  # CE of group 0 (and codec_eos) over supervised positions
    predictor: torch.Tensor  # CE of groups 1..15 over the frames the predictor ran on
    talker_accuracy: torch.Tensor
    predictor_accuracy: torch.Tensor  # (groups - 1,) per residual group
    talker_tokens: int
    predictor_frames: int


def dual_track_loss(
    hidden: torch.Tensor,
    logits: torch.Tensor,
    labels: torch.Tensor,
    code_labels: torch.Tensor,
    predictor_logits: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    predictor_weight: float = 0.3,
    predictor_fraction: float = 1.0,
    generator: torch.Generator | None = None,
    accuracy: bool = True,
) -> DualTrackLoss:
    """hidden (B, T, H), logits (B, T, V), labels (B, T), code_labels (B, T, G-1);
    ``predictor_logits(hidden (N, H), codes (N, G)) → (N, G-1, vocab)`` (``Talker.predictor_logits``).

    ``predictor_fraction`` < 1 runs the code predictor on that random share of the frames (at least one):
    its cost grows with frames × 16 positions, so sub-sampling trades gradient noise for speed.
    ``accuracy=False`` skips the argmaxes (NaN accuracies: not measured): they cost as much as a small layer.
    The accuracies count exactly the positions (talker) and frames (predictor) that the losses average over.
    """
    supervised = labels != IGNORE_INDEX
    if not bool(supervised.any()):
        raise ValueError("batch has no supervised position (every label is -100)")
    talker_logits = logits[supervised].float()
    talker_labels = labels[supervised]
    talker = F.cross_entropy(talker_logits, talker_labels)
    nan = torch.full((), float("nan"), device=logits.device)
    talker_accuracy = (talker_logits.argmax(-1) == talker_labels).float().mean() if accuracy else nan

    frames = supervised & (code_labels[..., 0] != IGNORE_INDEX)
    index = frames.nonzero(as_tuple=False)
    if predictor_fraction < 1.0 and len(index) > 1:
        keep = max(1, round(predictor_fraction * len(index)))
        order = torch.randperm(len(index), generator=generator)[:keep].sort().values
        index = index[order.to(index.device)]
    groups = code_labels.shape[-1] + 1
    if len(index) == 0:
        predictor = hidden.sum() * 0.0  # no audio frame in the batch: keep the graph (DDP) and the dtype
        predictor_accuracy = torch.zeros(groups - 1, device=hidden.device) if accuracy else nan.expand(groups - 1)
    else:
        rows, cols = index[:, 0], index[:, 1]
        targets = code_labels[rows, cols]  # (N, G-1)
        codes = torch.cat([labels[rows, cols, None], targets], dim=-1)  # the frame: c0 … c15
        out = predictor_logits(hidden[rows, cols], codes).float()  # (N, G-1, vocab)
        predictor = F.cross_entropy(out.flatten(0, 1), targets.flatten())
        predictor_accuracy = (out.argmax(-1) == targets).float().mean(0) if accuracy else nan.expand(groups - 1)
    total = talker + predictor_weight * predictor
    return DualTrackLoss(total, talker, predictor, talker_accuracy, predictor_accuracy,
                         int(supervised.sum()), len(index))
