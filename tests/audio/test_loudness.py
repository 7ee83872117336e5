import math

import pytest
import torch

from qtts.audio.loudness import measure_loudness, normalize_loudness, normalize_peak
from tests.audio.signals import speech_like

SR = 24_000


def sine(amplitude: float, seconds: float = 1.0, freq: float = 997.0) -> torch.Tensor:
    t = torch.arange(int(seconds * SR)) / SR
    return amplitude * torch.sin(2 * math.pi * freq * t)


def test_sine_calibration_and_level_steps():
    # BS.1770: a 997 Hz sine reads close to its RMS in dBFS; doubling the level adds 6.02 dB.
    quiet, loud = measure_loudness(sine(0.25), SR), measure_loudness(sine(0.5), SR)
    assert abs(loud - 20 * math.log10(0.5 / math.sqrt(2))) < 0.1
    assert abs((loud - quiet) - 20 * math.log10(2)) < 1e-6


@pytest.mark.parametrize("target", [-23.0, -16.0, -30.0])
def test_normalize_applies_the_known_gain(target):
    wav = sine(0.5)
    before = measure_loudness(wav, SR)
    out = normalize_loudness(wav, SR, target_lufs=target)
    expected_gain = 10 ** ((target - before) / 20)
    torch.testing.assert_close(out, wav * expected_gain)
    assert abs(measure_loudness(out, SR) - target) < 1e-3
    assert out.dtype == wav.dtype and out.shape == wav.shape


def test_speech_like_and_stereo():
    wav = speech_like(3.0)
    assert abs(measure_loudness(normalize_loudness(wav, SR), SR) + 23.0) < 1e-3
    stereo = torch.stack([wav, 0.5 * wav])
    out = normalize_loudness(stereo, SR)
    assert out.shape == stereo.shape and abs(measure_loudness(out, SR) + 23.0) < 1e-3


def test_peak_limit_lowers_the_gain():
    wav = sine(0.5)  # about -9 LUFS: reaching -3 needs a peak above 1
    limited = normalize_loudness(wav, SR, target_lufs=-3.0)
    assert abs(limited.abs().max().item() - 0.99) < 1e-6
    assert measure_loudness(limited, SR) < -3.0
    free = normalize_loudness(wav, SR, target_lufs=-3.0, peak_limit=None)
    assert free.abs().max() > 1.0 and abs(measure_loudness(free, SR) + 3.0) < 1e-3


@pytest.mark.parametrize("wav", [torch.zeros(SR), torch.zeros(100), torch.zeros(0), torch.zeros(2, SR), sine(1e-5)])
def test_silence_is_returned_unchanged(wav):
    assert measure_loudness(wav, SR) == -math.inf
    out = normalize_loudness(wav, SR)
    assert torch.equal(out, wav)


@pytest.mark.parametrize("seconds", [0.3, 0.1, 0.02])
def test_clips_shorter_than_the_gating_block(seconds):
    long_gain = normalize_loudness(sine(0.5), SR)[100] / sine(0.5)[100]
    wav = sine(0.5, seconds)
    out = normalize_loudness(wav, SR)
    assert torch.isfinite(out).all()
    assert abs(measure_loudness(out, SR) + 23.0) < 1e-3
    short_gain = out[100] / wav[100]
    assert abs(20 * math.log10(short_gain / long_gain)) < 0.1  # no jump at the 400 ms boundary


def test_rejects_batches():
    with pytest.raises(ValueError, match="channels"):
        normalize_loudness(torch.zeros(2, 1, SR), SR)


def test_normalize_peak_matches_sox_norm():
    wav = speech_like(1.0, 16_000, seed=3) * 0.05
    out = normalize_peak(wav, -6.0)
    assert math.isclose(float(out.abs().max()), 10 ** (-6 / 20), rel_tol=1e-6)
    assert torch.allclose(out / out.abs().max(), wav / wav.abs().max())
    assert torch.equal(normalize_peak(torch.zeros(10)), torch.zeros(10))
    sox = pytest.importorskip("sox")
    transformer = sox.Transformer()
    transformer.norm(db_level=-6)
    expected = transformer.build_array(input_array=wav.numpy(), sample_rate_in=16_000)
    assert (out - torch.from_numpy(expected.copy())).abs().max() <= 1e-6
