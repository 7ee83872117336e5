"""Inference on the training model code: the synthesizer, sampling, and streaming audio."""

from qtts.inference.sampling import SamplingConfig
from qtts.inference.synthesizer import Request, Synthesizer
from qtts.inference.voice import VoicePrompt

__all__ = ["Request", "SamplingConfig", "Synthesizer", "VoicePrompt"]
