"""Evaluation by the Seed-TTS-eval rules: text normalisation and error-rate scoring of ASR transcripts.

Needs the ``eval`` extra (``pip install -e ".[eval]"``: jiwer, opencc); the modules import them at the top, so a
missing extra fails on import with the package's name rather than mid-run.
"""
