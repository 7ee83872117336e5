"""12 Hz speech tokenizer (codec): Mimi encoder with split RVQ, and the causal decoder."""

from qtts.models.codec.config import CodecDecoderConfig, CodecEncoderConfig
from qtts.models.codec.decoder import CodecDecoder
from qtts.models.codec.encoder import CodecEncoder
from qtts.models.codec.model import CodecConfig, SpeechTokenizer
from qtts.models.codec.quantizer import SplitResidualVectorQuantizer

__all__ = [
    "CodecConfig", "CodecDecoder", "CodecDecoderConfig", "CodecEncoder", "CodecEncoderConfig", "SpeechTokenizer",
    "SplitResidualVectorQuantizer",
]
