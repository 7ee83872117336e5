"""Reconstruction metrics of a speech tokenizer (codec): the paper's tokenizer table, per utterance, then summarised.

Per utterance, :func:`reconstruction_metrics` compares a reconstruction with its original:

* ``pesq_wb``: wide-band PESQ (ITU-T P.862.2) at 16 kHz, MOS-LQO in [1.04, 4.64];
* ``pesq_nb``: narrow-band PESQ (P.862 + P.862.1 mapping) at 8 kHz, MOS-LQO in [1.02, 4.55];
* ``stoi``: short-time objective intelligibility (classic, not extended), in [0, 1] (pystoi works at 10 kHz);
* ``mel_distance``: the codec validation's ``val/mel_distance``, the mean absolute difference of natural-log mel
  magnitudes (:class:`qtts.audio.features.LogMelSpectrogram`, n_fft 1024, hop 256, 80 slaney mels, floor 1e-5)
  at the audio's own rate; 0 for identical audio, lower is better, comparable only between runs at one rate;
* ``si_sdr``: scale-invariant SDR in dB.

PESQ and STOI are the CPU reference implementations (``pesq``, ``pystoi``). Both signals are resampled to each
metric's rate with :func:`qtts.audio.io.resample`. Lengths are aligned by cutting both to the shorter one: codecs
pad their output to a whole number of frames, so a reconstruction is a few samples to one frame longer or shorter
at the end; a difference beyond ``max_length_difference`` (0.1 s by default) is an error, since it means a
mismatched pair or a wrong sample rate rather than frame padding.

A reference whose peak is below ``SILENT`` has no PESQ, STOI or SI-SDR (all are ratios against the reference's
speech): those are NaN, and so is a PESQ that finds no utterance or too short a one, a STOI with too few frames
(pystoi needs 30 frames of speech, about 0.4 s) and a mel distance of at most ``MEL_MIN_SAMPLES`` samples;
``mel_distance`` of a silent reference is still defined and reported. :func:`summarize_reconstructions` averages
the finite values and counts the NaNs, so a skipped item is visible rather than silently lowering or raising a mean.

The batch helpers :func:`si_sdr` and :func:`mel_distance` take ``(..., samples)`` tensors and stay differentiable,
for codec validation in training (``qtts.tasks.codec_metrics``). Speaker similarity and DNSMOS of reconstructions
come from :mod:`qtts.eval.similarity` and :mod:`qtts.eval.naturalness`.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from qtts.audio.features import LogMelSpectrogram
from qtts.audio.io import resample

PESQ_WB_SAMPLE_RATE = 16_000
PESQ_NB_SAMPLE_RATE = 8_000
SILENT = 1e-4  # reference peak below which PESQ, STOI and SI-SDR are undefined (NaN)
MAX_LENGTH_DIFFERENCE_S = 0.1
METRICS = ("pesq_wb", "pesq_nb", "stoi", "mel_distance", "si_sdr")
MEL_MIN_SAMPLES = (1024 - 256) // 2  # the mel's reflect padding: shorter audio has no frame


def si_sdr(estimate: torch.Tensor, reference: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant SDR in dB per item of ``(..., samples)`` audio (means removed first)."""
    reference = reference - reference.mean(-1, keepdim=True)
    estimate = estimate - estimate.mean(-1, keepdim=True)
    scale = (estimate * reference).sum(-1, keepdim=True) / (reference.pow(2).sum(-1, keepdim=True) + eps)
    target = scale * reference
    noise = estimate - target
    return 10 * torch.log10(target.pow(2).sum(-1) / (noise.pow(2).sum(-1) + eps) + eps)


@functools.lru_cache(maxsize=8)
def _mel(sample_rate: int) -> LogMelSpectrogram:
    return LogMelSpectrogram(sample_rate, n_fft=1024, hop_length=256, n_mels=80)


def mel_distance(estimate: torch.Tensor, reference: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Mean |log mel(estimate) - log mel(reference)| over every frame and bin of ``(..., samples)`` audio of one
    shape (more than ``MEL_MIN_SAMPLES``), as a scalar tensor (differentiable)."""
    if estimate.shape != reference.shape:
        raise ValueError(f"estimate {tuple(estimate.shape)} and reference {tuple(reference.shape)} differ in shape")
    if estimate.shape[-1] <= MEL_MIN_SAMPLES:
        raise ValueError(f"mel distance needs more than {MEL_MIN_SAMPLES} samples, got {estimate.shape[-1]}")
    mel = _mel(int(sample_rate))
    return (mel(estimate) - mel(reference)).abs().mean()


def is_silent(reference: torch.Tensor | np.ndarray) -> bool:
    """Whether the reference's peak is below ``SILENT`` (PESQ, STOI and SI-SDR are undefined then)."""
    peak = reference.abs().max() if isinstance(reference, torch.Tensor) else np.abs(reference).max()
    return float(peak) < SILENT


def _mono(name: str, wav: torch.Tensor) -> torch.Tensor:
    wav = torch.as_tensor(wav).detach().float().cpu()
    if wav.dim() == 2 and wav.shape[0] == 1:
        wav = wav[0]
    if wav.dim() != 1:
        raise ValueError(f"{name}: expected a 1-D (samples,) or (1, samples) waveform, got shape {tuple(wav.shape)}")
    if wav.numel() == 0 or not torch.isfinite(wav).all():
        raise ValueError(f"{name}: empty or holds NaN/infinite samples")
    return wav


def align(
    reference: torch.Tensor, reconstruction: torch.Tensor, sample_rate: int, max_length_difference: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both as 1-D float32 tensors cut to the shorter length; raises if they differ by more than
    ``max_length_difference`` samples (default ``MAX_LENGTH_DIFFERENCE_S`` seconds)."""
    reference, reconstruction = _mono("reference", reference), _mono("reconstruction", reconstruction)
    limit = round(MAX_LENGTH_DIFFERENCE_S * sample_rate) if max_length_difference is None else max_length_difference
    difference = abs(reference.numel() - reconstruction.numel())
    if difference > limit:
        raise ValueError(
            f"reference ({reference.numel()} samples) and reconstruction ({reconstruction.numel()}) differ by "
            f"{difference} samples, more than {limit} at {sample_rate} Hz: a mismatched pair or a wrong sample rate?"
        )
    n = min(reference.numel(), reconstruction.numel())
    return reference[:n], reconstruction[:n]


def pesq_score(reference: torch.Tensor, estimate: torch.Tensor, sample_rate: int, mode: str = "wb") -> float:
    """PESQ of aligned 1-D audio: ``"wb"`` at 16 kHz, ``"nb"`` at 8 kHz (resampled from ``sample_rate``); NaN for a
    silent reference or one in which PESQ finds no utterance."""
    from pesq import PesqError, pesq

    rate = {"wb": PESQ_WB_SAMPLE_RATE, "nb": PESQ_NB_SAMPLE_RATE}.get(mode)
    if rate is None:
        raise ValueError(f"PESQ mode must be 'wb' or 'nb', got {mode!r}")
    if is_silent(reference):
        return math.nan
    ref, est = (resample(w.float()[None], sample_rate, rate)[0].double().numpy() for w in (reference, estimate))
    try:
        score = float(pesq(rate, ref, est, mode))
    except (PesqError, ValueError):  # no utterance detected, or too short for PESQ's alignment
        return math.nan
    return score if math.isfinite(score) else math.nan


def stoi_score(reference: torch.Tensor, estimate: torch.Tensor, sample_rate: int) -> float:
    """Classic STOI of aligned 1-D audio; NaN for a silent reference or too few speech frames (where pystoi warns
    and returns its 1e-5 placeholder)."""
    from pystoi import stoi

    if is_silent(reference):
        return math.nan
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        score = float(stoi(reference.double().numpy(), estimate.double().numpy(), sample_rate, extended=False))
    if any("Not enough STFT frames" in str(w.message) for w in caught) or not math.isfinite(score):
        return math.nan
    return score


def reconstruction_metrics(
    reference: torch.Tensor, reconstruction: torch.Tensor, sample_rate: int, max_length_difference: int | None = None
) -> dict[str, float]:
    """``{pesq_wb, pesq_nb, stoi, mel_distance, si_sdr}`` of one reconstruction against its original (1-D or
    ``(1, samples)`` audio at ``sample_rate``), after :func:`align`; see the module docstring for NaNs."""
    reference, reconstruction = align(reference, reconstruction, sample_rate, max_length_difference)
    silent = is_silent(reference)
    return {
        "pesq_wb": pesq_score(reference, reconstruction, sample_rate, "wb"),
        "pesq_nb": pesq_score(reference, reconstruction, sample_rate, "nb"),
        "stoi": stoi_score(reference, reconstruction, sample_rate),
        "mel_distance": (
            float(mel_distance(reconstruction, reference, sample_rate))
            if reference.numel() > MEL_MIN_SAMPLES
            else math.nan
        ),
        "si_sdr": math.nan if silent else float(si_sdr(reconstruction, reference)),
    }


@dataclass(frozen=True)
class MetricSummary:
    """The mean of one metric over the utterances that have it; ``missing`` counts those that have NaN."""

    mean: float
    count: int
    missing: int


def summarize_reconstructions(items: Iterable[Mapping[str, float]]) -> dict[str, MetricSummary]:
    """Per metric (every key seen, in first-seen order): mean of the finite values, their count, and the number of
    items where it is NaN or absent. A metric no item has a value for gets mean NaN."""
    items = list(items)
    keys = list(dict.fromkeys(k for item in items for k in item))
    out = {}
    for key in keys:
        values = [float(item[key]) for item in items if key in item and math.isfinite(float(item[key]))]
        mean = sum(values) / len(values) if values else math.nan
        out[key] = MetricSummary(mean=mean, count=len(values), missing=len(items) - len(values))
    return out
