"""Tokenizer-table metrics: perfect on identical audio, monotone in the damage, aligned lengths, silent references."""

from __future__ import annotations

import math

import pytest
import torch
import torchaudio.functional as AF

from qtts.eval.codec_metrics import (
    METRICS,
    MetricSummary,
    align,
    mel_distance,
    reconstruction_metrics,
    summarize_reconstructions,
)
from tests.audio.signals import speech_like

pytest.importorskip("pesq")
pytest.importorskip("pystoi")

SR = 24_000


@pytest.fixture(scope="module")
def clean() -> torch.Tensor:
    return speech_like(2.0, SR)


def noisy(clean: torch.Tensor, snr_db: float) -> torch.Tensor:
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
    return clean + noise * (clean.pow(2).mean() / noise.pow(2).mean()).sqrt() * 10 ** (-snr_db / 20)


def test_identical_audio_scores_perfect(clean):
    m = reconstruction_metrics(clean, clean, SR)
    assert list(m) == list(METRICS)
    assert m["pesq_wb"] == pytest.approx(4.64, abs=0.01) and m["pesq_nb"] == pytest.approx(4.55, abs=0.01)
    assert m["stoi"] == pytest.approx(1.0, abs=1e-6) and m["mel_distance"] == 0.0 and m["si_sdr"] > 60


def test_more_noise_scores_worse_monotonically(clean):
    rows = [reconstruction_metrics(clean, noisy(clean, snr), SR) for snr in (30.0, 15.0, 5.0, -5.0)]
    for better, worse in zip(rows, rows[1:]):
        for key in ("pesq_wb", "pesq_nb", "stoi", "si_sdr"):
            assert worse[key] < better[key], key
        assert worse["mel_distance"] > better["mel_distance"]


def test_narrower_low_pass_scores_worse(clean):
    rows = [reconstruction_metrics(clean, AF.lowpass_biquad(clean, SR, cutoff), SR) for cutoff in (6000, 2000, 700)]
    for better, worse in zip(rows, rows[1:]):
        assert worse["pesq_wb"] < better["pesq_wb"] and worse["stoi"] < better["stoi"]
        assert worse["mel_distance"] > better["mel_distance"]


def test_lengths_a_few_samples_apart_are_aligned(clean):
    padded = torch.cat([clean, torch.zeros(37)])
    assert reconstruction_metrics(clean, padded, SR) == reconstruction_metrics(clean, clean, SR)
    short = reconstruction_metrics(clean, clean[:-100], SR)  # the reference's last 100 samples are dropped
    assert short["stoi"] == pytest.approx(1.0, abs=1e-6) and short["mel_distance"] == 0.0
    ref, rec = align(clean[None], clean[:-5], SR)
    assert ref.shape == rec.shape == (clean.numel() - 5,)
    with pytest.raises(ValueError, match=r"differ by 4800 samples, more than 2400 at 24000 Hz"):
        reconstruction_metrics(clean, clean[:-4800], SR)
    with pytest.raises(ValueError, match="reconstruction: expected a 1-D"):
        reconstruction_metrics(clean, torch.stack([clean, clean]), SR)


def test_silent_reference_is_nan_not_a_crash(clean):
    silence = torch.zeros_like(clean)
    m = reconstruction_metrics(silence, noisy(clean, 10.0) * 0.01, SR)
    assert all(math.isnan(m[k]) for k in ("pesq_wb", "pesq_nb", "stoi", "si_sdr"))
    assert m["mel_distance"] > 0  # still defined: noise where there should be silence
    assert reconstruction_metrics(silence, silence, SR)["mel_distance"] == 0.0


def test_too_short_clips_are_nan_not_a_crash(clean):
    speech = clean[6000:]
    short = reconstruction_metrics(speech[:1200], speech[:1200] * 0.9, SR)  # 50 ms
    assert all(math.isnan(short[k]) for k in ("pesq_wb", "pesq_nb", "stoi")) and short["mel_distance"] > 0
    assert short["si_sdr"] > 60  # scale-invariant
    tiny = reconstruction_metrics(speech[:300], speech[:300], SR)
    assert math.isnan(tiny["mel_distance"])
    with pytest.raises(ValueError, match="more than 384 samples, got 300"):
        mel_distance(speech[:300], speech[:300], SR)


def test_summary_averages_finite_values_and_counts_missing(clean):
    rows = [reconstruction_metrics(clean, noisy(clean, snr), SR) for snr in (20.0, 10.0)]
    rows.append(reconstruction_metrics(torch.zeros_like(clean), torch.zeros_like(clean), SR))
    summary = summarize_reconstructions(rows)
    assert list(summary) == list(METRICS)
    assert summary["pesq_wb"] == MetricSummary((rows[0]["pesq_wb"] + rows[1]["pesq_wb"]) / 2, 2, 1)
    assert summary["mel_distance"].count == 3 and summary["mel_distance"].missing == 0
    empty = summarize_reconstructions([{"stoi": math.nan}])
    assert math.isnan(empty["stoi"].mean) and empty["stoi"].count == 0 and empty["stoi"].missing == 1


def test_mel_distance_is_the_batch_mean_and_differentiable(clean):
    est = noisy(clean, 10.0)[None].repeat(2, 1).requires_grad_()
    ref = clean[None].repeat(2, 1)
    d = mel_distance(est, ref, SR)
    d.backward()
    assert d.dim() == 0 and est.grad is not None and est.grad.abs().sum() > 0
    single = reconstruction_metrics(clean, noisy(clean, 10.0), SR)["mel_distance"]
    assert float(d.detach()) == pytest.approx(single, rel=1e-5)
    with pytest.raises(ValueError, match="differ in shape"):
        mel_distance(est[:, :-1], ref, SR)
