"""25 Hz semantic tokenizer (Qwen-TTS-Tokenizer-25Hz): the released config format and the Whisper-style encoder
with its single-codebook EMA VQ."""

from qtts.models.tokenizer_25hz.config import (
    BigVGANConfig,
    DiTConfig,
    Tokenizer25HzConfig,
    Tokenizer25HzDecoderConfig,
    Tokenizer25HzEncoderConfig,
)

__all__ = ["BigVGANConfig", "DiTConfig", "Tokenizer25HzConfig", "Tokenizer25HzDecoderConfig",
           "Tokenizer25HzEncoderConfig"]
