"""Small loss functions shared by tasks; each is unit-tested on its own."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def aam_softmax_loss(embeddings: torch.Tensor, class_weights: torch.Tensor, labels: torch.Tensor,
                     margin: float = 0.2, scale: float = 30.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Additive angular margin softmax (ArcFace): cross-entropy on ``scale·cos(θ + m)`` for the true class.

    Returns ``(loss, cosine)`` where ``cosine (B, C)`` is the margin-free similarity to every class,
    which is what accuracy and verification scores use. The margin is applied only where
    ``θ + m < π`` (past that cos is not monotone); beyond it a linear penalty keeps the gradient sane.
    """
    cosine = F.linear(F.normalize(embeddings.float(), dim=-1), F.normalize(class_weights.float(), dim=-1))
    if margin == 0.0:
        return F.cross_entropy(scale * cosine, labels), cosine
    sine = (1.0 - cosine.pow(2)).clamp_min(1e-7).sqrt()
    with_margin = cosine * math.cos(margin) - sine * math.sin(margin)
    with_margin = torch.where(cosine > math.cos(math.pi - margin), with_margin,
                              cosine - math.sin(math.pi - margin) * margin)
    target = F.one_hot(labels, cosine.shape[-1]).bool()
    logits = scale * torch.where(target, with_margin, cosine)
    return F.cross_entropy(logits, labels), cosine


def equal_error_rate(scores: torch.Tensor, same: torch.Tensor) -> float:
    """EER of verification trials: ``scores`` higher for same-speaker pairs, ``same`` the truth."""
    scores, same = scores.flatten().double(), same.flatten().bool()
    if same.all() or (~same).all():
        return float("nan")
    order = torch.argsort(scores, descending=True)
    same = same[order]
    accepted_same = torch.cumsum(same, 0) / same.sum()  # true-accept rate at each threshold
    false_accept = torch.cumsum(~same, 0) / (~same).sum()
    false_reject = 1.0 - accepted_same
    i = torch.argmin((false_accept - false_reject).abs())
    return float((false_accept[i] + false_reject[i]) / 2)
