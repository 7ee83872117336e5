"""Random weights that exercise every path, for parity tests and speed benchmarks of released shapes.

A default initialisation is a poor stand-in for trained weights: codec codewords start at zero (constant
codes), norms at one (a wrong norm goes unnoticed). These schemes keep activations O(1) instead.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def randomize_codec(model: nn.Module, seed: int = 0) -> None:
    """A ``SpeechTokenizer`` with O(1) activations, so every path moves the codes and the audio is not all
    clamped: fan-in-scaled weights, norms/scales ~1, SnakeBeta log-α/β ~N(0, 0.5), decoder weights at gain 0.5,
    codewords ~N(0, 2²) in the encoder (the latents' scale) and ~N(0, 1) in the decoder."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("cluster_usage"):  # decoder codebooks are parameters, encoder's are buffers
                value = torch.rand(p.shape, generator=gen) * 2 + 0.1
            elif name.endswith("embedding_sum"):
                usage = model.get_parameter(name.replace("embedding_sum", "cluster_usage"))
                value = torch.randn(p.shape, generator=gen) * usage[:, None]
            elif name.endswith((".alpha", ".beta")):
                value = torch.randn(p.shape, generator=gen) * 0.5
            elif name.endswith((".scale", "gamma")) or "norm" in name:
                value = 0.5 + torch.rand(p.shape, generator=gen)
            elif name.endswith("bias"):
                value = torch.randn(p.shape, generator=gen) * 0.1
            else:
                gain = 0.5 if name.startswith("decoder.") else 1.0  # larger gains clamp most decoder samples
                value = torch.randn(p.shape, generator=gen) * gain / math.sqrt(p[0].numel())
            p.copy_(value)
        for name, buffer in model.named_buffers():
            if name.endswith("cluster_usage"):
                buffer.copy_(torch.rand(buffer.shape, generator=gen) * 2 + 0.1)
            elif name.endswith("embed_sum"):
                usage = model.get_buffer(name.replace("embed_sum", "cluster_usage"))
                buffer.copy_(torch.randn(buffer.shape, generator=gen) * 2 * usage[:, None])


def randomize_tts(model: nn.Module, seed: int = 0) -> None:
    """A TTS model (ours or qwen-tts's: the names are the same) with unit-gain weights, norms away from 1 and
    non-zero biases, so every parameter changes the outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p[0].numel() if p.dim() > 1 else 1))
