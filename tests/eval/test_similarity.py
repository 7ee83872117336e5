"""Speaker similarity: the built-in Resemblyzer on espeak-ng voices, WavLM + ECAPA-TDNN in the public checkpoint
layout (tiny random weights), a qtts model's own speaker encoder, and open_speaker_embedder's dispatch."""

from __future__ import annotations

import shutil
import socket
import subprocess

import pytest
import torch

from qtts.audio.io import load_audio, resample
from qtts.eval.asr import to_asr_rate
from qtts.eval.similarity import (
    QttsSpeakerEmbedder,
    ResemblyzerEmbedder,
    SpeakerEmbedderError,
    WavLMEcapaEmbedder,
    open_speaker_embedder,
    speaker_similarity,
)
from qtts.eval.wavlm_ecapa import (
    WAVLM_PREFIX,
    CheckpointError,
    EcapaConfig,
    WavLMEcapa,
    transformers_to_unispeech,
    wavlm_large_config,
)

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call me tomorrow morning at the office.",
    "It is a beautiful day for a walk in the park.",
]
# Two clearly different people: a low male voice and a high female one.
VOICE_A = ("en-us+m3", 40)
VOICE_B = ("en-us+f4", 70)


def espeak(text: str, voice: tuple[str, int], path) -> torch.Tensor:
    binary = shutil.which("espeak-ng")
    if binary is None:
        pytest.skip("espeak-ng not installed")
    name, pitch = voice
    subprocess.run([binary, "-b", "1", "-v", name, "-p", str(pitch), "-s", "150", "-w", str(path)],
                   input=text.encode(), check=True)
    wav, sr = load_audio(path, sample_rate=None)  # 22.05 kHz: through the 16 kHz resampling
    return to_asr_rate(wav, sr)


@pytest.fixture(scope="module")
def voices(tmp_path_factory) -> dict[str, list[torch.Tensor]]:
    folder = tmp_path_factory.mktemp("voices")
    return {key: [espeak(s, voice, folder / f"{key}{i}.wav") for i, s in enumerate(SENTENCES)]
            for key, voice in (("a", VOICE_A), ("b", VOICE_B))}


@pytest.fixture(scope="module")
def default_embedder():
    return open_speaker_embedder(None)


# -- the built-in default -------------------------------------------------------------------------------------


def test_default_embedder_separates_voices(default_embedder, voices):
    a, b = voices["a"], voices["b"]
    same = speaker_similarity(default_embedder, [a[0], a[1], b[0], b[1]], [a[1], a[2], b[1], b[2]])
    different = speaker_similarity(default_embedder, [a[0], a[1], a[2], b[0]], [b[1], b[2], b[0], a[2]])
    mean_same, mean_different = sum(same) / len(same), sum(different) / len(different)
    print(f"resemblyzer SIM: same voice {mean_same:.3f}, different voice {mean_different:.3f}")
    assert mean_same - mean_different >= 0.2, (same, different)
    assert min(same) > max(different)


def test_default_embedder_output(default_embedder, voices):
    assert isinstance(default_embedder, ResemblyzerEmbedder) and default_embedder.name == "resemblyzer"
    wavs = voices["a"][:2]
    emb = default_embedder.embed(wavs)
    assert emb.shape == (2, 256) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(default_embedder.embed(wavs), emb, rtol=0, atol=0)  # deterministic
    assert speaker_similarity(default_embedder, wavs[:1], wavs[:1])[0] == pytest.approx(1.0, abs=1e-5)
    # Quiet audio is raised to the encoder's -30 dBFS: two levels below it give one embedding (up to rounding).
    quiet = default_embedder.embed([wavs[0] * 0.01, wavs[0] * 0.001])
    torch.testing.assert_close(quiet[0], quiet[1], atol=1e-4, rtol=0)
    # Full length, no VAD trimming: a second of silence appended moves the embedding.
    padded = torch.cat([wavs[0], torch.zeros(16_000)])
    assert not torch.allclose(default_embedder.embed([padded])[0], emb[0], atol=1e-3)
    silent = default_embedder.embed([torch.zeros(16_000)])
    assert torch.isfinite(silent).all()
    assert default_embedder.embed([]).shape == (0, 256)


def test_default_embedder_works_offline(monkeypatch, voices):
    def refuse(*args, **kwargs):
        raise OSError("network access is blocked in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    embedder = open_speaker_embedder(None)
    scores = speaker_similarity(embedder, voices["a"][:1], voices["a"][1:2])
    assert 0.5 < scores[0] <= 1.0


def test_embed_at_resamples(default_embedder, voices):
    wav = voices["a"][0]
    at_24k = resample(wav.unsqueeze(0), 16_000, 24_000)
    emb = default_embedder.embed_at([at_24k], 24_000)
    assert speaker_similarity(default_embedder, [wav], [wav])[0] == pytest.approx(1.0, abs=1e-5)
    assert torch.nn.functional.cosine_similarity(emb, default_embedder.embed([wav])).item() > 0.99


def test_similarity_input_errors(default_embedder):
    with pytest.raises(ValueError, match="2 wavs but 1 references"):
        speaker_similarity(default_embedder, [torch.zeros(100)] * 2, [torch.zeros(100)])
    with pytest.raises(ValueError, match="wav 1: expected a 1-D tensor"):
        default_embedder.embed([torch.zeros(100), torch.zeros(1, 100)])
    with pytest.raises(ValueError, match="wav 0 is empty"):
        default_embedder.embed([torch.zeros(0)])
    assert speaker_similarity(default_embedder, [], []) == []


def test_open_rejects_what_is_not_a_model(tmp_path):
    with pytest.raises(SpeakerEmbedderError, match="does not exist"):
        open_speaker_embedder(tmp_path / "missing")
    with pytest.raises(SpeakerEmbedderError, match=str(tmp_path)):
        open_speaker_embedder(tmp_path)  # an empty folder


# -- WavLM-Large + ECAPA-TDNN in the public checkpoint layout -------------------------------------------------


def upstream_keys(layers: int = 24, conv_layers: int = 7, scale: int = 8) -> set[str]:
    """The state-dict names of UniSpeech's ``ECAPA_TDNN_SMALL(feat_type="wavlm_large")`` written out from the upstream
    module definitions (microsoft/UniSpeech ``downstreams/speaker_verification/models/ecapa_tdnn.py`` and the
    s3prl/UniSpeech ``WavLM.py`` it wraps as ``feature_extract.model``), independently of the key map under test."""
    w = WAVLM_PREFIX

    def pair(prefix: str) -> list[str]:
        return [f"{prefix}.weight", f"{prefix}.bias"]

    def bn(prefix: str) -> list[str]:
        return [*pair(prefix), f"{prefix}.running_mean", f"{prefix}.running_var", f"{prefix}.num_batches_tracked"]

    keys = ["feature_weight", w + "mask_emb", *pair(w + "post_extract_proj"), *pair(w + "layer_norm"),
            w + "encoder.pos_conv.0.bias", w + "encoder.pos_conv.0.weight_g", w + "encoder.pos_conv.0.weight_v",
            *pair(w + "encoder.layer_norm")]
    for i in range(conv_layers):  # extractor_mode layer_norm, conv_bias False: conv, dropout, (T, LN, T), GELU
        keys += [f"{w}feature_extractor.conv_layers.{i}.0.weight", *pair(f"{w}feature_extractor.conv_layers.{i}.2.1")]
    for i in range(layers):
        p = f"{w}encoder.layers.{i}."
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj", "grep_linear"):
            keys += pair(p + "self_attn." + proj)
        keys += [p + "self_attn.grep_a", *pair(p + "self_attn_layer_norm"), *pair(p + "fc1"), *pair(p + "fc2"),
                 *pair(p + "final_layer_norm")]
        if i == 0:  # relative position bias lives in the first layer only
            keys.append(p + "self_attn.relative_attention_bias.weight")
    keys += [*pair("layer1.conv"), *bn("layer1.bn")]
    for n in (2, 3, 4):
        p = f"layer{n}."
        keys += [*pair(p + "Conv1dReluBn1.conv"), *bn(p + "Conv1dReluBn1.bn"), *pair(p + "Conv1dReluBn2.conv"),
                 *bn(p + "Conv1dReluBn2.bn"), *pair(p + "SE_Connect.linear1"), *pair(p + "SE_Connect.linear2")]
        for j in range(scale - 1):
            keys += [*pair(f"{p}Res2Conv1dReluBn.convs.{j}"), *bn(f"{p}Res2Conv1dReluBn.bns.{j}")]
    keys += [*pair("conv"), *pair("pooling.linear1"), *pair("pooling.linear2"), *bn("bn"), *pair("linear")]
    return set(keys)


def public_state(model: WavLMEcapa) -> dict[str, torch.Tensor]:
    """The model's weights under the checkpoint's names (as UniSpeech saves ``{"model": state_dict}``)."""
    out = {}
    for key, value in model.state_dict().items():
        if key.startswith("feature_extract."):
            name = transformers_to_unispeech(key[len("feature_extract."):])
            assert name is not None, key
            key = WAVLM_PREFIX + name
        out[key] = value.clone()
    return out


def test_full_size_keys_match_the_public_checkpoint():
    with torch.device("meta"):
        model = WavLMEcapa()
    public = public_state(model)
    assert set(public) == upstream_keys()
    assert len(public) == len(model.state_dict())  # the map is one-to-one
    shapes = {k: tuple(v.shape) for k, v in public.items()}
    assert shapes["feature_weight"] == (25,)
    assert shapes["layer1.conv.weight"] == (512, 1024, 5)
    assert shapes["layer2.Res2Conv1dReluBn.convs.0.weight"] == (64, 64, 3)
    assert shapes["conv.weight"] == (1536, 1536, 1)
    assert shapes["pooling.linear1.weight"] == (128, 1536, 1)
    assert shapes["bn.running_mean"] == (3072,) and shapes["linear.weight"] == (256, 3072)
    assert shapes[WAVLM_PREFIX + "encoder.pos_conv.0.weight_v"] == (1024, 64, 128)
    assert shapes[WAVLM_PREFIX + "encoder.pos_conv.0.weight_g"] == (1, 1, 128)
    assert shapes[WAVLM_PREFIX + "encoder.layers.0.self_attn.relative_attention_bias.weight"] == (320, 16)
    assert shapes[WAVLM_PREFIX + "encoder.layers.0.self_attn.grep_linear.weight"] == (8, 64)
    assert shapes[WAVLM_PREFIX + "encoder.layers.0.self_attn.grep_a"] == (1, 16, 1, 1)
    assert shapes[WAVLM_PREFIX + "feature_extractor.conv_layers.0.0.weight"] == (512, 1, 10)
    assert shapes[WAVLM_PREFIX + "post_extract_proj.weight"] == (1024, 512)


TINY_WAVLM = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
TINY_ECAPA = EcapaConfig(feat_dim=32, channels=16, mfa_channels=24, emb_dim=8, res2net_scale=4, se_channels=8,
                         attention_channels=8, num_features=3)


def random_tiny(seed: int = 0, ecapa: EcapaConfig = TINY_ECAPA) -> WavLMEcapa:
    """Every tensor drawn from ``seed`` alone (not added to the default init), so another process rebuilds it."""
    model = WavLMEcapa(ecapa, wavlm_large_config(**TINY_WAVLM))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if p.dim() > 1:
                p.copy_(noise / p[0].numel() ** 0.5)
            else:  # norm scales and mixing weights around 1, biases around 0
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * noise)
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=gen) + 0.5)
            elif name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=gen) * 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    model = random_tiny()
    folder = tmp_path_factory.mktemp("unispeech")
    state = public_state(model)
    torch.save({"model": state}, folder / "wavlm_large_finetune.pth")
    return folder, model, state


def tiny_wavs() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(16_000, generator=gen) * 0.1, torch.randn(12_345, generator=gen) * 0.3]


def test_tiny_checkpoint_is_in_the_public_layout(tiny_checkpoint):
    _, _, state = tiny_checkpoint
    assert set(state) == upstream_keys(layers=2, scale=4)


@pytest.mark.parametrize("as_folder", [False, True])
def test_wavlm_ecapa_loads_every_key(tiny_checkpoint, as_folder):
    folder, reference, state = tiny_checkpoint
    embedder = open_speaker_embedder(folder if as_folder else folder / "wavlm_large_finetune.pth")
    assert isinstance(embedder, WavLMEcapaEmbedder) and embedder.dim == 8
    loaded = public_state(embedder.model)
    assert set(loaded) == set(state)
    for key, value in state.items():  # every file tensor sits in the model
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0, msg=key)
    wavs = tiny_wavs()
    emb = embedder.embed(wavs)
    assert emb.shape == (2, 8) and emb.dtype == torch.float32 and torch.isfinite(emb).all()
    torch.testing.assert_close(embedder.embed(wavs), emb, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(emb[1], reference(wavs[1]))
    assert not torch.allclose(emb[0], emb[1])


def test_wavlm_ecapa_every_weight_matters(tiny_checkpoint, tmp_path):
    """A changed tensor in the file changes the embedding: the file's weights, not random ones, are used."""
    _, _, state = tiny_checkpoint
    wav = tiny_wavs()[:1]
    base = open_speaker_embedder(tmp_path_file(tmp_path, "base.pth", state)).embed(wav)
    for key in ("feature_weight", "linear.bias", "layer3.SE_Connect.linear1.weight",
                WAVLM_PREFIX + "encoder.layers.1.fc2.weight",
                WAVLM_PREFIX + "encoder.layers.0.self_attn.relative_attention_bias.weight"):
        changed = dict(state)
        changed[key] = state[key] + torch.linspace(0.2, 1.0, state[key].numel()).view(state[key].shape)  # not uniform:
        # softmax(feature_weight) ignores a constant shift
        other = open_speaker_embedder(tmp_path_file(tmp_path, "changed.pth", changed)).embed(wav)
        assert not torch.allclose(other, base, atol=1e-5), key


def tmp_path_file(folder, name, state):
    path = folder / name
    torch.save({"model": state}, path)
    return path


def test_wavlm_ecapa_key_errors_name_file_and_key(tiny_checkpoint, tmp_path):
    _, _, state = tiny_checkpoint
    missing = {k: v for k, v in state.items() if k != "layer2.SE_Connect.linear2.bias"}
    path = tmp_path_file(tmp_path, "missing.pth", missing)
    with pytest.raises(CheckpointError, match=r"missing\.pth.*missing keys \['layer2\.SE_Connect\.linear2\.bias'\]"):
        open_speaker_embedder(path)
    gone = {k: v for k, v in state.items() if k != WAVLM_PREFIX + "encoder.layers.1.fc1.bias"}
    with pytest.raises(CheckpointError, match=r"feature_extract\.model\.encoder\.layers\.1\.fc1\.bias"):
        open_speaker_embedder(tmp_path_file(tmp_path, "gone.pth", gone))
    extra = {**state, "layer5.conv.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match=r"extra\.pth.*unexpected keys \['layer5\.conv\.weight'\]"):
        open_speaker_embedder(tmp_path_file(tmp_path, "extra.pth", extra))
    wrong = {**state, WAVLM_PREFIX + "encoder.layers.0.self_attn.bogus": torch.zeros(1)}
    with pytest.raises(CheckpointError, match=r"wrong\.pth: unexpected WavLM keys.*self_attn\.bogus"):
        open_speaker_embedder(tmp_path_file(tmp_path, "wrong.pth", wrong))
    with pytest.raises(CheckpointError, match=r"notes\.pth.*'model'"):
        torch.save({"state": state}, tmp_path / "notes.pth")
        open_speaker_embedder(tmp_path / "notes.pth")


def test_wavlm_from_a_second_file(tiny_checkpoint, tmp_path):
    """A head-only checkpoint takes WavLM from WavLM-Large.pt (UniSpeech names) or a transformers WavLM folder."""
    _, reference, state = tiny_checkpoint
    head = {k: v for k, v in state.items() if not k.startswith(WAVLM_PREFIX)}
    wavlm = {k[len(WAVLM_PREFIX):]: v for k, v in state.items() if k.startswith(WAVLM_PREFIX)}
    wavs = tiny_wavs()
    with torch.no_grad():
        expected = torch.stack([reference(w) for w in wavs])

    only_head = tmp_path / "head"
    only_head.mkdir()
    torch.save({"model": head}, only_head / "wavlm_large_finetune.pth")
    with pytest.raises(CheckpointError, match="holds no WavLM weights"):
        open_speaker_embedder(only_head)

    unispeech = tmp_path / "unispeech"
    shutil.copytree(only_head, unispeech)
    torch.save({"cfg": {"encoder_layers": 2}, "model": wavlm}, unispeech / "WavLM-Large.pt")
    torch.testing.assert_close(open_speaker_embedder(unispeech).embed(wavs), expected)

    hf = tmp_path / "hf"
    shutil.copytree(only_head, hf)
    reference.feature_extract.save_pretrained(hf / "wavlm-large")
    torch.testing.assert_close(open_speaker_embedder(hf).embed(wavs), expected)

    # Older transformers saves (microsoft/wavlm-large's pytorch_model.bin) name the weight norm weight_g / weight_v.
    old = tmp_path / "hf_old"
    shutil.copytree(only_head, old)
    (old / "wavlm-large").mkdir()
    shutil.copy(hf / "wavlm-large" / "config.json", old / "wavlm-large" / "config.json")
    legacy = {k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1",
                                                                                   "weight_v"): v
              for k, v in reference.feature_extract.state_dict().items()}
    assert "encoder.pos_conv_embed.conv.weight_g" in legacy
    torch.save(legacy, old / "wavlm-large" / "pytorch_model.bin")
    torch.testing.assert_close(open_speaker_embedder(old).embed(wavs), expected)
    del legacy["encoder.layers.1.final_layer_norm.bias"]
    torch.save(legacy, old / "wavlm-large" / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"wavlm-large does not fit.*encoder\.layers\.1\.final_layer_norm\.bias"):
        open_speaker_embedder(old)

    # A full checkpoint next to a WavLM file: the checkpoint's own (fine-tuned) WavLM wins.
    full = tmp_path / "full"
    full.mkdir()
    torch.save({"model": state}, full / "wavlm_large_finetune.pth")
    torch.save({"model": {k: v + 1 for k, v in wavlm.items()}}, full / "WavLM-Large.pt")
    torch.testing.assert_close(open_speaker_embedder(full).embed(wavs), expected)
    with pytest.raises(CheckpointError, match="already holds WavLM"):
        WavLMEcapaEmbedder(full / "wavlm_large_finetune.pth", full / "WavLM-Large.pt")


# -- a qtts model's own speaker encoder -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_tts_folder(tmp_path_factory):
    from qtts.models.random_weights import randomize_tts
    from qtts.models.talker import TTSModel
    from qtts.models.talker.config import tiny

    folder = tmp_path_factory.mktemp("tiny_tts")
    model = TTSModel(tiny())
    randomize_tts(model, 0)
    model.save_pretrained(folder)
    return folder, model


def test_qtts_speaker_encoder(tiny_tts_folder, voices):
    folder, model = tiny_tts_folder
    embedder = open_speaker_embedder(folder)
    assert isinstance(embedder, QttsSpeakerEmbedder) and embedder.dim == 64 and embedder.sample_rate == 24_000
    wavs = voices["a"][:2]
    emb = embedder.embed(wavs)
    assert emb.shape == (2, 64) and emb.dtype == torch.float32
    with torch.no_grad():  # the Synthesizer's x-vector path: the clip at the encoder's rate, embed_audio
        expected = [model.speaker_encoder.embed_audio(resample(w.unsqueeze(0), 16_000, 24_000)[0]) for w in wavs]
    torch.testing.assert_close(emb, torch.stack(expected))
    torch.testing.assert_close(embedder.embed(wavs), emb, rtol=0, atol=0)
    scores = speaker_similarity(embedder, wavs, wavs[::-1])
    assert scores[0] == pytest.approx(scores[1]) and -1 <= scores[0] <= 1


def test_qtts_model_without_speaker_encoder(tmp_path):
    from qtts.models.talker import TTSModel
    from qtts.models.talker.config import tiny

    TTSModel(tiny("custom_voice")).save_pretrained(tmp_path)
    with pytest.raises(SpeakerEmbedderError, match="has no speaker encoder"):
        open_speaker_embedder(tmp_path)


# Upstream-sized head (its 1536 MFA channels, Res2Net scale 8, SE and attention 128 are fixed in ECAPA_TDNN_SMALL)
# over a tiny WavLM, so the upstream code can build the same model.
GOLDEN_ECAPA = EcapaConfig(feat_dim=32, channels=16, emb_dim=8, num_features=3)
# Embedding of golden_wav() by UniSpeech's own ECAPA_TDNN head + WavLM.py (BytedanceSpeech/seed-tts-eval
# thirdparty/UniSpeech at 752f4297) loaded with public_state(random_tiny(7, GOLDEN_ECAPA)), CPU float32.
GOLDEN_EMBEDDING = [1.186266, -1.397212, 0.61622, -0.983515, 0.023982, -1.010095, -0.3547, -0.501155]


def golden_wav() -> torch.Tensor:
    t = torch.arange(24_000) / 16_000
    gen = torch.Generator().manual_seed(3)
    return 0.3 * torch.sin(2 * torch.pi * 180 * t) * torch.sin(2 * torch.pi * 3 * t) + 0.05 * torch.randn(
        t.shape, generator=gen)


def test_matches_upstream_golden_values():
    model = random_tiny(7, GOLDEN_ECAPA)
    with torch.no_grad():
        out = model(golden_wav())
    torch.testing.assert_close(out, torch.tensor(GOLDEN_EMBEDDING), atol=1e-4, rtol=1e-4)
