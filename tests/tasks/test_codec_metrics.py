"""Codec validation metrics behave as their definitions say on a speech-like clip with noise at known SNRs."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from qtts.tasks import codec, codec_metrics
from qtts.tasks.codec_metrics import perceptual_metrics, si_sdr
from tests.audio.signals import speech_like
from tests.models.test_codec_teacher import tiny_task

SR = 24000


@pytest.fixture(scope="module")
def clean() -> torch.Tensor:
    return speech_like(2.0, SR)[None]  # (1, S)


def noisy(clean: torch.Tensor, snr_db: float) -> torch.Tensor:
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))  # not speech_like's seed
    return clean + noise * (clean.pow(2).mean() / noise.pow(2).mean()).sqrt() * 10 ** (-snr_db / 20)


def test_si_sdr(clean):
    assert si_sdr(clean, clean).item() > 60
    assert si_sdr(3.0 * clean, clean).item() > 60  # scale-invariant
    for snr in (0.0, 10.0, 20.0):
        assert si_sdr(noisy(clean, snr), clean).item() == pytest.approx(snr, abs=0.1)
    assert codec.si_sdr is si_sdr  # still importable where it used to live


def test_stoi(clean):
    pytest.importorskip("pystoi")
    batch = torch.cat([clean, clean])
    assert codec_metrics.stoi(batch, batch, SR) == pytest.approx([1.0, 1.0], abs=1e-6)
    scores = [codec_metrics.stoi(noisy(clean, snr), clean, SR)[0] for snr in (20.0, 0.0)]
    assert 1.0 > scores[0] > scores[1]


def test_pesq(clean):
    pytest.importorskip("pesq")
    assert codec_metrics.pesq(clean, clean, SR)[0] > 4.0
    scores = [codec_metrics.pesq(noisy(clean, snr), clean, SR)[0] for snr in (20.0, 0.0)]
    assert 4.0 > scores[0] > scores[1]


def test_silent_items_are_skipped(clean):
    pytest.importorskip("pystoi")
    pytest.importorskip("pesq")
    silence = torch.zeros_like(clean)
    assert codec_metrics.stoi(silence, silence, SR) == [] and codec_metrics.pesq(silence, silence, SR) == []
    metrics = perceptual_metrics(torch.cat([clean, silence]), torch.cat([clean, silence]), SR)
    assert metrics["stoi"] == pytest.approx(1.0, abs=1e-6) and metrics["pesq"] > 4.0  # the silent item left out


def test_perceptual_metrics_without_the_packages(clean, monkeypatch):
    monkeypatch.setattr(codec_metrics, "HAS_STOI", False)
    monkeypatch.setattr(codec_metrics, "HAS_PESQ", False)
    assert perceptual_metrics(clean, clean, SR) == {}


def test_codec_validation_logs_them(clean):
    pytest.importorskip("pystoi")
    pytest.importorskip("pesq")
    batch = {"wav": torch.cat([clean, torch.zeros_like(clean)]), "ids": ["speech", "silence"]}
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    metrics = trainer.validate(tiny_task(None), DataLoader([batch], batch_size=None), verbose=False)[0]
    assert 0.0 <= metrics["val/stoi"] <= 1.0 and 1.0 <= metrics["val/pesq"] <= 4.7 and "val/si_sdr" in metrics
