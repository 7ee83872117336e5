"""Spectral features on torch/torchaudio: log-mel spectrograms and Kaldi filterbanks.

``LogMelSpectrogram`` is the one mel implementation of the project (speaker-encoder input,
multi-scale mel losses, codec metrics). ``SpeakerMel`` is it with the released speaker
encoder's settings, numerically equal to ``qwen_tts``'s librosa-based ``mel_spectrogram``;
``WhisperLogMel`` with Whisper's (the 25 Hz tokenizer's encoder input).
Everything is differentiable, so the features can sit inside a training graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchaudio.compliance.kaldi as kaldi
import torchaudio.functional as AF
from torch import nn


def reflect_pad(x: torch.Tensor, left: int, right: int, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Reflect-pad the last axis of ``x`` (B, ..., T).

    With ``lengths`` (B,), row b is reflected at its own end ``lengths[b]`` instead of at T, so
    a zero-padded batch gives every item exactly the values it would get alone (positions past
    ``lengths[b] + right`` are filler that only feeds outputs beyond the item's end).
    """
    if lengths is None:
        shape = x.shape
        return F.pad(x.reshape(-1, 1, shape[-1]), (left, right), mode="reflect").reshape(*shape[:-1], -1)
    lengths = lengths.to(device=x.device, dtype=torch.long)
    if lengths.numel() != x.shape[0]:
        raise ValueError(f"lengths has {lengths.numel()} entries for a batch of {x.shape[0]}")
    if int(lengths.min()) <= max(left, right):
        raise ValueError(f"every item needs more than {max(left, right)} steps to reflect-pad, got {lengths.tolist()}")
    if int(lengths.max()) > x.shape[-1]:
        raise ValueError(f"lengths {lengths.tolist()} exceed the padded length {x.shape[-1]}")
    pos = torch.arange(-left, x.shape[-1] + right, device=x.device).abs().expand(x.shape[0], -1)
    end = lengths.unsqueeze(1) - 1
    index = torch.where(pos > end, 2 * end - pos, pos).clamp(min=0)
    index = index.view(x.shape[0], *[1] * (x.dim() - 2), -1).expand(*x.shape[:-1], -1)
    return x.gather(-1, index)


def mel_filters(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float,
    f_max: float,
    mel_scale: str = "slaney",
    norm: str | None = "slaney",
) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) float32 triangular filters (torchaudio), computed in float64 as
    librosa does: in float32 the small edge weights are off by up to 0.2 %, which moves log-mels
    of tonal audio by >1e-4 against ``librosa.filters.mel``; in float64 they agree to 4e-9."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # melscale_fbanks builds every tensor in the default dtype
    try:
        fbank = AF.melscale_fbanks(n_fft // 2 + 1, f_min, f_max, n_mels, sample_rate, norm=norm, mel_scale=mel_scale)
    finally:
        torch.set_default_dtype(previous)
    return fbank.T.float().contiguous()


class LogMelSpectrogram(nn.Module):
    """(..., samples) float waveform → (..., frames, n_mels) (log-)mel spectrogram, in float32.

    The signal is reflect-padded by ``n_fft // 2`` per side when ``center`` (torch/librosa
    convention, ``samples // hop + 1`` frames) and by ``(n_fft - hop) // 2`` otherwise
    (HiFi-GAN/BigVGAN convention used by the released models: ``samples // hop`` frames).
    ``power`` 1 gives the magnitude ``sqrt(|X|² + eps)`` (eps keeps the gradient of the root
    finite at zero), 2 the power spectrum. ``log`` takes ``log(clamp(mel, log_floor))``.
    Filters and window are plain float32 tensors, not buffers: the module adds no state-dict
    keys, ``.half()`` on a parent model cannot round them, and they follow the input's device.
    """

    def __init__(
        self,
        sample_rate: int = 24_000,
        n_fft: int = 1024,
        hop_length: int = 256,
        win_length: int | None = None,
        n_mels: int = 128,
        f_min: float = 0.0,
        f_max: float | None = None,
        power: float = 1.0,
        eps: float = 1e-9,
        log: bool = True,
        log_floor: float = 1e-5,
        center: bool = False,
        mel_scale: str = "slaney",
        norm: str | None = "slaney",
    ):
        super().__init__()
        win_length = win_length or n_fft
        f_max = sample_rate / 2 if f_max is None else f_max
        if not 0 < hop_length <= win_length <= n_fft:
            raise ValueError(f"need 0 < hop_length <= win_length <= n_fft, got {hop_length}, {win_length}, {n_fft}")
        if not 0 <= f_min < f_max <= sample_rate / 2:
            raise ValueError(f"need 0 <= f_min < f_max <= sample_rate / 2, got {f_min}, {f_max}, {sample_rate}")
        if power <= 0 or log_floor <= 0 or eps < 0:
            raise ValueError(f"need power > 0, log_floor > 0, eps >= 0, got {power}, {log_floor}, {eps}")
        self.sample_rate, self.n_fft, self.hop_length, self.win_length = sample_rate, n_fft, hop_length, win_length
        self.n_mels, self.power, self.eps, self.log, self.log_floor = n_mels, power, eps, log, log_floor
        self.padding = n_fft // 2 if center else (n_fft - hop_length) // 2
        with torch.device("cpu"):  # real numbers even when a model is built on the meta device
            self.fbank = mel_filters(sample_rate, n_fft, n_mels, f_min, f_max, mel_scale, norm)
            self.window = torch.hann_window(win_length)

    def num_frames(self, num_samples: torch.Tensor | int) -> torch.Tensor | int:
        """Frames produced for ``num_samples`` samples (use it to turn sample lengths into frame lengths)."""
        return (num_samples + 2 * self.padding - self.n_fft) // self.hop_length + 1

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``lengths`` (B,) valid samples per row of a (B, samples) batch: frames below
        ``num_frames(lengths)`` then equal those of each item computed alone."""
        if self.fbank.device != wav.device:
            self.fbank, self.window = self.fbank.to(wav.device), self.window.to(wav.device)
        lead = wav.shape[:-1]
        x = reflect_pad(wav.reshape(-1, wav.shape[-1]).float(), self.padding, self.padding, lengths)
        spec = torch.stft(
            x,
            self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window,
            center=False,
            return_complex=True,
        )
        energy = torch.view_as_real(spec).pow(2).sum(-1) + self.eps  # |X|² (N, n_freqs, frames)
        if self.power == 1:
            spec = energy.sqrt()
        elif self.power == 2:
            spec = energy
        else:
            spec = energy.pow(self.power / 2)
        mel = torch.matmul(self.fbank, spec)
        if self.log:
            mel = mel.clamp(min=self.log_floor).log()
        return mel.transpose(1, 2).reshape(*lead, -1, self.n_mels)


class SpeakerMel(LogMelSpectrogram):
    """Input features of the released speaker encoder: 24 kHz, n_fft/win 1024, hop 256, 128
    Slaney mels over 0–12 kHz, magnitude with eps 1e-9, natural log clamped at 1e-5,
    ``(n_fft - hop) / 2`` reflect padding. ``samples // 256`` frames."""

    def __init__(self, n_mels: int = 128, sample_rate: int = 24_000):
        super().__init__(
            sample_rate=sample_rate,
            n_fft=1024,
            hop_length=256,
            win_length=1024,
            n_mels=n_mels,
            f_min=0.0,
            f_max=sample_rate / 2,
            power=1.0,
            eps=1e-9,
            log=True,
            log_floor=1e-5,
            center=False,
        )


class WhisperLogMel(LogMelSpectrogram):
    """Whisper's log-mel frontend (the 25 Hz tokenizer's encoder input, as qwen-tts's ``log_mel_spectrogram``):
    16 kHz, 400-point FFT and window, hop 160, Slaney mels over 0–8 kHz, power spectrum, centred STFT
    whose last frame is dropped (``samples // 160`` frames), then ``log10(max(mel, 1e-10))`` floored at
    8 below the item's maximum and mapped by ``(x + 4) / 4``.

    The floor depends on the whole item, so ``lengths`` matters beyond reflection: with it, each row's
    maximum is taken over its own frames only and a padded batch equals each item computed alone.
    """

    def __init__(self, n_mels: int = 128, sample_rate: int = 16_000):
        super().__init__(sample_rate=sample_rate, n_fft=400, hop_length=160, win_length=400, n_mels=n_mels,
                         f_min=0.0, f_max=sample_rate / 2, power=2.0, eps=0.0, log=False, center=True)

    def num_frames(self, num_samples: torch.Tensor | int) -> torch.Tensor | int:
        return num_samples // self.hop_length

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(samples,) or (B, samples) → (..., frames, n_mels); frames at or past ``num_frames(lengths)`` are 0."""
        mel = super().forward(wav, lengths)[..., :-1, :]
        log = mel.clamp(min=1e-10).log10()
        rows = log.reshape(-1, *log.shape[-2:])
        frames = torch.arange(rows.shape[1], device=log.device)
        if lengths is None:
            valid = torch.ones(rows.shape[:2], dtype=torch.bool, device=log.device)
        else:
            valid = frames[None, :] < self.num_frames(lengths.to(log.device))[:, None]
        peak = rows.masked_fill(~valid[..., None], -torch.inf).amax(dim=(1, 2), keepdim=True)
        rows = (torch.maximum(rows, peak - 8.0) + 4.0) / 4.0
        return rows.masked_fill(~valid[..., None], 0.0).reshape(log.shape)


def kaldi_fbank(
    wav: torch.Tensor,
    sample_rate: int,
    num_mel_bins: int = 80,
    int16_scale: bool = True,
    **kwargs,
) -> torch.Tensor:
    """Kaldi log filterbanks for x-vector style models: (samples,) → (frames, bins), batched
    (B, samples) → (B, frames, bins).

    Kaldi-trained models expect int16 amplitudes, so [-1, 1] audio is scaled by 2**15 unless
    ``int16_scale=False``. Other keywords go to ``torchaudio.compliance.kaldi.fbank`` (25 ms /
    10 ms frames, no dither by default; ``subtract_mean=True`` for utterance-level CMN).
    Rows of a batch must share a length (frames are counted per row).
    """
    if wav.dim() not in (1, 2):
        raise ValueError(f"expected (samples,) or (batch, samples), got shape {tuple(wav.shape)}")
    scale = 32768.0 if int16_scale else 1.0

    def one(row: torch.Tensor) -> torch.Tensor:
        row = row.unsqueeze(0) * scale
        return kaldi.fbank(row, sample_frequency=sample_rate, num_mel_bins=num_mel_bins, **kwargs)

    return one(wav) if wav.dim() == 1 else torch.stack([one(row) for row in wav])
