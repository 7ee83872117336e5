import math

import pytest
import torch

from qtts.models.codec.discriminators import (
    CodecDiscriminator,
    CodecDiscriminatorConfig,
    MultiPeriodDiscriminator,
    MultiResolutionMultiBandSTFTDiscriminator,
)
from qtts.tasks.codec_losses import lsgan_discriminator_loss


def tiny_config(**overrides) -> CodecDiscriminatorConfig:
    values = dict(periods=[2, 3, 5], period_channels=[4, 8, 8], n_ffts=[256, 128, 64], band_channels=4)
    return CodecDiscriminatorConfig(**{**values, **overrides})


@pytest.mark.parametrize("length", [1001, 1024, 2047])
def test_period_discriminator_shapes_for_any_length(length):
    torch.manual_seed(0)
    mpd = MultiPeriodDiscriminator(periods=[2, 3, 5], channels=[4, 8, 8])
    outputs = mpd(torch.randn(2, 1, length))
    assert len(outputs) == 3
    for period, (logits, features) in zip([2, 3, 5], outputs):
        rows = math.ceil(length / period)  # reflect padding completes the last row
        for _ in range(2):  # two strided convs (stride 3, 'same' padding), the last conv keeps the size
            rows = math.ceil(rows / 3)
        assert logits.shape == (2, 1, rows, period)
        assert [f.shape[1] for f in features] == [4, 8, 8, 1]
        assert features[-1] is logits and torch.isfinite(logits).all()


@pytest.mark.parametrize("length", [1001, 2047])
def test_stft_discriminator_shapes_for_any_length(length):
    torch.manual_seed(0)
    edges = [0.0, 0.1, 0.25, 0.5, 0.75, 1.0]
    mrd = MultiResolutionMultiBandSTFTDiscriminator(n_ffts=[256, 64], band_edges=edges, channels=4)
    outputs = mrd(torch.randn(2, 1, length))
    assert len(outputs) == 2
    for n_fft, (logits, features) in zip([256, 64], outputs):
        frames = length // (n_fft // 4) + 1  # centred STFT; convs keep time, stride only over frequency
        assert logits.shape[:3] == (2, 1, frames)
        assert len(features) == 5 * 5 + 1  # 5 layers per band, then the merged logits
        assert all(f.shape[0] == 2 and f.shape[2] == frames for f in features)


def test_codec_discriminator_combines_and_can_leave_one_out():
    wav = torch.randn(1, 1, 1500)
    assert len(CodecDiscriminator(tiny_config())(wav)) == 3 + 3
    assert len(CodecDiscriminator(tiny_config(n_ffts=[]))(wav)) == 3
    assert len(CodecDiscriminator(tiny_config(periods=[]))(wav)) == 3
    with pytest.raises(ValueError, match="nothing to discriminate"):
        tiny_config(periods=[], n_ffts=[])
    with pytest.raises(ValueError, match="band_edges"):
        tiny_config(band_edges=[0.0, 0.5, 0.4, 1.0])
    with pytest.raises(ValueError, match=r"\(B, 1, T\)"):
        CodecDiscriminator(tiny_config())(torch.randn(1, 1500))


def test_default_config_builds_the_dac_layout():
    model = CodecDiscriminator()
    assert len(model.mpd.discriminators) == 5 and len(model.mrd.discriminators) == 3
    assert all(len(d.bands) == 5 for d in model.mrd.discriminators)


def test_gradients_reach_the_input_through_every_discriminator():
    torch.manual_seed(0)
    model = CodecDiscriminator(tiny_config())
    wav = torch.randn(2, 1, 1201, requires_grad=True)
    for logits, _ in model(wav):
        (grad,) = torch.autograd.grad(logits.square().mean(), wav, retain_graph=True)
        assert grad.abs().sum() > 0


def test_discriminator_learns_to_tell_a_sine_from_noise():
    torch.manual_seed(0)
    model = CodecDiscriminator(tiny_config(periods=[2, 3], n_ffts=[128]))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3, betas=(0.5, 0.9))
    t = torch.arange(1024) / 24_000
    losses = []
    for _ in range(50):
        freq = 200 + 600 * torch.rand(4, 1, 1)
        real = 0.5 * torch.sin(2 * math.pi * freq * t + 6.28 * torch.rand(4, 1, 1))
        fake = 0.3 * torch.randn(4, 1, 1024)
        logits = [out[0].chunk(2) for out in model(torch.cat([real, fake]))]  # one pass for both
        loss = lsgan_discriminator_loss([r for r, _ in logits], [f for _, f in logits])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.5 * first, (first, last)
