"""25 Hz semantic tokenizer (Qwen-TTS-Tokenizer-25Hz): the released config format, the Whisper-style encoder with
its single-codebook EMA VQ, the detokenizer (flow-matching DiT + BigVGAN), and the folder (``Tokenizer25Hz``)."""

from qtts.models.tokenizer_25hz.bigvgan import BigVGAN
from qtts.models.tokenizer_25hz.config import (
    BigVGANConfig,
    DiTConfig,
    Tokenizer25HzConfig,
    Tokenizer25HzDecoderConfig,
    Tokenizer25HzEncoderConfig,
)
from qtts.models.tokenizer_25hz.decoder import Detokenizer25Hz
from qtts.models.tokenizer_25hz.dit import DiT
from qtts.models.tokenizer_25hz.encoder import EncoderOutput, Tokenizer25HzEncoder, WhisperVQEncoder
from qtts.models.tokenizer_25hz.model import Encoded, ReferenceMel, Tokenizer25Hz
from qtts.models.tokenizer_25hz.vq import SingleCodebookVQ, VQOutput

__all__ = [
    "BigVGAN", "BigVGANConfig", "Detokenizer25Hz", "DiT", "DiTConfig", "Encoded", "EncoderOutput", "ReferenceMel",
    "SingleCodebookVQ", "Tokenizer25Hz",
    "Tokenizer25HzConfig", "Tokenizer25HzDecoderConfig", "Tokenizer25HzEncoder", "Tokenizer25HzEncoderConfig",
    "VQOutput", "WhisperVQEncoder",
]
