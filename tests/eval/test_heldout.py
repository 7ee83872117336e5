"""Held-out sentences: scoring clips held in memory (WER with the built-in ASR, SIM, MOS)."""

from __future__ import annotations

import json

import pytest
import torch

from qtts.audio.io import load_audio
from qtts.eval.heldout import score_sentences
from qtts.eval.testset import TestItem


def test_espeak_clips_score_low_wer_full_self_similarity_and_a_mos(tiny_corpus):
    """Two of the corpus's English clips scored as if generated: the built-in ASR understands espeak-ng, a clip is its
    own prompt (SIM 1), DNSMOS lies in [1, 5]; an empty clip counts as all deletions."""
    from qtts.eval.asr import open_asr
    from qtts.eval.naturalness import open_mos
    from qtts.eval.similarity import open_speaker_embedder

    rows = [json.loads(line) for line in (tiny_corpus.parent / "validated" / "clean.jsonl").read_text().splitlines()]
    english = [r for r in rows if r["language"] == "en"][:2]
    sentences = [TestItem(r["id"], r["text"], "en", ref_audio=r["audio"]) for r in english]
    wavs = [load_audio(r["audio"], 24000)[0][0] for r in english]
    asr = open_asr()
    scores = score_sentences(wavs, 24000, sentences, asr, open_speaker_embedder(), open_mos())
    assert scores.ids == [r["id"] for r in english] and all(h for h in scores.hypotheses)
    assert scores.wer == pytest.approx(sum(scores.rates) / 2) and scores.wer < 0.5, scores
    assert scores.sim == pytest.approx([1.0] * 2, abs=1e-4)
    assert all(1.0 <= m <= 5.0 for m in scores.mos)
    metrics = scores.metrics()
    assert set(metrics) == {"wer", "sim", "mos"} and metrics["sim"] == pytest.approx(1.0, abs=1e-4)

    empty = score_sentences([torch.zeros(0)], 24000, sentences[:1], asr)
    assert empty.hypotheses == [""] and empty.rates == [1.0] and empty.sim is None and empty.mos is None
