"""``config.json`` of a Qwen3-TTS model folder: ``TTSConfig`` ⊃ ``TalkerConfig`` ⊃ ``CodePredictorConfig``.

Field names are the released keys; field defaults are the released 0.6B-Base values. A key a file omits
takes qwen-tts's class default instead (``FILE_DEFAULTS``), so a file means the same to both; unknown keys
are kept and ``from_dict(d).to_dict() == d`` (see ``qtts.models.config_io``).
Presets: ``released_0_6b()``, ``released_1_7b()`` (shapes of the released checkpoints) and ``tiny()`` (test
shapes that still hold every special id).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qtts.models.config_io import JsonConfig, is_int
from qtts.models.talker.speaker_encoder import SpeakerEncoderConfig

MODEL_TYPE = "qwen3_tts"
MODEL_TYPES = ("base", "custom_voice", "voice_design")

LANGUAGE_IDS = {  # codec_language_id of every released model
    "chinese": 2055, "english": 2050, "german": 2053, "italian": 2070, "portuguese": 2071, "spanish": 2054,
    "japanese": 2058, "korean": 2064, "french": 2061, "russian": 2069,
}
DIALECT_IDS = {"beijing_dialect": 2074, "sichuan_dialect": 2062}  # CustomVoice only
SPEAKER_IDS = {  # CustomVoice preset speakers (both sizes)
    "serena": 3066, "vivian": 3065, "uncle_fu": 3010, "ryan": 3061, "aiden": 2861, "ono_anna": 2873,
    "sohee": 2864, "eric": 2875, "dylan": 2878,
}
SPEAKER_DIALECTS = {name: False for name in SPEAKER_IDS} | {"eric": "sichuan_dialect", "dylan": "beijing_dialect"}
_ROPE_SCALING = {"interleaved": True, "mrope_section": [24, 20, 20], "rope_type": "default", "type": "default"}


def _check_common(config, prefix: str) -> None:
    """Checks shared by the talker and code-predictor transformers."""
    positive = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "head_dim", "max_position_embeddings", "num_code_groups")
    for name in positive:
        value = getattr(config, name)
        if not is_int(value) or value <= 0:
            raise ValueError(f"{prefix}.{name} must be a positive integer, got {value!r}")
    if config.head_dim % 2:
        raise ValueError(f"{prefix}.head_dim must be even (rotary embedding), got {config.head_dim}")
    if config.num_attention_heads % config.num_key_value_heads:
        raise ValueError(f"{prefix}.num_attention_heads {config.num_attention_heads} must be a multiple of "
                         f"num_key_value_heads {config.num_key_value_heads}")
    if config.num_code_groups < 2:
        raise ValueError(f"{prefix}.num_code_groups must be at least 2, got {config.num_code_groups}")
    for name in ("rms_norm_eps", "rope_theta"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"{prefix}.{name} must be a positive number, got {value!r}")
    if config.hidden_act != "silu":
        raise ValueError(f"{prefix}.hidden_act must be 'silu' (SwiGLU), got {config.hidden_act!r}")
    if not isinstance(config.attention_bias, bool):
        raise ValueError(f"{prefix}.attention_bias must be a bool, got {config.attention_bias!r}")
    if isinstance(config.attention_dropout, bool) or not 0 <= config.attention_dropout < 1:
        raise ValueError(f"{prefix}.attention_dropout must be in [0, 1), got {config.attention_dropout!r}")
    if not isinstance(config.use_sliding_window, bool):
        raise ValueError(f"{prefix}.use_sliding_window must be a bool, got {config.use_sliding_window!r}")
    if config.use_sliding_window and (not is_int(config.sliding_window) or config.sliding_window <= 0):
        raise ValueError(f"{prefix}.sliding_window must be a positive integer, got {config.sliding_window!r}")
    scaling = config.rope_scaling
    if scaling is not None:
        if not isinstance(scaling, dict):
            raise ValueError(f"{prefix}.rope_scaling must be a dict or null, got {scaling!r}")
        kind = scaling.get("rope_type", scaling.get("type", "default"))
        if kind != "default":
            raise ValueError(f"{prefix}.rope_scaling.rope_type {kind!r} is not supported (only 'default')")
        section = scaling.get("mrope_section")
        # Multimodal RoPE with three equal position streams (all TTS inputs) is plain 1-D RoPE.
        if section is not None and (not isinstance(section, list) or sum(section) != config.head_dim // 2):
            raise ValueError(f"{prefix}.rope_scaling.mrope_section must sum to head_dim / 2 = "
                             f"{config.head_dim // 2}, got {section!r}")
    if not isinstance(config.extra, dict):
        raise ValueError(f"{prefix}.extra must be a dict, got {type(config.extra).__name__}")


@dataclass
class CodePredictorConfig(JsonConfig):
    """``talker_config.code_predictor_config``: the small transformer that predicts groups 1..G-1 of a frame
    (MTP module). Its input embeddings live in the talker width; ``hidden_size`` is its own width."""

    FILE_DEFAULTS = {"max_position_embeddings": 32768, "rope_theta": 10_000.0, "num_code_groups": 32}

    vocab_size: int = 2048
    hidden_size: int = 1024
    intermediate_size: int = 3072
    num_hidden_layers: int = 5
    num_attention_heads: int = 16
    num_key_value_heads: int = 8
    head_dim: int = 128
    hidden_act: str = "silu"
    max_position_embeddings: int = 65536
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    rope_scaling: dict[str, Any] | None = None
    attention_bias: bool = False
    attention_dropout: float = 0.0
    use_sliding_window: bool = False
    sliding_window: int | None = 4096
    max_window_layers: int = 28
    layer_types: list[str] | None = None
    num_code_groups: int = 16
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        _check_common(self, "code_predictor_config")
        if self.layer_types is not None and (
            len(self.layer_types) != self.num_hidden_layers
            or not set(self.layer_types) <= {"full_attention", "sliding_attention"}
        ):
            raise ValueError(f"code_predictor_config.layer_types must list 'full_attention' / 'sliding_attention' "
                             f"for each of {self.num_hidden_layers} layers, got {self.layer_types!r}")

    def window(self, layer: int) -> int | None:
        """Sliding window of a layer, as qwen-tts decides it (None = full attention)."""
        if not self.use_sliding_window:
            return None
        if self.layer_types is not None:
            return self.sliding_window if self.layer_types[layer] == "sliding_attention" else None
        return self.sliding_window if layer >= self.max_window_layers else None


@dataclass
class TalkerConfig(JsonConfig):
    """``talker_config``: the dual-track backbone (Qwen3 decoder) over summed text + codec embeddings.

    ``vocab_size`` is the codec vocabulary of group 0 plus special ids (pad/bos/eos/think, languages,
    speakers); ``text_vocab_size`` / ``text_hidden_size`` size the Qwen text embedding that
    ``text_projection`` maps to the talker width.
    """

    FILE_DEFAULTS = {
        "intermediate_size": 2048, "num_hidden_layers": 20, "num_key_value_heads": 2, "head_dim": None,
        "rope_theta": 10_000.0, "rope_scaling": None, "num_code_groups": 32, "text_vocab_size": None,
        "codec_eos_token_id": 4198, "codec_think_id": 4202, "codec_nothink_id": 4203, "codec_think_bos_id": 4204,
        "codec_think_eos_id": 4205, "codec_pad_id": 4196, "codec_bos_id": 4197, "spk_id": None,
        "spk_is_dialect": None, "codec_language_id": None, "code_predictor_config": {},
    }
    NESTED = {"code_predictor_config": CodePredictorConfig}

    code_predictor_config: CodePredictorConfig = field(default_factory=CodePredictorConfig)
    vocab_size: int = 3072
    hidden_size: int = 1024
    intermediate_size: int = 3072
    num_hidden_layers: int = 28
    num_attention_heads: int = 16
    num_key_value_heads: int = 8
    head_dim: int | None = 128
    hidden_act: str = "silu"
    max_position_embeddings: int = 32768
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    rope_scaling: dict[str, Any] | None = field(default_factory=lambda: dict(_ROPE_SCALING))
    attention_bias: bool = False
    attention_dropout: float = 0.0
    use_sliding_window: bool = False
    sliding_window: int | None = 4096
    num_code_groups: int = 16
    text_vocab_size: int | None = 151936
    text_hidden_size: int = 2048
    codec_eos_token_id: int = 2150
    codec_think_id: int = 2154
    codec_nothink_id: int = 2155
    codec_think_bos_id: int = 2156
    codec_think_eos_id: int = 2157
    codec_pad_id: int = 2148
    codec_bos_id: int = 2149
    spk_id: dict[str, Any] | None = field(default_factory=dict)
    spk_is_dialect: dict[str, Any] | None = field(default_factory=dict)
    codec_language_id: dict[str, int] | None = field(default_factory=lambda: dict(LANGUAGE_IDS))
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.code_predictor_config, dict):  # from Hydra / plain YAML
            self.code_predictor_config = CodePredictorConfig.from_dict(self.code_predictor_config)
        if self.head_dim is None:  # qwen-tts: hidden_size // num_attention_heads when the file has none
            self.head_dim = self.hidden_size // self.num_attention_heads if is_int(self.hidden_size) else None
        if self.text_vocab_size is None:
            raise ValueError("talker_config.text_vocab_size is required (qwen-tts has no default for it)")
        for name in ("text_vocab_size", "text_hidden_size"):
            value = getattr(self, name)
            if not is_int(value) or value <= 0:
                raise ValueError(f"talker_config.{name} must be a positive integer, got {value!r}")
        _check_common(self, "talker_config")
        predictor = self.code_predictor_config
        if predictor.num_code_groups != self.num_code_groups:
            raise ValueError(f"talker_config.num_code_groups {self.num_code_groups} must equal "
                             f"code_predictor_config.num_code_groups {predictor.num_code_groups}")
        for name, value in self.special_codec_ids().items():
            if not is_int(value) or not 0 <= value < self.vocab_size:
                raise ValueError(f"talker_config.{name} must be an id in [0, vocab_size={self.vocab_size}), "
                                 f"got {value!r}")
        for name in ("spk_id", "spk_is_dialect", "codec_language_id"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), dict):
                raise ValueError(f"talker_config.{name} must be a dict, got {getattr(self, name)!r}")
        if self.spk_id and set(self.spk_is_dialect or {}) != set(self.spk_id):
            raise ValueError("talker_config.spk_is_dialect must have one entry per speaker of spk_id "
                             f"(qwen-tts looks every speaker up), got {sorted(self.spk_is_dialect or {})} "
                             f"for {sorted(self.spk_id)}")

    def speaker_codec_rows(self) -> dict[str, int]:
        """``{speaker name (lower case): codec row}`` of ``spk_id``."""
        return {k.lower(): speaker_row(v) for k, v in (self.spk_id or {}).items()}

    def language_row(self, language: str | None, speaker: str | None = None) -> int | None:
        """The codec row of ``language`` (a name of ``codec_language_id`` or a registered code; "auto"/None: None,
        the ``nothink`` prefix) as said by ``speaker``: a dialect speaker speaks its dialect for chinese and auto,
        as qwen-tts does."""
        dialect = (self.spk_is_dialect or {}).get(str(speaker).lower()) if speaker else None
        return language_row(self.codec_language_id or {}, language, dialect)

    def special_codec_ids(self) -> dict[str, int]:
        """Every special codec id the config names (must fit ``vocab_size``)."""
        ids = {name: getattr(self, name) for name in (
            "codec_eos_token_id", "codec_think_id", "codec_nothink_id", "codec_think_bos_id", "codec_think_eos_id",
            "codec_pad_id", "codec_bos_id")}
        ids |= {f"codec_language_id.{k}": v for k, v in (self.codec_language_id or {}).items()}
        for speaker, value in (self.spk_id or {}).items():  # some exports write [3066]
            ids[f"spk_id.{speaker}"] = value[0] if isinstance(value, list) and len(value) == 1 else value
        return ids


def language_row(table: dict[str, int], language: str | None, dialect: str | bool | None = None) -> int | None:
    """The one reading of a language name: its row in ``table`` (a model's ``codec_language_id``), where a code of
    the language registry (``en``) stands for its name (``english``) and a ``dialect`` (``spk_is_dialect``)
    replaces chinese and auto. None means "auto"; a language the table lacks is a ValueError naming its languages."""
    from qtts.text.languages import get_language, is_known_language

    rows = {str(k).lower(): int(v) for k, v in table.items()}
    key = str(language if language is not None else "auto").strip().lower()
    if key != "auto" and key not in rows and is_known_language(key):
        key = get_language(key).name.lower()
    if key != "auto" and key not in rows:
        raise ValueError(f"language {language!r} is not one of this model's: {sorted(rows)}")
    if dialect and key in ("auto", "chinese"):
        if str(dialect).lower() not in rows:
            raise ValueError(f"dialect {dialect!r} has no row in codec_language_id ({sorted(rows)})")
        return rows[str(dialect).lower()]
    return None if key == "auto" else rows[key]


def speaker_row(value: int | list[int]) -> int:
    """A ``spk_id`` value's codec row: an int, or ``[row]`` as some exports write it."""
    return int(value[0] if isinstance(value, list) else value)


@dataclass
class TTSConfig(JsonConfig):
    """Top level of a model folder's ``config.json`` (``model_type`` ``qwen3_tts``).

    ``tts_model_type``: ``base`` (voice clone; has the speaker encoder), ``custom_voice`` (preset speakers
    in ``talker_config.spk_id``), ``voice_design`` (instruct). The special text ids are the Qwen ChatML /
    TTS-track ids of the text vocabulary.
    """

    FILE_DEFAULTS = {"tokenizer_type": None, "tts_model_size": None, "tts_model_type": None,
                     "talker_config": {}, "speaker_encoder_config": {}}
    NESTED = {"talker_config": TalkerConfig, "speaker_encoder_config": SpeakerEncoderConfig}

    talker_config: TalkerConfig = field(default_factory=TalkerConfig)
    speaker_encoder_config: SpeakerEncoderConfig = field(default_factory=SpeakerEncoderConfig)
    tokenizer_type: str | None = "qwen3_tts_tokenizer_12hz"
    tts_model_size: str | None = "0b6"
    tts_model_type: str | None = "base"
    im_start_token_id: int = 151644
    im_end_token_id: int = 151645
    tts_pad_token_id: int = 151671
    tts_bos_token_id: int = 151672
    tts_eos_token_id: int = 151673
    assistant_token_id: int = 77091
    model_type: str = MODEL_TYPE
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.talker_config, dict):
            self.talker_config = TalkerConfig.from_dict(self.talker_config)
        if isinstance(self.speaker_encoder_config, dict):
            self.speaker_encoder_config = SpeakerEncoderConfig.from_dict(self.speaker_encoder_config)
        if self.model_type != MODEL_TYPE:
            raise ValueError(f"model_type must be {MODEL_TYPE!r}, got {self.model_type!r}")
        if self.tts_model_type is not None and self.tts_model_type not in MODEL_TYPES:
            raise ValueError(f"tts_model_type must be one of {MODEL_TYPES}, got {self.tts_model_type!r}")
        text_vocab = self.talker_config.text_vocab_size
        for name in ("im_start_token_id", "im_end_token_id", "tts_pad_token_id", "tts_bos_token_id",
                     "tts_eos_token_id", "assistant_token_id"):
            value = getattr(self, name)
            if not is_int(value) or not 0 <= value < text_vocab:
                raise ValueError(f"{name} must be an id in [0, talker_config.text_vocab_size={text_vocab}), "
                                 f"got {value!r}")
        if self.has_speaker_encoder and self.speaker_encoder_config.enc_dim != self.talker_config.hidden_size:
            raise ValueError(
                f"speaker_encoder_config.enc_dim {self.speaker_encoder_config.enc_dim} must equal "
                f"talker_config.hidden_size {self.talker_config.hidden_size} (the x-vector is a codec-track input)"
            )

    @property
    def has_speaker_encoder(self) -> bool:
        """Only Base models carry ``speaker_encoder.*`` weights (as qwen-tts builds them)."""
        return self.tts_model_type == "base"


def _talker_for(model_type: str, **talker) -> TalkerConfig:
    if model_type == "custom_voice":
        talker |= dict(spk_id=dict(SPEAKER_IDS), spk_is_dialect=dict(SPEAKER_DIALECTS),
                       codec_language_id=LANGUAGE_IDS | DIALECT_IDS)
    return TalkerConfig(**talker)


def released_0_6b(tts_model_type: str = "base") -> TTSConfig:
    """Shapes and ids of Qwen3-TTS-12Hz-0.6B-{Base,CustomVoice}."""
    talker = _talker_for(tts_model_type)
    return TTSConfig(talker_config=talker, speaker_encoder_config=SpeakerEncoderConfig(enc_dim=1024),
                     tts_model_size="0b6", tts_model_type=tts_model_type)


def released_1_7b(tts_model_type: str = "base") -> TTSConfig:
    """Shapes and ids of Qwen3-TTS-12Hz-1.7B-{Base,CustomVoice,VoiceDesign}: talker 2048 wide, code predictor
    1024 wide (so ``small_to_mtp_projection`` exists)."""
    talker = _talker_for(tts_model_type, hidden_size=2048, intermediate_size=6144)
    return TTSConfig(talker_config=talker, speaker_encoder_config=SpeakerEncoderConfig(enc_dim=2048),
                     tts_model_size="1b7", tts_model_type=tts_model_type)


def tiny(tts_model_type: str = "base", talker_hidden: int = 64, predictor_hidden: int = 64,
         layers: int = 2, predictor_layers: int = 2, text_hidden: int = 32,
         languages: list[str] | None = None) -> TTSConfig:
    """Test shapes that keep every special id: codec vocab 3072 (ids up to 3066), text vocab 151936 (ids up to
    151673) with a narrow text embedding, 16 code groups, head_dim 16 with a matching ``mrope_section``.
    ``languages``: the languages (codes or names) the model gets a row for (None: every released one); a model
    pretrained without one learns it later as a new language."""
    predictor = CodePredictorConfig(hidden_size=predictor_hidden, intermediate_size=2 * predictor_hidden,
                                    num_hidden_layers=predictor_layers, num_attention_heads=4, num_key_value_heads=2,
                                    head_dim=16)
    rope = {"interleaved": True, "mrope_section": [4, 2, 2], "rope_type": "default", "type": "default"}
    talker = _talker_for(tts_model_type, code_predictor_config=predictor, hidden_size=talker_hidden,
                         intermediate_size=2 * talker_hidden, num_hidden_layers=layers, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=16, rope_scaling=rope, text_hidden_size=text_hidden)
    if languages is not None:
        from qtts.text.languages import get_language

        keep = {get_language(key).name for key in languages}
        talker.codec_language_id = {k: v for k, v in talker.codec_language_id.items() if k in keep}
    speaker = SpeakerEncoderConfig(enc_dim=talker_hidden, enc_channels=[16, 16, 16, 16, 48],
                                   enc_attention_channels=8, enc_se_channels=8, enc_res2net_scale=4)
    return TTSConfig(talker_config=talker, speaker_encoder_config=speaker, tts_model_size="tiny",
                     tts_model_type=tts_model_type)
