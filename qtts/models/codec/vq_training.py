"""Training behaviour of the encoder's split RVQ: straight-through quantization with a commitment loss,
quantizer dropout, and EMA codebooks with k-means initialisation and dead-code restart, kept bit-identical
across data-parallel ranks.

These are functions over the encoder's existing ``SplitResidualQuantizer`` rather than new modules: they
read and write its buffers ``codebook.{initialized,cluster_usage,embed_sum}`` in place, so a trained
encoder saves and loads strictly under the released names, and eval-mode codes stay exactly
``SplitResidualQuantizer.encode``'s (same ops in the same order).

Under DDP every rank must call ``quantize`` the same number of times (as for any DDP forward). Codebooks
change only through all-reduced sums and rank-0 broadcasts, so they never diverge; ``DistributedDataParallel``
may therefore run with ``broadcast_buffers=False``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F

from qtts.models.codec.encoder import EuclideanCodebook, ResidualQuantizer, SplitResidualQuantizer


@dataclass
class VQTrainingConfig:
    """Defaults follow EnCodec/Mimi practice (``reference/peers.md`` §3): EMA decay 0.99, restart below
    10 % of the uniform usage share (Mimi's rule, independent of batch size and world size), quantizer
    dropout on half the steps (DAC, fish-speech; DualCodec uses 1.0)."""

    decay: float = 0.99
    kmeans_iters: int = 10
    dead_code_ratio: float = 0.1
    dropout_prob: float = 0.5

    def __post_init__(self):
        if not 0.0 <= self.decay < 1.0:
            raise ValueError(f"vq.decay must be in [0, 1), got {self.decay!r}")
        if not isinstance(self.kmeans_iters, int) or self.kmeans_iters < 0:
            raise ValueError(f"vq.kmeans_iters must be a non-negative integer, got {self.kmeans_iters!r}")
        if not 0.0 <= self.dead_code_ratio < 1.0:
            raise ValueError(f"vq.dead_code_ratio must be in [0, 1), got {self.dead_code_ratio!r}")
        if not 0.0 <= self.dropout_prob <= 1.0:
            raise ValueError(f"vq.dropout_prob must be in [0, 1], got {self.dropout_prob!r}")


class QuantizerOutput(NamedTuple):
    """``quantized`` (B, hidden, T) carries the latent's gradient (straight-through); ``codes``
    (B, n, T) with n the levels used this step; ``commitment_loss`` the mean over those levels of
    MSE(level input residual, its detached codeword); ``stats`` per-level tensors (n,) for logging:
    ``perplexity`` and ``usage`` (fraction of codewords hit) of this batch's codes, all ranks together
    in training, and ``commitment`` (detached per-level losses); ``semantic`` (B, hidden, T) the semantic
    chain's part of ``quantized`` (what semantic distillation supervises)."""

    quantized: torch.Tensor
    codes: torch.Tensor
    commitment_loss: torch.Tensor
    stats: dict[str, torch.Tensor]
    semantic: torch.Tensor


def quantize(
    quantizer: SplitResidualQuantizer,
    x: torch.Tensor,
    num_quantizers: int,
    config: VQTrainingConfig | None = None,
    generator: torch.Generator | None = None,
) -> QuantizerOutput:
    """x (B, hidden, T) → ``QuantizerOutput``, in training mode also updating the codebooks.

    Training mode draws quantizer dropout (with probability ``config.dropout_prob`` a uniform number of
    levels in [num_semantic, num_quantizers]: the semantic levels always, a random count of acoustic ones,
    one count for the whole step), k-means-initialises levels whose ``initialized`` is 0, then EMA-updates
    and restarts dead codes of every level used. Eval mode uses all ``num_quantizers`` levels and changes
    nothing. ``generator`` (default: the global RNG) drives the dropout draw, k-means seeds and restart
    picks; only rank 0's draws are used (broadcast), so ranks need not share a seed.
    """
    config = config or VQTrainingConfig()
    if not quantizer.num_semantic <= num_quantizers <= quantizer.num_quantizers:
        raise ValueError(
            f"num_quantizers must be between {quantizer.num_semantic} (the semantic levels) and "
            f"{quantizer.num_quantizers}, got {num_quantizers}"
        )
    training = quantizer.training
    if training:
        num_quantizers = draw_num_quantizers(
            quantizer.num_semantic, num_quantizers, config.dropout_prob, generator, x.device
        )
    chains = [(quantizer.semantic_residual_vector_quantizer, quantizer.num_semantic)]
    if num_quantizers > quantizer.num_semantic:
        chains.append((quantizer.acoustic_residual_vector_quantizer, num_quantizers - quantizer.num_semantic))
    quantized, codes, losses, counts, parts = 0, [], [], [], []
    for chain, levels in chains:
        out = _quantize_chain(chain, x, levels, config, generator, training)
        parts.append(out[0])
        quantized = quantized + out[0]
        codes.append(out[1])
        losses += out[2]
        counts += out[3]
    if training and len(chains) == 1:
        # Dropout to the semantic levels leaves the acoustic projections out of the graph; zero-weight them
        # in so DDP sees every parameter used (no find_unused_parameters needed).
        quantized = quantized + 0.0 * sum(p.sum() for p in quantizer.acoustic_residual_vector_quantizer.parameters())
    losses = torch.stack(losses)
    counts = torch.stack(counts)
    stats = {"perplexity": perplexity(counts), "usage": (counts > 0).float().mean(dim=1), "commitment": losses.detach()}
    return QuantizerOutput(quantized, torch.cat(codes, dim=1), losses.mean(), stats, parts[0])


def bypass(quantizer: SplitResidualQuantizer, x: torch.Tensor) -> QuantizerOutput:
    """x (B, hidden, T) → the continuous latent through each chain's projections, with no codebook in the way:
    what ``quantize`` returns when every level's quantization error is zero. Codebooks are neither read nor
    changed; ``codes`` has no levels, the commitment loss is 0.

    Why: a fresh encoder moves faster than EMA codebooks follow, so quantizing from the first step sends the
    decoder a few collapsed codes and nothing trains (the mel loss stays flat). Decoding the continuous latent
    for a warm-up lets encoder and decoder agree on a latent first; the codebooks then k-means-initialise on it.
    """
    parts = []
    for chain in (quantizer.semantic_residual_vector_quantizer, quantizer.acoustic_residual_vector_quantizer):
        z = chain.input_proj(x) if chain.input_proj is not None else x
        parts.append(chain.output_proj(z) if chain.output_proj is not None else z)
    zero = x.new_zeros(1)
    stats = {"perplexity": zero, "usage": zero, "commitment": zero}
    codes = torch.zeros(x.shape[0], 0, x.shape[-1], dtype=torch.long, device=x.device)
    return QuantizerOutput(parts[0] + parts[1], codes, x.new_zeros(()), stats, parts[0])


def draw_num_quantizers(
    num_semantic: int, num_quantizers: int, prob: float, generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> int:
    """Levels to use this step: ``num_quantizers``, or with probability ``prob`` a uniform draw from
    [num_semantic, num_quantizers]; rank 0's draw is broadcast since every rank must run the same levels
    (their EMA all-reduces have to pair up)."""
    rng_device = generator.device if generator is not None else "cpu"
    drop = torch.rand((), generator=generator, device=rng_device) < prob
    count = torch.randint(num_semantic, num_quantizers + 1, (), generator=generator, device=rng_device)
    chosen = torch.where(drop, count, torch.tensor(num_quantizers, device=rng_device)).to(device).view(1)
    _broadcast_(chosen)
    return int(chosen)


def _quantize_chain(
    chain: ResidualQuantizer, x: torch.Tensor, num_levels: int, config: VQTrainingConfig,
    generator: torch.Generator | None, training: bool,
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """One residual chain: (quantized in model width, codes (B, L, T), per-level losses, per-level counts).

    The straight-through estimator is applied once to the chain's sum, not per level: per-level STE over
    a residual chain hands the input L copies of the gradient (every level's residual depends on it
    with unit Jacobian), scaling the encoder's gradient by the number of levels used.
    """
    z = chain.input_proj(x) if chain.input_proj is not None else x
    batch, dim, frames = z.shape
    latent = z.transpose(1, 2).reshape(-1, dim)
    residual, total = latent, torch.zeros_like(latent, dtype=torch.float32)
    codes, losses, counts = [], [], []
    for level in chain.layers[:num_levels]:
        book = level.codebook
        if training and not bool(book.initialized.item()):
            kmeans_init_(book, residual.detach(), config.kmeans_iters, generator)
        codewords = book.codewords
        indices = book.encode(residual, codewords)
        chosen = F.embedding(indices, codewords)
        losses.append((residual.float() - chosen).pow(2).mean())
        if training:
            with torch.no_grad():
                counts.append(ema_update_(book, residual.detach(), indices, config.decay))
                restart_dead_codes_(book, residual.detach(), config.dead_code_ratio, generator)
        else:
            counts.append(torch.bincount(indices, minlength=len(codewords)).float())
        residual = residual - chosen
        total = total + chosen
        codes.append(indices.view(batch, frames))
    straight = latent + (total.to(latent.dtype) - latent).detach()
    quantized = straight.view(batch, frames, dim).transpose(1, 2)
    if chain.output_proj is not None:
        quantized = chain.output_proj(quantized)
    return quantized, torch.stack(codes, dim=1), losses, counts


def perplexity(counts: torch.Tensor) -> torch.Tensor:
    """counts (..., K) → exp(entropy) of the code distribution: 1 when one code takes everything, K when
    all are used equally."""
    p = counts / counts.sum(dim=-1, keepdim=True).clamp(min=1)
    return torch.exp(-torch.special.xlogy(p, p).sum(dim=-1))


@torch.no_grad()
def ema_update_(book: EuclideanCodebook, vectors: torch.Tensor, indices: torch.Tensor, decay: float) -> torch.Tensor:
    """Move the statistics towards this step's assignments (all ranks summed), return those counts (K,).

    ``cluster_usage ← decay·usage + (1−decay)·counts`` and ``embed_sum ← decay·embed_sum + (1−decay)·sums``,
    then Laplace smoothing ``usage ← (usage + eps) / (n + K·eps) · n`` (n = total usage) keeps every usage
    positive with the total unchanged, so the codeword ratio never divides by ~0.
    """
    size, dim = book.embed_sum.shape
    local = torch.zeros(size, dim + 1, device=book.embed_sum.device)
    local[:, 0] = torch.bincount(indices, minlength=size).float()
    local[:, 1:].index_add_(0, indices, vectors.float())
    _all_reduce_(local)
    counts, sums = local[:, 0], local[:, 1:]
    book.cluster_usage.lerp_(counts, 1.0 - decay)
    book.embed_sum.lerp_(sums, 1.0 - decay)
    total = book.cluster_usage.sum()
    book.cluster_usage.copy_((book.cluster_usage + book.eps) / (total + size * book.eps) * total)
    return counts


@torch.no_grad()
def kmeans_init_(
    book: EuclideanCodebook, vectors: torch.Tensor, iters: int, generator: torch.Generator | None = None
) -> None:
    """Lloyd's k-means over all ranks' vectors, seeded with rank 0's random picks; the centroids become
    the codewords with their final cluster sizes as usage, and ``initialized`` becomes 1."""
    size = book.embed_sum.shape[0]
    centroids = vectors[_pick(len(vectors), size, generator, vectors.device)].float()
    _broadcast_(centroids)
    counts = torch.ones(size, device=centroids.device)
    for _ in range(iters):
        indices = book.encode(vectors, centroids)
        stats = torch.zeros(size, centroids.shape[1] + 1, device=centroids.device)
        stats[:, 0] = torch.bincount(indices, minlength=size).float()
        stats[:, 1:].index_add_(0, indices, vectors.float())
        _all_reduce_(stats)
        counts = stats[:, 0]
        centroids = torch.where(counts[:, None] > 0, stats[:, 1:] / counts.clamp(min=1)[:, None], centroids)
    usage = counts.clamp(min=book.eps)
    book.cluster_usage.copy_(usage)
    book.embed_sum.copy_(centroids * usage[:, None])
    book.initialized.fill_(1)


@torch.no_grad()
def restart_dead_codes_(
    book: EuclideanCodebook, vectors: torch.Tensor, ratio: float, generator: torch.Generator | None = None
) -> int:
    """Codes whose usage is below ``ratio`` × the uniform share (total usage / K) jump to distinct random vectors
    of rank 0's batch, the least used first and at most one per vector: more would be duplicates of which only
    the first can ever win a vector (the rest wait for later batches). With a small batch and a large codebook,
    restarting every dead code at once filled the codebook with such duplicates and the codes collapsed onto a
    handful (the demo codec: 2-12 distinct codes per group after 60 steps, 6-150 with this rule).
    Restarted codes get the uniform share as usage, like an average code: one that then gets no vectors is
    declared dead again after about log(ratio) / log(decay) steps (≈ 230 at the defaults), not at once. Returns
    how many were restarted (the same on every rank: usage is identical and the batch size is rank 0's)."""
    usage = book.cluster_usage
    share = usage.sum() / len(usage)
    dead = torch.nonzero(usage < ratio * share).flatten()
    population = torch.tensor([len(vectors)], device=usage.device)
    _broadcast_(population)
    count = min(len(dead), int(population))
    if count == 0:
        return 0
    dead = dead[usage[dead].argsort(stable=True)[:count]]
    fresh = vectors[_pick(len(vectors), count, generator, vectors.device)].float()
    _broadcast_(fresh)
    book.cluster_usage[dead] = share
    book.embed_sum[dead] = fresh * share
    return count


def reset_codebooks_(quantizer: SplitResidualQuantizer) -> None:
    """Mark every level uninitialised (unit usage, zero sums), so training from scratch k-means-initialises
    each one on the first batch that reaches it. A fresh encoder's buffers say ``initialized = 1`` with
    zero codewords (the released checkpoints' layout), so call this before training one from scratch."""
    for chain in (quantizer.semantic_residual_vector_quantizer, quantizer.acoustic_residual_vector_quantizer):
        for level in chain.layers:
            level.codebook.initialized.zero_()
            level.codebook.cluster_usage.fill_(1.0)
            level.codebook.embed_sum.zero_()


def decoder_quantizer_state_dict(quantizer: SplitResidualQuantizer, num_quantizers: int) -> dict[str, torch.Tensor]:
    """The decoder's dequantizer (``quantizer.SplitResidualVectorQuantizer`` with ``num_quantizers`` levels)
    as a state dict built from the encoder's: the same codebook statistics under the decoder's names
    (``embed_sum`` → ``embedding_sum``) and the same projections, so ``decoder.quantizer.decode(codes)``
    equals the encoder-side quantized latent. Export writes this after training the encoder."""
    chains = {"rvq_first": (quantizer.semantic_residual_vector_quantizer, quantizer.num_semantic),
              "rvq_rest": (quantizer.acoustic_residual_vector_quantizer, num_quantizers - quantizer.num_semantic)}
    state = {}
    for name, (chain, levels) in chains.items():
        for i, level in enumerate(chain.layers[:levels]):
            state[f"{name}.vq.layers.{i}._codebook.cluster_usage"] = level.codebook.cluster_usage.detach().clone()
            state[f"{name}.vq.layers.{i}._codebook.embedding_sum"] = level.codebook.embed_sum.detach().clone()
        dim = chain.layers[0].codebook.embed_sum.shape[1]
        for proj in ("input_proj", "output_proj"):
            conv = getattr(chain, proj)
            identity = torch.eye(dim, device=chain.layers[0].codebook.embed_sum.device)[..., None]
            state[f"{name}.{proj}.weight"] = conv.weight.detach().clone() if conv is not None else identity
    return state


def _pick(population: int, count: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """``count`` random row indices: distinct when the population allows, with repeats otherwise."""
    rng_device = generator.device if generator is not None else "cpu"
    if population >= count:
        picks = torch.randperm(population, generator=generator, device=rng_device)[:count]
    else:
        picks = torch.randint(population, (count,), generator=generator, device=rng_device)
    return picks.to(device)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce_(tensor: torch.Tensor) -> None:
    if _distributed():
        dist.all_reduce(tensor)


def _broadcast_(tensor: torch.Tensor) -> None:
    if _distributed():
        dist.broadcast(tensor, src=0)
