"""``decoder_config`` of the released 12 Hz speech tokenizer (``speech_tokenizer/config.json``)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CodecDecoderConfig:
    """Field names are the released keys, defaults the released values (not qwen-tts's class defaults,
    which say hidden 1024 / intermediate 3072 and lack ``codebook_dim`` and ``head_dim``).

    Keys this class does not know are kept in ``extra`` so ``from_dict(d).to_dict() == d``.
    ``semantic_codebook_size`` and ``vector_quantization_hidden_dimension`` are released but unused by
    the decoder (qwen-tts ignores them too); each RVQ level has ``codebook_dim // 2`` dimensions.
    """

    latent_dim: int = 1024
    codebook_dim: int = 512
    codebook_size: int = 2048
    decoder_dim: int = 1536
    hidden_size: int = 512
    intermediate_size: int = 1024
    head_dim: int = 64
    num_attention_heads: int = 16
    num_key_value_heads: int = 16
    num_hidden_layers: int = 8
    rms_norm_eps: float = 1e-5
    layer_scale_initial_scale: float = 0.01
    rope_theta: float = 10_000.0
    max_position_embeddings: int = 8000
    sliding_window: int = 72
    num_quantizers: int = 16
    num_semantic_quantizers: int = 1
    semantic_codebook_size: int = 4096
    upsample_rates: list[int] = field(default_factory=lambda: [8, 5, 4, 3])
    upsampling_ratios: list[int] = field(default_factory=lambda: [2, 2])
    vector_quantization_hidden_dimension: int = 512
    hidden_act: str = "silu"
    attention_bias: bool = False
    attention_dropout: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        positive = (
            "latent_dim", "codebook_dim", "codebook_size", "decoder_dim", "hidden_size", "intermediate_size",
            "head_dim", "num_attention_heads", "num_key_value_heads", "num_hidden_layers",
            "max_position_embeddings", "sliding_window", "num_quantizers", "num_semantic_quantizers",
            "semantic_codebook_size", "vector_quantization_hidden_dimension",
        )
        for name in positive:
            value = getattr(self, name)
            if not _is_int(value) or value <= 0:
                raise ValueError(f"decoder_config.{name} must be a positive integer, got {value!r}")
        for name in ("upsample_rates", "upsampling_ratios"):
            values = getattr(self, name)
            if not isinstance(values, (list, tuple)) or not values or not all(_is_int(v) and v > 0 for v in values):
                raise ValueError(f"decoder_config.{name} must be a non-empty list of positive integers, got {values!r}")
            setattr(self, name, list(values))
        for name in ("rms_norm_eps", "rope_theta", "layer_scale_initial_scale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"decoder_config.{name} must be a positive number, got {value!r}")
        if isinstance(self.attention_dropout, bool) or not 0 <= self.attention_dropout < 1:
            raise ValueError(f"decoder_config.attention_dropout must be in [0, 1), got {self.attention_dropout!r}")
        if self.hidden_act != "silu":
            raise ValueError(f"decoder_config.hidden_act must be 'silu' (SwiGLU), got {self.hidden_act!r}")
        if not isinstance(self.attention_bias, bool):
            raise ValueError(f"decoder_config.attention_bias must be a bool, got {self.attention_bias!r}")
        if self.head_dim % 2:
            raise ValueError(f"decoder_config.head_dim must be even (rotary embedding), got {self.head_dim}")
        if self.codebook_dim % 2:
            raise ValueError(
                f"decoder_config.codebook_dim must be even (each RVQ level uses codebook_dim // 2), got {self.codebook_dim}"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"decoder_config.num_attention_heads {self.num_attention_heads} must be a multiple of "
                f"num_key_value_heads {self.num_key_value_heads}"
            )
        if self.num_semantic_quantizers >= self.num_quantizers:
            raise ValueError(
                f"decoder_config.num_semantic_quantizers {self.num_semantic_quantizers} must be smaller than "
                f"num_quantizers {self.num_quantizers} (the split RVQ needs acoustic levels)"
            )
        blocks = len(self.upsample_rates)
        if self.decoder_dim % 2**blocks:
            raise ValueError(
                f"decoder_config.decoder_dim {self.decoder_dim} must be divisible by 2**len(upsample_rates) = {2**blocks} "
                "(each upsampling block halves the channels)"
            )
        if not isinstance(self.extra, dict):
            raise ValueError(f"decoder_config.extra must be a dict, got {type(self.extra).__name__}")

    @property
    def total_upsample(self) -> int:
        """Output samples per code frame (1920 released: 24 kHz / 12.5 Hz)."""
        return math.prod(self.upsampling_ratios) * math.prod(self.upsample_rates)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "CodecDecoderConfig":
        """From a ``decoder_config`` dict of config.json; unknown keys go to ``extra``."""
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        extra = {k: v for k, v in values.items() if k not in known}
        return cls(**{k: v for k, v in values.items() if k in known}, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """The ``decoder_config`` dict to write back, unknown keys included."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        values["upsample_rates"], values["upsampling_ratios"] = list(self.upsample_rates), list(self.upsampling_ratios)
        return {**values, **self.extra}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
