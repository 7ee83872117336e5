"""12 Hz speech tokenizer (codec): split RVQ and the causal decoder."""

from qtts.models.codec.config import CodecDecoderConfig
from qtts.models.codec.decoder import CodecDecoder
from qtts.models.codec.quantizer import SplitResidualVectorQuantizer

__all__ = ["CodecDecoder", "CodecDecoderConfig", "SplitResidualVectorQuantizer"]
