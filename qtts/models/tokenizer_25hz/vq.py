"""The 25 Hz tokenizer's single-codebook EMA vector quantizer, in qwen-tts's buffer layout, for encoding and
for training.

qwen-tts stores it as a group-residual VQ with one group and one level
(``audio_quantizer.rvqs.0.{inited, cluster_size, embed, embed_avg}``, each with a leading level axis of 1) and no
projections (codebook dim = model width). The names are kept so released folders load strictly; the math is one
Euclidean codebook: ``embed`` holds the codewords encoding reads, ``cluster_size`` and ``embed_avg`` their EMA
statistics (counts and sums).

Training reuses the 12 Hz codec's building blocks (``qtts.models.codec.vq_training``: EMA update with Laplace
smoothing, k-means initialisation, dead-code restart, all kept identical across DDP ranks). They work on a
codebook's ``cluster_usage``/``embed_sum``/``initialized``; ``Codebook`` exposes its buffers under those names
(views, so the updates land in the buffers) and refreshes ``embed = embed_avg / cluster_size`` after each update,
so encoding after training reads exactly the codewords training converged to.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from qtts.models.codec.vq_training import (
    VQTrainingConfig,
    ema_update_,
    kmeans_init_,
    perplexity,
    restart_dead_codes_,
)

DISTANCE_ELEMENTS = 1 << 24  # distances computed at once by ``Codebook.encode`` (64 MB in float32)


class Codebook(nn.Module):
    """One codebook: ``embed`` (1, K, D) codewords, ``embed_avg`` (1, K, D) and ``cluster_size`` (1, K) their EMA
    sums and counts, ``inited`` (1, 1) whether it holds codewords yet (0 → k-means-initialised on the first
    training batch). A fresh codebook holds random codewords with unit counts, self-consistent
    (``embed = embed_avg / cluster_size``); call ``reset_()`` to train one from scratch."""

    def __init__(self, dim: int, size: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        embed = torch.empty(1, size, dim)
        nn.init.kaiming_uniform_(embed)
        self.register_buffer("inited", torch.ones(1, 1))
        self.register_buffer("cluster_size", torch.ones(1, size))
        self.register_buffer("embed", embed)
        self.register_buffer("embed_avg", embed.clone())

    # The names the codec's training functions update in place (views of the buffers above).
    @property
    def initialized(self) -> torch.Tensor:
        return self.inited[0]

    @property
    def cluster_usage(self) -> torch.Tensor:
        return self.cluster_size[0]

    @property
    def embed_sum(self) -> torch.Tensor:
        return self.embed_avg[0]

    @property
    def codewords(self) -> torch.Tensor:
        """(K, D) the codewords encoding reads."""
        return self.embed[0]

    def encode(self, x: torch.Tensor, codewords: torch.Tensor) -> torch.Tensor:
        """x (N, D) → nearest codeword indices (N,), with qwen-tts's distance expression
        ``|x|² − 2·x·c + |c|²`` (not ``cdist``) so near ties break as in the released encoder. Rows go in blocks
        so the (rows, K) distances stay small (K = 32768 released) however long the batch."""
        norms = codewords.pow(2).sum(1)[None]
        rows = max(1, DISTANCE_ELEMENTS // len(codewords))
        codes = [(x_.pow(2).sum(1, keepdim=True) - 2 * x_ @ codewords.t() + norms).argmin(dim=-1)
                 for x_ in x.split(rows)]
        return torch.cat(codes) if codes else x.new_zeros(0, dtype=torch.long)

    @torch.no_grad()
    def refresh_(self) -> None:
        """Codewords from the statistics, after an EMA update, k-means or a restart changed them."""
        self.embed[0] = self.embed_avg[0] / self.cluster_size[0].clamp(min=self.eps)[:, None]

    @torch.no_grad()
    def reset_(self) -> None:
        """Uninitialised (unit counts, zero sums and codewords): the next training batch k-means-initialises it."""
        self.inited.zero_()
        self.cluster_size.fill_(1.0)
        self.embed_avg.zero_()
        self.embed.zero_()


class VQOutput(NamedTuple):
    """``quantized`` (N, D) the codewords, carrying the input's gradient in training (straight-through);
    ``codes`` (N,); ``commitment_loss`` MSE(input, detached codeword) (0-d); ``stats`` for logging:
    ``perplexity`` and ``usage`` (fraction of codewords hit) of this batch's codes (all ranks in training)."""

    quantized: torch.Tensor
    codes: torch.Tensor
    commitment_loss: torch.Tensor
    stats: dict[str, torch.Tensor]


class SingleCodebookVQ(nn.Module):
    """``audio_quantizer``: one codebook under qwen-tts's names (``rvqs.0``)."""

    def __init__(self, dim: int, size: int):
        super().__init__()
        self.rvqs = nn.ModuleList([Codebook(dim, size)])

    @property
    def codebook(self) -> Codebook:
        return self.rvqs[0]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, D) → codes (N,)."""
        return self.codebook.encode(x, self.codebook.codewords)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (...) → codewords (..., D)."""
        return F.embedding(codes, self.codebook.codewords)

    def forward(self, x: torch.Tensor, config: VQTrainingConfig | None = None,
                generator: torch.Generator | None = None) -> VQOutput:
        """x (N, D) valid frames only (padding must not move the EMA statistics) → ``VQOutput``.

        In training mode an uninitialised codebook is k-means-initialised on ``x`` first; then the statistics
        take an EMA step towards this batch's assignments (decay ``config.decay``), codes used less than
        ``config.dead_code_ratio`` × the uniform share restart on random vectors of the batch, and the codewords
        are refreshed. Eval mode changes nothing. ``generator`` drives k-means seeds and restart picks.
        """
        config = config or VQTrainingConfig()
        book = self.codebook
        latent = x.reshape(-1, x.shape[-1])
        if self.training and not bool(book.initialized.item()):
            kmeans_init_(book, latent.detach(), config.kmeans_iters, generator)
            book.refresh_()
        codewords = book.codewords.clone()
        codes = book.encode(latent.detach().to(codewords.dtype), codewords)
        chosen = F.embedding(codes, codewords).to(latent.dtype)
        loss = (latent.float() - chosen.float()).pow(2).mean()
        if self.training:
            with torch.no_grad():
                counts = ema_update_(book, latent.detach(), codes, config.decay)
                restart_dead_codes_(book, latent.detach(), config.dead_code_ratio, generator)
                book.refresh_()
            quantized = latent + (chosen - latent).detach()
        else:
            counts = torch.bincount(codes, minlength=len(codewords)).float()
            quantized = chosen
        stats = {"perplexity": perplexity(counts), "usage": (counts > 0).float().mean()}
        return VQOutput(quantized.view(x.shape), codes.view(x.shape[:-1]), loss, stats)
