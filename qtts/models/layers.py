"""Building blocks shared by every qtts model, written once: norms, rotary attention, MLPs and causal convs.

Submodule names are those of the released checkpoints (``self_attn.q_proj``, ``mlp.gate_proj``,
``...conv.weight``), so a model assembled from these blocks loads the official weights as they are.

Causal convs (``CausalConv1d``, ``CausalConvTranspose1d``) are ``StreamingModule``s (``qtts.models.streaming``):
while a ``Stream`` over the model is active their ``forward`` takes consecutive chunks, the left context the next
chunk needs kept in that stream's ``ConvState`` / ``ConvTransposeState``, so chunked output equals the output on
the whole sequence. ``KVStreamState`` is the same for a causal transformer's KV caches (fixed buffers of the
window's reach, ``SlidingKVCache``, for sliding-window attention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from qtts.models.streaming import Rows, StreamingModule, StreamState, row_index


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and keys) with faster CPU paths for the few rows of a decoding step.

    Decoding multiplies 1–32 rows (a batch's single positions) by large weights, which is memory-bound. On CPU,
    MKL's float32 GEMV/GEMM leave bandwidth unused there. Measured on a 2-core AMD EPYC at the released 0.6B
    shapes, per frame (talker step + 15 code-predictor passes): one row 888 ms → 577 ms with oneDNN's linear
    (no autograd), four rows 1930 ms → 879 ms as ``weight @ x.T``. Results equal up to summation order.
    """

    SKINNY_ROWS = 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // max(x.shape[-1], 1)
        if x.device.type != "cpu" or x.dtype != torch.float32 or not 1 <= rows <= self.SKINNY_ROWS:
            return super().forward(x)
        if rows == 1:
            if _ONEDNN_LINEAR and not (torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)):
                return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")
            return super().forward(x)
        y = torch.mm(self.weight, x.reshape(rows, x.shape[-1]).t()).t()
        y = y.contiguous() if self.bias is None else y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)


_ONEDNN_LINEAR = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


class RMSNorm(nn.Module):
    """Root-mean-square norm computed in float32 (low-precision inputs lose too much in the mean of squares)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


class RotaryEmbedding(nn.Module):
    """cos/sin tables of rotate-half RoPE for given positions (float32; ``inv_freq`` is not saved).

    ``inv_freq`` is computed on the CPU and recomputed after every ``.to()`` / ``.to_empty()``: it stays
    float32 through ``model.to(torch.bfloat16)`` (rounded frequencies would shift the angles of far positions;
    transformers keeps them in float32 too), and a model built on the ``meta`` device keeps real tables
    (they are never saved, so ``load_state_dict(assign=True)`` would not fill them).
    """

    def __init__(self, head_dim: int, theta: float = 10_000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary head_dim must be even, got {head_dim}")
        self.head_dim, self.theta = head_dim, theta
        device = torch.get_default_device()
        device = torch.device("cpu") if device.type == "meta" else device
        self.register_buffer("inv_freq", self._frequencies().to(device), persistent=False)

    def _frequencies(self) -> torch.Tensor:
        exponents = torch.arange(0, self.head_dim, 2, dtype=torch.int64, device="cpu").float() / self.head_dim
        return 1.0 / self.theta**exponents

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        self.inv_freq = self._frequencies().to(self.inv_freq.device)
        return self

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """positions (T,) or (B, T) → cos, sin of shape (..., T, head_dim)."""
        freqs = positions[..., None].float() * self.inv_freq.float()
        angles = torch.cat((freqs, freqs), dim=-1)
        return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, H, T, D) by position; cos/sin are (T, D) or per batch item (B, T, D)."""
    if cos.dim() == 3:
        cos, sin = cos[:, None], sin[:, None]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return x * cos + rotate_half(x) * sin


class KVCache:
    """Rotated keys and values of past positions for one attention layer.

    ``length`` counts every position seen (the next position id); only the keys a sliding window can
    still reach are kept, so streaming memory stays bounded.
    """

    def __init__(self):
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None
        self.length = 0

    def update(self, keys: torch.Tensor, values: torch.Tensor, keep: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Append new (B, H, T, D) keys/values; return all cached + new ones, keep the last ``keep``."""
        self.length += keys.shape[2]
        if self.keys is not None:
            keys, values = torch.cat((self.keys, keys), dim=2), torch.cat((self.values, values), dim=2)
        start = 0 if keep is None else max(keys.shape[2] - keep, 0)
        self.keys, self.values = keys[:, :, start:], values[:, :, start:]
        return keys, values

    def clear(self) -> None:
        """Start a new sequence."""
        self.keys = self.values = None
        self.length = 0


class SlidingKVCache:
    """Rotated keys and values a sliding window of ``window`` positions can still reach, in fixed buffers.

    ``keys`` / ``values`` (B, kv_heads, window − 1, head_dim) are allocated once and updated in place, so their
    addresses stay fixed for a whole stream (what a CUDA graph replaying a chunk needs). ``positions``
    (window − 1,) holds each slot's absolute position; a slot never written holds ``−window``, a position the
    window mask excludes from every query (positions ≥ 0), so no separate validity mask is needed. ``length``
    counts every position seen (the next position id), as ``KVCache.length`` does.
    """

    def __init__(self, batch: int, kv_heads: int, window: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device | str):
        self.window = window
        self.keys = torch.zeros(batch, kv_heads, window - 1, head_dim, dtype=dtype, device=device)
        self.values = torch.zeros_like(self.keys)
        self.positions = torch.full((window - 1,), -window, dtype=torch.long, device=device)
        self.length = 0

    def update(
        self, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Attend-ready keys/values: the buffers followed by the new (B, H, T, D) ones, and their positions
        (window − 1 + T,); the last window − 1 of them are then copied into the buffers."""
        new = torch.arange(self.length, self.length + keys.shape[2], device=self.positions.device)
        keys, values = torch.cat((self.keys, keys), dim=2), torch.cat((self.values, values), dim=2)
        positions = torch.cat((self.positions, new))
        kept = keys.shape[2] - self.keys.shape[2]  # the first key still reachable by the next query
        self.keys.copy_(keys[:, :, kept:])
        self.values.copy_(values[:, :, kept:])
        self.positions.copy_(positions[kept:])
        self.length += new.numel()
        return keys, values, positions

    def clear(self) -> None:
        """Start a new sequence (in place: the buffers stay put)."""
        self.keys.zero_()
        self.values.zero_()
        self.positions.fill_(-self.window)
        self.length = 0


class StaticKVCache:
    """Rotated keys and values of one attention layer in buffers of a fixed ``capacity``, for CUDA graphs.

    A graph replays kernels on fixed addresses and shapes, so the cache cannot grow: every step writes its keys at
    the slots ``length …`` (``length`` is a device tensor, advanced in place, so one captured step serves every
    position) and attends over the whole buffer; causality hides the slots not written yet (stale ones from an
    earlier sequence included). Slots count every position seen, left padding included, as ``KVCache.length`` does.
    """

    def __init__(self, batch: int, kv_heads: int, capacity: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device | str):
        self.keys = torch.zeros(batch, kv_heads, capacity, head_dim, dtype=dtype, device=device)
        self.values = torch.zeros_like(self.keys)
        self.length = torch.zeros((), dtype=torch.long, device=device)
        self.slots = torch.arange(capacity, device=device)

    @property
    def capacity(self) -> int:
        return self.keys.shape[2]

    def update(
        self, keys: torch.Tensor, values: torch.Tensor, slots: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write new (B, H, T, D) keys/values at ``slots`` (T,) (``length + arange(T)``); return the whole buffers."""
        self.keys.index_copy_(2, slots, keys)
        self.values.index_copy_(2, slots, values)
        self.length += keys.shape[2]
        return self.keys, self.values

    def reset(self) -> None:
        """Start a new sequence (in place: a captured graph keeps working on the same tensors)."""
        self.length.zero_()

    def load(self, other: StaticKVCache) -> None:
        """Continue ``other``'s sequence in this (at least as large) cache."""
        self.keys[:, :, : other.capacity].copy_(other.keys)
        self.values[:, :, : other.capacity].copy_(other.values)
        self.length.copy_(other.length)


@dataclass
class KVStreamState(StreamState):
    """A causal transformer's stream: one KV cache per layer, and where each row's current sequence began.

    With a sliding window each layer keeps a ``SlidingKVCache``: fixed buffers of the last ``window − 1`` keys and
    values and their absolute positions, allocated once (``create``) and updated in place after each chunk, so
    their addresses never change, restarts included. Without a window a layer keeps a ``KVCache`` that grows with
    the whole past. Every layer has the same window (the mask of restarted rows is shared).

    ``reset(rows)`` restarts rows without touching the others: ``starts[row]`` becomes the current position, the
    row's later positions count from there (RoPE is applied at ``position − start``, as in a fresh stream) and its
    queries no longer see the keys before it (``mask``). Until a row is restarted no row mask is built.
    ``reset()`` (every row) clears the caches in place and starts counting positions from 0 again.
    """

    caches: list[KVCache | SlidingKVCache]
    starts: torch.Tensor  # (B,) long: absolute position where each row's current sequence starts
    restarted: bool = False  # some row has a start > 0

    @classmethod
    def create(cls, attentions: list[Attention], batch_size: int, device: torch.device,
               dtype: torch.dtype) -> KVStreamState:
        """Caches for the layers whose attention modules are ``attentions``."""
        if len({a.sliding_window for a in attentions}) > 1:
            raise ValueError("every layer of a KVStreamState must have the same sliding window")
        caches = [KVCache() if a.sliding_window is None else
                  SlidingKVCache(batch_size, a.num_kv_heads, a.sliding_window, a.head_dim, dtype, device)
                  for a in attentions]
        return cls(caches, torch.zeros(batch_size, dtype=torch.long, device=device))

    @property
    def length(self) -> int:
        """Positions seen by the stream (the absolute position of the next one)."""
        return self.caches[0].length

    def positions(self, length: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Rotary positions of the next ``length`` positions, (T,) or per row (B, T), and the key mask (B, 1, 1,
        cached + T) for ``Attention`` (None: every cached key belongs to every row's sequence)."""
        absolute = torch.arange(self.length, self.length + length, device=self.starts.device)
        if not self.restarted:
            return absolute, None
        cache = self.caches[0]
        if isinstance(cache, SlidingKVCache):
            keys = torch.cat((cache.positions, absolute))
        else:
            kept = 0 if cache.keys is None else cache.keys.shape[2]
            keys = torch.arange(self.length - kept, self.length + length, device=self.starts.device)
        return absolute[None] - self.starts[:, None], (keys[None] >= self.starts[:, None])[:, None, None]

    def reset(self, rows: Rows) -> None:
        index = row_index(rows, self.starts.device)
        if index is None:
            for cache in self.caches:
                cache.clear()
            self.starts.zero_()
            self.restarted = False
        elif index.numel():
            self.starts[index] = self.length
            self.restarted = self.restarted or self.length > 0


def causal_mask(query_positions: torch.Tensor, key_positions: torch.Tensor, window: int | None) -> torch.Tensor:
    """(Tq, Tk) bool, True where a query may attend: keys at or before it and, with a window,
    fewer than ``window`` positions back (the query itself counts)."""
    distance = query_positions[:, None] - key_positions[None, :]
    allowed = distance >= 0
    if window is not None:
        allowed &= distance < window
    return allowed


def attention_mask(
    key_padding: torch.Tensor | None = None, document_ids: torch.Tensor | None = None, queries: int | None = None
) -> torch.Tensor | None:
    """Bool mask (B, 1, T, keys) for ``Attention(mask=…)``, True where a query may attend (causality is
    added by the attention itself).

    ``key_padding`` (B, keys): 1/True for real positions, 0 for padding (left-padded batches; with a KV
    cache it covers the cached positions too). ``document_ids`` (B, keys): packed sequences; a query only
    sees keys of its own document. Queries are the last ``queries`` keys (default: all).
    """
    if key_padding is None and document_ids is None:
        return None
    keys = (key_padding if key_padding is not None else document_ids).shape[-1]
    queries = keys if queries is None else queries
    mask = None
    if key_padding is not None:
        mask = key_padding.bool()[:, None, None, :]
    if document_ids is not None:
        same = document_ids[:, keys - queries:, None] == document_ids[:, None, :]
        mask = same[:, None] if mask is None else mask & same[:, None]
    return mask


def document_positions(document_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) document ids of packed rows → positions that restart at 0 where the id changes."""
    index = torch.arange(document_ids.shape[-1], device=document_ids.device).expand_as(document_ids)
    starts = torch.ones_like(document_ids, dtype=torch.bool)
    starts[:, 1:] = document_ids[:, 1:] != document_ids[:, :-1]
    return index - torch.where(starts, index, torch.zeros_like(index)).cummax(dim=-1).values


class Attention(nn.Module):
    """Causal multi-head attention with RoPE, grouped KV heads, optional QK-norm and sliding window.

    ``forward(x, cos, sin, cache, mask)``: with a ``KVCache`` the call continues the sequence the cache has
    seen (cos/sin must then be for positions ``cache.length …``); a ``StaticKVCache`` does the same on fixed
    shapes (its whole buffer is attended, under a causal mask over its slots), and so does a ``SlidingKVCache``
    (its buffers then the new keys, under the window mask over their positions). ``mask`` (bool, broadcastable to
    (B, 1, T, keys), True = may attend; see ``attention_mask``) further restricts the causal mask, for
    padded batches and packed sequences. A query always sees its own key, so a fully padded row stays
    finite (a NaN there would leak into valid rows through 0 · NaN in later layers).
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        bias: bool = False,
        sliding_window: int | None = None,
        qk_norm: bool = False,
        norm_eps: float = 1e-6,
        dropout: float = 0.0,
    ):
        super().__init__()
        if num_heads % num_kv_heads:
            raise ValueError(f"num_heads {num_heads} must be a multiple of num_kv_heads {num_kv_heads}")
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.sliding_window = sliding_window
        self.dropout = dropout
        self.q_proj = Linear(hidden_size, num_heads * head_dim, bias=bias)
        self.k_proj = Linear(hidden_size, num_kv_heads * head_dim, bias=bias)
        self.v_proj = Linear(hidden_size, num_kv_heads * head_dim, bias=bias)
        self.o_proj = Linear(num_heads * head_dim, hidden_size, bias=bias)
        if qk_norm:  # Qwen3: RMSNorm over each head's vector, before RoPE
            self.q_norm = RMSNorm(head_dim, norm_eps)
            self.k_norm = RMSNorm(head_dim, norm_eps)
        else:
            self.q_norm = self.k_norm = None

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
        cache: KVCache | StaticKVCache | SlidingKVCache | None = None, mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        batch, length, _ = x.shape
        q = self.q_proj(x).view(batch, length, self.num_heads, self.head_dim)
        k = self.k_proj(x).view(batch, length, self.num_kv_heads, self.head_dim)
        v = self.v_proj(x).view(batch, length, self.num_kv_heads, self.head_dim)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)

        start, key_positions = 0, None  # key_positions: set by the fixed-buffer caches
        if isinstance(cache, StaticKVCache):  # positions are device tensors: a captured step replays anywhere
            query_positions = cache.length + torch.arange(length, device=x.device)
            k, v = cache.update(k, v, query_positions)
            key_positions = cache.slots
        elif isinstance(cache, SlidingKVCache):  # slots not written yet sit out of the window's reach
            query_positions = torch.arange(cache.length, cache.length + length, device=x.device)
            k, v, key_positions = cache.update(k, v)
        elif cache is not None:
            start = cache.length
            keep = None if self.sliding_window is None else self.sliding_window - 1
            k, v = cache.update(k, v, keep)
        allowed, causal = None, True  # plain causal attention: SDPA's is_causal path (flash kernels on GPU)
        if length == 1 and mask is None and key_positions is None:
            causal = False  # one new query sees every cached key (the cache keeps only what the window reaches)
        elif (key_positions is not None or mask is not None or self.sliding_window is not None
              or k.shape[2] != length):
            if key_positions is None:
                query_positions = torch.arange(start, start + length, device=x.device)
                key_positions = torch.arange(start + length - k.shape[2], start + length, device=x.device)
            allowed = causal_mask(query_positions, key_positions, self.sliding_window)
            if mask is not None:
                if mask.shape[-1] > k.shape[2]:  # a windowed KVCache dropped the keys out of reach: so does the mask
                    mask = mask[..., mask.shape[-1] - k.shape[2]:]
                allowed = allowed & (mask | (query_positions[:, None] == key_positions[None, :]))

        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal and allowed is None, enable_gqa=self.num_heads != self.num_kv_heads,
        )
        return self.o_proj(out.transpose(1, 2).reshape(batch, length, -1))


class SwiGLU(nn.Module):
    """Gated MLP: ``down(silu(gate(x)) * up(x))``, no biases."""

    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.gate_proj = Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LayerScale(nn.Module):
    """Per-channel learnt scale on a residual branch, initialised small so deep stacks start near identity
    (Touvron et al. 2021)."""

    def __init__(self, dim: int, initial_scale: float):
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim,), float(initial_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + ls(attn(norm(x)))`` then ``x + ls(mlp(norm(x)))``; LayerScale only when
    ``layer_scale`` is given (the codec has it, the Qwen3 talker does not). ``mask``: see ``Attention``."""

    def __init__(
        self,
        hidden_size: int,
        intermediate_size: int,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        norm_eps: float,
        bias: bool = False,
        sliding_window: int | None = None,
        qk_norm: bool = False,
        layer_scale: float | None = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.input_layernorm = RMSNorm(hidden_size, norm_eps)
        self.self_attn = Attention(
            hidden_size, num_heads, num_kv_heads, head_dim, bias, sliding_window, qk_norm, norm_eps, dropout
        )
        self.post_attention_layernorm = RMSNorm(hidden_size, norm_eps)
        self.mlp = SwiGLU(hidden_size, intermediate_size)
        if layer_scale is not None:
            self.self_attn_layer_scale = LayerScale(hidden_size, layer_scale)
            self.mlp_layer_scale = LayerScale(hidden_size, layer_scale)
        else:
            self.self_attn_layer_scale = self.mlp_layer_scale = None

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
        cache: KVCache | StaticKVCache | SlidingKVCache | None = None, mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        h = self.self_attn(self.input_layernorm(x), cos, sin, cache, mask)
        x = x + (h if self.self_attn_layer_scale is None else self.self_attn_layer_scale(h))
        h = self.mlp(self.post_attention_layernorm(x))
        return x + (h if self.mlp_layer_scale is None else self.mlp_layer_scale(h))


class SnakeBeta(nn.Module):
    """Periodic activation ``x + sin²(x·e^α) / (e^β + 1e-9)`` per channel of (B, C, T); α and β are stored
    in log space (init 0 → unit frequency and magnitude), which keeps them positive while training."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frequency = self.alpha.exp()[None, :, None]
        magnitude = self.beta.exp()[None, :, None]
        return x + (1.0 / (magnitude + 1e-9)) * torch.sin(x * frequency).pow(2)


@dataclass
class ConvState(StreamState):
    """A ``CausalConv1d``'s stream: the inputs no output frame has consumed yet, the first ``filled`` samples of
    ``pending`` (B, C, left_padding + stride − 1), a buffer allocated once. With stride 1 that is always the last
    ``left_padding`` inputs (zeros at the start); a strided conv also keeps the up to ``stride − 1`` inputs of a
    frame not complete yet. ``fresh`` (B,) marks rows whose left pad, for ``pad_mode="replicate"``, is still to be
    filled with their first sample."""

    pending: torch.Tensor
    filled: int
    left_padding: int
    fresh: torch.Tensor | None = None  # replicate padding only
    awaiting_edge: bool = False  # some row of ``fresh`` is True (a host flag: no sync per chunk)

    def why_not_restart_rows(self) -> str | None:
        if self.filled == self.left_padding:
            return None
        return (f"it holds {self.filled - self.left_padding} inputs of an incomplete frame; rows can only restart "
                "at a frame boundary (after a whole number of hops), or all together")

    def reset(self, rows: Rows) -> None:
        index = row_index(rows, self.pending.device)
        if index is None:
            self.filled = self.left_padding
        elif self.why_not_restart_rows() is not None:
            raise ValueError(self.why_not_restart_rows())
        index = slice(None) if index is None else index
        self.pending[index] = 0
        if self.fresh is not None:
            self.fresh[index] = True
            self.awaiting_edge = bool(self.fresh.any())


@dataclass
class ConvTransposeState(StreamState):
    """A ``CausalConvTranspose1d``'s stream: its last ``context`` inputs (zeros at the start), whose overhang
    completes the next chunk's first outputs; a buffer (B, C, context) allocated once."""

    previous: torch.Tensor

    def reset(self, rows: Rows) -> None:
        index = row_index(rows, self.previous.device)
        self.previous[slice(None) if index is None else index] = 0


class CausalConv1d(StreamingModule):
    """Conv1d that sees only the past: left pad ``(k−1)·d + 1 − stride``, right pad just enough to
    complete the last frame (Mimi/EnCodec rule), so T inputs give ceil(T / stride) outputs.

    ``pad_mode="replicate"`` repeats the edge samples instead of padding zeros (Mimi's downsample conv).
    Streaming keeps the not yet consumed inputs (initially the left pad) in a ``ConvState`` and emits only
    complete frames; with stride 1 the chunks together equal the whole-sequence output, with a larger stride
    once the last chunk is passed as such (``stream(x, last=True)``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, groups: int = 1, bias: bool = True, pad_mode: str = "constant"):
        super().__init__()
        if pad_mode not in ("constant", "replicate"):
            raise ValueError(f"pad_mode must be 'constant' or 'replicate', got {pad_mode!r}")
        self.pad_mode = pad_mode
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation,
                              groups=groups, bias=bias)
        self.stride = stride
        self.extent = (kernel_size - 1) * dilation + 1  # samples one output looks at
        if stride > self.extent:
            raise ValueError(f"stride {stride} must not exceed the kernel extent {self.extent} "
                             "(inputs would be skipped)")
        self.left_padding = self.extent - stride

    def right_padding(self, length: int) -> int:
        frames = math.ceil((length + self.left_padding - self.extent) / self.stride) + 1
        return (frames - 1) * self.stride + self.extent - self.left_padding - length

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> ConvState:
        pending = torch.zeros(batch_size, self.conv.in_channels, self.left_padding + self.stride - 1, device=device,
                              dtype=dtype)
        if self.pad_mode == "constant":
            return ConvState(pending, self.left_padding, self.left_padding)
        fresh = torch.ones(batch_size, dtype=torch.bool, device=device)
        return ConvState(pending, self.left_padding, self.left_padding, fresh, awaiting_edge=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = self.stream_state(x)
        if state is not None:
            return self._forward_chunk(x, state)
        return self.conv(F.pad(x, (self.left_padding, self.right_padding(x.shape[-1])), mode=self.pad_mode))

    def _forward_chunk(self, x: torch.Tensor, state: ConvState) -> torch.Tensor:
        if state.awaiting_edge:
            if x.shape[-1] == 0:  # the edge sample to repeat has not arrived yet
                return x.new_zeros(x.shape[0], self.conv.out_channels, 0)
            pad = state.pending[..., : self.left_padding]
            pad.copy_(torch.where(state.fresh[:, None, None], x[..., :1].expand_as(pad), pad))
            state.fresh.zero_()
            state.awaiting_edge = False
        x = torch.cat((state.pending[..., : state.filled], x), dim=-1)
        frames = max((x.shape[-1] - self.extent) // self.stride + 1, 0)
        if self.last_chunk and x.shape[-1] - frames * self.stride > self.left_padding:
            # inputs remain that no complete frame covers: pad them into one more frame, as the end is padded
            x = F.pad(x, (0, frames * self.stride + self.extent - x.shape[-1]), mode=self.pad_mode)
            frames += 1
        state.filled = x.shape[-1] - frames * self.stride
        state.pending[..., : state.filled].copy_(x[..., frames * self.stride:])  # in place: the buffer stays put
        if frames == 0:  # not enough input yet for one output frame
            return x.new_zeros(x.shape[0], self.conv.out_channels, 0)
        return self.conv(x[..., : (frames - 1) * self.stride + self.extent])


class CausalConvTranspose1d(StreamingModule):
    """ConvTranspose1d with the ``k − stride`` overhanging samples cut on the right only, so T inputs give
    exactly T·stride outputs and none depends on a later input.

    Streaming prepends the last ``ceil((k − stride) / stride)`` inputs of the previous chunk (zeros at the
    start; kept in a ``ConvTransposeState``), whose overhang completes this chunk's first outputs, and drops the
    outputs they own.
    """

    SMALL_INPUT = 16  # batch × frames up to which the CPU overlap-add path is used (see _transposed_conv)

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, bias: bool = True):
        super().__init__()
        if kernel_size < stride:
            raise ValueError(f"kernel_size {kernel_size} must be >= stride {stride}")
        self.conv = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride=stride, bias=bias)
        self.stride = stride
        self.trim = kernel_size - stride
        self.context = -(-self.trim // stride)

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> ConvTransposeState:
        return ConvTransposeState(torch.zeros(batch_size, self.conv.in_channels, self.context, device=device,
                                              dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length, state = x.shape[-1], self.stream_state(x)
        if state is None:
            return self._transposed_conv(x)[..., : length * self.stride]
        x = torch.cat((state.previous, x), dim=-1)
        state.previous.copy_(x[..., x.shape[-1] - self.context:])  # in place: the buffer stays put
        skip = self.context * self.stride
        return self._transposed_conv(x)[..., skip: skip + length * self.stride]

    def _transposed_conv(self, x: torch.Tensor) -> torch.Tensor:
        """On CPU, inputs of a few frames (streaming chunks) miss oneDNN and fall to ATen's
        ``slow_conv_transpose``, whose fixed cost dominates (~190 ms for the released 1536→768 layer at two
        frames). There it is computed as one matmul and an overlap-add (``F.fold``): same result, 3–7× faster.
        """
        if x.device.type != "cpu" or x.shape[0] * x.shape[-1] > self.SMALL_INPUT:
            return self.conv(x)
        weight, (_, channels, length) = self.conv.weight, x.shape
        out_channels, kernel = weight.shape[1], weight.shape[2]
        columns = torch.matmul(x.transpose(1, 2), weight.reshape(channels, out_channels * kernel)).transpose(1, 2)
        y = F.fold(columns, output_size=(1, (length - 1) * self.stride + kernel), kernel_size=(1, kernel),
                   stride=(1, self.stride)).squeeze(2)
        return y if self.conv.bias is None else y + self.conv.bias[:, None]
