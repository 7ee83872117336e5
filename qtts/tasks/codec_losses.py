"""Losses of codec GAN training: multi-scale mel reconstruction, adversarial, feature matching, assembly.

Sums and means follow DAC / HiFi-GAN (adversarial terms summed over sub-discriminators, mel L1 summed
over scales in log10 units) so the weights peers publish (mel 15, adv 1, feature 2, commitment 0.25)
mean the same thing here. Discriminator outputs are the ``(logits, features)`` pairs of
``qtts.models.codec.discriminators.CodecDiscriminator``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from qtts.audio.features import LogMelSpectrogram


class MultiScaleMelLoss(nn.Module):
    """Sum over scales of the mean L1 distance between log10 mel magnitudes of fake and real audio.

    Short windows catch transients and timing, long ones harmonics and pitch: one scale alone leaves
    the other kind of error free. Hop is ``window / 4``; mel bins grow with the window (DAC's 5…320), so
    every scale has about the same number of bins per FFT bin. Natural-log mels are divided by ln 10:
    DAC's weight 15 was tuned on log10 mels.
    """

    def __init__(
        self,
        sample_rate: int = 24_000,
        windows: Sequence[int] = (32, 64, 128, 256, 512, 1024, 2048),
        n_mels: Sequence[int] = (5, 10, 20, 40, 80, 160, 320),
        log_floor: float = 1e-5,
    ):
        super().__init__()
        if len(windows) != len(n_mels) or not windows:
            raise ValueError(f"need one n_mels per window, got windows {list(windows)} and n_mels {list(n_mels)}")
        self.mels = nn.ModuleList(
            LogMelSpectrogram(sample_rate, n_fft=w, hop_length=w // 4, n_mels=m, log_floor=log_floor)
            for w, m in zip(windows, n_mels)
        )

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """``fake`` and ``real`` (..., T) of one shape, T above half the longest window."""
        if fake.shape != real.shape:
            raise ValueError(f"fake {tuple(fake.shape)} and real {tuple(real.shape)} audio differ in shape")
        return sum(F.l1_loss(mel(fake), mel(real)) for mel in self.mels) / math.log(10)


def _sum(terms) -> torch.Tensor:
    return torch.stack(list(terms)).sum()


def lsgan_discriminator_loss(real: Sequence[torch.Tensor], fake: Sequence[torch.Tensor]) -> torch.Tensor:
    """Least squares: push real logits to 1 and fake ones to 0, ``Σ_d mean((1 - r)²) + mean(f²)``."""
    return _sum((1 - r).pow(2).mean() + f.pow(2).mean() for r, f in zip(real, fake, strict=True))


def lsgan_generator_loss(fake: Sequence[torch.Tensor]) -> torch.Tensor:
    """Least squares: ``Σ_d mean((1 - f)²)``."""
    return _sum((1 - f).pow(2).mean() for f in fake)


def hinge_discriminator_loss(real: Sequence[torch.Tensor], fake: Sequence[torch.Tensor]) -> torch.Tensor:
    """Hinge: ``Σ_d mean(relu(1 - r)) + mean(relu(1 + f))``; logits past the margin give no gradient,
    so the discriminator stops chasing already confident outputs."""
    return _sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real, fake, strict=True))


def hinge_generator_loss(fake: Sequence[torch.Tensor]) -> torch.Tensor:
    """Hinge as EnCodec uses it for the generator: ``Σ_d mean(relu(1 - f))``."""
    return _sum(F.relu(1 - f).mean() for f in fake)


ADVERSARIAL_LOSSES = {
    "lsgan": (lsgan_discriminator_loss, lsgan_generator_loss),
    "hinge": (hinge_discriminator_loss, hinge_generator_loss),
}


def adversarial_losses(kind: str):
    """``(discriminator_loss, generator_loss)`` of ``kind`` ("lsgan" or "hinge"); fails on others."""
    if kind not in ADVERSARIAL_LOSSES:
        raise ValueError(f"unknown adversarial loss {kind!r}, expected one of {sorted(ADVERSARIAL_LOSSES)}")
    return ADVERSARIAL_LOSSES[kind]


def feature_matching_loss(
    real: Sequence[Sequence[torch.Tensor]], fake: Sequence[Sequence[torch.Tensor]], eps: float = 1e-8
) -> torch.Tensor:
    """Mean over every discriminator layer of ``mean|r - f| / mean|r|``, ``r`` detached.

    Dividing by the real activations' size puts every layer on one scale (early layers are much
    larger than late ones), so none dominates. Detaching ``r`` keeps the term from training the
    discriminator toward activations that are easy to match.
    """
    terms = []
    for real_maps, fake_maps in zip(real, fake, strict=True):
        for r, f in zip(real_maps, fake_maps, strict=True):
            r = r.detach()
            terms.append((r - f).abs().mean() / (r.abs().mean() + eps))
    return torch.stack(terms).mean()


@dataclass
class CodecLossWeights:
    """Weights of the generator loss parts. Defaults: DAC / DualCodec (mel 15, adv 1, commitment 0.25);
    feature 2 is DAC's, here on relative (EnCodec-style) matching, for which EnCodec uses 4. ``semantic``
    weighs the distillation of the first codebook; its right size depends on that loss (DualCodec: 15
    on an MSE to w2v-BERT features)."""

    mel: float = 15.0
    adv: float = 1.0
    feature: float = 2.0
    commitment: float = 0.25
    semantic: float = 1.0


def assemble_generator_loss(
    parts: Mapping[str, torch.Tensor], weights: CodecLossWeights
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``Σ weight · part`` over the parts given, and a log of each unweighted part plus ``total``.

    Unknown names fail rather than being dropped (a typo would silently remove a loss); parts with weight
    0 are logged but left out of the total, so a NaN in a disabled part cannot poison it.
    """
    known = {f.name: getattr(weights, f.name) for f in dataclasses.fields(weights)}
    unknown = sorted(set(parts) - set(known))
    if unknown:
        raise ValueError(f"unknown generator loss parts {unknown}, expected some of {sorted(known)}")
    if not parts:
        raise ValueError("no generator loss parts given")
    first = next(iter(parts.values()))
    total = sum((known[name] * part for name, part in parts.items() if known[name] != 0), first.new_zeros(()))
    logged = {name: part.detach() for name, part in parts.items()}
    logged["total"] = total.detach()
    return total, logged
