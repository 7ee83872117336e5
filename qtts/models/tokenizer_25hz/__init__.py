"""25 Hz semantic tokenizer (Qwen-TTS-Tokenizer-25Hz): the released config format, the Whisper-style encoder with
its single-codebook EMA VQ, and the folder (``Tokenizer25Hz``)."""

from qtts.models.tokenizer_25hz.config import (
    BigVGANConfig,
    DiTConfig,
    Tokenizer25HzConfig,
    Tokenizer25HzDecoderConfig,
    Tokenizer25HzEncoderConfig,
)
from qtts.models.tokenizer_25hz.encoder import EncoderOutput, Tokenizer25HzEncoder, WhisperVQEncoder
from qtts.models.tokenizer_25hz.model import Encoded, ReferenceMel, Tokenizer25Hz
from qtts.models.tokenizer_25hz.vq import SingleCodebookVQ, VQOutput

__all__ = [
    "BigVGANConfig", "DiTConfig", "Encoded", "EncoderOutput", "ReferenceMel", "SingleCodebookVQ", "Tokenizer25Hz",
    "Tokenizer25HzConfig", "Tokenizer25HzDecoderConfig", "Tokenizer25HzEncoder", "Tokenizer25HzEncoderConfig",
    "VQOutput", "WhisperVQEncoder",
]
