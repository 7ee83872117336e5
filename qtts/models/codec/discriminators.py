"""Discriminators for GAN training of the 12 Hz codec: multi-period (HiFi-GAN) and multi-band STFT (DAC).

Both are the consensus of codec recipes (DAC, DualCodec, NeMo, the 12 Hz decoder fine-tune): the
period discriminator sees waveform periodicity (pitch, phase), the STFT one sees spectral detail per
frequency band. Every sub-discriminator returns ``(logits, features)``: logits feed the adversarial
losses, the per-layer features feed feature matching (``qtts.tasks.codec_losses``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

Output = tuple[torch.Tensor, list[torch.Tensor]]


@dataclass
class CodecDiscriminatorConfig:
    """Defaults are DAC's (periods 2–11, STFT 2048/1024/512 in 5 bands); an empty ``periods`` or
    ``n_ffts`` leaves that discriminator out. Small channel widths make test-sized models."""

    periods: list[int] = field(default_factory=lambda: [2, 3, 5, 7, 11])
    period_channels: list[int] = field(default_factory=lambda: [32, 128, 512, 1024, 1024])
    n_ffts: list[int] = field(default_factory=lambda: [2048, 1024, 512])
    band_edges: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.25, 0.5, 0.75, 1.0])
    band_channels: int = 32
    negative_slope: float = 0.1

    def __post_init__(self):
        if not self.periods and not self.n_ffts:
            raise ValueError("CodecDiscriminatorConfig: both periods and n_ffts are empty, nothing to discriminate")
        if any(p < 1 for p in self.periods) or (self.periods and not self.period_channels):
            raise ValueError(f"CodecDiscriminatorConfig: periods {self.periods} need to be >= 1 and "
                             f"period_channels {self.period_channels} non-empty")
        if any(n < 16 or n % 4 for n in self.n_ffts):
            raise ValueError(f"CodecDiscriminatorConfig: n_ffts {self.n_ffts} must be multiples of 4, >= 16")
        edges = self.band_edges
        if len(edges) < 2 or edges[0] != 0.0 or edges[-1] != 1.0 or any(a >= b for a, b in zip(edges, edges[1:])):
            raise ValueError(f"CodecDiscriminatorConfig: band_edges {edges} must rise strictly from 0.0 to 1.0")
        if self.band_channels < 1:
            raise ValueError(f"CodecDiscriminatorConfig: band_channels must be >= 1, got {self.band_channels}")


def _conv2d(cin: int, cout: int, kernel: tuple[int, int], stride: tuple[int, int] = (1, 1)) -> nn.Module:
    """Weight-normed 2-D conv with 'same' padding along each axis (the stride alone shrinks it)."""
    return weight_norm(nn.Conv2d(cin, cout, kernel, stride, padding=(kernel[0] // 2, kernel[1] // 2)))


class PeriodDiscriminator(nn.Module):
    """Folds audio (B, 1, T) into (B, 1, T/p, p) so each column holds samples ``p`` apart, then convolves
    along time only: the kernel spans one column, so it judges structure at exactly period ``p``."""

    def __init__(self, period: int, channels: list[int], negative_slope: float = 0.1):
        super().__init__()
        self.period, self.negative_slope = period, negative_slope
        widths = [1, *channels]
        strides = [3] * (len(channels) - 1) + [1]
        self.convs = nn.ModuleList(
            _conv2d(cin, cout, (5, 1), (s, 1)) for cin, cout, s in zip(widths, widths[1:], strides)
        )
        self.post = _conv2d(widths[-1], 1, (3, 1))

    def forward(self, wav: torch.Tensor) -> Output:
        pad = -wav.shape[-1] % self.period
        if pad:  # reflect, not zeros: a silent tail would be an easy tell of padding
            wav = F.pad(wav, (0, pad), mode="reflect")
        x = wav.view(wav.shape[0], 1, -1, self.period)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), self.negative_slope)
            features.append(x)
        logits = self.post(x)
        features.append(logits)
        return logits, features


class MultiPeriodDiscriminator(nn.Module):
    """One ``PeriodDiscriminator`` per period; co-prime periods (2, 3, 5, 7, 11) overlap little."""

    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11),
                 channels: Sequence[int] = (32, 128, 512, 1024, 1024),
                 negative_slope: float = 0.1):
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, list(channels), negative_slope) for p in periods)

    def forward(self, wav: torch.Tensor) -> list[Output]:
        return [d(wav) for d in self.discriminators]


class BandSTFTDiscriminator(nn.Module):
    """One STFT resolution: the complex spectrum as 2 channels (real, imaginary, so phase is visible),
    cut into frequency bands that each get their own conv stack (a band's statistics differ, so sharing
    weights across bands would blur them), whose outputs are concatenated along frequency and merged."""

    def __init__(self, n_fft: int, band_edges: list[float], channels: int = 32, negative_slope: float = 0.1):
        super().__init__()
        self.n_fft, self.hop_length, self.negative_slope = n_fft, n_fft // 4, negative_slope
        bins = n_fft // 2 + 1
        edges = [round(e * bins) for e in band_edges]
        if any(a >= b for a, b in zip(edges, edges[1:])):
            raise ValueError(f"band_edges {list(band_edges)} leave an empty band at n_fft {n_fft} ({bins} bins)")
        self.bands = list(zip(edges, edges[1:]))

        def stack() -> nn.ModuleList:  # time (axis 2) keeps its resolution, frequency (axis 3) is halved 3 times
            return nn.ModuleList([
                _conv2d(2, channels, (3, 9)),
                _conv2d(channels, channels, (3, 9), (1, 2)),
                _conv2d(channels, channels, (3, 9), (1, 2)),
                _conv2d(channels, channels, (3, 9), (1, 2)),
                _conv2d(channels, channels, (3, 3)),
            ])

        self.band_convs = nn.ModuleList(stack() for _ in self.bands)
        self.post = _conv2d(channels, 1, (3, 3))

    def forward(self, wav: torch.Tensor) -> Output:
        """``wav`` (B, 1, T) with T > n_fft / 2 (the STFT reflect-pads half a window); float32 STFT."""
        window = torch.hann_window(self.n_fft, device=wav.device)
        spec = torch.stft(wav.squeeze(1).float(), self.n_fft, self.hop_length, window=window, center=True,
                          return_complex=True)
        spec = torch.view_as_real(spec).permute(0, 3, 2, 1)  # (B, 2, frames, bins)
        features, merged = [], []
        for (lo, hi), convs in zip(self.bands, self.band_convs):
            x = spec[..., lo:hi]
            for conv in convs:
                x = F.leaky_relu(conv(x), self.negative_slope)
                features.append(x)
            merged.append(x)
        logits = self.post(torch.cat(merged, dim=-1))
        features.append(logits)
        return logits, features


class MultiResolutionMultiBandSTFTDiscriminator(nn.Module):
    """One ``BandSTFTDiscriminator`` per FFT size (hop ``n_fft / 4``): long windows resolve harmonics,
    short ones transients."""

    def __init__(self, n_ffts: Sequence[int] = (2048, 1024, 512),
                 band_edges: Sequence[float] = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0), channels: int = 32,
                 negative_slope: float = 0.1):
        super().__init__()
        self.discriminators = nn.ModuleList(
            BandSTFTDiscriminator(n, list(band_edges), channels, negative_slope) for n in n_ffts
        )

    def forward(self, wav: torch.Tensor) -> list[Output]:
        return [d(wav) for d in self.discriminators]


class CodecDiscriminator(nn.Module):
    """All discriminators of a codec GAN behind one call: ``forward(wav (B, 1, T))`` returns one
    ``(logits, features)`` per sub-discriminator, periods first, then STFT resolutions."""

    def __init__(self, config: CodecDiscriminatorConfig | None = None):
        super().__init__()
        self.config = config = config or CodecDiscriminatorConfig()
        self.mpd = (MultiPeriodDiscriminator(config.periods, config.period_channels, config.negative_slope)
                    if config.periods else None)
        self.mrd = (MultiResolutionMultiBandSTFTDiscriminator(config.n_ffts, config.band_edges,
                                                              config.band_channels, config.negative_slope)
                    if config.n_ffts else None)

    def forward(self, wav: torch.Tensor) -> list[Output]:
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise ValueError(f"CodecDiscriminator expects audio of shape (B, 1, T), got {tuple(wav.shape)}")
        outputs = []
        for discriminator in (self.mpd, self.mrd):
            if discriminator is not None:
                outputs.extend(discriminator(wav))
        return outputs
