"""Audio front end: decoding, resampling, loudness and spectral features."""

from qtts.audio.io import SAMPLE_RATE, AudioError, AudioInfo, audio_info, load_audio, resample, save_audio

__all__ = [
    "SAMPLE_RATE",
    "AudioError",
    "AudioInfo",
    "audio_info",
    "load_audio",
    "resample",
    "save_audio",
]
