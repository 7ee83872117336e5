import math
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from qtts.audio.io import SAMPLE_RATE, AudioError, audio_info, load_audio, save_audio


def sine(freq: float, sr: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * math.pi * freq * np.arange(int(round(seconds * sr))) / sr)).astype(np.float32)


def peak_hz(wav: torch.Tensor, sr: int) -> float:
    spectrum = torch.fft.rfft(wav.double() * torch.hann_window(wav.numel(), dtype=torch.float64))
    return float(spectrum.abs().argmax()) * sr / wav.numel()


def write(path, data, sr, **kw):
    sf.write(str(path), data, sr, **kw)
    return path


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3"])
def test_loads_common_formats(tmp_path, fmt):
    path = write(tmp_path / f"a.{fmt}", sine(440, SAMPLE_RATE, 1.0), SAMPLE_RATE)
    wav, sr = load_audio(path)
    assert sr == SAMPLE_RATE and wav.dtype == torch.float32 and wav.shape[0] == 1
    assert abs(wav.shape[1] - SAMPLE_RATE) <= (0 if fmt in ("wav", "flac") else 1200)
    assert peak_hz(wav[0], sr) == pytest.approx(440, abs=2)
    assert wav.abs().max() == pytest.approx(0.5, abs=0.05)
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.truncated) == (SAMPLE_RATE, 1, False)
    assert info.duration == pytest.approx(1.0, abs=0.05)


def test_stereo_is_downmixed_or_kept(tmp_path):
    left, right = sine(300, 16_000, 0.5), sine(700, 16_000, 0.5, amplitude=0.2)
    path = write(tmp_path / "st.wav", np.stack([left, right], axis=1), 16_000, subtype="FLOAT")
    both, sr = load_audio(path, sample_rate=None, mono=False)
    assert sr == 16_000 and both.shape == (2, 8000)
    mono, _ = load_audio(path, sample_rate=None)
    torch.testing.assert_close(mono[0], torch.from_numpy((left + right) / 2))
    assert audio_info(path).channels == 2


@pytest.mark.parametrize("orig_sr", [8_000, 16_000, 44_100, 48_000])
def test_resamples_to_24k_keeping_length_and_pitch(tmp_path, orig_sr):
    path = write(tmp_path / f"{orig_sr}.flac", sine(1000, orig_sr, 0.75), orig_sr)
    wav, sr = load_audio(path)
    assert sr == SAMPLE_RATE
    assert wav.shape == (1, math.ceil(0.75 * SAMPLE_RATE))
    assert peak_hz(wav[0], sr) == pytest.approx(1000, abs=3)
    assert wav[0, 1000:-1000].abs().max() == pytest.approx(0.5, abs=0.03)  # amplitude kept away from the edges


def test_start_end_spans(tmp_path):
    ramp = (np.arange(48_000) / 48_000).astype(np.float32)  # value = position in the 1 s file at 48 kHz
    path = write(tmp_path / "ramp.wav", ramp, 48_000, subtype="FLOAT")
    span, sr = load_audio(path, sample_rate=None, start=0.25, end=0.5)
    assert sr == 48_000 and span.shape == (1, 12_000)
    assert span[0, 0].item() == pytest.approx(0.25) and span[0, -1].item() == pytest.approx(0.5 - 1 / 48_000)
    tail, _ = load_audio(path, sample_rate=None, start=0.75)
    assert tail.shape[1] == 12_000 and tail[0, 0].item() == pytest.approx(0.75)
    head, _ = load_audio(path, sample_rate=None, end=2.0)  # end past the file: clipped
    assert head.shape[1] == 48_000
    resampled, sr = load_audio(path, start=0.25, end=0.5)
    assert sr == SAMPLE_RATE and resampled.shape == (1, 6_000)


def test_errors_name_the_file(tmp_path):
    good = write(tmp_path / "good.wav", sine(440, SAMPLE_RATE, 1.0), SAMPLE_RATE, subtype="PCM_16")
    data = good.read_bytes()
    cases = {
        "missing.wav": (None, "not found"),
        "empty.wav": (b"", "empty"),
        "text.wav": (b"this is not audio, only text pretending to be a wav " * 20, "cannot decode"),
        "header_only.wav": (data[:44], "no samples"),  # a wav cut right after its header
        "cut_header.wav": (data[:30], "cannot decode"),
    }
    for name, (content, words) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(AudioError, match=words) as err:
            load_audio(path)
        assert str(err.value).startswith(str(path)), name
        if name != "header_only.wav":  # its header is fine: audio_info reports 0 frames instead
            with pytest.raises(AudioError) as err:
                audio_info(path)
            assert str(path) in str(err.value)


def test_truncated_wav_is_flagged_and_still_loads(tmp_path):
    good = write(tmp_path / "good.wav", sine(440, SAMPLE_RATE, 1.0), SAMPLE_RATE, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    info = audio_info(cut)
    assert info.truncated and not audio_info(good).truncated
    assert info.frames == pytest.approx(SAMPLE_RATE / 2, abs=50)
    assert load_audio(cut)[0].shape[1] == info.frames


@pytest.mark.parametrize("shape", [(SAMPLE_RATE,), (1, SAMPLE_RATE), (2, SAMPLE_RATE)])
def test_save_round_trips_within_16_bit_precision(tmp_path, shape):
    wav = torch.rand(shape, generator=torch.Generator().manual_seed(0)) * 1.8 - 0.9
    out = tmp_path / "sub" / "out.wav"
    save_audio(out, wav)
    assert os.listdir(out.parent) == ["out.wav"]  # no temporary file left
    info = sf.info(str(out))
    assert (info.subtype, info.samplerate) == ("PCM_16", SAMPLE_RATE)
    back, _ = load_audio(out, mono=False)
    torch.testing.assert_close(back, wav.reshape(-1, SAMPLE_RATE), atol=1 / 32768 + 1e-7, rtol=0)


def test_save_clamps_and_replaces_atomically(tmp_path):
    out = tmp_path / "x.flac"
    save_audio(out, torch.zeros(100), sample_rate=16_000)
    save_audio(out, torch.tensor([2.0, -3.0, 0.5]), sample_rate=16_000)
    back, sr = load_audio(out, sample_rate=None)
    assert sr == 16_000 and sf.info(str(out)).format == "FLAC"
    torch.testing.assert_close(back[0], torch.tensor([1.0, -1.0, 0.5]), atol=1 / 32768, rtol=0)
    assert os.listdir(tmp_path) == ["x.flac"]
