"""Codec validation metrics: SI-SDR always; STOI and wide-band PESQ when ``pystoi`` / ``pesq`` are installed.

STOI and PESQ are the numbers codec papers report, but both are CPU-only reference implementations, so
they are optional extras and computed per item on numpy. PESQ wide-band is defined at 16 kHz only.
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import torch
import torchaudio.functional as AF

PESQ_SAMPLE_RATE = 16000
SILENT = 1e-4  # reference peak below which an item is skipped: neither metric means anything on silence
HAS_STOI = importlib.util.find_spec("pystoi") is not None
HAS_PESQ = importlib.util.find_spec("pesq") is not None


def si_sdr(estimate: torch.Tensor, reference: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant SDR in dB per item (B, T)."""
    reference = reference - reference.mean(-1, keepdim=True)
    estimate = estimate - estimate.mean(-1, keepdim=True)
    scale = (estimate * reference).sum(-1, keepdim=True) / (reference.pow(2).sum(-1, keepdim=True) + eps)
    target = scale * reference
    noise = estimate - target
    return 10 * torch.log10(target.pow(2).sum(-1) / (noise.pow(2).sum(-1) + eps) + eps)


def stoi(estimate: torch.Tensor, reference: torch.Tensor, sample_rate: int) -> list[float]:
    """STOI per item of (B, T) audio (pystoi resamples to its 10 kHz internally); silent items are skipped."""
    from pystoi import stoi as _stoi

    scores = [float(_stoi(r, e, sample_rate, extended=False)) for r, e in _audible(estimate, reference)]
    return [s for s in scores if math.isfinite(s)]


def pesq(estimate: torch.Tensor, reference: torch.Tensor, sample_rate: int) -> list[float]:
    """Wide-band PESQ per item of (B, T) audio at 16 kHz; silent items and those PESQ rejects (no utterance
    found, too short) are skipped."""
    from pesq import PesqError
    from pesq import pesq as _pesq

    if sample_rate != PESQ_SAMPLE_RATE:
        reference = AF.resample(reference.detach().float().cpu(), sample_rate, PESQ_SAMPLE_RATE)
        estimate = AF.resample(estimate.detach().float().cpu(), sample_rate, PESQ_SAMPLE_RATE)
    scores = []
    for r, e in _audible(estimate, reference):
        try:
            score = float(_pesq(PESQ_SAMPLE_RATE, r, e, "wb"))
        except (PesqError, ValueError):
            continue
        if math.isfinite(score):
            scores.append(score)
    return scores


def perceptual_metrics(estimate: torch.Tensor, reference: torch.Tensor, sample_rate: int) -> dict[str, float]:
    """Mean STOI / PESQ over the batch for whichever package is installed and gave a score."""
    metrics = {}
    for name, available, fn in (("stoi", HAS_STOI, stoi), ("pesq", HAS_PESQ, pesq)):
        scores = fn(estimate, reference, sample_rate) if available else []
        if scores:
            metrics[name] = sum(scores) / len(scores)
    return metrics


def _audible(estimate: torch.Tensor, reference: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray]]:
    """(reference, estimate) float64 numpy pairs of the items whose reference is not silent."""
    ref, est = (w.detach().float().cpu().numpy().astype(np.float64) for w in (reference, estimate))
    return [(r, e) for r, e in zip(ref, est) if np.abs(r).max() >= SILENT]
