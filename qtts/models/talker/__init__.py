"""Talker side of Qwen3-TTS: backbone, code predictor and speaker encoder."""

from qtts.models.talker.speaker_encoder import SpeakerEncoder, SpeakerEncoderConfig

__all__ = ["SpeakerEncoder", "SpeakerEncoderConfig"]
