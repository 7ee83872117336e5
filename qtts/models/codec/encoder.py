"""Encoder of the 12 Hz codec: 24 kHz waveform → 16 codes per 80 ms frame (the encoder half of Mimi).

Causal SEANet convs (24 kHz → 25 Hz) → causal transformer → stride-2 downsample conv (→ 12.5 Hz) →
split RVQ. Module names are transformers' ``MimiModel`` names, which the released ``encoder.*`` weights
use, so ``load_state_dict(strict=True)`` takes them as they are (prefix ``encoder.`` removed).

Two behaviours follow qwen-tts 0.1.1 with its pinned transformers 4.57.3 rather than Kyutai's Mimi:
the transformer attends to the whole past (``sliding_window`` is in the config but that transformers
ignores it; pass ``windowed_attention=True`` for the window), and the downsample conv pads by repeating
edge frames (``replicate``) while the SEANet convs pad zeros.

Everything is causal, so ``encode_stream`` turns waveform chunks of any size into codes as soon as their
frames are complete, and all its codes together equal one whole-waveform ``encode``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from qtts.models.codec.config import CodecEncoderConfig
from qtts.models.layers import (
    Attention,
    CausalConv1d,
    KVCache,
    KVStreamState,
    LayerScale,
    RotaryEmbedding,
    SlidingKVCache,
)
from qtts.models.streaming import Stream, StreamingModule


class ResnetBlock(nn.Module):
    """SEANet residual unit ``x + conv1(elu(conv_k(elu(x))))`` through a ``dim // compress`` bottleneck."""

    def __init__(self, config: CodecEncoderConfig, dim: int, dilation: int):
        super().__init__()
        hidden = dim // config.compress
        self.block = nn.ModuleList([
            nn.ELU(),
            CausalConv1d(dim, hidden, config.residual_kernel_size, dilation=dilation, pad_mode=config.pad_mode),
            nn.ELU(),
            CausalConv1d(hidden, dim, 1, pad_mode=config.pad_mode),
        ])
        self.shortcut = CausalConv1d(dim, dim, 1, pad_mode=config.pad_mode) if config.use_conv_shortcut else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.shortcut is None else self.shortcut(x)
        for layer in self.block:
            x = layer(x)
        return residual + x


class SeanetEncoder(nn.Module):
    """Waveform (B, C, S) → (B, hidden, ceil(S / prod(ratios))): a conv, then per stride (the reversed
    ``upsampling_ratios``) residual units and a strided conv doubling the channels, then a last conv."""

    def __init__(self, config: CodecEncoderConfig):
        super().__init__()
        pad = config.pad_mode
        channels = config.num_filters
        modules: list[nn.Module] = [CausalConv1d(config.audio_channels, channels, config.kernel_size, pad_mode=pad)]
        for ratio in reversed(config.upsampling_ratios):
            dilations = [config.dilation_growth_rate**j for j in range(config.num_residual_layers)]
            modules += [ResnetBlock(config, channels, dilation) for dilation in dilations]
            modules += [nn.ELU(), CausalConv1d(channels, channels * 2, 2 * ratio, stride=ratio, pad_mode=pad)]
            channels *= 2
        modules += [nn.ELU(), CausalConv1d(channels, config.hidden_size, config.last_kernel_size, pad_mode=pad)]
        self.layers = nn.ModuleList(modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class GeluMLP(nn.Module):
    """``fc2(gelu(fc1(x)))`` with exact (erf) GELU, no biases."""

    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.fc2 = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class EncoderLayer(nn.Module):
    """Mimi's pre-norm block: LayerNorm (with bias) and GELU MLP, LayerScale on both residual branches."""

    def __init__(self, config: CodecEncoderConfig, sliding_window: int | None):
        super().__init__()
        hidden = config.hidden_size
        self.input_layernorm = nn.LayerNorm(hidden, eps=config.norm_eps)
        self.self_attn = Attention(
            hidden, config.num_attention_heads, config.num_key_value_heads, config.head_dim,
            bias=config.attention_bias, sliding_window=sliding_window, dropout=config.attention_dropout,
        )
        self.post_attention_layernorm = nn.LayerNorm(hidden, eps=config.norm_eps)
        self.mlp = GeluMLP(hidden, config.intermediate_size)
        self.self_attn_layer_scale = LayerScale(hidden, config.layer_scale_initial_scale)
        self.mlp_layer_scale = LayerScale(hidden, config.layer_scale_initial_scale)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache | SlidingKVCache | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = x + self.self_attn_layer_scale(self.self_attn(self.input_layernorm(x), cos, sin, cache, mask))
        return x + self.mlp_layer_scale(self.mlp(self.post_attention_layernorm(x)))


class EncoderTransformer(StreamingModule):
    """Causal transformer over the 25 Hz frames (B, T, hidden), no final norm. While streaming its
    ``KVStreamState`` keeps one KV cache per layer."""

    def __init__(self, config: CodecEncoderConfig, sliding_window: int | None):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(config, sliding_window) for _ in range(config.num_hidden_layers))
        self.rotary_emb = RotaryEmbedding(config.head_dim, config.rope_theta)

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> KVStreamState:
        return KVStreamState.create([layer.self_attn for layer in self.layers], batch_size, device, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = self.stream_state(x)
        caches, mask = [None] * len(self.layers), None
        if state is None:
            positions = torch.arange(x.shape[1], device=x.device)
        elif x.shape[1] == 0:  # a chunk that completes no frame
            return x
        else:
            caches = state.caches
            positions, mask = state.positions(x.shape[1])
        cos, sin = self.rotary_emb(positions)
        for layer, cache in zip(self.layers, caches):
            x = layer(x, cos, sin, cache, mask)
        return x


class EuclideanCodebook(nn.Module):
    """Codeword i = ``embed_sum[i] / max(cluster_usage[i], eps)``; encoding picks the nearest codeword.

    The statistics are buffers (EMA-updated in training, not by gradients), as in the released weights;
    ``initialized`` is kept for loading and saving.
    """

    def __init__(self, dim: int, size: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("initialized", torch.ones(1))
        self.register_buffer("cluster_usage", torch.ones(size))
        self.register_buffer("embed_sum", torch.zeros(size, dim))

    @property
    def codewords(self) -> torch.Tensor:
        return self.embed_sum / self.cluster_usage.clamp(min=self.eps)[:, None]

    def encode(self, x: torch.Tensor, codewords: torch.Tensor) -> torch.Tensor:
        """x (N, dim) → nearest codeword indices (N,), distances in float32 (``torch.cdist``, as Mimi, so
        near ties break the same way)."""
        return torch.cdist(x[None].float(), codewords[None].float())[0].argmin(dim=-1)


class QuantizerLevel(nn.Module):
    """One RVQ level (the released name nests the codebook in ``codebook``)."""

    def __init__(self, dim: int, size: int):
        super().__init__()
        self.codebook = EuclideanCodebook(dim, size)


class ResidualQuantizer(nn.Module):
    """Residual VQ: each level quantizes what the levels before it left over. Works in ``dim`` with 1×1
    projections from/to the model width when they differ (``output_proj`` serves decoding only)."""

    def __init__(self, num_levels: int, dim: int, codebook_size: int, model_dim: int):
        super().__init__()
        self.layers = nn.ModuleList(QuantizerLevel(dim, codebook_size) for _ in range(num_levels))
        if dim != model_dim:
            self.input_proj = nn.Conv1d(model_dim, dim, 1, bias=False)
            self.output_proj = nn.Conv1d(dim, model_dim, 1, bias=False)
        else:
            self.input_proj = self.output_proj = None

    def encode(self, x: torch.Tensor, num_levels: int) -> torch.Tensor:
        """x (B, model_dim, T) → codes (B, num_levels, T)."""
        if self.input_proj is not None:
            x = self.input_proj(x)
        batch, dim, frames = x.shape
        residual = x.transpose(1, 2).reshape(-1, dim)
        codes = []
        for level in self.layers[:num_levels]:
            codewords = level.codebook.codewords
            indices = level.codebook.encode(residual, codewords)
            residual = residual - F.embedding(indices, codewords)
            codes.append(indices.view(batch, frames))
        return torch.stack(codes, dim=1)


class SplitResidualQuantizer(nn.Module):
    """Semantic levels and acoustic levels: two residual quantizers that both start from the same
    embedding (the acoustic chain does not see the semantic residual); codes are concatenated."""

    def __init__(self, config: CodecEncoderConfig):
        super().__init__()
        self.num_quantizers, self.num_semantic = config.num_quantizers, config.num_semantic_quantizers
        args = (config.quantizer_dim, config.codebook_size, config.hidden_size)
        self.semantic_residual_vector_quantizer = ResidualQuantizer(self.num_semantic, *args)
        self.acoustic_residual_vector_quantizer = ResidualQuantizer(self.num_quantizers - self.num_semantic, *args)

    def encode(self, x: torch.Tensor, num_quantizers: int) -> torch.Tensor:
        """x (B, hidden, T) → codes (B, num_quantizers, T), semantic levels first."""
        if not self.num_semantic <= num_quantizers <= self.num_quantizers:
            raise ValueError(
                f"num_quantizers must be between {self.num_semantic} (the semantic levels) and {self.num_quantizers}, "
                f"got {num_quantizers}"
            )
        if x.shape[-1] == 0:  # a streamed chunk that completes no frame
            return torch.zeros(x.shape[0], num_quantizers, 0, dtype=torch.long, device=x.device)
        codes = self.semantic_residual_vector_quantizer.encode(x, self.num_semantic)
        if num_quantizers > self.num_semantic:
            acoustic = self.acoustic_residual_vector_quantizer.encode(x, num_quantizers - self.num_semantic)
            codes = torch.cat((codes, acoustic), dim=1)
        return codes


class CodecEncoder(nn.Module):
    """Waveform (B, audio_channels, S) at ``sampling_rate`` → codes (B, K, ceil(S / hop_length)).

    In a right-padded batch item i owns the first ``num_frames(length_i)`` frames (what qwen-tts keeps);
    its last frame may differ from encoding it alone, since the convs see the padding, as in qwen-tts.
    """

    def __init__(self, config: CodecEncoderConfig, windowed_attention: bool = False):
        super().__init__()
        self.config = config
        self.encoder = SeanetEncoder(config)
        self.encoder_transformer = EncoderTransformer(config, config.sliding_window if windowed_attention else None)
        self.downsample = CausalConv1d(
            config.hidden_size, config.hidden_size, config.downsample_kernel_size, stride=2, bias=False,
            pad_mode="replicate",
        )
        self.quantizer = SplitResidualQuantizer(config)

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    def num_frames(self, samples: int | torch.Tensor) -> int | torch.Tensor:
        """Code frames of ``samples`` input samples: ``ceil(samples / hop_length)``."""
        if isinstance(samples, torch.Tensor):
            return torch.div(samples + self.hop_length - 1, self.hop_length, rounding_mode="floor")
        return math.ceil(samples / self.hop_length)

    def encode_latent(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (B, audio_channels, S) → continuous frames (B, hidden_size, T) that the RVQ quantizes."""
        if wav.dim() != 3 or wav.shape[1] != self.config.audio_channels:
            raise ValueError(f"wav must be (batch, {self.config.audio_channels}, samples), got {tuple(wav.shape)}")
        x = self.encoder(wav)
        x = self.encoder_transformer(x.transpose(1, 2)).transpose(1, 2)
        return self.downsample(x)

    def encode(self, wav: torch.Tensor, num_quantizers: int = 16) -> torch.Tensor:
        """wav (B, audio_channels, S) → codes (B, num_quantizers, T) int64; the released model keeps 16 of 32."""
        return self.quantizer.encode(self.encode_latent(wav), num_quantizers)

    def stream(self, batch_size: int | None = None) -> Stream:
        """A new stream of waveform through this encoder. Run ``encode``/``encode_latent`` inside
        ``stream.active()`` on consecutive chunks: each returns the frames it completes; the last chunk (possibly
        empty) inside ``stream.active(last=True)`` completes the final frame. ``stream.reset(rows)`` starts new
        waveforms in some rows, at a hop boundary. The encoder keeps no state: streams (threads) can share it."""
        return Stream(self, batch_size)

    @contextmanager
    def streaming(self) -> Iterator[Stream]:
        """Inside, each ``encode``/``encode_latent`` call (in this thread) takes the next chunk of one new stream
        and returns the frames it completes; pass the last chunk inside the yielded stream's ``active(last=True)``."""
        stream = self.stream()
        with stream.active():
            yield stream

    def encode_stream(self, chunks: Iterable[torch.Tensor], num_quantizers: int = 16) -> Iterator[torch.Tensor]:
        """Encode consecutive waveform chunks (B, audio_channels, s_i) of any size, yielding codes
        (B, num_quantizers, t_i) as frames complete, then the frame the end completes (t_i may be 0)."""
        stream, end = self.stream(), None
        for chunk in chunks:  # active per chunk only: the caller's code between chunks runs outside the stream
            end = chunk[..., :0]
            with stream.active():
                codes = self.encode(chunk, num_quantizers)
            yield codes
        if end is not None:
            with stream.active(last=True):
                codes = self.encode(end, num_quantizers)
            yield codes
