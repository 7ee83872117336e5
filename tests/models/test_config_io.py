"""Every config.json class (codec and talker) reads and writes its dict through the one ``JsonConfig`` protocol."""

import dataclasses

import pytest

from qtts.models.codec.config import CodecDecoderConfig, CodecEncoderConfig
from qtts.models.codec.model import CodecConfig
from qtts.models.config_io import JsonConfig
from qtts.models.talker.config import CodePredictorConfig, TalkerConfig, TTSConfig
from qtts.models.talker.speaker_encoder import SpeakerEncoderConfig
from qtts.models.tokenizer_25hz.config import (
    BigVGANConfig,
    DiTConfig,
    Tokenizer25HzConfig,
    Tokenizer25HzEncoderConfig,
)

# class → a key it knows and omits in the test dict (one that no validation ties to another key)
CASES = {
    CodecConfig: "output_sample_rate",
    CodecEncoderConfig: "initializer_range",
    CodecDecoderConfig: "semantic_codebook_size",
    TTSConfig: "assistant_token_id",
    TalkerConfig: "attention_dropout",
    CodePredictorConfig: "max_window_layers",
    SpeakerEncoderConfig: "sample_rate",
    Tokenizer25HzConfig: "output_sample_rate",
    Tokenizer25HzEncoderConfig: "n_ctx",
    DiTConfig: "rope_theta",
    BigVGANConfig: "upsample_initial_channel",
}


@pytest.mark.parametrize("cls", list(CASES), ids=lambda cls: cls.__name__)
def test_every_config_round_trips_unknown_and_omitted_keys(cls):
    assert issubclass(cls, JsonConfig) and dataclasses.is_dataclass(cls)
    assert "from_dict" not in vars(cls) and "to_dict" not in vars(cls)  # no second implementation
    omitted = CASES[cls]
    full = cls().to_dict()  # built in code: every field
    assert omitted in full
    file = {k: v for k, v in full.items() if k != omitted} | {"future_key": {"a": [1, 2]}}
    config = cls.from_dict(file)
    expected_value = cls.FILE_DEFAULTS.get(omitted, getattr(cls(), omitted))
    assert getattr(config, omitted) == expected_value  # an omitted key reads as the file default
    written = config.to_dict()
    if cls.COMPLETE_FILES:  # the codec writes complete files: the omitted key comes back with the value read
        assert written == file | {omitted: expected_value}
    else:  # qwen-tts reads an omitted key as we do: it stays omitted
        assert written == file
    assert written["future_key"] == {"a": [1, 2]}
    again = cls.from_dict(written)
    assert again == config and again.to_dict() == written
    assert cls.from_dict(full).to_dict() == full  # a complete file round-trips exactly

    if not cls.COMPLETE_FILES:
        changed = cls.from_dict(file)
        setattr(changed, omitted, _other(expected_value))
        assert changed.to_dict() == file | {omitted: _other(expected_value)}  # a field changed since is written


def _other(value):
    return value + 1 if not isinstance(value, bool) else not value


def test_nested_configs_and_the_frame_rate_spelling():
    codec = CodecConfig.from_dict({"encoder_config": {"frame_rate": 10.0, "k": 1}, "decoder_config": {"u": 2}})
    assert isinstance(codec.encoder_config, CodecEncoderConfig) and codec.encoder_config.extra == {"k": 1}
    assert codec.decoder_config.extra == {"u": 2}
    written = codec.to_dict()
    assert written["encoder_config"]["_frame_rate"] == 10.0 and "frame_rate" not in written["encoder_config"]
    assert CodecConfig.from_dict(written) == codec
    assert CodecEncoderConfig.from_dict({"_frame_rate": None}).frame_rate is None
    with pytest.raises(ValueError, match="both 'frame_rate' and '_frame_rate'"):
        CodecEncoderConfig.from_dict({"frame_rate": 12.5, "_frame_rate": 12.5})
    with pytest.raises(ValueError, match="expected a dict"):
        CodecDecoderConfig.from_dict([1])

    tts = TTSConfig.from_dict({"talker_config": {"text_vocab_size": 151936, "vocab_size": 4224,
                                                 "code_predictor_config": {"num_hidden_layers": 3, "x": 0}}})
    predictor = tts.talker_config.code_predictor_config
    assert isinstance(predictor, CodePredictorConfig) and predictor.extra == {"x": 0}
    assert tts.to_dict()["talker_config"]["code_predictor_config"] == {"num_hidden_layers": 3, "x": 0}
