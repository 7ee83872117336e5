"""Talker side of Qwen3-TTS: backbone, code predictor, speaker encoder and the composed model."""

from qtts.models.talker.config import (
    CodePredictorConfig,
    TalkerConfig,
    TTSConfig,
    released_0_6b,
    released_1_7b,
    tiny,
)
from qtts.models.talker.model import TTSModel
from qtts.models.talker.speaker_encoder import SpeakerEncoder, SpeakerEncoderConfig
from qtts.models.talker.talker import CodePredictor, Talker, TalkerOutput

__all__ = [
    "CodePredictor", "CodePredictorConfig", "SpeakerEncoder", "SpeakerEncoderConfig", "TTSConfig", "TTSModel",
    "Talker", "TalkerConfig", "TalkerOutput", "released_0_6b", "released_1_7b", "tiny",
]
