"""12 Hz speech tokenizer (codec): Mimi encoder with split RVQ, the causal decoder, and the GAN discriminators."""

from qtts.models.codec.config import CodecDecoderConfig, CodecEncoderConfig
from qtts.models.codec.decoder import CodecDecoder
from qtts.models.codec.discriminators import CodecDiscriminator, CodecDiscriminatorConfig
from qtts.models.codec.encoder import CodecEncoder
from qtts.models.codec.model import CodecConfig, SpeechTokenizer
from qtts.models.codec.quantizer import SplitResidualVectorQuantizer

__all__ = [
    "CodecConfig", "CodecDecoder", "CodecDecoderConfig", "CodecDiscriminator", "CodecDiscriminatorConfig",
    "CodecEncoder", "CodecEncoderConfig", "SpeechTokenizer", "SplitResidualVectorQuantizer",
]
