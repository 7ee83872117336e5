"""Loudness measurement (ITU-R BS.1770) and normalisation.

Corpora mix whispered and shouted recordings; bringing every clip to one integrated loudness
makes level a property of the speaker prompt, not of the microphone.
"""

from __future__ import annotations

import math

import torch
import torchaudio.functional as AF

GATE_SECONDS = 0.4  # BS.1770 block length: shorter clips have no gating block
SILENCE_LUFS = -70.0  # BS.1770 absolute gate: anything quieter counts as silence
_HEADROOM = 0.25  # measured peak level; K-weighting gains at most +4 dB
_CHANNEL_WEIGHTS = (1.0, 1.0, 1.0, 1.41, 1.41)  # BS.1770 weights (L, R, C, Ls, Rs)


def measure_loudness(wav: torch.Tensor, sample_rate: int) -> float:
    """Integrated loudness in LUFS of ``(samples,)`` or ``(channels, samples)`` audio; ``-inf`` for silence.

    Clips shorter than the 400 ms gating block get the K-weighted RMS of the whole clip (one
    ungated block), so loudness does not jump when a clip crosses 400 ms.
    """
    x = _channels_first(wav).double()
    peak = float(x.abs().max()) if x.numel() else 0.0
    if peak == 0.0:
        return -math.inf
    # torchaudio's biquads clamp their output to [-1, 1]: measure a copy with headroom, add the gain back.
    scale = min(1.0, _HEADROOM / peak)
    x = x * scale
    if x.shape[-1] < round(GATE_SECONDS * sample_rate):
        x = AF.treble_biquad(x, sample_rate, 4.0, 1500.0, 1 / math.sqrt(2))  # K-weighting, as BS.1770
        x = AF.highpass_biquad(x, sample_rate, 38.0, 0.5)
        weights = torch.tensor(_CHANNEL_WEIGHTS[: x.shape[0]], dtype=x.dtype)
        energy = float((weights * x.square().mean(-1)).sum())
        lufs = -0.691 + 10 * math.log10(energy) if energy > 0 else -math.inf
    else:
        lufs = float(AF.loudness(x, sample_rate))  # NaN when every block is under the absolute gate
    lufs -= 20 * math.log10(scale)
    return lufs if math.isfinite(lufs) and lufs > SILENCE_LUFS else -math.inf


def normalize_loudness(
    wav: torch.Tensor,
    sample_rate: int,
    target_lufs: float = -23.0,
    peak_limit: float | None = 0.99,
) -> torch.Tensor:
    """Scale ``wav`` ((samples,) or (channels, samples)) to ``target_lufs`` integrated loudness.

    One gain for the whole clip (no compression). If that gain would push the sample peak
    above ``peak_limit``, the gain is lowered to meet the peak instead (the clip then ends up
    quieter than the target); ``None`` disables the limit. Silence is returned unchanged.
    """
    lufs = measure_loudness(wav, sample_rate)
    gain = 1.0 if lufs == -math.inf else 10 ** ((target_lufs - lufs) / 20)
    peak = float(wav.abs().max()) * gain if wav.numel() else 0.0
    if peak_limit is not None and peak > peak_limit:
        gain *= peak_limit / peak
    return wav * gain


def _channels_first(wav: torch.Tensor) -> torch.Tensor:
    if wav.dim() == 1:
        return wav.unsqueeze(0)
    if wav.dim() == 2 and wav.shape[0] <= len(_CHANNEL_WEIGHTS):
        return wav
    raise ValueError(f"expected (samples,) or (channels<=5, samples) audio, got shape {tuple(wav.shape)}")


def normalize_peak(wav: torch.Tensor, dbfs: float = -6.0) -> torch.Tensor:
    """Scale so the largest sample magnitude is ``dbfs`` (sox's ``norm`` effect, which qwen-tts's 25 Hz
    tokenizer applies before its x-vector and reference mel); silence stays silence."""
    peak = wav.abs().max() if wav.numel() else wav.new_zeros(())
    if float(peak) == 0.0:
        return wav.clone()
    return wav * (10.0 ** (dbfs / 20.0) / peak)
