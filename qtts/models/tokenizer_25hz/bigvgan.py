"""BigVGAN vocoder of the 25 Hz detokenizer, as qwen-tts 0.1.1 releases it: 100 Hz log-mel → 24 kHz waveform.

    mel (B, mel_dim, T) ─ dB-normalise to [−1, 1] ─ conv_pre (k5) ─ per upsampling stage: transposed conv ×r,
        mean of the AMP blocks (one per resblock kernel) ─ anti-aliased SnakeBeta ─ conv_post ─ clamp ±1
        → wav (B, T · prod(upsample_rates))

The AMP (anti-aliased multi-periodicity) block applies SnakeBeta at twice the rate (Kaiser-sinc upsample ×2,
activation, lowpass downsample ×2), so its harmonics do not alias back. The released variant differs from
NVIDIA's BigVGAN: the dilated first conv of each pair is causal (left-padded); in the first two stages the second
conv is causal too and the block starts with a centred conv + activation (``pre_conv`` / ``pre_act``); and the
activated signal chains through the three pairs (each pair's output feeds the next pair and is added to the
block input) rather than restarting from the running sum. The upsampling convs, ``conv_pre``, ``conv_post``,
the later stages' second convs and the resampling filters are centred, so an output sample sees some mel frames
ahead: a batch must not pad an item's mel on the right (``Detokenizer25Hz`` vocodes equal lengths together).

Module names equal qwen-tts's ``decoder.bigvgan.*`` keys (``ups.N.0``, ``resblocks.N.convs1.M``,
``resblocks.N.activations.M.act.alpha``, …); the resampling filters are non-persistent buffers, as released.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from qtts.models.layers import SnakeBeta
from qtts.models.tokenizer_25hz.config import BigVGANConfig

MIN_DB = -115.0  # the dB floor of the released mel normalisation
DB_OFFSET = -20.0  # subtracted after amplitude → dB, as released
RESAMPLE_RATIO = 2  # the AMP activations run at twice the signal rate
RESAMPLE_KERNEL = 12  # taps of the Kaiser-sinc up/downsampling filters
CAUSAL_STAGES = 2  # stages whose AMP blocks are fully causal and start with pre_conv/pre_act


def kaiser_sinc_filter(cutoff: float, half_width: float, kernel_size: int) -> torch.Tensor:
    """A (1, 1, kernel_size) lowpass: sinc at ``cutoff`` (fraction of the sample rate) under a Kaiser window whose
    β follows the attenuation a transition band of ``half_width`` allows (Kaiser's formula), summing to 1 so a
    constant passes unchanged."""
    half = kernel_size // 2
    attenuation = 2.285 * (half - 1) * math.pi * 4 * half_width + 7.95
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(kernel_size, periodic=False, beta=beta, dtype=torch.float32)
    time = torch.arange(-half, half) + 0.5 if kernel_size % 2 == 0 else torch.arange(kernel_size) - half
    taps = 2 * cutoff * window * torch.sinc(2 * cutoff * time)
    return (taps / taps.sum()).view(1, 1, kernel_size)


class UpSample(nn.Module):
    """×ratio band-limited upsampling: edge-replicated input, zero-stuffing transposed conv with the lowpass
    (gain ``ratio``), trimmed so T inputs give ratio·T outputs aligned with them."""

    def __init__(self, ratio: int = RESAMPLE_RATIO, kernel_size: int = RESAMPLE_KERNEL):
        super().__init__()
        self.ratio = ratio
        self.pad = kernel_size // ratio - 1
        self.trim_left = self.pad * ratio + (kernel_size - ratio) // 2
        self.trim_right = self.pad * ratio + (kernel_size - ratio + 1) // 2
        self.register_buffer("filter", kaiser_sinc_filter(0.5 / ratio, 0.6 / ratio, kernel_size), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (self.pad, self.pad), mode="replicate")
        weight = self.filter.to(x.dtype).expand(x.shape[1], -1, -1)
        x = self.ratio * F.conv_transpose1d(x, weight, stride=self.ratio, groups=x.shape[1])
        return x[..., self.trim_left: x.shape[-1] - self.trim_right]


class DownSample(nn.Module):
    """×1/ratio: the lowpass over the edge-replicated signal, every ratio-th sample."""

    def __init__(self, ratio: int = RESAMPLE_RATIO, kernel_size: int = RESAMPLE_KERNEL):
        super().__init__()
        self.ratio = ratio
        self.pad = (kernel_size // 2 - int(kernel_size % 2 == 0), kernel_size // 2)
        self.register_buffer("filter", kaiser_sinc_filter(0.5 / ratio, 0.6 / ratio, kernel_size), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, self.pad, mode="replicate")
        return F.conv1d(x, self.filter.to(x.dtype).expand(x.shape[1], -1, -1), stride=self.ratio, groups=x.shape[1])


class AntiAliasedSnake(nn.Module):
    """SnakeBeta at twice the rate: upsample, activate, downsample (``act`` holds α, β)."""

    def __init__(self, channels: int):
        super().__init__()
        self.upsample = UpSample()
        self.act = SnakeBeta(channels)
        self.downsample = DownSample()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(self.act(self.upsample(x)))


class PaddedConv1d(nn.Conv1d):
    """Stride-1 Conv1d padded at call time: causal (all ``dilation·(k−1)`` zeros on the left) or centred. A
    plain ``nn.Conv1d`` underneath, so its keys are the released ``convs1.M.weight``."""

    def __init__(self, channels: int, kernel_size: int, dilation: int = 1, causal: bool = True):
        super().__init__(channels, channels, kernel_size, dilation=dilation)
        total = dilation * (kernel_size - 1)
        self.padding_lr = (total, 0) if causal else (total // 2, total - total // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.padding_lr))


class AMPBlock(nn.Module):
    """Three (activation, dilated causal conv, activation, conv) pairs over a chained signal, each pair's output
    added to the block input. ``causal`` (the first stages): the second convs are causal too and a centred
    ``pre_conv`` + ``pre_act`` come first; otherwise those are identities and the second convs are centred."""

    def __init__(self, channels: int, kernel_size: int, dilations: list[int], causal: bool):
        super().__init__()
        self.convs1 = nn.ModuleList(PaddedConv1d(channels, kernel_size, d) for d in dilations)
        self.convs2 = nn.ModuleList(PaddedConv1d(channels, kernel_size, causal=causal) for _ in dilations)
        self.activations = nn.ModuleList(AntiAliasedSnake(channels) for _ in range(2 * len(dilations)))
        if causal:
            self.pre_conv = PaddedConv1d(channels, kernel_size, causal=False)
            self.pre_act = AntiAliasedSnake(channels)
        else:
            self.pre_conv = self.pre_act = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pre_act(self.pre_conv(x))
        for i, (conv1, conv2) in enumerate(zip(self.convs1, self.convs2)):
            h = conv2(self.activations[2 * i + 1](conv1(self.activations[2 * i](h))))
            x = x + h
        return x


class BigVGAN(nn.Module):
    """(B, mel_dim, frames) natural-log mel → (B, frames · prod(upsample_rates)) waveform in [−1, 1]."""

    def __init__(self, config: BigVGANConfig | None = None):
        super().__init__()
        self.config = c = config or BigVGANConfig()
        self.num_kernels = len(c.resblock_kernel_sizes)
        channels = [c.upsample_initial_channel // 2**i for i in range(len(c.upsample_rates) + 1)]
        self.conv_pre = nn.Conv1d(c.mel_dim, channels[0], 5, padding=2)
        self.ups = nn.ModuleList(  # the extra ModuleList level is in the released keys (ups.N.0)
            nn.ModuleList([nn.ConvTranspose1d(channels[i], channels[i + 1], k, r, padding=(k - r) // 2)])
            for i, (r, k) in enumerate(zip(c.upsample_rates, c.upsample_kernel_sizes)))
        self.resblocks = nn.ModuleList(
            AMPBlock(channels[i + 1], k, d, causal=i < CAUSAL_STAGES)
            for i in range(len(c.upsample_rates)) for k, d in zip(c.resblock_kernel_sizes, c.resblock_dilation_sizes))
        self.activation_post = AntiAliasedSnake(channels[-1])
        self.conv_post = nn.Conv1d(channels[-1], 1, 7, padding=3, bias=False)

    @property
    def total_upsample(self) -> int:
        return self.config.total_upsample

    @staticmethod
    def normalize_mel(mel: torch.Tensor) -> torch.Tensor:
        """ln-magnitude mel → dB − 20, floored at −115 dB, mapped linearly from [−115, 0] dB to [−1, 1] (the input
        scaling the released vocoder was trained on)."""
        floor = torch.exp(torch.tensor(MIN_DB / 20.0 * math.log(10), device=mel.device, dtype=mel.dtype))
        db = 20 * torch.log10(torch.clamp(mel.exp(), min=floor)) + DB_OFFSET
        return torch.clamp(2 * ((db - MIN_DB) / -MIN_DB) - 1, -1.0, 1.0)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.dim() != 3 or mel.shape[1] != self.config.mel_dim:
            raise ValueError(f"expected a mel of shape (batch, {self.config.mel_dim}, frames), got {tuple(mel.shape)}")
        x = self.conv_pre(self.normalize_mel(mel))
        for i, (up,) in enumerate(self.ups):
            x = up(x)
            blocks = self.resblocks[i * self.num_kernels: (i + 1) * self.num_kernels]
            x = sum(block(x) for block in blocks) / self.num_kernels
        x = self.conv_post(self.activation_post(x))
        return torch.clamp(x, -1.0, 1.0).squeeze(1)
