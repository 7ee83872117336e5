"""Encoder of the 25 Hz tokenizer: 16 kHz waveform → Whisper log-mel → Whisper-style transformer with a
single-codebook VQ after block ``audio_vq_layers`` → 25 Hz codes (and, past the VQ, the ASR path).

Layout (module names = qwen-tts's state-dict keys under ``encoder.tokenizer.``):

- conv stem ``conv1`` (k3) and ``conv2`` (k3, stride 2) with GELU, run per chunk of ``2·n_window`` mel frames
  (zero padding at each chunk's edges), + sinusoidal ``positional_embedding`` restarting in every chunk (50 Hz);
- ``blocks`` of pre-LN attention (``query``, ``key`` without bias, ``value``, ``out``) and a GELU MLP; attention
  stays inside windows of ``n_window`` frames (the chunks);
- after block ``audio_vq_layers``: ``audio_vq_downsample`` (k=s=``audio_vq_ds_rate``, → 25 Hz), the codebook
  ``audio_quantizer``, + positions restarting per chunk, ``project_after_vq_pe``, ``audio_vq_upsample`` (→ 50 Hz);
- the remaining blocks, average pooling by 2, ``ln_post``, ``proj`` to the ASR decoder's width, and
  ``audio_bos_eos_token`` around each item (the embeddings an LLM decoder reads, Qwen2-Audio style).

A batch is padded and every item gives exactly what it gives alone: attention masks the padded keys of each
window. (qwen-tts 0.1.1's fp32 attention does not: its mask stays boolean, so a short last window also attends to
zero keys, in a batch and for one item alike; only its flash-attention path is correct — see
``reference/tokenizer-25hz.md``, bug 1.)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from qtts.audio.features import WhisperLogMel
from qtts.models.codec.vq_training import VQTrainingConfig
from qtts.models.tokenizer_25hz.config import CONV_STRIDE, MEL_HOP, Tokenizer25HzEncoderConfig
from qtts.models.tokenizer_25hz.vq import SingleCodebookVQ, VQOutput


def sinusoids(length: int, channels: int, max_timescale: float = 10_000.0) -> torch.Tensor:
    """Whisper's positions (length, channels): sines then cosines over log-spaced timescales."""
    increment = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-increment * torch.arange(channels // 2))
    scaled = torch.arange(length)[:, None] * inv_timescales[None, :]
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=1)


class WindowAttention(nn.Module):
    """Multi-head self-attention within fixed windows; ``key`` has no bias (Whisper)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """x (N, W, D): N windows of W frames; ``key_mask`` (N, W) True for keys that may be attended."""
        n, w, d = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(n, w, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :])
        return self.out(y.transpose(1, 2).reshape(n, w, d))


class ResidualAttentionBlock(nn.Module):
    """Pre-LN transformer block (Whisper's): ``x + attn(attn_ln(x))``, then ``x + mlp(mlp_ln(x))``."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.attn_ln = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads)
        self.mlp_ln = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """x (B·windows, W, D)."""
        x = x + self.attn(self.attn_ln(x), key_mask)
        return x + self.mlp(self.mlp_ln(x))


class EncoderOutput(NamedTuple):
    """``hidden`` (B, frames + 2, output_dim): per item ``audio_bos``, the 25 Hz ASR embeddings, ``audio_eos``,
    then zeros; ``lengths`` (B,) rows used per item; ``codes`` (B, code frames) and ``code_lengths`` (B,), 0 past
    each item's length; ``vq`` the quantizer's loss and statistics (valid frames only)."""

    hidden: torch.Tensor
    lengths: torch.Tensor
    codes: torch.Tensor
    code_lengths: torch.Tensor
    vq: VQOutput


class WhisperVQEncoder(nn.Module):
    """The encoder network (``encoder.tokenizer`` in the released keys): log-mel → codes / ASR embeddings."""

    def __init__(self, config: Tokenizer25HzEncoderConfig):
        super().__init__()
        self.config = c = config
        self.conv1 = nn.Conv1d(c.n_mels, c.n_state, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(c.n_state, c.n_state, kernel_size=3, stride=CONV_STRIDE, padding=1)
        self.register_buffer("positional_embedding", sinusoids(c.n_ctx, c.n_state))
        self.blocks = nn.ModuleList(ResidualAttentionBlock(c.n_state, c.n_head) for _ in range(c.n_layer))
        self.ln_post = nn.LayerNorm(c.n_state)
        self.proj = nn.Linear(c.n_state, c.output_dim)
        self.audio_bos_eos_token = nn.Embedding(2, c.output_dim)
        if c.audio_vq_ds_rate > 1:  # qwen-tts has no module (no keys) at rate 1
            ds = c.audio_vq_ds_rate
            self.audio_vq_downsample = nn.Conv1d(c.n_state, c.n_state, kernel_size=ds, stride=ds)
            self.audio_vq_upsample = nn.ConvTranspose1d(c.n_state, c.n_state, kernel_size=ds, stride=ds)
        else:
            self.audio_vq_downsample = self.audio_vq_upsample = None
        self.audio_quantizer = SingleCodebookVQ(c.audio_vq_codebook_dim, c.audio_vq_codebook_size)
        self.project_after_vq_pe = nn.Linear(c.n_state, c.n_state) if c.audio_vq_pe else None

    @property
    def mel_frames_per_code(self) -> int:
        return CONV_STRIDE * self.config.audio_vq_ds_rate

    def _stem(self, mel: torch.Tensor, mel_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mel (B, n_mels, T) zero past ``mel_lengths`` (multiples of ``mel_frames_per_code``) → x (B, T', D) with
        T' a whole number of windows, and the valid 50 Hz frames per item (B,)."""
        window = self.config.n_window
        chunk = CONV_STRIDE * window
        batch, bins, frames = mel.shape
        step = self.mel_frames_per_code
        if mel_lengths.shape != (batch,) or bool((mel_lengths % step).any()) or int(mel_lengths.max()) > frames:
            raise ValueError(f"mel_lengths {mel_lengths.tolist()} must give each of the {batch} items a multiple of "
                             f"{step} frames (whole codes), at most the {frames} frames of the batch")
        mel = F.pad(mel, (0, -frames % chunk))
        chunks = mel.view(batch, bins, -1, chunk).permute(0, 2, 1, 3).reshape(-1, bins, chunk)
        x = F.gelu(self.conv2(F.gelu(self.conv1(chunks))))  # (B·chunks, D, W)
        x = x.transpose(1, 2) + self.positional_embedding[:window].to(x.dtype)
        lengths = mel_lengths // CONV_STRIDE
        return x.reshape(batch, -1, x.shape[-1]), lengths

    def _key_mask(self, frames: int, lengths: torch.Tensor) -> torch.Tensor:
        """(B·windows, W) valid keys; a window past an item's end keeps its first key so softmax stays finite
        (its outputs are padding, never read)."""
        window = self.config.n_window
        valid = torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]
        valid = valid.view(-1, window)
        valid[:, 0] = True
        return valid

    def _run_blocks(self, x: torch.Tensor, key_mask: torch.Tensor, blocks: range) -> torch.Tensor:
        batch, frames, dim = x.shape
        x = x.reshape(-1, self.config.n_window, dim)
        for index in blocks:
            block = self.blocks[index]
            if self.config.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, key_mask, use_reentrant=False)
            else:
                x = block(x, key_mask)
        return x.reshape(batch, frames, dim)

    def _downsample(self, x: torch.Tensor) -> torch.Tensor:
        if self.audio_vq_downsample is None:
            return x
        return self.audio_vq_downsample(x.transpose(1, 2)).transpose(1, 2)

    def _latent(self, mel: torch.Tensor, mel_lengths: torch.Tensor):
        """Up to the VQ's input: (z (B, T/4, D) at 25 Hz, its valid frames (B, T/4), the window key mask, the
        valid 50 Hz frames per item)."""
        x, lengths = self._stem(mel, mel_lengths)
        key_mask = self._key_mask(x.shape[1], lengths)
        z = self._downsample(self._run_blocks(x, key_mask, range(self.config.audio_vq_layers)))
        code_lengths = lengths // self.config.audio_vq_ds_rate
        valid = torch.arange(z.shape[1], device=z.device)[None, :] < code_lengths[:, None]
        return z, valid, key_mask, lengths

    def encode(self, mel: torch.Tensor, mel_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mel (B, n_mels, T), valid frames per item (multiples of 4 by default) → codes (B, T / 4) int64 and
        code lengths (B,); codes past an item's length are 0. Runs only up to the VQ."""
        z, valid, _, _ = self._latent(mel, mel_lengths)
        codes = torch.zeros(valid.shape, dtype=torch.long, device=z.device)
        return codes.masked_scatter(valid, self.audio_quantizer.encode(z[valid])), valid.sum(dim=1)

    def forward(self, mel: torch.Tensor, mel_lengths: torch.Tensor, vq_config: VQTrainingConfig | None = None,
                generator: torch.Generator | None = None) -> EncoderOutput:
        """The whole network (the ASR path): mel (B, n_mels, T) → ``EncoderOutput``. In training mode the
        codebook EMA-updates on the valid frames and the quantized latent passes the gradient straight through."""
        c = self.config
        z, valid, key_mask, lengths = self._latent(mel, mel_lengths)
        vq = self.audio_quantizer(z[valid], vq_config, generator)
        quantized = torch.zeros_like(z).masked_scatter(valid[..., None], vq.quantized)
        codes = torch.zeros(valid.shape, dtype=torch.long, device=z.device).masked_scatter(valid, vq.codes)
        if self.project_after_vq_pe is not None:
            per_window = c.n_window // c.audio_vq_ds_rate
            positions = torch.arange(z.shape[1], device=z.device) % per_window
            quantized = self.project_after_vq_pe(quantized + self.positional_embedding[positions].to(z.dtype))
        if self.audio_vq_upsample is not None:
            quantized = self.audio_vq_upsample(quantized.transpose(1, 2)).transpose(1, 2)
        x = self._run_blocks(quantized, key_mask, range(c.audio_vq_layers, c.n_layer))

        x = F.avg_pool1d(x.transpose(1, 2), 2).transpose(1, 2)
        x = self.proj(self.ln_post(x))
        frames = lengths // 2
        hidden = x.new_zeros(x.shape[0], x.shape[1] + 2, x.shape[2])
        index = torch.arange(hidden.shape[1], device=x.device)[None, :]
        inside = (index >= 1) & (index <= frames[:, None])
        hidden[:, 1:-1] = x.masked_fill(~inside[:, 1:-1, None], 0.0)
        bos, eos = self.audio_bos_eos_token.weight.to(x.dtype)
        hidden = torch.where((index == 0)[..., None], bos, hidden)
        hidden = torch.where((index == frames[:, None] + 1)[..., None], eos, hidden)
        return EncoderOutput(hidden, frames + 2, codes, valid.sum(dim=1), vq)


class Tokenizer25HzEncoder(nn.Module):
    """``encoder``: 16 kHz waveforms → Whisper log-mel → ``tokenizer`` (the network). Each waveform is
    right-padded with zeros to a whole number of codes (640 samples by default), as qwen-tts does."""

    def __init__(self, config: Tokenizer25HzEncoderConfig):
        super().__init__()
        self.config = config
        self.mel = WhisperLogMel(config.n_mels)
        self.tokenizer = WhisperVQEncoder(config)

    @property
    def samples_per_code(self) -> int:
        return self.config.samples_per_code

    def features(self, wavs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """1-D 16 kHz waveforms → log-mel (B, n_mels, T) zero-padded, and the valid frames per item (B,)."""
        step = self.samples_per_code
        lengths = torch.tensor([math.ceil(len(w) / step) * step for w in wavs])
        batch = torch.zeros(len(wavs), int(lengths.max()), dtype=torch.float32, device=wavs[0].device)
        for i, w in enumerate(wavs):
            batch[i, : len(w)] = w
        mel = self.mel(batch, lengths.to(batch.device))
        return mel.transpose(1, 2), (lengths // MEL_HOP).to(batch.device)

    def encode(self, wavs: list[torch.Tensor]) -> list[torch.Tensor]:
        """1-D 16 kHz waveforms → codes (ceil(len / 640),) int64 each."""
        param = self.tokenizer.conv1.weight
        mel, mel_lengths = self.features([w.to(param.device) for w in wavs])
        codes, lengths = self.tokenizer.encode(mel.to(param.dtype), mel_lengths)
        return [c[:n] for c, n in zip(codes, lengths.tolist())]
