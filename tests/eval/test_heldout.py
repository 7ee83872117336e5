"""Held-out sentences: the test-set reader, and scoring of clips (WER with the built-in ASR, SIM, MOS)."""

from __future__ import annotations

import json

import pytest
import torch

from qtts.audio.io import load_audio
from qtts.eval.heldout import HeldOutSentence, read_sentences, score_sentences


def test_read_sentences_resolves_prompts_and_names_bad_rows(tmp_path):
    (tmp_path / "ref.wav").write_bytes(b"")
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"id": "a", "text": "Hello there.", "language": "en", "ref_audio": "ref.wav", "ref_text": "Hi."},
        {"text": "Guten Tag.", "language": "de", "speaker": "anna"},
        {"text": "Third.", "language": "en"},
    ]) + "\n")
    first, second = read_sentences(path, limit=2)
    assert first == HeldOutSentence("a", "Hello there.", "en", ref_audio=str(tmp_path / "ref.wav"), ref_text="Hi.")
    assert second == HeldOutSentence("2", "Guten Tag.", "de", speaker="anna")  # id: the line number
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "x", "language": "en", "ref_text": "y"}) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: field 'ref_text' needs 'ref_audio'"):
        read_sentences(bad)
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        read_sentences(tmp_path / "missing.jsonl")


def test_espeak_clips_score_low_wer_full_self_similarity_and_a_mos(tiny_corpus):
    """The corpus's own English clips scored as if generated: the built-in ASR understands espeak-ng, a clip is its
    own prompt (SIM 1), DNSMOS lies in [1, 5]; an empty clip counts as all deletions."""
    from qtts.eval.asr import open_asr
    from qtts.eval.naturalness import open_mos
    from qtts.eval.similarity import open_speaker_embedder

    rows = [json.loads(line) for line in (tiny_corpus.parent / "validated" / "clean.jsonl").read_text().splitlines()]
    english = [r for r in rows if r["language"] == "en"][:3]
    sentences = [HeldOutSentence(r["id"], r["text"], "en", ref_audio=r["audio"]) for r in english]
    wavs = [load_audio(r["audio"], 24000)[0][0] for r in english]
    asr = open_asr()
    scores = score_sentences(wavs, 24000, sentences, asr, open_speaker_embedder(), open_mos())
    assert scores.ids == [r["id"] for r in english] and all(h for h in scores.hypotheses)
    assert scores.wer == pytest.approx(sum(scores.rates) / 3) and scores.wer < 0.5, scores
    assert scores.sim == pytest.approx([1.0] * 3, abs=1e-4)
    assert all(1.0 <= m <= 5.0 for m in scores.mos)
    metrics = scores.metrics()
    assert set(metrics) == {"wer", "sim", "mos"} and metrics["sim"] == pytest.approx(1.0, abs=1e-4)

    empty = score_sentences([torch.zeros(0)], 24000, sentences[:1], asr)
    assert empty.hypotheses == [""] and empty.rates == [1.0] and empty.sim is None and empty.mos is None
