"""qtts: train, fine-tune and run Qwen3-TTS-style speech models."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``qtts.Synthesizer`` etc. without importing torch for every ``import qtts``."""
    if name in ("Synthesizer", "SamplingConfig", "VoicePrompt"):
        import qtts.inference

        return getattr(qtts.inference, name)
    raise AttributeError(f"module 'qtts' has no attribute {name!r}")
