"""Codec validation metrics for training: SI-SDR always; STOI and wide-band PESQ when ``pystoi`` / ``pesq`` are
installed (they are CPU reference implementations, so optional here).

The metric math lives in :mod:`qtts.eval.codec_metrics` (the tokenizer-table metrics); this module only maps it over
a validation batch and leaves out the items without a score (a silent reference, no utterance found), so the logged
means are over scored items only.
"""

from __future__ import annotations

import importlib.util
import math

import torch

from qtts.eval.codec_metrics import mel_distance, pesq_score, si_sdr, stoi_score

__all__ = ["HAS_PESQ", "HAS_STOI", "mel_distance", "perceptual_metrics", "pesq", "si_sdr", "stoi"]

HAS_STOI = importlib.util.find_spec("pystoi") is not None
HAS_PESQ = importlib.util.find_spec("pesq") is not None


def _per_item(fn, estimate: torch.Tensor, reference: torch.Tensor, sample_rate: int) -> list[float]:
    ref, est = (w.detach().float().cpu() for w in (reference, estimate))
    scores = [fn(r, e, sample_rate) for r, e in zip(ref, est)]
    return [s for s in scores if math.isfinite(s)]


def stoi(estimate: torch.Tensor, reference: torch.Tensor, sample_rate: int) -> list[float]:
    """STOI per item of (B, T) audio; items without a score (silent reference) are left out."""
    return _per_item(stoi_score, estimate, reference, sample_rate)


def pesq(estimate: torch.Tensor, reference: torch.Tensor, sample_rate: int) -> list[float]:
    """Wide-band PESQ per item of (B, T) audio (resampled to 16 kHz); items without a score are left out."""
    return _per_item(pesq_score, estimate, reference, sample_rate)


def perceptual_metrics(estimate: torch.Tensor, reference: torch.Tensor, sample_rate: int) -> dict[str, float]:
    """Mean STOI / PESQ over the batch for whichever package is installed and gave a score."""
    metrics = {}
    for name, available, fn in (("stoi", HAS_STOI, stoi), ("pesq", HAS_PESQ, pesq)):
        scores = fn(estimate, reference, sample_rate) if available else []
        if scores:
            metrics[name] = sum(scores) / len(scores)
    return metrics
