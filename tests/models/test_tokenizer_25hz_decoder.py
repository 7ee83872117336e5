"""The 25 Hz detokenizer (DiT + BigVGAN) against qwen-tts 0.1.1, fp32 CPU, tiny random weights scaled up so every
path moves the outputs: released keys both ways, BigVGAN, DiT forward with and without CFG, seeded sampling under
the same noise, the whole decode; guidance 0; a padded batch equals each item alone."""

import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from qtts.models.tokenizer_25hz import DiT, Tokenizer25Hz, Tokenizer25HzConfig
from qtts.models.tokenizer_25hz.bigvgan import BigVGAN, kaiser_sinc_filter

configuration = pytest.importorskip("qwen_tts.core.tokenizer_25hz.configuration_qwen3_tts_tokenizer_v1")
modeling = pytest.importorskip("qwen_tts.core.tokenizer_25hz.modeling_qwen3_tts_tokenizer_v1")

pytestmark = pytest.mark.usefixtures("one_thread")

ATOL = 1e-5


def qwen_config(config: Tokenizer25HzConfig):
    return configuration.Qwen3TTSTokenizerV1Config(**{k: v for k, v in config.to_dict().items() if k != "model_type"})


def randomize(module: torch.nn.Module, seed: int = 0) -> None:
    """Unit-gain weights, biases ~0.1, SnakeBeta log-α/β ~0.3 (the default init gives ~1e-7 waveforms and a DiT
    whose zero-initialised-like gates hide most paths); BigVGAN's last conv is scaled so the output clamp rarely
    bites."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith(("alpha", "beta")):
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p[0].numel()))
            if name.endswith("conv_post.weight"):
                p.mul_(0.03)


@pytest.fixture(scope="module")
def config():
    return Tokenizer25HzConfig.tiny()


def test_kaiser_filter_is_a_unit_gain_lowpass():
    taps = kaiser_sinc_filter(0.25, 0.3, 12)[0, 0]
    assert taps.shape == (12,) and torch.allclose(taps.sum(), torch.tensor(1.0))
    assert torch.allclose(taps, taps.flip(0))  # linear phase
    response = torch.fft.rfft(taps, 256).abs()
    assert response[0] > 0.99 and response[-1] < 0.05  # passes DC, stops Nyquist


def test_bigvgan_matches_qwen_tts(config):
    ref = modeling.Qwen3TTSTokenizerV1DecoderBigVGANModel._from_config(
        qwen_config(config).decoder_config.bigvgan_config).eval()
    randomize(ref)
    ours = BigVGAN(config.decoder_config.bigvgan_config).eval()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    ours.load_state_dict(ref.state_dict(), strict=True)
    mel = torch.randn(2, 80, 17, generator=torch.Generator().manual_seed(1)) * 2 - 4
    with torch.no_grad():
        expected, got = ref(mel), ours(mel)
    assert got.shape == (2, 17 * ours.total_upsample)
    assert (got - expected).abs().max() <= ATOL
    assert (got.abs() < 0.99).float().mean() > 0.9 and got.std() > 0.05  # not clamped, not silent
    with pytest.raises(ValueError, match=r"expected a mel of shape \(batch, 80, frames\)"):
        ours(mel.transpose(1, 2))


@pytest.fixture(scope="module")
def released(tmp_path_factory, config):
    """(qwen-tts's whole model with a scaled random decoder, the folder its ``save_pretrained`` wrote)."""
    torch.manual_seed(0)
    ref = modeling.Qwen3TTSTokenizerV1Model(qwen_config(config)).eval()
    randomize(ref.decoder)
    folder = tmp_path_factory.mktemp("released25dec")
    ref.save_pretrained(folder)
    return ref, folder


@pytest.fixture(scope="module")
def ours(released):
    return Tokenizer25Hz.from_pretrained(released[1])


def inputs(lengths, ref_lengths, config, seed=0):
    """Per item: codes, x-vector, reference mel (log-mel-like values)."""
    gen = torch.Generator().manual_seed(seed)
    c = config.decoder_config.dit_config
    codes = [torch.randint(0, config.encoder_config.audio_vq_codebook_size, (n,), generator=gen) for n in lengths]
    xvectors = torch.randn(len(lengths), c.enc_emb_dim, generator=gen)
    ref_mels = [torch.randn(n, c.mel_dim, generator=gen) - 4 for n in ref_lengths]
    return codes, xvectors, ref_mels


def test_whole_state_dict_has_the_released_keys_and_loads_strictly_both_ways(config):
    ref = modeling.Qwen3TTSTokenizerV1Model(qwen_config(config))
    model = Tokenizer25Hz(config)
    got, expected = model.state_dict(), ref.state_dict()
    assert {k: tuple(v.shape) for k, v in got.items()} == {k: tuple(v.shape) for k, v in expected.items()}
    assert any(k.startswith("decoder.dit.") for k in got) and any(k.startswith("decoder.bigvgan.") for k in got)
    assert "decoder.dit.rotary_embed.inv_freq" in got  # a persistent buffer upstream
    model.load_state_dict(expected, strict=True)
    ref.load_state_dict(Tokenizer25Hz(config).state_dict(), strict=True)
    assert torch.equal(ref.decoder.dit.rotary_embed.inv_freq, got["decoder.dit.rotary_embed.inv_freq"])


def test_released_size_decoder_has_the_released_keys_and_shapes():
    """The default config on the meta device: DiT 346M and BigVGAN 131M parameters, as measured upstream."""
    config = Tokenizer25HzConfig()
    with torch.device("meta"):
        ref = modeling.Qwen3TTSTokenizerV1Decoder(qwen_config(config).decoder_config)
        model = Tokenizer25Hz(config).decoder
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == {
        k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert round(sum(p.numel() for p in model.dit.parameters()) / 1e6) == 346
    assert round(sum(p.numel() for p in model.bigvgan.parameters()) / 1e6) == 131


def test_dit_forward_matches_qwen_tts_with_and_without_cfg(released, ours, config):
    ref, dit = released[0].decoder.dit, ours.decoder.dit
    codes, xvectors, ref_mels = inputs([5, 5], [23, 23], config)
    codes, ref_mel = torch.stack(codes), torch.stack(ref_mels)
    frames = 5 * dit.config.repeats
    noisy = torch.randn(2, frames, 80, generator=torch.Generator().manual_seed(3))
    speaker = xvectors[:, None].expand(-1, frames, -1)
    with torch.no_grad():
        expected = ref(noisy, ref_mel, speaker, codes, torch.tensor(0.3), apply_cfg=True)
        got = dit(noisy, ref_mel, xvectors, codes, torch.tensor(0.3), apply_cfg=True)
        assert got.shape == (4, frames, 80) and (got - expected).abs().max() <= ATOL
        assert (got[:2] - got[2:]).abs().mean() > 0.1  # the unconditional half differs
        time = torch.tensor([0.2, 0.7])  # a vector: qwen-tts doubles a scalar time whatever apply_cfg says
        for drops in ({}, {"drop_audio_conditioning": True}, {"drop_code": True},
                      {"drop_audio_conditioning": True, "drop_code": True}):
            expected = ref(noisy, ref_mel, speaker, codes, time, apply_cfg=False, **drops)
            got = dit(noisy, ref_mel, xvectors, codes, time, **drops)
            assert (got - expected).abs().max() <= ATOL, drops
            assert expected.std() > 0.3
        assert (dit(noisy, ref_mel, xvectors, codes, time) - got).abs().mean() > 0.1  # the drops matter


def test_dit_sample_matches_qwen_tts_under_the_same_noise(released, ours, config):
    ref, dit = released[0].decoder.dit, ours.decoder.dit
    codes, xvectors, ref_mels = inputs([4, 4], [20, 20], config, seed=1)
    codes, ref_mel = torch.stack(codes), torch.stack(ref_mels)
    torch.manual_seed(7)
    expected = ref.sample(xvectors, ref_mel, codes, num_steps=4, guidance_scale=0.5, sway_coefficient=-1.0)
    torch.manual_seed(7)
    noise = torch.randn(2, 30000, 80)[:, : 4 * dit.config.repeats]  # qwen-tts's draw
    got = dit.sample(codes, xvectors, ref_mel, num_steps=4, noise=noise)
    assert (got.transpose(1, 2) - expected).abs().max() <= ATOL
    assert (got - noise).abs().mean() > 0.3


def test_guidance_scale_zero_runs_the_conditional_model_alone(released, ours, config):
    ref, dit = released[0].decoder.dit, ours.decoder.dit
    codes, xvectors, ref_mels = inputs([3], [20], config, seed=2)
    codes, ref_mel = torch.stack(codes), torch.stack(ref_mels)
    noise = torch.randn(1, 3 * dit.config.repeats, 80, generator=torch.Generator().manual_seed(4))
    with pytest.raises(RuntimeError):  # upstream bug 3: the batch is doubled anyway
        ref.sample(xvectors, ref_mel, codes, num_steps=3, guidance_scale=0.0)
    got = dit.sample(codes, xvectors, ref_mel, num_steps=3, guidance_scale=0.0, sway_coefficient=None, noise=noise)
    expected, speaker = noise.clone(), xvectors[:, None].expand(-1, noise.shape[1], -1)
    with torch.no_grad():
        for t0, t1 in ((0.0, 0.5), (0.5, 1.0)):  # Euler with qwen-tts's conditional model, no sway
            expected = expected + ref(expected, ref_mel, speaker, codes, torch.tensor([t0]), apply_cfg=False) * (
                t1 - t0)
    assert (got - expected).abs().max() <= ATOL
    guided = dit.sample(codes, xvectors, ref_mel, num_steps=3, guidance_scale=0.5, sway_coefficient=None, noise=noise)
    assert (guided - got).abs().mean() > 1e-2


def test_decode_matches_qwen_tts(released, ours, config):
    ref = released[0]
    codes, xvectors, ref_mels = inputs([6, 6], [25, 25], config, seed=3)
    torch.manual_seed(11)
    with torch.no_grad():
        (expected,) = ref.decode(torch.stack(codes), xvectors, torch.stack(ref_mels), return_dict=False)
    torch.manual_seed(11)
    frames = 6 * config.decoder_config.dit_config.repeats
    noise = list(torch.randn(2, 30000, 80)[:, :frames])
    got = ours.decode(codes, xvectors, ref_mels, noise=noise)
    assert [len(w) for w in got] == [6 * config.decode_upsample_rate] * 2 == [len(w) for w in expected]
    for a, b in zip(got, expected):
        assert (a - b).abs().max() <= ATOL
        assert a.std() > 0.05


def test_a_batch_of_different_lengths_equals_each_item_alone(ours, config):
    lengths, ref_lengths = [7, 3, 5, 3], [30, 18, 25, 40]
    codes, xvectors, ref_mels = inputs(lengths, ref_lengths, config, seed=4)
    gen = torch.Generator().manual_seed(5)
    noise = [torch.randn(n * config.decoder_config.dit_config.repeats, 80, generator=gen) for n in lengths]
    batch = ours.decode(codes, xvectors, ref_mels, num_steps=3, noise=noise)
    for i in range(len(lengths)):
        alone = ours.decode(codes[i:i + 1], xvectors[i:i + 1], ref_mels[i:i + 1], num_steps=3, noise=noise[i:i + 1])[0]
        assert batch[i].shape == alone.shape == (lengths[i] * config.decode_upsample_rate,)
        assert (batch[i] - alone).abs().max() <= ATOL
    # drawn noise: a batch equals its items decoded one by one from the same generator
    drawn = ours.decode(codes[:2], list(xvectors[:2]), ref_mels[:2], num_steps=2,
                        generator=torch.Generator().manual_seed(9))
    gen = torch.Generator().manual_seed(9)
    for i in range(2):
        alone = ours.decode(codes[i:i + 1], xvectors[i:i + 1], ref_mels[i:i + 1], num_steps=2, generator=gen)[0]
        assert (drawn[i] - alone).abs().max() <= ATOL


def test_decode_refuses_bad_input_naming_it(ours, config):
    codes, xvectors, ref_mels = inputs([3, 4], [20, 20], config)
    with pytest.raises(ValueError, match=r"codes\[1\] must be a non-empty 1-D integer tensor"):
        ours.decode([codes[0], codes[1].float()], xvectors, ref_mels)
    with pytest.raises(ValueError, match=r"codes\[0\] must lie in 0\.\.64"):
        ours.decode([codes[0] - 100, codes[1]], xvectors, ref_mels)
    with pytest.raises(ValueError, match=r"xvectors must be 2 x-vectors of 8 values"):
        ours.decode(codes, xvectors[:1], ref_mels)
    with pytest.raises(ValueError, match=r"ref_mels\[1\] has 2 frames; the speaker ECAPA needs at least"):
        ours.decode(codes, xvectors, [ref_mels[0], ref_mels[1][:2]])
    with pytest.raises(ValueError, match=r"noise\[0\] must be \(codes × repeats, mel_dim\) = \(12, 80\)"):
        ours.decode(codes, xvectors, ref_mels, noise=[torch.zeros(3, 80), torch.zeros(16, 80)])
    with pytest.raises(ValueError, match="num_steps must be an integer ≥ 2"):
        ours.decode(codes, xvectors, ref_mels, num_steps=1)


def test_dit_trains_every_parameter_through_a_padded_batch(config):
    """The flow-matching forward in train mode (dropout on): every parameter gets a gradient, and the padded frames
    of a short item (codes and reference mel) get none."""
    torch.manual_seed(0)
    dit = DiT(config.decoder_config.dit_config).train()
    randomize(dit)
    codes, xvectors, ref_mels = inputs([5, 3], [24, 18], config, seed=6)
    ref_mel = torch.nn.utils.rnn.pad_sequence(ref_mels, batch_first=True).requires_grad_()
    noisy = torch.randn(2, 20, 80, requires_grad=True)
    velocity = dit(noisy, ref_mel, xvectors, torch.nn.utils.rnn.pad_sequence(codes, batch_first=True),
                   torch.tensor([0.1, 0.8]), code_lengths=torch.tensor([5, 3]), ref_lengths=torch.tensor([24, 18]))
    (velocity[0].square().mean() + velocity[1, :12].square().mean()).backward()
    for name, p in dit.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert noisy.grad[1, 12:].abs().sum() == 0 and noisy.grad[1, :12].abs().sum() > 0
    assert ref_mel.grad[1, 18:].abs().sum() == 0 and ref_mel.grad[1, :18].abs().sum() > 0


def test_a_folder_missing_a_decoder_tensor_is_refused_naming_it(released, tmp_path):
    _, folder = released
    weights = load_file(str(folder / "model.safetensors"))
    key = "decoder.bigvgan.conv_post.weight"
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    save_file({k: v for k, v in weights.items() if k != key}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=rf"model.safetensors: .*missing {key}"):
        Tokenizer25Hz.from_pretrained(tmp_path)
