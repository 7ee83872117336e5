import math

import pytest
import torch
import torch.nn.functional as F
import torchaudio

from qtts.tasks.codec_losses import (
    CodecLossWeights,
    MultiScaleMelLoss,
    adversarial_losses,
    assemble_generator_loss,
    feature_matching_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
)


@pytest.fixture(scope="module")
def mel_loss() -> MultiScaleMelLoss:
    return MultiScaleMelLoss()


@pytest.fixture(scope="module")
def speechlike() -> torch.Tensor:
    torch.manual_seed(0)
    t = torch.arange(4800) / 24_000
    harmonics = sum(torch.sin(2 * math.pi * 150 * k * t) / k for k in range(1, 8))
    return (0.3 * harmonics * (1 + 0.5 * torch.sin(2 * math.pi * 3 * t))).expand(2, 1, -1).contiguous()


def test_mel_loss_has_seven_scales_and_is_zero_for_identical_audio(mel_loss, speechlike):
    assert [m.n_fft for m in mel_loss.mels] == [32, 64, 128, 256, 512, 1024, 2048]
    assert [m.hop_length for m in mel_loss.mels] == [8, 16, 32, 64, 128, 256, 512]
    assert mel_loss(speechlike, speechlike.clone()).item() == 0.0


def test_mel_loss_grows_with_noise(mel_loss, speechlike):
    torch.manual_seed(1)
    noise = torch.randn_like(speechlike)
    losses = [mel_loss(speechlike + level * noise, speechlike).item() for level in (0.001, 0.01, 0.1)]
    assert 0 < losses[0] < losses[1] < losses[2]


def test_mel_loss_scales_see_different_errors(mel_loss, speechlike):
    """Every scale contributes, and the scales weigh kinds of error differently (a 2 % detuning against
    a click: their ratio moves 100-fold from 32 to 2048 samples), so no one scale stands for the sum."""
    click = speechlike.clone()
    click[..., 2400:2404] += 0.8
    t = torch.arange(speechlike.shape[-1]) / 24_000
    detuned = (0.3 * sum(torch.sin(2 * math.pi * 153 * k * t) / k for k in range(1, 8))
               * (1 + 0.5 * torch.sin(2 * math.pi * 3 * t))).expand_as(speechlike)

    def per_scale(fake):
        return torch.stack([F.l1_loss(m(fake), m(speechlike)) for m in mel_loss.mels])

    click_scales, detune_scales = per_scale(click), per_scale(detuned)
    assert (click_scales > 0).all() and (detune_scales > 0).all()
    ratio = detune_scales / click_scales
    assert ratio.max() > 10 * ratio.min(), ratio
    torch.testing.assert_close(mel_loss(click, speechlike), click_scales.sum() / math.log(10))


def test_single_scale_mel_loss_matches_a_direct_computation(speechlike):
    fake = speechlike + 0.05 * torch.randn_like(speechlike)
    loss = MultiScaleMelLoss(windows=[512], n_mels=[80])(fake, speechlike)
    mel = torchaudio.transforms.MelSpectrogram(24_000, n_fft=512, hop_length=128, n_mels=80, power=1.0,
                                               center=False, norm="slaney", mel_scale="slaney")

    def log10_mel(wav):  # HiFi-GAN framing: (n_fft - hop) / 2 reflect padding per side
        return torch.log10(mel(F.pad(wav, (192, 192), mode="reflect")).clamp(min=1e-5))

    expected = (log10_mel(fake) - log10_mel(speechlike)).abs().mean()
    torch.testing.assert_close(loss, expected, rtol=1e-3, atol=1e-5)
    with pytest.raises(ValueError, match="differ in shape"):
        MultiScaleMelLoss(windows=[512], n_mels=[80])(fake[..., :-1], speechlike)


def test_mel_loss_gradient_reaches_the_fake_audio(mel_loss, speechlike):
    fake = (speechlike + 0.01 * torch.randn_like(speechlike)).requires_grad_()
    mel_loss(fake, speechlike).backward()
    assert torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0


REAL = [torch.tensor([0.5, 1.5]), torch.tensor([[2.0, -1.0]])]
FAKE = [torch.tensor([-0.5, 0.25]), torch.tensor([[0.0, -2.0]])]


def test_least_squares_losses_equal_their_formulas():
    d = ((0.25 + 0.25) / 2 + (0.25 + 0.0625) / 2) + ((1.0 + 4.0) / 2 + (0.0 + 4.0) / 2)
    torch.testing.assert_close(lsgan_discriminator_loss(REAL, FAKE), torch.tensor(d))
    g = (2.25 + 0.5625) / 2 + (1.0 + 9.0) / 2
    torch.testing.assert_close(lsgan_generator_loss(FAKE), torch.tensor(g))


def test_hinge_losses_equal_their_formulas():
    # real: relu(1 - r) -> [0.5, 0], [0, 2]; fake: relu(1 + f) -> [0.5, 1.25], [1, 0]
    d = (0.25 + 0.875) + (1.0 + 0.5)
    torch.testing.assert_close(hinge_discriminator_loss(REAL, FAKE), torch.tensor(d))
    g = (1.5 + 0.75) / 2 + (1.0 + 3.0) / 2
    torch.testing.assert_close(hinge_generator_loss(FAKE), torch.tensor(g))
    assert adversarial_losses("hinge") == (hinge_discriminator_loss, hinge_generator_loss)
    with pytest.raises(ValueError, match="unknown adversarial loss 'wgan'"):
        adversarial_losses("wgan")


def test_feature_matching_is_relative_zero_for_equal_and_detaches_real():
    real = [[torch.tensor([2.0, -2.0], requires_grad=True), torch.tensor([0.5], requires_grad=True)]]
    assert feature_matching_loss(real, [[r.detach().clone() for r in real[0]]]).item() == 0.0
    fake = [[torch.tensor([1.0, -1.0], requires_grad=True), torch.tensor([1.0], requires_grad=True)]]
    loss = feature_matching_loss(real, fake)
    torch.testing.assert_close(loss, torch.tensor((1.0 / 2.0 + 0.5 / 0.5) / 2))  # each layer over its own |real|
    loss.backward()
    assert all(r.grad is None for r in real[0])
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in fake[0])


def test_assembly_applies_weights_logs_parts_and_rejects_unknown_names():
    weights = CodecLossWeights(mel=15.0, adv=1.0, feature=2.0, commitment=0.25, semantic=0.0)
    parts = {"mel": torch.tensor(1.0, requires_grad=True), "adv": torch.tensor(2.0), "feature": torch.tensor(3.0),
             "commitment": torch.tensor(4.0), "semantic": torch.tensor(float("nan"))}
    total, logged = assemble_generator_loss(parts, weights)
    torch.testing.assert_close(total, torch.tensor(15.0 + 2.0 + 6.0 + 1.0))  # weight-0 NaN is left out
    assert set(logged) == {"mel", "adv", "feature", "commitment", "semantic", "total"}
    assert logged["mel"].item() == 1.0 and logged["total"].item() == 24.0 and not logged["mel"].requires_grad
    total.backward()
    assert parts["mel"].grad.item() == 15.0
    with pytest.raises(ValueError, match=r"unknown generator loss parts \['mell'\]"):
        assemble_generator_loss({"mell": torch.tensor(1.0)}, weights)
    assert CodecLossWeights() == CodecLossWeights(mel=15.0, adv=1.0, feature=2.0, commitment=0.25, semantic=1.0)
