"""Deterministic test signals: a speech-like clip made without any data files."""

import math

import torch
import torchaudio.functional as AF


def speech_like(seconds: float = 2.0, sample_rate: int = 24_000, seed: int = 0) -> torch.Tensor:
    """(samples,) float32: a gliding harmonic voice through three formants, syllable envelope,
    fricative noise bursts, a leading silence and a pause, peak 0.95."""
    gen = torch.Generator().manual_seed(seed)
    n = int(seconds * sample_rate)
    t = torch.arange(n, dtype=torch.float64) / sample_rate
    f0 = 140 + 40 * torch.sin(2 * math.pi * 0.7 * t) + 5 * torch.sin(2 * math.pi * 5.5 * t)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / sample_rate
    source = sum(torch.sin(k * phase) / k for k in range(1, 40)).float()
    voice = sum(AF.bandpass_biquad(source, sample_rate, fc, q) for fc, q in ((700, 3.0), (1200, 5.0), (2600, 8.0)))
    noise = AF.highpass_biquad(torch.randn(n, generator=gen), sample_rate, 4000.0)
    syllables = torch.sin(2 * math.pi * 3.5 * t).clamp(min=0).sqrt().float()
    bursts = (torch.sin(2 * math.pi * 1.3 * t + 1.0) > 0.8).float()
    wav = voice * syllables + 0.3 * noise * bursts
    wav[: int(0.2 * sample_rate)] = 0.0  # leading silence
    wav[int(0.55 * n) : int(0.65 * n)] *= 0.001  # pause with room noise
    return 0.95 * wav / wav.abs().max()
