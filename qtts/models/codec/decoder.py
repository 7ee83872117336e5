"""Decoder of the 12 Hz speech tokenizer: 16 codes per 80 ms frame → 24 kHz waveform.

    codes (B,16,T) ─ split RVQ ─ causal conv ─ sliding-window transformer (12.5 Hz)
        ─ 2× [transposed conv ×2, ConvNeXt] (50 Hz) ─ conv ─ 4× [SnakeBeta, transposed conv ×r,
        3 dilated residual units] ─ SnakeBeta ─ conv ─ clamp ±1 → wav (B,1,T·1920)

Everything is causal, so ``stream()`` / ``streaming()`` / ``decode_stream`` produce, chunk by chunk, exactly
the waveform of one whole-sequence call: convs keep their left context, the transformer a KV cache of the last
``sliding_window − 1`` frames, all in a ``qtts.models.streaming.Stream`` (never on the shared modules).
Parameter names equal the released ``decoder.*`` keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from qtts.models.codec.config import CodecDecoderConfig
from qtts.models.codec.quantizer import SplitResidualVectorQuantizer
from qtts.models.layers import (
    CausalConv1d,
    CausalConvTranspose1d,
    KVStreamState,
    RMSNorm,
    RotaryEmbedding,
    SnakeBeta,
    TransformerBlock,
)
from qtts.models.streaming import Stream, StreamingModule


class DecoderTransformer(StreamingModule):
    """``pre_transformer``: projects the latent down to ``hidden_size``, runs causal sliding-window blocks
    with LayerScale, projects back. While streaming its ``KVStreamState`` keeps one KV cache per layer (fixed
    buffers of the last ``sliding_window − 1`` frames)."""

    def __init__(self, config: CodecDecoderConfig):
        super().__init__()
        self.input_proj = nn.Linear(config.latent_dim, config.hidden_size)
        self.layers = nn.ModuleList(
            TransformerBlock(
                config.hidden_size, config.intermediate_size, config.num_attention_heads,
                config.num_key_value_heads, config.head_dim, config.rms_norm_eps, bias=config.attention_bias,
                sliding_window=config.sliding_window, layer_scale=config.layer_scale_initial_scale,
                dropout=config.attention_dropout,
            )
            for _ in range(config.num_hidden_layers)
        )
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.output_proj = nn.Linear(config.hidden_size, config.latent_dim)
        self.rotary_emb = RotaryEmbedding(config.head_dim, config.rope_theta)

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> KVStreamState:
        return KVStreamState.create([layer.self_attn for layer in self.layers], batch_size, device, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, latent_dim) → (B, T, latent_dim)."""
        state = self.stream_state(x)
        caches, mask = [None] * len(self.layers), None
        if state is None:
            positions = torch.arange(x.shape[1], device=x.device)
        else:
            caches = state.caches
            positions, mask = state.positions(x.shape[1])
        cos, sin = self.rotary_emb(positions)
        x = self.input_proj(x)
        for layer, cache in zip(self.layers, caches):
            x = layer(x, cos, sin, cache, mask)
        return self.output_proj(self.norm(x))


class ConvNeXtBlock(nn.Module):
    """Causal depthwise conv k7 → LayerNorm → MLP ×4 (GELU) → per-channel ``gamma`` → residual."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = CausalConv1d(dim, dim, kernel_size=7, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.dwconv(x).transpose(1, 2))
        h = self.gamma * self.pwconv2(nn.functional.gelu(self.pwconv1(h)))
        return x + h.transpose(1, 2)


class ResidualUnit(nn.Module):
    """SnakeBeta → dilated causal conv k7 → SnakeBeta → conv k1, plus the input."""

    def __init__(self, dim: int, dilation: int):
        super().__init__()
        self.act1 = SnakeBeta(dim)
        self.conv1 = CausalConv1d(dim, dim, kernel_size=7, dilation=dilation)
        self.act2 = SnakeBeta(dim)
        self.conv2 = CausalConv1d(dim, dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act2(self.conv1(self.act1(x))))


class UpsampleBlock(nn.Module):
    """``block`` = [SnakeBeta, causal transposed conv (k 2r, stride r) halving channels,
    residual units with dilations 1, 3, 9]."""

    def __init__(self, in_dim: int, out_dim: int, rate: int):
        super().__init__()
        self.block = nn.ModuleList(
            [SnakeBeta(in_dim), CausalConvTranspose1d(in_dim, out_dim, 2 * rate, rate)]
            + [ResidualUnit(out_dim, dilation) for dilation in (1, 3, 9)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.block:
            x = layer(x)
        return x


class CodecDecoder(nn.Module):
    """Codes (B, num_quantizers, T) → waveform (B, 1, T·total_upsample) in [−1, 1]."""

    def __init__(self, config: CodecDecoderConfig | None = None):
        super().__init__()
        self.config = config = config or CodecDecoderConfig()
        self.quantizer = SplitResidualVectorQuantizer(
            config.num_quantizers, config.num_semantic_quantizers, config.codebook_dim // 2,
            config.codebook_size, config.codebook_dim,
        )
        self.pre_conv = CausalConv1d(config.codebook_dim, config.latent_dim, kernel_size=3)
        self.pre_transformer = DecoderTransformer(config)
        self.upsample = nn.ModuleList(
            nn.ModuleList([CausalConvTranspose1d(config.latent_dim, config.latent_dim, ratio, ratio),
                           ConvNeXtBlock(config.latent_dim)])
            for ratio in config.upsampling_ratios
        )
        dims = [config.decoder_dim // 2**i for i in range(len(config.upsample_rates) + 1)]
        self.decoder = nn.ModuleList(
            [CausalConv1d(config.latent_dim, dims[0], kernel_size=7)]
            + [UpsampleBlock(dims[i], dims[i + 1], rate) for i, rate in enumerate(config.upsample_rates)]
            + [SnakeBeta(dims[-1]), CausalConv1d(dims[-1], 1, kernel_size=7)]
        )

    @property
    def total_upsample(self) -> int:
        """Waveform samples per code frame (1920 released)."""
        return self.config.total_upsample

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.dim() != 3 or codes.shape[1] != self.config.num_quantizers:
            raise ValueError(
                f"codes must be (batch, {self.config.num_quantizers}, frames), got shape {tuple(codes.shape)}"
            )
        return self.decode_latent(self.quantizer.decode(codes))

    def decode_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """Dequantised latent (B, codebook_dim, T) → waveform; training feeds the encoder's quantizer output here."""
        x = self.pre_conv(latent)
        x = self.pre_transformer(x.transpose(1, 2)).transpose(1, 2)
        for transposed_conv, convnext in self.upsample:
            x = convnext(transposed_conv(x))
        for layer in self.decoder:
            x = layer(x)
        return x.clamp(-1.0, 1.0)

    def stream(self, batch_size: int | None = None) -> Stream:
        """A new stream of codes through this decoder: ``stream(codes)`` decodes the next chunk (B, num_quantizers,
        any frames ≥ 1) into its ``frames · total_upsample`` samples, equal to that part of the full decode;
        ``stream.reset(rows)`` starts new utterances in some rows. The decoder itself keeps no state, so any number
        of streams (threads) can share it."""
        return Stream(self, batch_size)

    @contextmanager
    def streaming(self) -> Iterator[Stream]:
        """Inside, each call of this decoder (in this thread) decodes the next chunk of one new stream."""
        stream = self.stream()
        with stream.active():
            yield stream

    def decode_stream(self, chunks: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        """Decode consecutive code chunks (B, num_quantizers, t_i), yielding audio (B, 1, t_i · total_upsample)."""
        stream = self.stream()
        for codes in chunks:  # active per chunk only: the caller's code between chunks runs outside the stream
            yield stream(codes)
