"""The dual-track talker: a Qwen3 decoder over summed text + codec embeddings that predicts group 0 of the
next frame, and the code predictor (MTP) that predicts groups 1..G-1 of a frame from the talker's hidden state.

Module names equal the released ``talker.*`` keys, so a released state dict loads with ``strict=True``.

Code predictor alignment (as qwen-tts generates, and as training must teach it): for a frame with codes
``c_0 … c_{G-1}`` and the talker hidden state ``h`` (after the final norm) at the position whose logits chose
``c_0``, the predictor reads ``[h, E_0(c_0), E_1(c_1), …, E_{G-2}(c_{G-2})]`` (G positions, positions 0..G-1,
restarting every frame) and ``lm_head[k-1]`` at position ``k`` predicts group ``k`` (k = 1..G-1); position 0
predicts nothing. ``E_0`` is the talker's ``codec_embedding``, ``E_g`` (g ≥ 1) is the predictor's
``codec_embedding[g-1]``, all in the talker width. Training runs this for every frame at once, frames as batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from qtts.models.layers import (
    KVCache,
    Linear,
    RMSNorm,
    RotaryEmbedding,
    StaticKVCache,
    TransformerBlock,
    document_positions,
)
from qtts.models.layers import attention_mask as build_mask  # `attention_mask` is forward's argument
from qtts.models.talker.config import CodePredictorConfig, TalkerConfig


class TalkerOutput(NamedTuple):
    hidden: torch.Tensor  # (B, T, H) after the final norm: what the code predictor reads
    logits: torch.Tensor  # (B, T, vocab_size): group 0 (and special ids) of the next position


class Decoder(nn.Module):
    """Qwen3 decoder stack: pre-norm blocks with QK-norm and GQA, then a final RMSNorm.

    ``gradient_checkpointing`` recomputes each block in the backward pass (training without a cache only).
    """

    def __init__(self, config: TalkerConfig | CodePredictorConfig, windows: list[int | None]):
        super().__init__()
        c = config
        self.layers = nn.ModuleList(
            TransformerBlock(c.hidden_size, c.intermediate_size, c.num_attention_heads, c.num_key_value_heads,
                             c.head_dim, c.rms_norm_eps, bias=c.attention_bias, sliding_window=window,
                             qk_norm=True, dropout=c.attention_dropout)
            for window in windows
        )
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.rotary = RotaryEmbedding(c.head_dim, c.rope_theta)
        self.gradient_checkpointing = False

    def forward(self, x: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None = None,
                cache: list[KVCache] | list[StaticKVCache] | None = None) -> torch.Tensor:
        """x (B, T, hidden), positions (B, T) or (T,) → normed hidden states (B, T, hidden)."""
        cos, sin = self.rotary(positions)
        recompute = self.gradient_checkpointing and self.training and torch.is_grad_enabled() and cache is None
        for i, layer in enumerate(self.layers):
            if recompute:
                x = checkpoint(layer, x, cos, sin, None, mask, use_reentrant=False)
            else:
                x = layer(x, cos, sin, None if cache is None else cache[i], mask)
        return self.norm(x)

    def new_cache(self) -> list[KVCache]:
        return [KVCache() for _ in self.layers]

    def new_static_cache(self, batch: int, capacity: int) -> list[StaticKVCache]:
        """Preallocated caches of ``capacity`` positions, in the weights' dtype and device (for CUDA graphs)."""
        weight = self.norm.weight
        return [StaticKVCache(batch, layer.self_attn.num_kv_heads, capacity, layer.self_attn.head_dim, weight.dtype,
                              weight.device) for layer in self.layers]


class TalkerModel(Decoder):
    """``talker.model``: the backbone plus both input tables (codec 3072 × H, text 151936 × text width)."""

    def __init__(self, config: TalkerConfig):
        window = config.sliding_window if config.use_sliding_window else None
        super().__init__(config, [window] * config.num_hidden_layers)
        self.codec_embedding = nn.Embedding(config.vocab_size, config.hidden_size)
        self.text_embedding = nn.Embedding(config.text_vocab_size, config.text_hidden_size)


class ResizeMLP(nn.Module):
    """``text_projection``: text width → talker width, ``fc2(silu(fc1(x)))`` with biases."""

    def __init__(self, in_size: int, hidden_size: int, out_size: int):
        super().__init__()
        self.linear_fc1 = Linear(in_size, hidden_size)
        self.linear_fc2 = Linear(hidden_size, out_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_fc2(F.silu(self.linear_fc1(x)))


class CodePredictorModel(Decoder):
    """``talker.code_predictor.model``: its blocks plus the embeddings of groups 1..G-2 in the talker width."""

    def __init__(self, config: CodePredictorConfig, talker_hidden: int):
        super().__init__(config, [config.window(i) for i in range(config.num_hidden_layers)])
        self.codec_embedding = nn.ModuleList(
            nn.Embedding(config.vocab_size, talker_hidden) for _ in range(config.num_code_groups - 1)
        )


class CodePredictor(nn.Module):
    """``talker.code_predictor``: groups 1..G-1 of one frame, each conditioned on the groups before it.

    ``small_to_mtp_projection`` (Linear with bias) maps the talker width to the predictor width when they
    differ (1.7B); when equal it is the identity and has no weights, as released.
    """

    def __init__(self, config: CodePredictorConfig, talker_hidden: int):
        super().__init__()
        self.config = config
        self.model = CodePredictorModel(config, talker_hidden)
        self.lm_head = nn.ModuleList(
            Linear(config.hidden_size, config.vocab_size, bias=False) for _ in range(config.num_code_groups - 1)
        )
        if config.hidden_size != talker_hidden:
            self.small_to_mtp_projection = Linear(talker_hidden, config.hidden_size)
        else:
            self.small_to_mtp_projection = nn.Identity()

    def forward(self, inputs_embeds: torch.Tensor, cache: list[KVCache] | list[StaticKVCache] | None = None
                ) -> torch.Tensor:
        """(N, L, talker width) → normed hidden (N, L, predictor width); positions continue the cache (a fresh
        cache, or none, per frame: positions restart at 0 every frame)."""
        start = 0 if cache is None else cache[0].length  # an int, or a device tensor for a static cache
        positions = start + torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device)
        return self.model(self.small_to_mtp_projection(inputs_embeds), positions, cache=cache)

    def frame_logits(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        """Teacher-forced inputs (N, G, talker width) ``[h, E_0(c_0), …, E_{G-2}(c_{G-2})]`` → logits
        (N, G-1, vocab) for groups 1..G-1 (``lm_head[k-1]`` at position k), all frames in one pass."""
        hidden = self(inputs_embeds)
        return torch.stack([head(hidden[:, k + 1]) for k, head in enumerate(self.lm_head)], dim=1)


class Talker(nn.Module):
    """``talker``: backbone, ``text_projection``, ``codec_head`` (group-0 logits) and ``code_predictor``."""

    def __init__(self, config: TalkerConfig):
        super().__init__()
        self.config = config
        self.model = TalkerModel(config)
        self.text_projection = ResizeMLP(config.text_hidden_size, config.text_hidden_size, config.hidden_size)
        self.codec_head = Linear(config.hidden_size, config.vocab_size, bias=False)
        self.code_predictor = CodePredictor(config.code_predictor_config, config.hidden_size)

    @property
    def gradient_checkpointing(self) -> bool:
        return self.model.gradient_checkpointing

    @gradient_checkpointing.setter
    def gradient_checkpointing(self, on: bool) -> None:
        """Recompute every block (talker and code predictor) in the backward pass: memory for compute."""
        self.model.gradient_checkpointing = self.code_predictor.model.gradient_checkpointing = bool(on)

    # ---- embeddings of the two tracks (summed by the caller) ----

    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        """Text-track ids → talker width: ``text_projection(text_embedding(ids))``."""
        return self.text_projection(self.model.text_embedding(ids))

    def embed_codec(self, ids: torch.Tensor) -> torch.Tensor:
        """Codec-track ids (group-0 codes and special ids: pad, bos, eos, think, language, speaker)."""
        return self.model.codec_embedding(ids)

    def embed_frame(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (…, G) of whole frames → the talker input of each frame: ``E_0(c_0) + Σ_g E_g(c_g)``."""
        embedding = self.model.codec_embedding(codes[..., 0])
        for g, table in enumerate(self.code_predictor.model.codec_embedding[: codes.shape[-1] - 1], start=1):
            embedding = embedding + table(codes[..., g])
        return embedding

    # ---- backbone ----

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        document_ids: torch.Tensor | None = None,
        cache: list[KVCache] | list[StaticKVCache] | None = None,
    ) -> TalkerOutput:
        """inputs_embeds (B, T, H) → hidden states and group-0 logits at every position.

        ``attention_mask`` (B, keys): 1 real, 0 padding (left-padded batches); ``document_ids`` (B, keys):
        packed rows, attention stays inside a document. With a ``cache`` both cover cached + new positions (with a
        static cache: its every slot, and ``position_ids`` must be given).
        ``position_ids`` (B, T) default: restarting per document, else ``cumsum(attention_mask) - 1`` (as
        qwen-tts), else consecutive after the cache.
        """
        length = inputs_embeds.shape[1]
        start = 0 if cache is None else cache[0].length
        if position_ids is None:
            if document_ids is not None:
                position_ids = document_positions(document_ids)[:, -length:]
            elif attention_mask is not None:
                position_ids = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 1)
                position_ids = position_ids[:, -length:]
            else:
                position_ids = torch.arange(start, start + length, device=inputs_embeds.device)
        mask = build_mask(attention_mask, document_ids, length)
        hidden = self.model(inputs_embeds, position_ids, mask, cache)
        return TalkerOutput(hidden, self.codec_head(hidden))

    def new_cache(self) -> list[KVCache]:
        """An empty KV cache for incremental decoding with ``forward(…, cache=…)``."""
        return self.model.new_cache()

    def new_static_cache(self, batch: int, capacity: int) -> list[StaticKVCache]:
        """A preallocated KV cache of ``capacity`` positions (``qtts.inference.static_decoding``)."""
        return self.model.new_static_cache(batch, capacity)

    # ---- code predictor ----

    def predictor_inputs(self, hidden: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """hidden (N, H) and codes (N, ≥ G-1) → (N, G, H): ``[h, E_0(c_0), E_1(c_1), …, E_{G-2}(c_{G-2})]``."""
        groups = self.config.num_code_groups
        tables = self.code_predictor.model.codec_embedding
        parts = [hidden.unsqueeze(1), self.model.codec_embedding(codes[:, :1])]
        parts += [tables[g - 1](codes[:, g: g + 1]) for g in range(1, groups - 1)]
        return torch.cat(parts, dim=1)

    def predictor_logits(self, hidden: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Teacher-forced training pass: hidden (…, H) of the positions that predicted each frame's group 0,
        codes (…, G) of those frames → logits (…, G-1, 2048); ``[…, k-1, :]`` is scored against
        ``codes[…, k]``. Every frame is one row of a single predictor batch."""
        lead = hidden.shape[:-1]
        inputs = self.predictor_inputs(hidden.reshape(-1, hidden.shape[-1]), codes.reshape(-1, codes.shape[-1]))
        logits = self.code_predictor.frame_logits(inputs)
        return logits.reshape(*lead, *logits.shape[1:])

    @torch.no_grad()
    def predict_codes(
        self, hidden: torch.Tensor, first: torch.Tensor,
        sample: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
        cache: list[StaticKVCache] | None = None,
    ) -> torch.Tensor:
        """Inference: hidden (N, H) and sampled group-0 codes (N,) → codes (N, G) of the frame, one group at a
        time with a KV cache. ``sample(logits (N, vocab), group) → ids (N,)``; default greedy. ``cache``: a
        static cache of at least G positions to reuse (``code_predictor.model.new_static_cache``); default a
        fresh dynamic one."""
        sample = sample or (lambda logits, group: logits.argmax(-1))
        predictor = self.code_predictor
        if cache is None:
            cache = predictor.model.new_cache()
        else:
            for layer in cache:
                layer.reset()
        inputs = torch.stack([hidden, self.model.codec_embedding(first)], dim=1)
        codes = [first]
        for g in range(1, self.config.num_code_groups):
            out = predictor(inputs, cache)
            codes.append(sample(predictor.lm_head[g - 1](out[:, -1]), g))
            if g < self.config.num_code_groups - 1:
                inputs = predictor.model.codec_embedding[g - 1](codes[-1]).unsqueeze(1)
        return torch.stack(codes, dim=1)
