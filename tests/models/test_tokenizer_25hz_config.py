"""The 25 Hz tokenizer's config.json: qwen-tts's format both ways, the consistent default, refused mismatches."""

import json

import pytest

from qtts.models.tokenizer_25hz.config import Tokenizer25HzConfig

configuration = pytest.importorskip("qwen_tts.core.tokenizer_25hz.configuration_qwen3_tts_tokenizer_v1")


def test_default_is_consistent():
    config = Tokenizer25HzConfig()
    assert config.code_rate == 25.0
    assert config.encode_downsample_rate == 640 and config.input_sample_rate == 16_000
    assert config.decode_upsample_rate == 960 == config.decoder_config.dit_config.repeats * 240
    assert config.output_sample_rate / config.decode_upsample_rate == config.code_rate
    assert config.decoder_config.dit_config.num_embeds >= config.encoder_config.audio_vq_codebook_size


def test_qwen_tts_reads_what_we_write_and_we_read_what_it_writes(tmp_path):
    ours = Tokenizer25HzConfig.tiny()
    theirs = configuration.Qwen3TTSTokenizerV1Config(**{k: v for k, v in ours.to_dict().items() if k != "model_type"})
    assert theirs.model_type == ours.model_type
    for key in ("input_sample_rate", "output_sample_rate", "encode_downsample_rate", "decode_upsample_rate"):
        assert getattr(theirs, key) == getattr(ours, key)
    for key, value in ours.encoder_config.to_dict().items():
        assert getattr(theirs.encoder_config, key) == value, key
    for key, value in ours.decoder_config.dit_config.to_dict().items():
        assert getattr(theirs.decoder_config.dit_config, key) == value, key
    for key, value in ours.decoder_config.bigvgan_config.to_dict().items():
        assert getattr(theirs.decoder_config.bigvgan_config, key) == value, key

    theirs.save_pretrained(tmp_path)  # transformers adds its generic keys to every sub-config
    written = json.loads((tmp_path / "config.json").read_text())
    again = Tokenizer25HzConfig.from_dict(written)
    assert again.to_dict() == written  # nothing lost or added
    encoder = again.encoder_config.to_dict()
    assert encoder.pop("model_type") == "qwen3_tts_tokenizer_v1_encoder" and encoder == ours.encoder_config.to_dict()
    assert again.decoder_config.dit_config.repeats == 4
    assert "transformers_version" in again.extra and "top_k" in again.decoder_config.dit_config.extra


def test_qwen_tts_class_defaults_are_refused_with_the_key_named():
    file = Tokenizer25HzConfig.tiny().to_dict()
    for key, value in [("decode_upsample_rate", 1920), ("input_sample_rate", 24_000),
                       ("encode_downsample_rate", 1920)]:
        with pytest.raises(ValueError, match=key):
            Tokenizer25HzConfig.from_dict(file | {key: value})
    omitted = {k: v for k, v in file.items() if k != "decode_upsample_rate"}  # read as qwen-tts's 1920
    with pytest.raises(ValueError, match="decode_upsample_rate 1920"):
        Tokenizer25HzConfig.from_dict(omitted)
    dit = {k: v for k, v in file["decoder_config"]["dit_config"].items() if k != "repeats"}  # qwen-tts's 2
    with pytest.raises(ValueError, match="repeats 2"):
        Tokenizer25HzConfig.from_dict(file | {"decoder_config": {**file["decoder_config"], "dit_config": dit}})


@pytest.mark.parametrize("section, key, value, message", [
    ("encoder_config", "n_state", "wide", "encoder_config.n_state must be a positive integer"),
    ("encoder_config", "audio_vq_layers", 9, "encoder_config.audio_vq_layers 9 must be ≤ n_layer"),
    ("encoder_config", "audio_vq_codebook_dim", 8, "audio_vq_codebook_dim 8 must equal n_state"),
    ("encoder_config", "n_window", 21, "n_window 21 must be a multiple of audio_vq_ds_rate"),
    ("encoder_config", "audio_vq_type", "RVQ", "audio_vq_type must be 'GRVQ'"),
    ("encoder_config", "n_mels", 80, "n_mels must be 128"),
])
def test_bad_values_name_the_key(section, key, value, message):
    file = Tokenizer25HzConfig.tiny().to_dict()
    with pytest.raises(ValueError, match=message):
        Tokenizer25HzConfig.from_dict(file | {section: {**file[section], key: value}})


def test_bad_decoder_values_name_the_key():
    file = Tokenizer25HzConfig.tiny().to_dict()
    dec = file["decoder_config"]
    with pytest.raises(ValueError, match="dit_config.look_ahead_layers"):
        Tokenizer25HzConfig.from_dict(file | {"decoder_config": {**dec, "dit_config": {**dec["dit_config"],
                                                                                         "look_ahead_layers": [7]}}})
    with pytest.raises(ValueError, match="bigvgan_config.upsample_rates .* and upsample_kernel_sizes"):
        Tokenizer25HzConfig.from_dict(file | {"decoder_config": {**dec, "bigvgan_config": {
            **dec["bigvgan_config"], "upsample_kernel_sizes": [3]}}})
    with pytest.raises(ValueError, match="num_embeds 8 must be ≥"):
        Tokenizer25HzConfig.from_dict(file | {"decoder_config": {**dec, "dit_config": {**dec["dit_config"],
                                                                                         "num_embeds": 8}}})
    for channels in ([8, 8, 16, 8, 32], [8, 8, 8, 8, 16]):  # residual blocks of one width, their sum aggregated
        with pytest.raises(ValueError, match=r"dit_config.enc_channels \[8, 8, .* must repeat one width"):
            Tokenizer25HzConfig.from_dict(file | {"decoder_config": {**dec, "dit_config": {
                **dec["dit_config"], "enc_channels": channels}}})
    with pytest.raises(ValueError, match="model_type must be 'qwen3_tts_tokenizer_25hz'"):
        Tokenizer25HzConfig.from_dict(file | {"model_type": "qwen3_tts_tokenizer_12hz"})
