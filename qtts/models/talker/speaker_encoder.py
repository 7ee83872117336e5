"""ECAPA-TDNN speaker encoder of the released Base models: log-mel frames → one x-vector.

Desai et al. 2020 (arXiv 2005.07143) as Qwen3-TTS ships it: no BatchNorm, every Conv1d pads
"same" with *reflect* padding, and the attention of the pooling layer is
``conv(tanh(relu(conv(x))))``. The x-vector (talker width, no L2 norm) is written into the
talker's codec track, and the paper trains the encoder jointly with the talker.

Module and parameter names equal the released ``speaker_encoder.*`` state-dict keys.

Batches of different lengths: pass ``lengths`` (valid frames per item). Every time-mixing step
honours them (convs reflect at each item's own end, the squeeze-excitation mean and the pooling
statistics skip padding), so a padded item gets the embedding it gets alone. The released model
was trained and is run by ``qwen_tts`` one clip at a time without a mask; with ``lengths=None``
or full lengths this module computes exactly that.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from qtts.audio.features import SpeakerMel, reflect_pad
from qtts.models.config_io import JsonConfig, is_int


@dataclass
class SpeakerEncoderConfig(JsonConfig):
    """``speaker_encoder_config`` of the released config.json (defaults = released 0.6B values, which are
    also qwen-tts's class defaults; 1.7B sets ``enc_dim=2048``, the talker width). ``from_dict`` / ``to_dict``
    round-trip a file's dict exactly, unknown keys included."""

    mel_dim: int = 128
    enc_dim: int = 1024
    enc_channels: list[int] = field(default_factory=lambda: [512, 512, 512, 512, 1536])
    enc_kernel_sizes: list[int] = field(default_factory=lambda: [5, 3, 3, 3, 1])
    enc_dilations: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 1])
    enc_attention_channels: int = 128
    enc_res2net_scale: int = 8
    enc_se_channels: int = 128
    sample_rate: int = 24_000

    def __post_init__(self):
        scalars = "mel_dim", "enc_dim", "enc_attention_channels", "enc_res2net_scale", "enc_se_channels", "sample_rate"
        for name in scalars:
            value = getattr(self, name)
            if not is_int(value) or value <= 0:
                raise ValueError(f"speaker_encoder_config.{name} must be a positive integer, got {value!r}")
        for name in ("enc_channels", "enc_kernel_sizes", "enc_dilations"):
            values = getattr(self, name)
            if not isinstance(values, (list, tuple)) or not all(is_int(v) and v > 0 for v in values):
                raise ValueError(f"speaker_encoder_config.{name} must be a list of positive integers, got {values!r}")
            setattr(self, name, list(values))
        channels = self.enc_channels
        if not len(channels) == len(self.enc_kernel_sizes) == len(self.enc_dilations):
            raise ValueError(
                "speaker_encoder_config.enc_channels, enc_kernel_sizes and enc_dilations must have one entry per "
                f"layer, got lengths {len(channels)}, {len(self.enc_kernel_sizes)}, {len(self.enc_dilations)}"
            )
        if len(channels) < 3:
            raise ValueError(
                f"speaker_encoder_config.enc_channels needs at least 3 layers (TDNN, SE-Res2Net, MFA), got {channels}"
            )
        if len(set(channels[:-1])) != 1:
            raise ValueError(
                "speaker_encoder_config.enc_channels[:-1] must be equal (SE-Res2Net blocks are residual), "
                f"got {channels}"
            )
        if channels[-1] != sum(channels[1:-1]):
            raise ValueError(
                "speaker_encoder_config.enc_channels[-1] must equal the sum of the SE-Res2Net widths "
                f"(MFA concatenates them), got {channels[-1]} != {sum(channels[1:-1])}"
            )
        if channels[0] % self.enc_res2net_scale:
            raise ValueError(
                f"speaker_encoder_config.enc_channels {channels[0]} must be divisible by "
                f"enc_res2net_scale {self.enc_res2net_scale}"
            )


class TimeDelayBlock(nn.Module):
    """Dilated Conv1d + ReLU over time: the TDNN layer."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(
            in_channels, out_channels, kernel_size, dilation=dilation, padding="same", padding_mode="reflect"
        )
        total = dilation * (kernel_size - 1)
        self.pad = (total // 2, total - total // 2)  # how torch splits "same" padding

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if lengths is None or self.pad == (0, 0):
            return F.relu(self.conv(x))
        x = reflect_pad(x, *self.pad, lengths)
        return F.relu(F.conv1d(x, self.conv.weight, self.conv.bias, dilation=self.conv.dilation))


class Res2NetBlock(nn.Module):
    """Split channels into ``scale`` groups; group i>0 is convolved after adding the previous
    group's output, a cheap way to mix several receptive fields in one layer. Group 0 passes through."""

    def __init__(self, channels: int, scale: int, kernel_size: int, dilation: int):
        super().__init__()
        self.scale = scale
        width = channels // scale
        self.blocks = nn.ModuleList(TimeDelayBlock(width, width, kernel_size, dilation) for _ in range(scale - 1))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        groups = list(x.chunk(self.scale, dim=1))
        y = groups[0]
        outputs = [y]
        for i, block in enumerate(self.blocks, start=1):
            y = block(groups[i] if i == 1 else groups[i] + y, lengths)
            outputs.append(y)
        return torch.cat(outputs, dim=1)


class SqueezeExcitation(nn.Module):
    """Channel gates from the utterance mean: lets global context reweight local features."""

    def __init__(self, channels: int, se_channels: int):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, se_channels, 1, padding="same", padding_mode="reflect")
        self.conv2 = nn.Conv1d(se_channels, channels, 1, padding="same", padding_mode="reflect")

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        mean = (x * weights).sum(dim=2, keepdim=True)
        return x * torch.sigmoid(self.conv2(F.relu(self.conv1(mean))))


class SERes2NetBlock(nn.Module):
    """TDNN(1×1) → Res2Net → TDNN(1×1) → squeeze-excitation, plus the input (residual)."""

    def __init__(self, channels: int, scale: int, se_channels: int, kernel_size: int, dilation: int):
        super().__init__()
        self.tdnn1 = TimeDelayBlock(channels, channels)
        self.res2net_block = Res2NetBlock(channels, scale, kernel_size, dilation)
        self.tdnn2 = TimeDelayBlock(channels, channels)
        self.se_block = SqueezeExcitation(channels, se_channels)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None, weights: torch.Tensor) -> torch.Tensor:
        y = self.res2net_block(self.tdnn1(x), lengths)
        return x + self.se_block(self.tdnn2(y), weights)


class AttentiveStatsPool(nn.Module):
    """Per-channel attention over time, then the attention-weighted mean and std (B, 2C).
    The attention sees each frame together with the utterance's mean and std."""

    eps = 1e-12  # variance floor before the square root

    def __init__(self, channels: int, attention_channels: int):
        super().__init__()
        self.tdnn = TimeDelayBlock(channels * 3, attention_channels)
        self.conv = nn.Conv1d(attention_channels, channels, 1, padding="same", padding_mode="reflect")

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(x, weights)
        context = torch.cat([x, mean.expand_as(x), std.expand_as(x)], dim=1)
        scores = self.conv(torch.tanh(self.tdnn(context)))
        attention = scores.masked_fill(weights == 0, float("-inf")).softmax(dim=2)
        mean, std = self._stats(x, attention)
        return torch.cat([mean, std], dim=1).squeeze(2)

    def _stats(self, x: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = (x * weights).sum(dim=2, keepdim=True)
        var = (weights * (x - mean).pow(2)).sum(dim=2, keepdim=True)
        return mean, var.clamp(min=self.eps).sqrt()


class SpeakerEncoder(nn.Module):
    """(B, frames, mel_dim) log-mels (``SpeakerMel``) → (B, enc_dim) x-vectors."""

    def __init__(self, config: SpeakerEncoderConfig):
        super().__init__()
        self.config = c = config
        channels, kernels, dilations = c.enc_channels, c.enc_kernel_sizes, c.enc_dilations
        self.blocks = nn.ModuleList([TimeDelayBlock(c.mel_dim, channels[0], kernels[0], dilations[0])])
        for i in range(1, len(channels) - 1):
            block = SERes2NetBlock(channels[i], c.enc_res2net_scale, c.enc_se_channels, kernels[i], dilations[i])
            self.blocks.append(block)
        self.mfa = TimeDelayBlock(channels[-1], channels[-1], kernels[-1], dilations[-1])  # multi-layer aggregation
        self.asp = AttentiveStatsPool(channels[-1], c.enc_attention_channels)
        self.fc = nn.Conv1d(channels[-1] * 2, c.enc_dim, 1, padding="same", padding_mode="reflect")
        self.mel = SpeakerMel(n_mels=c.mel_dim, sample_rate=c.sample_rate)  # no parameters, no state-dict keys
        # Reflect padding needs more frames than the widest one-sided pad.
        self.min_frames = 1 + max(max(m.pad) for m in self.modules() if isinstance(m, TimeDelayBlock))

    def forward(self, mels: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``lengths`` (B,): valid frames per item of a right-padded batch; None = all valid."""
        if mels.dim() != 3 or mels.shape[-1] != self.config.mel_dim:
            raise ValueError(f"expected mels of shape (batch, frames, {self.config.mel_dim}), got {tuple(mels.shape)}")
        if lengths is not None and (lengths.shape != mels.shape[:1] or int(lengths.max()) > mels.shape[1]):
            raise ValueError(f"lengths must be (batch,) frame counts <= {mels.shape[1]}, got {lengths.tolist()}")
        shortest = mels.shape[1] if lengths is None else int(lengths.min())
        if shortest < self.min_frames:
            raise ValueError(f"the speaker encoder needs at least {self.min_frames} frames per item, got {shortest}")
        x = mels.transpose(1, 2)
        weights = self._frame_weights(x, lengths)  # (B, 1, T): 1/length on valid frames, 0 on padding
        x = self.blocks[0](x, lengths)
        features = []
        for block in self.blocks[1:]:
            x = block(x, lengths, weights)
            features.append(x)
        x = self.mfa(torch.cat(features, dim=1), lengths)
        return self.fc(self.asp(x, weights).unsqueeze(2)).squeeze(2)

    def embed_audio(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """24 kHz waveform (samples,) → (enc_dim,), or (B, samples) with optional sample ``lengths`` → (B, enc_dim).
        Features are computed in float32, then cast to the encoder's dtype (as ``qwen_tts`` does)."""
        batch = wav if wav.dim() == 2 else wav.unsqueeze(0)
        mels = self.mel(batch, lengths).to(self.fc.weight.dtype)
        frames = None if lengths is None else self.mel.num_frames(lengths.to(mels.device))
        embedding = self(mels, frames)
        return embedding if wav.dim() == 2 else embedding[0]

    @staticmethod
    def _frame_weights(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        batch, _, frames = x.shape
        if lengths is None:
            return x.new_full((batch, 1, frames), 1.0 / frames)
        lengths = lengths.to(x.device)
        valid = torch.arange(frames, device=x.device) < lengths.unsqueeze(1)
        return (valid / lengths.unsqueeze(1)).to(x.dtype).unsqueeze(1)
