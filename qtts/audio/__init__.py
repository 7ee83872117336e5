"""Audio front end: decoding, resampling, loudness and spectral features."""

from qtts.audio.io import SAMPLE_RATE, AudioError, AudioInfo, audio_info, load_audio, resample, save_audio
from qtts.audio.loudness import normalize_loudness

__all__ = [
    "SAMPLE_RATE",
    "AudioError",
    "AudioInfo",
    "audio_info",
    "load_audio",
    "normalize_loudness",
    "resample",
    "save_audio",
]
