"""``config.json`` of the 25 Hz semantic tokenizer (``model_type = "qwen3_tts_tokenizer_25hz"``), as qwen-tts 0.1.1
writes it: ``Tokenizer25HzConfig`` ⊃ ``encoder_config`` and ``decoder_config`` ⊃ ``{dit_config, bigvgan_config}``.

Field names are the JSON keys. No 25 Hz checkpoint is released, so the defaults are the architecture of
qwen-tts's class defaults, except where those are not self-consistent (``reference/tokenizer-25hz.md`` §1):
the encoder reads 16 kHz audio and emits 25 codes/s (640 input samples per code), while qwen-tts's defaults say
``input_sample_rate`` 24000, ``encode_downsample_rate``/``decode_upsample_rate`` 1920 (the 12 Hz values) and
``repeats`` 2 (BigVGAN's ×240 then gives 480 samples per code, 50 codes/s), and a DiT code table of
``num_embeds`` 8193 rows for a 32768-entry codebook. The consistent default shipped here:

- ``input_sample_rate`` 16000, ``encode_downsample_rate`` 640 (160-sample mel hop × 2 conv stride × 2 VQ stride);
- ``repeats`` 4 (25 Hz codes → the DiT's 100 Hz mel), BigVGAN ×240 (100 Hz mel → 24 kHz),
  ``decode_upsample_rate`` 960 = 4 × 240, ``output_sample_rate`` 24000 (25 codes/s on both sides);
- ``num_embeds`` 32768 (one DiT embedding row per code, plus the row qwen-tts adds).

A file that omits one of these keys reads it as qwen-tts does (its class default, ``FILE_DEFAULTS``) and every
file we write is complete (``COMPLETE_FILES``), so a file means the same to both. Rates that disagree are refused
with the key named: a mismatch would silently mis-truncate codes or audio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from qtts.models.config_io import JsonConfig, is_int

MODEL_TYPE = "qwen3_tts_tokenizer_25hz"
ENCODER_SAMPLE_RATE = 16_000  # the Whisper log-mel frontend: 16 kHz, 400-point FFT, 160-sample hop
MEL_HOP = 160
CONV_STRIDE = 2  # conv2 of the stem: 100 Hz mel → 50 Hz


def _positive(config, prefix: str, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(config, name)
        if not is_int(value) or value <= 0:
            raise ValueError(f"{prefix}.{name} must be a positive integer, got {value!r}")


def _int_list(config, prefix: str, name: str, minimum: int = 1) -> list[int]:
    values = getattr(config, name)
    if not isinstance(values, (list, tuple)) or not values or not all(is_int(v) and v >= minimum for v in values):
        raise ValueError(f"{prefix}.{name} must be a non-empty list of integers ≥ {minimum}, got {values!r}")
    setattr(config, name, list(values))
    return list(values)


def _bools(config, prefix: str, names: tuple[str, ...]) -> None:
    for name in names:
        if not isinstance(getattr(config, name), bool):
            raise ValueError(f"{prefix}.{name} must be a bool, got {getattr(config, name)!r}")


def _number(config, prefix: str, name: str, low: float, high: float | None = None) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low or (high and value >= high):
        bound = f"in [{low}, {high})" if high else f"≥ {low}"
        raise ValueError(f"{prefix}.{name} must be a number {bound}, got {value!r}")


def _extra(config, prefix: str) -> None:
    if not isinstance(config.extra, dict):
        raise ValueError(f"{prefix}.extra must be a dict, got {type(config.extra).__name__}")


@dataclass
class Tokenizer25HzEncoderConfig(JsonConfig):
    """``encoder_config``: the Whisper-style encoder with a single-codebook VQ inside (qwen-tts's
    ``WhisperEncoderVQ``). ``audio_vq_layers`` is the 1-based index of the block after which the VQ sits
    (not a count); ``n_window`` frames (at 50 Hz) is both the conv-stem chunk (``2 · n_window`` mel frames,
    positions restart per chunk) and the attention window. ``grad_checkpointing`` recomputes blocks in the
    backward pass; ``enable_mp`` and ``audio_sequence_parallel`` are qwen-tts's parallelism switches, kept for
    the round trip (qtts parallelises with DDP/FSDP). qwen-tts computes 128 mel bins whatever ``n_mels`` says,
    so only 128 loads in both."""

    COMPLETE_FILES = True

    n_mels: int = 128
    n_ctx: int = 1500
    n_state: int = 1280
    n_head: int = 20
    n_layer: int = 32
    n_window: int = 100
    output_dim: int = 3584
    grad_checkpointing: bool = False
    enable_mp: bool = False
    audio_sequence_parallel: bool = False
    audio_vq_type: str = "GRVQ"
    audio_vq_layers: int = 6
    audio_vq_codebook_size: int = 32768
    audio_vq_codebook_dim: int = 1280
    audio_vq_pe: bool = True
    audio_vq_ds_rate: int = 2
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        p = "encoder_config"
        _positive(self, p, ("n_mels", "n_ctx", "n_state", "n_head", "n_layer", "n_window", "output_dim",
                            "audio_vq_layers", "audio_vq_codebook_size", "audio_vq_codebook_dim", "audio_vq_ds_rate"))
        _bools(self, p, ("grad_checkpointing", "enable_mp", "audio_sequence_parallel", "audio_vq_pe"))
        if self.n_mels != 128:
            raise ValueError(f"{p}.n_mels must be 128 (qwen-tts always computes 128 mel bins), got {self.n_mels}")
        if self.n_state % self.n_head or (self.n_state // self.n_head) % 2:
            raise ValueError(f"{p}.n_state {self.n_state} must be n_head {self.n_head} × an even head size")
        if self.n_state % 2:
            raise ValueError(f"{p}.n_state must be even (sinusoidal positions), got {self.n_state}")
        if self.n_ctx < self.n_window:
            raise ValueError(f"{p}.n_ctx {self.n_ctx} must be ≥ n_window {self.n_window} (positions per chunk)")
        if self.audio_vq_type != "GRVQ":
            raise ValueError(f"{p}.audio_vq_type must be 'GRVQ' (one group, one EMA codebook), "
                             f"got {self.audio_vq_type!r}")
        if self.audio_vq_layers > self.n_layer:
            raise ValueError(f"{p}.audio_vq_layers {self.audio_vq_layers} must be ≤ n_layer {self.n_layer} "
                             "(the block after which the VQ sits)")
        if self.audio_vq_codebook_dim != self.n_state:
            raise ValueError(f"{p}.audio_vq_codebook_dim {self.audio_vq_codebook_dim} must equal n_state "
                             f"{self.n_state} (the released VQ has no projections)")
        if self.n_window % self.audio_vq_ds_rate:
            raise ValueError(f"{p}.n_window {self.n_window} must be a multiple of audio_vq_ds_rate "
                             f"{self.audio_vq_ds_rate} (the VQ's downsampling must not straddle chunks)")
        _extra(self, p)

    @property
    def samples_per_code(self) -> int:
        """16 kHz input samples per code: mel hop × conv stride × VQ stride (640 released: 25 codes/s)."""
        return MEL_HOP * CONV_STRIDE * self.audio_vq_ds_rate


@dataclass
class DiTConfig(JsonConfig):
    """``decoder_config.dit_config``: the flow-matching DiT (code embedding repeated ``repeats`` times to the
    mel rate, an ECAPA over the reference mel, AdaLN-zero blocks with block attention). ``enc_*`` size the
    ECAPA; ``look_ahead_layers``/``look_backward_layers`` list the blocks that see one block ahead/behind."""

    COMPLETE_FILES = True
    FILE_DEFAULTS = {"repeats": 2, "num_embeds": 8193}  # qwen-tts's class defaults (see the module docstring)

    hidden_size: int = 1024
    num_hidden_layers: int = 22
    num_attention_heads: int = 16
    ff_mult: int = 2
    emb_dim: int = 512
    head_dim: int = 64
    rope_theta: float = 10_000.0
    max_position_embeddings: int = 32768
    block_size: int = 24
    look_ahead_layers: list[int] = field(default_factory=lambda: [10])
    look_backward_layers: list[int] = field(default_factory=lambda: [0, 20])
    repeats: int = 4
    num_embeds: int = 32768
    mel_dim: int = 80
    dropout: float = 0.1
    enc_emb_dim: int = 192
    enc_dim: int = 128
    enc_channels: list[int] = field(default_factory=lambda: [256, 256, 256, 256, 768])
    enc_kernel_sizes: list[int] = field(default_factory=lambda: [5, 3, 3, 3, 1])
    enc_dilations: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 1])
    enc_attention_channels: int = 64
    enc_res2net_scale: int = 2
    enc_se_channels: int = 64
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        p = "decoder_config.dit_config"
        _positive(self, p, ("hidden_size", "num_hidden_layers", "num_attention_heads", "ff_mult", "emb_dim",
                            "head_dim", "max_position_embeddings", "block_size", "repeats", "num_embeds", "mel_dim",
                            "enc_emb_dim", "enc_dim", "enc_attention_channels", "enc_res2net_scale",
                            "enc_se_channels"))
        _number(self, p, "rope_theta", 1e-9)
        _number(self, p, "dropout", 0.0, 1.0)
        if self.head_dim % 2:
            raise ValueError(f"{p}.head_dim must be even (rotary embedding), got {self.head_dim}")
        for name in ("look_ahead_layers", "look_backward_layers"):
            values = getattr(self, name)
            if not isinstance(values, (list, tuple)) or not all(is_int(v) for v in values):
                raise ValueError(f"{p}.{name} must be a list of block indices, got {values!r}")
            if any(not 0 <= v < self.num_hidden_layers for v in values):
                raise ValueError(f"{p}.{name} {list(values)} must index blocks 0..{self.num_hidden_layers - 1}")
            setattr(self, name, list(values))
        lengths = {name: len(_int_list(self, p, name)) for name in ("enc_channels", "enc_kernel_sizes",
                                                                    "enc_dilations")}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"{p}.enc_channels, enc_kernel_sizes and enc_dilations must have one entry per ECAPA "
                             f"layer, got lengths {lengths}")
        if lengths["enc_channels"] < 3:
            raise ValueError(f"{p}.enc_channels needs ≥ 3 layers (a TDNN, SE-Res2Net blocks, the aggregation), "
                             f"got {self.enc_channels}")
        channels = self.enc_channels
        if len(set(channels[:-1])) != 1 or channels[-1] != sum(channels[1:-1]):
            raise ValueError(f"{p}.enc_channels {channels} must repeat one width (the SE-Res2Net blocks are residual) "
                             "and end with the sum of the SE-Res2Net widths (the aggregation concatenates them)")
        if channels[0] % self.enc_res2net_scale:
            raise ValueError(f"{p}.enc_channels {channels[0]} (the SE-Res2Net blocks) must be a multiple of "
                             f"enc_res2net_scale {self.enc_res2net_scale}")
        _extra(self, p)


@dataclass
class BigVGANConfig(JsonConfig):
    """``decoder_config.bigvgan_config``: the BigVGAN vocoder (anti-aliased SnakeBeta AMP blocks); it upsamples
    mel frames by ``prod(upsample_rates)`` (240 released: 100 Hz → 24 kHz)."""

    COMPLETE_FILES = True

    mel_dim: int = 80
    upsample_initial_channel: int = 1536
    resblock_kernel_sizes: list[int] = field(default_factory=lambda: [3, 7, 11])
    resblock_dilation_sizes: list[list[int]] = field(default_factory=lambda: [[1, 3, 5], [1, 3, 5], [1, 3, 5]])
    upsample_rates: list[int] = field(default_factory=lambda: [5, 3, 2, 2, 2, 2])
    upsample_kernel_sizes: list[int] = field(default_factory=lambda: [11, 7, 4, 4, 4, 4])
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        p = "decoder_config.bigvgan_config"
        _positive(self, p, ("mel_dim", "upsample_initial_channel"))
        kernels = _int_list(self, p, "resblock_kernel_sizes")
        rates, up_kernels = _int_list(self, p, "upsample_rates"), _int_list(self, p, "upsample_kernel_sizes")
        dilations = self.resblock_dilation_sizes
        if (not isinstance(dilations, (list, tuple)) or len(dilations) != len(kernels)
                or not all(isinstance(d, (list, tuple)) and len(d) == 3 and all(is_int(v) and v > 0 for v in d)
                           for d in dilations)):
            raise ValueError(f"{p}.resblock_dilation_sizes must be three positive dilations (an AMP block's three "
                             f"convs) per resblock kernel ({len(kernels)}), got {dilations!r}")
        self.resblock_dilation_sizes = [list(d) for d in dilations]
        if len(rates) != len(up_kernels):
            raise ValueError(f"{p}.upsample_rates {rates} and upsample_kernel_sizes {up_kernels} must have the same "
                             "length (one kernel per upsampling stage)")
        if self.upsample_initial_channel % 2 ** len(rates):
            raise ValueError(f"{p}.upsample_initial_channel {self.upsample_initial_channel} must be divisible by "
                             f"2**len(upsample_rates) = {2 ** len(rates)} (each stage halves the channels)")
        _extra(self, p)

    @property
    def total_upsample(self) -> int:
        """Output samples per mel frame (240 released)."""
        return math.prod(self.upsample_rates)


@dataclass
class Tokenizer25HzDecoderConfig(JsonConfig):
    """``decoder_config``: the DiT (codes → mel) and BigVGAN (mel → waveform) configs."""

    COMPLETE_FILES = True
    NESTED = {"dit_config": DiTConfig, "bigvgan_config": BigVGANConfig}

    dit_config: DiTConfig = field(default_factory=DiTConfig)
    bigvgan_config: BigVGANConfig = field(default_factory=BigVGANConfig)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.dit_config, dict):  # from Hydra / plain YAML
            self.dit_config = DiTConfig.from_dict(self.dit_config)
        if isinstance(self.bigvgan_config, dict):
            self.bigvgan_config = BigVGANConfig.from_dict(self.bigvgan_config)
        if self.dit_config.mel_dim != self.bigvgan_config.mel_dim:
            raise ValueError(f"decoder_config.dit_config.mel_dim {self.dit_config.mel_dim} must equal "
                             f"decoder_config.bigvgan_config.mel_dim {self.bigvgan_config.mel_dim}")
        _extra(self, "decoder_config")

    @property
    def samples_per_code(self) -> int:
        """Output samples per code: DiT repeats × BigVGAN upsampling (960 by default)."""
        return self.dit_config.repeats * self.bigvgan_config.total_upsample


@dataclass
class Tokenizer25HzConfig(JsonConfig):
    """Top level of the 25 Hz tokenizer's ``config.json``. Unknown keys (``architectures``, ``dtype``,
    ``transformers_version``, and the many generic keys transformers writes into sub-configs) are kept in
    ``extra``; omitted keys read as qwen-tts reads them (``FILE_DEFAULTS``); every field is written."""

    COMPLETE_FILES = True
    NESTED = {"encoder_config": Tokenizer25HzEncoderConfig, "decoder_config": Tokenizer25HzDecoderConfig}
    FILE_DEFAULTS = {"input_sample_rate": 24_000, "encode_downsample_rate": 1920, "decode_upsample_rate": 1920}

    encoder_config: Tokenizer25HzEncoderConfig = field(default_factory=Tokenizer25HzEncoderConfig)
    decoder_config: Tokenizer25HzDecoderConfig = field(default_factory=Tokenizer25HzDecoderConfig)
    input_sample_rate: int = ENCODER_SAMPLE_RATE
    output_sample_rate: int = 24_000
    encode_downsample_rate: int = 640
    decode_upsample_rate: int = 960
    model_type: str = MODEL_TYPE
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.encoder_config, dict):
            self.encoder_config = Tokenizer25HzEncoderConfig.from_dict(self.encoder_config)
        if isinstance(self.decoder_config, dict):
            self.decoder_config = Tokenizer25HzDecoderConfig.from_dict(self.decoder_config)
        if self.model_type != MODEL_TYPE:
            raise ValueError(f"model_type must be {MODEL_TYPE!r} (the 25 Hz tokenizer), got {self.model_type!r}")
        _positive(self, "config", ("input_sample_rate", "output_sample_rate", "encode_downsample_rate",
                                   "decode_upsample_rate"))
        enc, dec = self.encoder_config, self.decoder_config
        if self.input_sample_rate != ENCODER_SAMPLE_RATE:
            raise ValueError(f"input_sample_rate must be {ENCODER_SAMPLE_RATE} (the encoder's Whisper log-mel "
                             f"reads 16 kHz audio), got {self.input_sample_rate}")
        if self.encode_downsample_rate != enc.samples_per_code:
            raise ValueError(f"encode_downsample_rate {self.encode_downsample_rate} must equal the encoder's input "
                             f"samples per code {enc.samples_per_code} (mel hop {MEL_HOP} × conv stride "
                             f"{CONV_STRIDE} × encoder_config.audio_vq_ds_rate {enc.audio_vq_ds_rate})")
        if self.decode_upsample_rate != dec.samples_per_code:
            raise ValueError(f"decode_upsample_rate {self.decode_upsample_rate} must equal the decoder's output "
                             f"samples per code {dec.samples_per_code} (decoder_config.dit_config.repeats "
                             f"{dec.dit_config.repeats} × prod(bigvgan_config.upsample_rates) "
                             f"{dec.bigvgan_config.total_upsample})")
        if self.decode_upsample_rate * self.input_sample_rate != self.output_sample_rate * self.encode_downsample_rate:
            raise ValueError(f"output_sample_rate {self.output_sample_rate} / decode_upsample_rate "
                             f"{self.decode_upsample_rate} must equal input_sample_rate {self.input_sample_rate} / "
                             f"encode_downsample_rate {self.encode_downsample_rate} (the same codes per second "
                             "on both sides)")
        if dec.dit_config.num_embeds < enc.audio_vq_codebook_size:
            raise ValueError(f"decoder_config.dit_config.num_embeds {dec.dit_config.num_embeds} must be ≥ "
                             f"encoder_config.audio_vq_codebook_size {enc.audio_vq_codebook_size} "
                             "(one DiT embedding per code)")
        _extra(self, "config")

    @property
    def code_rate(self) -> float:
        """Codes per second (25 by default)."""
        return self.input_sample_rate / self.encode_downsample_rate

    @classmethod
    def tiny(cls) -> Tokenizer25HzConfig:
        """A CPU-sized tokenizer for tests, consistent like the default (25 codes/s, 16 kHz in, 24 kHz out):
        three 16-wide encoder blocks with the VQ after the first, 20-frame (0.4 s) windows so short clips
        span several, a 64-entry codebook, and a two-block DiT and narrow BigVGAN."""
        encoder = dict(n_ctx=40, n_state=16, n_head=2, n_layer=3, n_window=20, output_dim=24, audio_vq_layers=1,
                       audio_vq_codebook_size=64, audio_vq_codebook_dim=16)
        dit = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, head_dim=16, emb_dim=8,
                   num_embeds=64, block_size=4, look_ahead_layers=[1], look_backward_layers=[0], enc_emb_dim=8,
                   enc_dim=8, enc_channels=[8, 8, 8, 8, 24], enc_attention_channels=8, enc_se_channels=8)
        bigvgan = dict(upsample_initial_channel=64, resblock_kernel_sizes=[3, 7],
                       resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]])
        return cls(encoder_config=Tokenizer25HzEncoderConfig(**encoder),
                   decoder_config=Tokenizer25HzDecoderConfig(dit_config=DiTConfig(**dit),
                                                             bigvgan_config=BigVGANConfig(**bigvgan)))
