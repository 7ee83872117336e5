"""Decode any common audio file to a float32 tensor at the model rate (24 kHz mono by default).

soundfile (bundled libsndfile) reads wav/flac/ogg/mp3 fast and without ffmpeg; anything else
(m4a, opus in mp4, ...) goes through torchaudio/torchcodec. Every failure becomes an
``AudioError`` that names the file, so data jobs can reject the row and go on.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio
import torchaudio.functional as AF

SAMPLE_RATE = 24_000


class AudioError(RuntimeError):
    """A file that cannot be read as audio; the message names the file."""


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    frames: int
    truncated: bool = False  # the header promises more audio than the file holds

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Header facts without decoding the samples (falls back to a full decode for exotic formats)."""
    path = _existing(path)
    try:
        info = sf.info(str(path))
        if info.frames > 0 or info.duration == 0:
            truncated = any(line.startswith("data") and "should be" in line for line in info.extra_info.splitlines())
            return AudioInfo(int(info.samplerate), int(info.channels), int(info.frames), truncated)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        pass
    wav, sr = _decode(path, None, None)
    return AudioInfo(sr, wav.shape[0], wav.shape[1])


def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = SAMPLE_RATE,
    mono: bool = True,
    start: float | None = None,
    end: float | None = None,
) -> tuple[torch.Tensor, int]:
    """Read ``path`` (optionally the ``[start, end)`` seconds of it) → ``(channels, samples)`` float32.

    ``sample_rate=None`` keeps the file's rate; ``mono`` averages the channels.
    """
    path = _existing(path)
    wav, sr = _decode(path, start, end)
    if wav.numel() == 0:
        raise AudioError(f"{path}: no samples")
    if mono and wav.shape[0] > 1:
        wav = wav.mean(dim=0, keepdim=True)
    if sample_rate is not None and sr != sample_rate:
        wav = resample(wav, sr, sample_rate)
        sr = sample_rate
    return wav, sr


def resample(wav: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Band-limited sinc resampling (torchaudio), with kernels cached per rate pair."""
    if orig_sr == new_sr:
        return wav
    if wav.device.type != "cpu" or wav.dtype != torch.float32:
        return AF.resample(wav, orig_sr, new_sr)
    return _resampler(int(orig_sr), int(new_sr))(wav)


def save_audio(path: str | os.PathLike, wav: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> None:
    """Write ``(channels, samples)`` or ``(samples,)`` float audio as 16-bit PCM (format from the suffix).

    Written to a temporary name and renamed, so a killed job never leaves half a file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = wav.detach().float().cpu()
    data = data.unsqueeze(0) if data.dim() == 1 else data
    fmt = path.suffix.lstrip(".").upper() or "WAV"
    tmp = path.with_name(f".{path.name}.tmp")
    subtype = "PCM_16" if fmt in {"WAV", "FLAC"} else None
    sf.write(str(tmp), data.clamp(-1, 1).T.numpy(), sample_rate, format=fmt, subtype=subtype)
    os.replace(tmp, path)


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    return path


def _decode(path: Path, start: float | None, end: float | None) -> tuple[torch.Tensor, int]:
    try:
        return _decode_soundfile(path, start, end)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as first_error:
        try:
            return _decode_torchcodec(path, start, end)
        except Exception as second_error:  # any decoder failure means "not audio we can read"
            raise AudioError(f"{path}: cannot decode audio ({first_error}; {second_error})") from second_error


def _decode_soundfile(path: Path, start: float | None, end: float | None) -> tuple[torch.Tensor, int]:
    with sf.SoundFile(str(path)) as f:
        sr = f.samplerate
        first = int(round((start or 0.0) * sr))
        last = f.frames if end is None else min(f.frames, int(round(end * sr)))
        if first:
            f.seek(first)
        data = f.read(max(0, last - first), dtype="float32", always_2d=True)
    if data.shape[0] == 0 and (last - first) > 0:
        raise ValueError("decoder returned no samples (truncated file?)")
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(sr)


def _decode_torchcodec(path: Path, start: float | None, end: float | None) -> tuple[torch.Tensor, int]:
    from torchcodec.decoders import AudioDecoder

    decoder = AudioDecoder(str(path))
    samples = decoder.get_samples_played_in_range(start_seconds=start or 0.0, stop_seconds=end)
    return samples.data.float(), int(samples.sample_rate)


@functools.lru_cache(maxsize=32)
def _resampler(orig_sr: int, new_sr: int) -> torchaudio.transforms.Resample:
    return torchaudio.transforms.Resample(orig_sr, new_sr)
