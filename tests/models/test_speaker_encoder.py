import copy
import dataclasses
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from qtts.audio.features import SpeakerMel
from qtts.models.talker import SpeakerEncoder, SpeakerEncoderConfig
from tests.audio.signals import speech_like

modeling = pytest.importorskip("qwen_tts.core.models.modeling_qwen3_tts")
configuration = pytest.importorskip("qwen_tts.core.models.configuration_qwen3_tts")

TINY = {  # released layout, narrow
    "released_layout": dict(
        enc_dim=24, enc_channels=[16, 16, 16, 16, 48], enc_attention_channels=8, enc_se_channels=8, enc_res2net_scale=4
    ),
    # scale 8, even kernels (asymmetric "same" padding), other dilations, two SE-Res2Net blocks
    "odd_layout": dict(
        mel_dim=40, enc_dim=12, enc_channels=[24, 24, 24, 48], enc_kernel_sizes=[4, 3, 2, 2],
        enc_dilations=[1, 3, 2, 1], enc_attention_channels=6, enc_se_channels=4, enc_res2net_scale=8,
    ),
}


def randomize(model: torch.nn.Module, seed: int = 0) -> None:
    """Weights of unit gain (outputs O(1)) and a sharp pooling attention, so every path matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            gain = 6.0 if name == "asp.conv.weight" else 1.0
            std = 0.2 if name.endswith("bias") else gain / math.sqrt(p[0].numel())
            p.copy_(torch.randn(p.shape, generator=gen) * std)


@pytest.fixture(params=list(TINY), scope="module")
def pair(request, tmp_path_factory):
    """(official encoder, ours loaded from its safetensors with strict=True)."""
    kwargs = TINY[request.param]
    ref = modeling.Qwen3TTSSpeakerEncoder(configuration.Qwen3TTSSpeakerEncoderConfig(**kwargs)).eval()
    randomize(ref)
    path = tmp_path_factory.mktemp("ckpt") / "speaker_encoder.safetensors"
    save_file(ref.state_dict(), str(path))
    ours = SpeakerEncoder(SpeakerEncoderConfig(**kwargs)).eval()
    ours.load_state_dict(load_file(str(path)), strict=True)
    return ref, ours


def mels_for(model: SpeakerEncoder, kind: str, batch: int = 3, frames: int = 120) -> torch.Tensor:
    if kind == "random":
        return torch.randn(batch, frames, model.config.mel_dim, generator=torch.Generator().manual_seed(1))
    wav = torch.stack([speech_like(1.5, seed=s) for s in range(batch)])
    return SpeakerMel(n_mels=model.config.mel_dim)(wav)


@pytest.mark.parametrize("kind", ["random", "speech_like"])
def test_matches_qwen_tts(pair, kind):
    ref, ours = pair
    mels = mels_for(ours, kind)
    with torch.no_grad():
        expected, got = ref(mels), ours(mels)
    assert got.shape == expected.shape == (3, ours.config.enc_dim)
    assert (got - expected).abs().max() <= 1e-5
    ref64, ours64 = copy.deepcopy(ref).double(), copy.deepcopy(ours).double()  # same math, no float32 rounding
    with torch.no_grad():
        assert (ours64(mels.double()) - ref64(mels.double())).abs().max() <= 1e-12


@pytest.mark.parametrize("enc_dim", [1024, 2048])  # 0.6B / 1.7B
def test_released_size_has_the_released_keys(enc_dim):
    ref = modeling.Qwen3TTSSpeakerEncoder(configuration.Qwen3TTSSpeakerEncoderConfig(enc_dim=enc_dim))
    ours = SpeakerEncoder(SpeakerEncoderConfig(enc_dim=enc_dim))
    expected = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == expected
    assert expected["blocks.0.conv.weight"] == (512, 128, 5)
    assert expected["fc.weight"] == (enc_dim, 3072, 1)
    ours.load_state_dict(ref.state_dict(), strict=True)
    mels = torch.randn(1, 40, 128)
    with torch.no_grad():
        torch.testing.assert_close(ours(mels), ref(mels), rtol=1e-4, atol=1e-5)


def test_lengths_match_unpadded_items(pair):
    ref, ours = pair
    full = mels_for(ours, "random", frames=100)
    lengths = torch.tensor([100, 57, ours.min_frames])
    padded = full.clone()
    for i, n in enumerate(lengths):
        padded[i, n:] = 0.0
    with torch.no_grad():
        batched = ours(padded, lengths)
        assert torch.equal(ours(full, torch.full((3,), 100)), ours(full))  # full lengths = unmasked path
        for i, n in enumerate(lengths):
            assert (batched[i] - ref(full[i : i + 1, :n])[0]).abs().max() <= 1e-5


def test_embed_audio(pair):
    ref, ours = pair
    wav = speech_like(1.5)
    with torch.no_grad():
        if ours.config.mel_dim == 128:  # what Qwen3TTSForConditionalGeneration.extract_speaker_embedding computes
            mels = modeling.mel_spectrogram(wav.unsqueeze(0), 1024, 128, 24_000, 256, 1024, 0, 12_000).transpose(1, 2)
        else:  # qwen_tts's front end is fixed at 128 mels
            mels = SpeakerMel(n_mels=ours.config.mel_dim)(wav.unsqueeze(0))
        assert (ours.embed_audio(wav) - ref(mels)[0]).abs().max() <= 1e-5
        short = wav[:20_000]
        batch = torch.stack([wav, torch.nn.functional.pad(short, (0, len(wav) - len(short)))])
        out = ours.embed_audio(batch, torch.tensor([len(wav), len(short)]))
        assert out.shape == (2, ours.config.enc_dim)
        assert (out[1] - ours.embed_audio(short)).abs().max() <= 1e-5
        assert copy.deepcopy(ours).to(torch.bfloat16).embed_audio(wav).dtype == torch.bfloat16


def test_gradients_reach_every_parameter_and_the_input():
    torch.manual_seed(0)  # a tiny squeeze-excitation can start with every ReLU dead; keep the draw fixed
    model = SpeakerEncoder(SpeakerEncoderConfig(**TINY["released_layout"]))
    mels = torch.randn(2, 50, 128, requires_grad=True)
    model(mels, torch.tensor([50, 31])).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert mels.grad[1, 31:].abs().sum() == 0  # padding does not influence the result
    assert mels.grad[1, :31].abs().sum() > 0


def test_shapes_and_input_checks():
    model = SpeakerEncoder(SpeakerEncoderConfig(**TINY["released_layout"]))
    assert model(torch.randn(4, 30, 128)).shape == (4, 24)
    assert model.embed_audio(torch.randn(3000) * 0.1).shape == (24,)
    assert model.min_frames == 5  # dilation 4 × (kernel 3 − 1) / 2 + 1
    with pytest.raises(ValueError, match="mels of shape"):
        model(torch.randn(2, 30, 80))
    with pytest.raises(ValueError, match="at least 5 frames"):
        model(torch.randn(2, 4, 128))
    with pytest.raises(ValueError, match="lengths"):
        model(torch.randn(2, 30, 128), torch.tensor([30, 31]))


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(enc_dim=0), "enc_dim must be a positive integer"),
        (dict(mel_dim=12.5), "mel_dim must be a positive integer"),
        (dict(enc_kernel_sizes=[5, 3, 3]), "one entry per layer"),
        (dict(enc_channels=[512, 256, 512, 512, 1280]), r"enc_channels\[:-1\] must be equal"),
        (dict(enc_channels=[512, 512, 512, 512, 1024]), "sum of the SE-Res2Net widths"),
        (dict(enc_res2net_scale=7), "divisible by enc_res2net_scale"),
        (dict(enc_dilations=[1, 2, 0, 4, 1]), "enc_dilations must be a list of positive integers"),
    ],
)
def test_config_validation(change, message):
    with pytest.raises(ValueError, match=message):
        SpeakerEncoderConfig(**change)


def test_config_matches_released_json():
    released = {"enc_dim": 2048, "sample_rate": 24000}  # speaker_encoder_config of the 1.7B config.json
    config = SpeakerEncoderConfig(**released)
    official = configuration.Qwen3TTSSpeakerEncoderConfig(**released)
    assert {f.name: getattr(official, f.name) for f in dataclasses.fields(config)} == dataclasses.asdict(config)
    with pytest.raises(TypeError, match="enc_dims"):
        SpeakerEncoderConfig(enc_dims=1024)
