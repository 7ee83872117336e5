"""``decoder_config`` of the released 12 Hz speech tokenizer (``speech_tokenizer/config.json``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from qtts.models.config_io import JsonConfig, is_int


@dataclass
class CodecDecoderConfig(JsonConfig):
    """Field names are the released keys, defaults the released values (not qwen-tts's class defaults,
    which say hidden 1024 / intermediate 3072 and lack ``codebook_dim`` and ``head_dim``).

    Read and written by ``JsonConfig``: keys this class does not know are kept in ``extra`` so
    ``from_dict(d).to_dict() == d``; every field is written (``COMPLETE_FILES``: qwen-tts's defaults for an
    omitted key are not ours). ``semantic_codebook_size`` and ``vector_quantization_hidden_dimension`` are
    released but unused by the decoder (qwen-tts ignores them too); each RVQ level has ``codebook_dim // 2``
    dimensions.
    """

    COMPLETE_FILES = True

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
            if not is_int(value) or value <= 0:
                raise ValueError(f"decoder_config.{name} must be a positive integer, got {value!r}")
        for name in ("upsample_rates", "upsampling_ratios"):
            values = getattr(self, name)
            if not isinstance(values, (list, tuple)) or not values or not all(is_int(v) and v > 0 for v in values):
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
                "decoder_config.codebook_dim must be even (each RVQ level uses codebook_dim // 2), "
                f"got {self.codebook_dim}"
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
                f"decoder_config.decoder_dim {self.decoder_dim} must be divisible by "
                f"2**len(upsample_rates) = {2**blocks} "
                "(each upsampling block halves the channels)"
            )
        if not isinstance(self.extra, dict):
            raise ValueError(f"decoder_config.extra must be a dict, got {type(self.extra).__name__}")

    @property
    def total_upsample(self) -> int:
        """Output samples per code frame (1920 released: 24 kHz / 12.5 Hz)."""
        return math.prod(self.upsampling_ratios) * math.prod(self.upsample_rates)


@dataclass
class CodecEncoderConfig(JsonConfig):
    """``encoder_config`` of the released 12 Hz speech tokenizer: a transformers ``MimiConfig`` (field names
    are its keys, defaults the released values).

    Read and written by ``JsonConfig``: keys this class does not know (``model_type``, ``architectures``,
    ``torch_dtype``, …) are kept in ``extra`` so ``from_dict(d).to_dict() == d``; every field is written
    (``COMPLETE_FILES``: Mimi's defaults for an omitted key are not ours). transformers writes the frame rate
    as ``_frame_rate`` (``FILE_KEYS``): both spellings are read, ``_frame_rate`` is written.
    ``upsample_groups``, ``trim_right_ratio``, ``use_cache``, ``use_streaming`` and ``initializer_range`` are
    Mimi's decoder / runtime settings, kept only for the round trip.
    """

    COMPLETE_FILES = True
    FILE_KEYS = {"frame_rate": "_frame_rate"}

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
            if not is_int(value) or value <= 0:
                raise ValueError(f"encoder_config.{name} must be a positive integer, got {value!r}")
        ratios = self.upsampling_ratios
        if not isinstance(ratios, (list, tuple)) or not ratios or not all(is_int(v) and v > 0 for v in ratios):
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
