"""qtts: train, fine-tune and run Qwen3-TTS-style speech models."""

__version__ = "0.1.0"
