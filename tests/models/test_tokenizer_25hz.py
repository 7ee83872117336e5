"""The 25 Hz tokenizer's encoder against qwen-tts 0.1.1 (fp32 CPU, tiny random weights scaled up so every path
moves the outputs): released keys both ways, log-mel, codes per item, the ASR path, the reference mel, batching
(the padding fix), training-mode VQ, folder errors."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from qtts.audio.features import WhisperLogMel
from qtts.models.codec.vq_training import VQTrainingConfig
from qtts.models.tokenizer_25hz import Tokenizer25Hz, Tokenizer25HzConfig
from qtts.models.tokenizer_25hz import vq as vq_module

configuration = pytest.importorskip("qwen_tts.core.tokenizer_25hz.configuration_qwen3_tts_tokenizer_v1")
modeling = pytest.importorskip("qwen_tts.core.tokenizer_25hz.modeling_qwen3_tts_tokenizer_v1")
whisper = pytest.importorskip("qwen_tts.core.tokenizer_25hz.vq.whisper_encoder")
speech_vq = pytest.importorskip("qwen_tts.core.tokenizer_25hz.vq.speech_vq")

pytestmark = pytest.mark.usefixtures("one_thread")

SR, CODE = 16_000, 640  # samples per code
WINDOW = 20 * CODE // 2  # samples per 20-frame attention window of the tiny config (0.4 s)
FULL = [2 * WINDOW, 3 * WINDOW - CODE + 1]  # whole windows once padded to a code: qwen-tts's bug cannot show
UNEVEN = [WINDOW * 2 + 3 * CODE + 17, 5 * CODE, 17 * CODE - 300, 100]  # short last windows, one of 100 samples


def sines(lengths, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [0.4 * torch.sin(torch.arange(n) * (0.03 + 0.02 * i)) * torch.linspace(0.2, 1.0, n)
            + 0.1 * torch.randn(n, generator=gen) for i, n in enumerate(lengths)]


def qwen_config(config: Tokenizer25HzConfig):
    return configuration.Qwen3TTSTokenizerV1Config(**{k: v for k, v in config.to_dict().items() if k != "model_type"})


def randomize(model, calibration, seed=0):
    """qwen-tts's model with O(1) activations: unit-gain weights, LayerNorms ~1, biases ~0.2, and codewords drawn
    from the latents the VQ sees on ``calibration`` audio (plus noise), so the codes vary (a default init gives
    one code for everything)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.encoder.named_parameters():
            if "_ln." in name or "ln_post" in name:
                value = 1 + 0.3 * torch.randn(p.shape, generator=gen) if name.endswith("weight") else \
                    0.2 * torch.randn(p.shape, generator=gen)
            elif name.endswith("bias"):
                value = 0.2 * torch.randn(p.shape, generator=gen)
            else:
                value = torch.randn(p.shape, generator=gen) / math.sqrt(p[0].numel())
            p.copy_(value)
        net = model.encoder.tokenizer
        latents = []
        hook = net.audio_vq_downsample.register_forward_hook(lambda m, i, o: latents.append(o[0].T))
        model.encoder.quantize_speech(calibration)
        hook.remove()
        z = torch.cat(latents)
        book = net.audio_quantizer.rvqs[0]
        picks = torch.randint(len(z), (book.embed.shape[1],), generator=gen)
        book.embed[0] = z[picks] + 0.3 * z.std() * torch.randn(z[picks].shape, generator=gen)
        book.cluster_size[0] = torch.rand(book.cluster_size.shape[1], generator=gen) + 0.5
        book.embed_avg[0] = book.embed[0] * book.cluster_size[0, :, None]


def masked_attention(self, q, k, v, cu_seqlens):
    """qwen-tts's fp32 window attention with the padding mask it means (its bool mask stays True: bug 1)."""
    out = []
    for start, end in zip(cu_seqlens[:-1].tolist(), cu_seqlens[1:].tolist()):
        q_, k_, v_ = (t[start:end].view(end - start, self.n_head, -1).transpose(0, 1) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q_, k_, v_)
        out.append(y.transpose(0, 1).reshape(end - start, -1))
    return torch.cat(out)


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """(qwen-tts model with scaled random weights, the folder its ``save_pretrained`` wrote)."""
    torch.manual_seed(0)
    ref = modeling.Qwen3TTSTokenizerV1Model(qwen_config(Tokenizer25HzConfig.tiny())).eval()
    randomize(ref, sines([3 * WINDOW, 2 * WINDOW], seed=5))
    folder = tmp_path_factory.mktemp("released25")
    ref.save_pretrained(folder)
    return ref, folder


@pytest.fixture(scope="module")
def ours(released):
    return Tokenizer25Hz.from_pretrained(released[1])


@pytest.fixture
def fixed_reference(monkeypatch):
    monkeypatch.setattr(whisper.MultiHeadAttention, "qkv_attention_manual", masked_attention)


def reference_codes(ref, wavs):
    """qwen-tts's codes, one item at a time."""
    with torch.no_grad():
        return [ref.encoder.quantize_speech([w])[0][0] for w in wavs]


def test_state_dict_has_the_released_keys_and_loads_strictly_both_ways():
    config = Tokenizer25HzConfig.tiny()
    ref = modeling.Qwen3TTSTokenizerV1Model(qwen_config(config))
    expected = ref.state_dict()
    model = Tokenizer25Hz(config)
    got = model.state_dict()
    assert {k: tuple(v.shape) for k, v in got.items()} == {k: tuple(v.shape) for k, v in expected.items()}
    assert {k for k, v in got.items() if k not in dict(model.named_parameters())} == {
        "encoder.tokenizer.positional_embedding", "decoder.dit.rotary_embed.inv_freq"} | {
        f"encoder.tokenizer.audio_quantizer.rvqs.0.{b}" for b in ("inited", "cluster_size", "embed", "embed_avg")}
    model.load_state_dict(expected, strict=True)
    ref.load_state_dict({**ref.state_dict(), **got}, strict=True)
    assert torch.equal(ref.encoder.tokenizer.positional_embedding, got["encoder.tokenizer.positional_embedding"])


def test_released_size_has_the_released_keys_and_shapes(monkeypatch):
    """The default (released-architecture) config, built on the meta device: 500 encoder keys, 648M parameters
    (the decoder's keys: test_tokenizer_25hz_decoder.py)."""
    import torch.fx.experimental._config as fx_config

    monkeypatch.setattr(fx_config, "meta_nonzero_assume_all_nonzero", True)  # qwen-tts indexes while building
    config = Tokenizer25HzConfig()
    with torch.device("meta"):
        ref = modeling.Qwen3TTSTokenizerV1Encoder(qwen_config(config).encoder_config)
        model = Tokenizer25Hz(config)
    expected = {f"encoder.{k}": tuple(v.shape) for k, v in ref.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in model.state_dict().items() if k.startswith("encoder.")} == expected
    assert round(sum(p.numel() for p in model.encoder.parameters()) / 1e6) == 648


def test_log_mel_matches_qwen_tts():
    wavs = sines(UNEVEN + [WINDOW])
    mel = WhisperLogMel()
    step = CODE
    padded = [F.pad(w, (0, -len(w) % step)) for w in wavs]
    batch = torch.nn.utils.rnn.pad_sequence(padded, batch_first=True)
    got = mel(batch, torch.tensor([len(p) for p in padded]))
    for i, w in enumerate(wavs):
        expected = whisper.get_mel_audio(w, padding=True, audio_vq_ds_rate=2, n_mels=128).T
        assert got[i, : len(expected)].shape == expected.shape == (len(padded[i]) // 160, 128)
        assert (got[i, : len(expected)] - expected).abs().max() <= 1e-5
        assert got[i, len(expected):].abs().max() == 0 if len(expected) < got.shape[1] else True


def test_codes_match_qwen_tts_where_its_attention_is_right(released, ours):
    ref, _ = released
    wavs = sines(FULL)
    codes = ours.encode(wavs).codes
    expected = reference_codes(ref, wavs)
    assert [c.shape for c in codes] == [(math.ceil(len(w) / CODE),) for w in wavs]
    assert all(c.dtype == torch.long and torch.equal(c, e) for c, e in zip(codes, expected))
    assert len(torch.cat(codes).unique()) > 8  # the codes depend on the input


def test_codes_match_qwen_tts_with_its_padding_mask_fixed(released, ours, fixed_reference):
    ref, _ = released
    wavs = sines(UNEVEN)
    codes = ours.encoder.encode(wavs)  # codes only: the 100-sample item is too short for a reference mel
    expected = reference_codes(ref, wavs)
    assert [len(c) for c in codes] == [math.ceil(len(w) / CODE) for w in wavs]
    assert all(torch.equal(c, e) for c, e in zip(codes, expected))
    assert len(torch.cat(codes).unique()) > 8


def test_qwen_tts_attends_to_padding_in_a_short_last_window(released, ours):
    """Bug 1, measured: without the fix its codes for one uneven item differ from the correctly masked ones."""
    ref, _ = released
    wav = sines([WINDOW * 2 + 3 * CODE + 17])
    assert not torch.equal(reference_codes(ref, wav)[0], ours.encoder.encode(wav)[0])


def test_a_batch_of_different_lengths_equals_each_item_alone(ours, monkeypatch):
    wavs = sines(UNEVEN + FULL, seed=3)
    together = ours.encoder.encode(wavs)
    alone = [ours.encoder.encode([w])[0] for w in wavs]
    assert all(torch.equal(a, b) for a, b in zip(together, alone))
    monkeypatch.setattr(vq_module, "DISTANCE_ELEMENTS", 64 * 5)  # distances five rows at a time
    assert all(torch.equal(a, b) for a, b in zip(ours.encoder.encode(wavs), together))
    mel, lengths = ours.encoder.features(wavs)
    with torch.no_grad():
        out = ours.encoder.tokenizer(mel, lengths)
    for i, w in enumerate(wavs):
        m, n = ours.encoder.features([w])
        with torch.no_grad():
            single = ours.encoder.tokenizer(m, n)
        rows = int(out.lengths[i])
        assert rows == int(single.lengths[0]) == len(alone[i]) + 2
        assert (out.hidden[i, :rows] - single.hidden[0, :rows]).abs().max() <= 1e-5
        assert out.hidden[i, rows:].abs().max() == 0 if rows < out.hidden.shape[1] else True
        assert torch.equal(out.codes[i, : len(alone[i])], alone[i])


def test_asr_path_matches_qwen_tts(released, ours, fixed_reference):
    """The whole network in eval mode (VQ, upsample, later blocks, pooling, ln_post, proj, bos/eos), per item."""
    ref, _ = released
    for wav in sines([UNEVEN[0], FULL[0]], seed=7):
        mels = ref.encoder.speech2mel([wav])
        frames = whisper.get_T_after_cnn(mels[0].shape[-1])
        with torch.no_grad():
            expected, _ = ref.encoder.tokenizer(x_list=mels, audio_mellens=[mels[0].shape[-1]],
                                                audio_aftercnnlens=[frames], audio_seqlens=[frames // 2 + 2])
            mel, lengths = ours.encoder.features([wav])
            got = ours.encoder.tokenizer(mel, lengths)
        rows = int(got.lengths[0])
        assert rows == expected.shape[0] == frames // 2 + 2
        assert expected.abs().mean() > 0.1
        assert (got.hidden[0, :rows] - expected).abs().max() <= 1e-5


def test_reference_mel_matches_qwen_tts(ours):
    sox = pytest.importorskip("sox")
    transformer = sox.Transformer()
    transformer.norm(db_level=-6)
    extractor = speech_vq.MelSpectrogramFeatures()
    wavs = sines([SR + 123, 5 * CODE], seed=9)
    got = ours.encode(wavs).ref_mels
    for wav, mel in zip(wavs, got):
        normed = transformer.build_array(input_array=wav.numpy().astype(np.float32), sample_rate_in=SR)
        expected = extractor.extract(torch.from_numpy(np.array(normed))[None])[0].T
        assert mel.shape == expected.shape == (len(wav) // 160, 80)
        assert (mel - expected).abs().max() <= 1e-5
    # the level of the recording drops out (sox norm)
    assert (ours.reference_mel(0.1 * wavs[0]) - got[0]).abs().max() <= 1e-5


def test_training_mode_vq_updates_the_codebook_and_passes_gradients(ours):
    model = Tokenizer25Hz(ours.config)
    model.load_state_dict(ours.state_dict())
    net = model.encoder.tokenizer.train()
    book = net.audio_quantizer.codebook
    book.reset_()
    wavs = sines(UNEVEN, seed=11)
    mel, lengths = model.encoder.features(wavs)
    gen = torch.Generator().manual_seed(0)
    out = net(mel, lengths, VQTrainingConfig(kmeans_iters=3), gen)
    assert book.inited.item() == 1 and book.embed.abs().sum() > 0  # k-means on the first batch
    assert torch.allclose(book.embed[0], book.embed_avg[0] / book.cluster_size[0, :, None])
    frames = int(out.code_lengths.sum())
    assert out.vq.codes.shape == (frames,) and out.vq.stats["usage"] > 0.1 and out.vq.stats["perplexity"] > 4
    assert out.vq.commitment_loss > 0
    (out.hidden.pow(2).mean() + out.vq.commitment_loss).backward()
    assert net.conv1.weight.grad.abs().sum() > 0  # through the straight-through estimator
    assert net.blocks[-1].mlp[0].weight.grad.abs().sum() > 0
    before = book.embed.clone()
    net(mel, lengths, VQTrainingConfig(), gen)
    assert not torch.equal(before, book.embed)  # the EMA moved it
    net.eval()
    with torch.no_grad():
        out = net(mel, lengths)
        codes, _ = net.encode(mel, lengths)
    assert torch.equal(out.codes, codes)  # eval forward and encode read the same codewords


def test_padding_does_not_move_the_codebook(ours):
    """The EMA statistics see the valid frames only: a batch padded by a long neighbour updates as the item alone."""
    short, long = sines([5 * CODE, 4 * WINDOW], seed=13)
    states = []
    for batch in ([short], [short, torch.zeros(4 * WINDOW)]):
        model = Tokenizer25Hz(ours.config)
        model.load_state_dict(ours.state_dict())
        net = model.encoder.tokenizer.train()
        mel, lengths = model.encoder.features(batch)
        if len(batch) == 2:
            lengths[1] = 0  # a slot with nothing in it
        net(mel, lengths, VQTrainingConfig(dead_code_ratio=0.0))
        states.append(net.audio_quantizer.codebook.cluster_size.clone())
    assert torch.allclose(states[0], states[1])


def test_save_pretrained_round_trips_and_qwen_tts_loads_it(released, ours, tmp_path):
    ref, folder = released
    ours.save_pretrained(tmp_path)
    assert load_file(str(tmp_path / "model.safetensors")).keys() == load_file(str(folder / "model.safetensors")).keys()
    written = json.loads((tmp_path / "config.json").read_text())
    assert written == json.loads((folder / "config.json").read_text())
    again = Tokenizer25Hz.from_pretrained(tmp_path)
    wavs = sines(FULL)
    assert all(torch.equal(a, b) for a, b in zip(again.encode(wavs).codes, ours.encode(wavs).codes))
    theirs = super(modeling.Qwen3TTSTokenizerV1Model, modeling.Qwen3TTSTokenizerV1Model).from_pretrained(tmp_path)
    state = theirs.state_dict()
    assert all(torch.equal(state[k], v) for k, v in ref.state_dict().items())


def test_bad_folders_name_the_file_and_key(released, tmp_path):
    _, folder = released
    config = json.loads((folder / "config.json").read_text())
    weights = load_file(str(folder / "model.safetensors"))
    bad = tmp_path / "bad_config"
    bad.mkdir()
    save_file(weights, str(bad / "model.safetensors"))
    (bad / "config.json").write_text(json.dumps({**config, "encoder_config": {**config["encoder_config"],
                                                                             "n_head": 0}}))
    with pytest.raises(ValueError, match=r"bad_config/config.json: encoder_config.n_head must be"):
        Tokenizer25Hz.from_pretrained(bad)
    (bad / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "encode_downsample_rate"}))
    with pytest.raises(ValueError, match=r"bad_config/config.json: encode_downsample_rate 1920"):
        Tokenizer25Hz.from_pretrained(bad)

    missing = tmp_path / "missing_key"
    missing.mkdir()
    (missing / "config.json").write_text(json.dumps(config))
    key = "encoder.tokenizer.audio_quantizer.rvqs.0.embed"
    save_file({k: v for k, v in weights.items() if k != key}, str(missing / "model.safetensors"))
    with pytest.raises(ValueError, match=rf"missing_key/model.safetensors: .*missing {key}"):
        Tokenizer25Hz.from_pretrained(missing)
    with pytest.raises(FileNotFoundError, match="not a speech tokenizer folder"):
        Tokenizer25Hz.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="waveform 1 must be a non-empty 1-D float tensor"):
        Tokenizer25Hz(Tokenizer25HzConfig.tiny()).encode([torch.zeros(700), torch.zeros(2, 700)])
    mel, lengths = Tokenizer25Hz(Tokenizer25HzConfig.tiny()).encoder.features([torch.zeros(700)])
    with pytest.raises(ValueError, match=r"mel_lengths \[6\] must give each of the 1 items a multiple of 4"):
        Tokenizer25Hz(Tokenizer25HzConfig.tiny()).encoder.tokenizer.encode(mel, lengths - 2)
    with pytest.raises(ValueError, match="waveform 0 has 432 samples; the reference mel"):
        Tokenizer25Hz(Tokenizer25HzConfig.tiny()).encode([torch.zeros(432)])


def test_dead_codes_restart_on_batch_vectors(ours):
    model = Tokenizer25Hz(ours.config)
    model.load_state_dict(ours.state_dict())
    net = model.encoder.tokenizer.train()
    book = net.audio_quantizer.codebook
    with torch.no_grad():
        book.cluster_size[0, :10] = 1e-6  # far below 10 % of the uniform share
        book.embed_avg[0, :10] = book.embed[0, :10] * 1e-6
    before = book.embed[0, :10].clone()
    latents = []
    hook = net.audio_vq_downsample.register_forward_hook(lambda m, i, o: latents.append(o.detach()))
    mel, lengths = model.encoder.features(sines([3 * WINDOW], seed=17))
    net(mel, lengths, VQTrainingConfig(dead_code_ratio=0.1), torch.Generator().manual_seed(0))
    hook.remove()
    batch = latents[0][0].T[: 3 * WINDOW // CODE]
    share = book.cluster_size[0].sum() / book.cluster_size.shape[1]
    assert (book.cluster_size[0, :10] > 0.5 * share).all()
    for row, old in zip(book.embed[0, :10], before):
        assert not torch.allclose(row, old)
        assert (batch - row).norm(dim=1).min() < 1e-4  # each restarted code is one of the batch's vectors


def test_gradient_checkpointing_gives_the_same_gradients(ours):
    grads = []
    for flag in (False, True):
        config = Tokenizer25HzConfig.from_dict(ours.config.to_dict())
        config.encoder_config.grad_checkpointing = flag
        model = Tokenizer25Hz(config)
        model.load_state_dict(ours.state_dict())
        net = model.encoder.tokenizer.train()
        mel, lengths = model.encoder.features(sines(UNEVEN[:2], seed=19))
        out = net(mel, lengths, VQTrainingConfig(dead_code_ratio=0.0))
        (out.hidden.pow(2).mean() + out.vq.commitment_loss).backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None]))
    assert grads[0].abs().sum() > 0 and torch.allclose(grads[0], grads[1], atol=1e-6)
