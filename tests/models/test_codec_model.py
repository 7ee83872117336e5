import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from qtts.cli import main
from qtts.models.codec import CodecConfig, SpeechTokenizer
from qtts.training.configs import CONFIG_DIR
from tests.models.test_codec_decoder import randomize as randomize_decoder
from tests.models.test_codec_encoder import HOP, KEEP, TINY, TINY_DECODER
from tests.models.test_codec_encoder import randomize as randomize_encoder

modeling = pytest.importorskip("qwen_tts.core.tokenizer_12hz.modeling_qwen3_tts_tokenizer_v2")
configuration = pytest.importorskip("qwen_tts.core.tokenizer_12hz.configuration_qwen3_tts_tokenizer_v2")
Qwen3TTSTokenizer = pytest.importorskip("qwen_tts.inference.qwen3_tts_tokenizer").Qwen3TTSTokenizer

LENGTHS = [HOP * 40 + 3, HOP * 11, 1]  # a batch of uneven lengths, one of a single sample
LONG = HOP * 700 + 5  # 701 frames: three decode windows of 300 frames


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """(qwen-tts tokenizer, the folder its ``save_pretrained`` wrote) for a tiny random tokenizer."""
    config = configuration.Qwen3TTSTokenizerV2Config(
        encoder_config=TINY, decoder_config=TINY_DECODER, encoder_valid_num_quantizers=KEEP,
        encode_downsample_rate=HOP, decode_upsample_rate=HOP,
    )
    ref = modeling.Qwen3TTSTokenizerV2Model(config).eval()
    randomize_encoder(ref.encoder)
    randomize_decoder(ref.decoder)
    folder = tmp_path_factory.mktemp("released")
    ref.save_pretrained(folder)
    return ref, folder


@pytest.fixture(scope="module")
def ours(released):
    return SpeechTokenizer.from_pretrained(released[1])


def noisy_sines(lengths, seed=1) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [0.5 * torch.sin(torch.arange(n) * (0.05 + 0.03 * i)) + 0.2 * torch.randn(n, generator=gen)
            for i, n in enumerate(lengths)]


def reference_encode(ref, wavs):
    """qwen-tts's batch encode: zero right-padding and its mask, as its feature extractor builds them."""
    batch = torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True)
    mask = torch.nn.utils.rnn.pad_sequence([torch.ones(len(w), dtype=torch.long) for w in wavs], batch_first=True)
    with torch.no_grad():
        return ref.encode(batch, mask, return_dict=True).audio_codes


def reference_decode(ref, codes):
    padded = torch.nn.utils.rnn.pad_sequence(codes, batch_first=True, padding_value=-1)
    with torch.no_grad():
        return ref.decode(padded, return_dict=True).audio_values


def assert_same_audio(got, expected):
    assert [len(a) for a in got] == [len(a) for a in expected]
    diff = max((a - b).abs().max().item() for a, b in zip(got, expected))
    print(f"decode max abs diff: {diff:.2e}")
    assert diff <= 1e-4


@pytest.mark.parametrize("lengths", [LENGTHS, [HOP * 25 + 7], [LONG]])
def test_matches_qwen_tts(released, ours, lengths):
    ref, _ = released
    wavs = noisy_sines(lengths)
    codes, expected = ours.encode(wavs), reference_encode(ref, wavs)
    assert [c.shape for c in codes] == [(math.ceil(n / HOP), KEEP) for n in lengths]
    assert all(c.dtype == torch.long and torch.equal(c, e) for c, e in zip(codes, expected))
    assert len(codes[0].unique()) > 4  # the codes depend on the input
    audio = ours.decode(codes, windowed=True)
    assert [a.shape for a in audio] == [(c.shape[0] * HOP,) for c in codes]
    assert_same_audio(audio, reference_decode(ref, codes))


def test_default_decode_is_one_pass_at_any_length(ours):
    """701 frames, three 300-frame windows: the default decode (chunks that carry the streaming state) equals
    one whole-sequence pass throughout; the windowed one (qwen-tts's, matched above) differs after 300 frames
    beyond the parity tolerance (its 25-frame context is shorter than the decoder's reach), so the parity test
    above really exercises the windows."""
    codes = ours.encode(noisy_sines([LONG, HOP * 333, HOP * 40]))  # a batch across window edges
    one_pass = ours.decode(codes, chunk_size=10_000)
    exact = ours.decode(codes)
    assert all((a - b).abs().max() <= 1e-5 for a, b in zip(exact, one_pass))
    for chunk_size in (1, 7, 64):
        again = ours.decode(codes[:1], chunk_size=chunk_size)[0]
        assert (again - one_pass[0]).abs().max() <= 1e-4  # float32 rounding of other conv shapes
    windowed = ours.decode(codes, windowed=True)[0]
    first = (windowed[: 300 * HOP] - one_pass[0][: 300 * HOP]).abs().max().item()
    later = (windowed[300 * HOP:] - one_pass[0][300 * HOP:]).abs().max().item()
    print(f"windowed vs one pass: first window {first:.1e}, later {later:.1e}")
    assert first < 1e-5 and later > 1e-4


def test_export_loads_in_qwen_tts(released, ours, tmp_path):
    """Our folder loads in qwen-tts's own wrapper (feature extractor included) and gives the same results."""
    ours.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "config.json", "model.safetensors", "preprocessor_config.json"]
    wrapper = Qwen3TTSTokenizer.from_pretrained(str(tmp_path))
    wavs = noisy_sines(LENGTHS, seed=4)
    expected = ours.encode(wavs)
    codes = wrapper.encode([w.numpy() for w in wavs], sr=24_000).audio_codes
    assert all(torch.equal(c, e) for c, e in zip(codes, expected))
    audio, sr = wrapper.decode({"audio_codes": expected})
    assert sr == 24_000
    assert_same_audio([torch.from_numpy(a) for a in audio], ours.decode(expected))
    ref_state = released[0].state_dict()
    assert all(torch.equal(v, ref_state[k]) for k, v in wrapper.model.state_dict().items())


def test_config_round_trip_keeps_unknown_keys(released, ours, tmp_path):
    written = json.loads((released[1] / "config.json").read_text())
    assert CodecConfig.from_dict(written).to_dict() == {
        **written,
        "decoder_config": ours.config.decoder_config.to_dict(),  # qwen-tts omits three unused released keys
    }
    written["future_key"] = {"a": [1, 2]}
    written["encoder_config"]["future_encoder_key"] = 3
    ours_again = CodecConfig.from_dict(written)
    (tmp_path / "model").mkdir()
    SpeechTokenizer(ours_again).save_pretrained(tmp_path / "model")
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["future_key"] == {"a": [1, 2]} and saved["encoder_config"]["future_encoder_key"] == 3
    assert saved == ours_again.to_dict()


def test_model_folder_and_errors(released, tmp_path):
    """A TTS model folder's ``speech_tokenizer/`` is found; a wrong checkpoint is refused naming file and key."""
    folder = released[1]
    tokenizer = SpeechTokenizer.from_pretrained(folder)
    tokenizer.save_pretrained(tmp_path / "tts" / "speech_tokenizer")
    (tmp_path / "tts" / "config.json").write_text('{"model_type": "qwen3_tts"}')
    assert SpeechTokenizer.from_pretrained(tmp_path / "tts").config.to_dict() == tokenizer.config.to_dict()

    config = json.loads((folder / "config.json").read_text())
    config["decoder_config"]["num_hidden_layers"] = 2
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(json.dumps(config))
    (tmp_path / "bad" / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match=r"bad/model.safetensors.*missing decoder\.pre_transformer\.layers\.1\."):
        SpeechTokenizer.from_pretrained(tmp_path / "bad")
    config["encode_downsample_rate"] = 1920
    (tmp_path / "bad" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="config.json: encode_downsample_rate 1920"):
        SpeechTokenizer.from_pretrained(tmp_path / "bad")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        SpeechTokenizer.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="codes 0 must be integers in"):
        tokenizer.decode([torch.full((3, KEEP), TINY["codebook_size"])])
    with pytest.raises(ValueError, match="waveform 1 must be a non-empty 1-D"):
        tokenizer.encode([torch.zeros(5), torch.zeros(0)])


def test_cli_round_trip(released, tmp_path, capsys):
    """16 kHz and 44.1 kHz files are resampled to 24 kHz; a missing file is reported, the others still done."""
    folder = released[1]
    for name, rate, seconds in (("low", 16_000, 0.05), ("high", 44_100, 0.03)):
        t = np.arange(int(rate * seconds)) / rate
        sf.write(tmp_path / f"{name}.wav", 0.5 * np.sin(2 * np.pi * 440 * t), rate)
    inputs = [str(tmp_path / "low.wav"), str(tmp_path / "missing.wav"), str(tmp_path / "high.wav")]
    assert main(["codec", "encode", "--model", str(folder), "--out", str(tmp_path / "codes"), *inputs]) == 1
    assert "missing.wav: file not found" in capsys.readouterr().err
    frames = {}
    for name, samples in (("low", 1200), ("high", 720)):  # at 24 kHz
        codes = np.load(tmp_path / "codes" / f"{name}.npy")
        assert codes.dtype == np.int64 and codes.shape == (math.ceil(samples / HOP), KEEP)
        frames[name] = codes.shape[0]

    npys = [str(tmp_path / "codes" / f"{name}.npy") for name in ("low", "high")]
    (tmp_path / "text.npy").write_text("not numpy")
    status = main(["codec", "decode", "--model", str(folder), "--out", str(tmp_path / "wav"), *npys,
                   str(tmp_path / "text.npy")])
    assert status == 1 and "text.npy: cannot read codes" in capsys.readouterr().err
    for name in ("low", "high"):
        audio, rate = sf.read(tmp_path / "wav" / f"{name}.wav")
        assert rate == 24_000 and audio.shape == (frames[name] * HOP,)
    assert main(["codec", "decode", "--model", str(folder), "--out", str(tmp_path / "wav"), npys[0]]) == 0
    assert main(["codec", "decode", "--model", str(tmp_path), "--out", str(tmp_path / "wav"), npys[0]]) == 2
    assert "no config.json" in capsys.readouterr().err


def test_tiny_codec_config_is_the_demo_codec_and_trains(tmp_path):
    """``tiny_codec_config()`` (tests' random releases) and ``qtts/configs/model/codec_tiny_12hz.yaml``
    (the demo's) are one model, and its quantizer output feeds its decoder (what training needs)."""
    from omegaconf import OmegaConf

    from qtts.models.codec.vq_training import quantize
    from qtts.models.random_release import tiny_codec_config

    values = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "model" / "codec_tiny_12hz.yaml"))
    values.pop("_target_")
    config = tiny_codec_config()
    assert CodecConfig(**values).to_dict() == config.to_dict()
    codec = SpeechTokenizer(config).eval()
    wav = torch.randn(1, 1, 3 * 1920)
    out = quantize(codec.encoder.quantizer, codec.encoder.encode_latent(wav), 16)
    assert codec.decoder.decode_latent(out.quantized).shape == (1, 1, 3 * 1920)
