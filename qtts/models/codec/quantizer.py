"""Split residual vector quantizer of the 12 Hz codec (Mimi layout), decode side.

Level 0 (``rvq_first``, the semantic level distilled from WavLM) and levels 1… (``rvq_rest``, acoustic)
are two residual quantizers with their own projections; their outputs are added. Each codebook keeps
EMA statistics, ``embedding_sum`` and ``cluster_usage``, and a codeword is their ratio, so the released
weights hold no codeword table. They are ``nn.Parameter``s because the checkpoint stores them so.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Codebook(nn.Module):
    """One codebook: codeword i = ``embedding_sum[i] / max(cluster_usage[i], eps)``."""

    def __init__(self, dim: int, size: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.cluster_usage = nn.Parameter(torch.ones(size))
        self.embedding_sum = nn.Parameter(torch.zeros(size, dim))

    @property
    def codewords(self) -> torch.Tensor:
        return self.embedding_sum / self.cluster_usage.clamp(min=self.eps)[:, None]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, T) → vectors (B, T, dim). Divides only the rows looked up, not the whole table: the same
        numbers, but a streamed frame no longer pays for 2048 codewords per level."""
        usage = F.embedding(codes, self.cluster_usage[:, None]).clamp(min=self.eps)
        return F.embedding(codes, self.embedding_sum) / usage


class VectorQuantizer(nn.Module):
    """One RVQ level (named ``_codebook`` inside, as released)."""

    def __init__(self, dim: int, codebook_size: int):
        super().__init__()
        self._codebook = Codebook(dim, codebook_size)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, T) → (B, dim, T)."""
        return self._codebook.decode(codes).transpose(1, 2)


class ResidualLevels(nn.Module):
    """The stacked levels of one residual quantizer; decoding sums their codewords."""

    def __init__(self, num_levels: int, dim: int, codebook_size: int):
        super().__init__()
        self.layers = nn.ModuleList(VectorQuantizer(dim, codebook_size) for _ in range(num_levels))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, K, T), K ≤ levels (fewer levels = lower bitrate) → (B, dim, T)."""
        if codes.shape[1] > len(self.layers):
            raise ValueError(f"got {codes.shape[1]} code levels, this quantizer has {len(self.layers)}")
        quantized = 0
        for level, layer in enumerate(self.layers[: codes.shape[1]]):
            quantized = quantized + layer.decode(codes[:, level])
        return quantized


class ResidualVectorQuantizer(nn.Module):
    """Residual quantizer working in ``dim`` between 1×1 projections from/to the model width
    (``input_proj`` is used by encoding; decoding needs only ``output_proj``)."""

    def __init__(self, num_levels: int, dim: int, codebook_size: int, input_dim: int, output_dim: int):
        super().__init__()
        self.input_proj = nn.Conv1d(input_dim, dim, 1, bias=False)
        self.output_proj = nn.Conv1d(dim, output_dim, 1, bias=False)
        self.vq = ResidualLevels(num_levels, dim, codebook_size)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, K, T) → (B, output_dim, T)."""
        return self.output_proj(self.vq.decode(codes))


class SplitResidualVectorQuantizer(nn.Module):
    """Semantic levels (``rvq_first``) and acoustic levels (``rvq_rest``) quantized separately, summed."""

    def __init__(self, num_quantizers: int, num_semantic: int, dim: int, codebook_size: int, model_dim: int):
        super().__init__()
        self.num_quantizers, self.num_semantic = num_quantizers, num_semantic
        self.rvq_first = ResidualVectorQuantizer(num_semantic, dim, codebook_size, model_dim, model_dim)
        self.rvq_rest = ResidualVectorQuantizer(num_quantizers - num_semantic, dim, codebook_size, model_dim, model_dim)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, K, T) with 1 ≤ K ≤ num_quantizers → (B, model_dim, T)."""
        quantized = self.rvq_first.decode(codes[:, : self.num_semantic])
        if codes.shape[1] > self.num_semantic:
            quantized = quantized + self.rvq_rest.decode(codes[:, self.num_semantic:])
        return quantized
