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


@dataclass
class CodecEncoderConfig:
    """``encoder_config`` of the released 12 Hz speech tokenizer: a transformers ``MimiConfig`` (field names
    are its keys, defaults the released values).

    Keys this class does not know (``model_type``, ``architectures``, ``torch_dtype``, …) are kept in
    ``extra`` so ``from_dict(d).to_dict() == d``. transformers writes the frame rate as ``_frame_rate``;
    both spellings are read, ``_frame_rate`` is written. ``upsample_groups``, ``trim_right_ratio``,
    ``use_cache``, ``use_streaming`` and ``initializer_range`` are Mimi's decoder / runtime settings, kept
    only for the round trip.
    """

    sampling_rate: int = 24_000
    frame_rate: float | None = 12.5
    audio_channels: int = 1
    hidden_size: int = 512
    num_filters: int = 64
    num_residual_layers: int = 1
    upsampling_ratios: list[int] = field(default_factory=lambda: [8, 6, 5, 4])
    kernel_size: int = 7
    last_kernel_size: int = 3
    residual_kernel_size: int = 3
    dilation_growth_rate: int = 2
    use_causal_conv: bool = True
    pad_mode: str = "constant"
    compress: int = 2
    trim_right_ratio: float = 1.0
    codebook_size: int = 2048
    codebook_dim: int = 256
    num_quantizers: int = 32
    use_conv_shortcut: bool = False
    vector_quantization_hidden_dimension: int = 256
    num_semantic_quantizers: int = 1
    upsample_groups: int = 512
    num_hidden_layers: int = 8
    intermediate_size: int = 2048
    num_attention_heads: int = 8
    num_key_value_heads: int = 8
    head_dim: int = 64
    hidden_act: str = "gelu"
    max_position_embeddings: int = 8000
    initializer_range: float = 0.02
    norm_eps: float = 1e-5
    use_cache: bool = False
    use_streaming: bool = False
    rope_theta: float = 10_000.0
    sliding_window: int = 250
    attention_dropout: float = 0.0
    layer_scale_initial_scale: float = 0.01
    attention_bias: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        positive = (
            "sampling_rate", "audio_channels", "hidden_size", "num_filters", "num_residual_layers", "kernel_size",
            "last_kernel_size", "residual_kernel_size", "dilation_growth_rate", "compress", "codebook_size",
            "codebook_dim", "num_quantizers", "vector_quantization_hidden_dimension", "num_semantic_quantizers",
            "upsample_groups", "num_hidden_layers", "intermediate_size", "num_attention_heads",
            "num_key_value_heads", "head_dim", "max_position_embeddings", "sliding_window",
        )
        for name in positive:
            value = getattr(self, name)
            if not _is_int(value) or value <= 0:
                raise ValueError(f"encoder_config.{name} must be a positive integer, got {value!r}")
        ratios = self.upsampling_ratios
        if not isinstance(ratios, (list, tuple)) or not ratios or not all(_is_int(v) and v > 0 for v in ratios):
            raise ValueError(
                f"encoder_config.upsampling_ratios must be a non-empty list of positive integers, got {ratios!r}"
            )
        self.upsampling_ratios = list(ratios)
        for name in ("norm_eps", "rope_theta", "layer_scale_initial_scale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"encoder_config.{name} must be a positive number, got {value!r}")
        rate = self.frame_rate
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0):
            raise ValueError(f"encoder_config.frame_rate must be a positive number or None, got {self.frame_rate!r}")
        if isinstance(self.attention_dropout, bool) or not 0 <= self.attention_dropout < 1:
            raise ValueError(f"encoder_config.attention_dropout must be in [0, 1), got {self.attention_dropout!r}")
        for name in ("use_causal_conv", "use_conv_shortcut", "attention_bias", "use_cache", "use_streaming"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"encoder_config.{name} must be a bool, got {getattr(self, name)!r}")
        if not self.use_causal_conv:
            raise ValueError("encoder_config.use_causal_conv must be True (the 12 Hz codec is causal)")
        if self.pad_mode not in ("constant", "replicate"):
            raise ValueError(f"encoder_config.pad_mode must be 'constant' or 'replicate', got {self.pad_mode!r}")
        if self.hidden_act != "gelu":
            raise ValueError(f"encoder_config.hidden_act must be 'gelu' (exact erf GELU), got {self.hidden_act!r}")
        if self.head_dim % 2:
            raise ValueError(f"encoder_config.head_dim must be even (rotary embedding), got {self.head_dim}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"encoder_config.num_attention_heads {self.num_attention_heads} must be a multiple of "
                f"num_key_value_heads {self.num_key_value_heads}"
            )
        if self.num_semantic_quantizers >= self.num_quantizers:
            raise ValueError(
                f"encoder_config.num_semantic_quantizers {self.num_semantic_quantizers} must be smaller than "
                f"num_quantizers {self.num_quantizers} (the split RVQ needs acoustic levels)"
            )
        if self.codebook_dim != self.quantizer_dim:
            raise ValueError(
                f"encoder_config.codebook_dim {self.codebook_dim} must equal vector_quantization_hidden_dimension "
                f"{self.quantizer_dim} (the dimension the RVQ levels work in)"
            )
        if not self.resolved_frame_rate < self.encodec_frame_rate:
            raise ValueError(
                f"encoder_config.frame_rate {self.resolved_frame_rate} must be below the conv frame rate "
                f"{self.encodec_frame_rate} (Mimi builds the stride-2 downsample conv only then)"
            )
        if self.codebook_size & (self.codebook_size - 1):
            raise ValueError(f"encoder_config.codebook_size must be a power of 2, got {self.codebook_size}")
        if not isinstance(self.extra, dict):
            raise ValueError(f"encoder_config.extra must be a dict, got {type(self.extra).__name__}")

    @property
    def hop_length(self) -> int:
        """Input samples per code frame: the SEANet strides times the stride-2 downsample (1920 released)."""
        return math.prod(self.upsampling_ratios) * 2

    @property
    def encodec_frame_rate(self) -> int:
        """Frame rate after the conv stack, before the downsample (25 Hz released); rounded up as Mimi does."""
        return math.ceil(self.sampling_rate / math.prod(self.upsampling_ratios))

    @property
    def resolved_frame_rate(self) -> float:
        """``frame_rate``, or Mimi's value when it is None; it only sizes the downsample kernel (the stride is 2)."""
        return self.frame_rate if self.frame_rate is not None else self.sampling_rate / self.hop_length

    @property
    def downsample_kernel_size(self) -> int:
        """Mimi sizes the stride-2 downsample conv from the two frame rates (4 released)."""
        return 2 * int(self.encodec_frame_rate / self.resolved_frame_rate)

    @property
    def quantizer_dim(self) -> int:
        """Dimension the RVQ levels work in; Mimi adds 1×1 projections to it only when it differs from hidden_size."""
        return self.vector_quantization_hidden_dimension

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "CodecEncoderConfig":
        """From an ``encoder_config`` dict of config.json; unknown keys go to ``extra``."""
        values = dict(values)
        if "_frame_rate" in values:
            if "frame_rate" in values:
                raise ValueError("encoder_config has both 'frame_rate' and '_frame_rate'")
            values["frame_rate"] = values.pop("_frame_rate")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        extra = {k: v for k, v in values.items() if k not in known}
        return cls(**{k: v for k, v in values.items() if k in known}, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """The ``encoder_config`` dict to write back (``_frame_rate`` as transformers writes it), unknown keys
        included."""
        skip = ("extra", "frame_rate")
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}
        values["upsampling_ratios"] = list(self.upsampling_ratios)
        values["_frame_rate"] = self.frame_rate
        return {**values, **self.extra}
