"""Tiny audio files for the data_prep tests, written in whatever format a corpus layout uses."""

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


def write_tone(path: Path, seconds: float = 0.5, sr: int = 16000, freq: float = 220.0, **kwargs) -> Path:
    """A quiet sine with a little noise, at ``path`` (format from the suffix; ``.opus`` as Ogg Opus)."""
    t = np.arange(int(round(seconds * sr))) / sr
    wave = 0.3 * np.sin(2 * math.pi * freq * t) + 0.01 * np.random.default_rng(0).standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".opus":
        kwargs = {"format": "OGG", "subtype": "OPUS", **kwargs}
    elif path.suffix == ".mp3":
        kwargs = {"format": "MP3", **kwargs}
    sf.write(path, wave.astype(np.float32), sr, **kwargs)
    return path


@pytest.fixture
def tone_file():
    return write_tone
