import json
import math

import numpy as np
import pytest
import soundfile as sf

from qtts.data.manifest import read_manifest
from qtts.data.validate import ValidationConfig, validate_manifest


def tone(seconds=1.0, sr=24000, channels=1, freq=220.0):
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.3 * np.sin(2 * math.pi * freq * t) + 0.01 * np.random.default_rng(0).standard_normal(t.size)
    return np.repeat(wave[:, None], channels, axis=1).astype(np.float32)


@pytest.fixture
def dirty_corpus(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    sf.write(audio / "good1.wav", tone(), 24000, subtype="PCM_16")
    sf.write(audio / "good2.flac", tone(1.5, 44100, freq=330), 44100)
    sf.write(audio / "stereo8k.mp3", tone(2.0, 8000, channels=2), 8000, format="MP3")
    full = (audio / "good1.wav").read_bytes()
    (audio / "truncated.wav").write_bytes(full[: len(full) // 2])
    (audio / "zero.wav").write_bytes(b"")
    (audio / "noise.wav").write_bytes(b"this is not audio at all, just text pretending to be a wav file" * 20)
    nan = tone()
    nan[100:200] = np.nan
    sf.write(audio / "nan.wav", nan, 24000, subtype="FLOAT")

    def row(id_, path, text="hello world", language="en", speaker="s1"):
        return {"id": id_, "audio": path, "text": text, "language": language, "speaker": speaker}

    rows = [
        row("good1", "audio/good1.wav"),
        row("good2", "audio/good2.flac", language="german"),
        row("mp3", "audio/stereo8k.mp3", language="fr"),
        row("trunc", "audio/truncated.wav"),
        row("zero", "audio/zero.wav"),
        row("noise", "audio/noise.wav"),
        row("nan", "audio/nan.wav"),
        row("empty", "audio/good1.wav", text=""),
        row("spaces", "audio/good1.wav", text="   \t "),
        row("klingon", "audio/good1.wav", language="tlh"),
        row("missing", "audio/nope.wav"),
        row("good1", "audio/good2.flac"),
    ]
    manifest = tmp_path / "manifest.jsonl"
    with open(manifest, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
        f.write("{not json\n")
        f.write(json.dumps({"id": "nolang", "audio": "audio/good1.wav", "text": "x", "speaker": "s"}) + "\n")
    return manifest


EXPECTED_REJECTS = {
    "trunc": "truncated",
    "zero": "empty file",
    "noise": "undecodable",
    "nan": "nan",
    "empty": "empty text",
    "spaces": "empty text",
    "klingon": "unknown language",
    "missing": "missing file",
    "good1": "duplicate id",
    "nolang": "schema",
    None: "schema",
}


def test_dirty_corpus_sorted_with_reasons(dirty_corpus, tmp_path):
    out = tmp_path / "out"
    report = validate_manifest(dirty_corpus, out, ValidationConfig(workers=2), progress=False)
    clean = read_manifest(out / "clean.jsonl")
    assert [r.id for r in clean] == ["good1", "good2", "mp3"]
    assert [r.language for r in clean] == ["en", "de", "fr"]
    durations = {r.id: r.duration for r in clean}
    assert durations["good1"] == pytest.approx(1.0, abs=1e-3)
    assert durations["good2"] == pytest.approx(1.5, abs=1e-3)
    assert durations["mp3"] == pytest.approx(2.0, abs=0.08)  # mp3 frames pad a little
    rejects = [json.loads(line) for line in open(out / "rejects.jsonl")]
    got = {r["id"]: r["reason"].split(":")[0] for r in rejects}
    assert got == EXPECTED_REJECTS
    assert report.clean == 3 and report.rejected == len(EXPECTED_REJECTS)
    schema_reason = next(r["reason"] for r in rejects if r["id"] == "nolang")
    assert "field 'language'" in schema_reason and "manifest.jsonl:14" in schema_reason


def test_validation_resumes_after_kill(dirty_corpus, tmp_path):
    out = tmp_path / "out"
    validate_manifest(dirty_corpus, out, progress=False)
    clean_lines = (out / "clean.jsonl").read_bytes().splitlines(keepends=True)
    reject_lines = (out / "rejects.jsonl").read_bytes().splitlines(keepends=True)
    # Simulate a kill: keep one clean row plus half of the next, and three rejects.
    (out / "clean.jsonl").write_bytes(clean_lines[0] + clean_lines[1][:10])
    (out / "rejects.jsonl").write_bytes(b"".join(reject_lines[:3]))
    report = validate_manifest(dirty_corpus, out, progress=False)
    assert report.resumed == 4
    assert (out / "clean.jsonl").read_bytes() == b"".join(clean_lines)
    assert sorted((out / "rejects.jsonl").read_bytes().splitlines()) == sorted(b"".join(reject_lines).splitlines())


def test_bounds_clipping_and_silence(tmp_path):
    sf.write(tmp_path / "short.wav", tone(0.1), 24000)
    sf.write(tmp_path / "long.wav", tone(4.0), 24000)
    sf.write(tmp_path / "clip.wav", np.clip(tone() * 10, -1, 1), 24000)
    sf.write(tmp_path / "silent.wav", tone() * 1e-5, 24000)
    sf.write(tmp_path / "ok.wav", tone(), 24000)
    rows = [{"id": n, "audio": f"{n}.wav", "text": "t", "language": "ja", "speaker": "a"}
            for n in ["short", "long", "clip", "silent", "ok"]]
    rows.append({"id": "wrongdur", "audio": "ok.wav", "text": "t", "language": "ja", "speaker": "a", "duration": 3.0})
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    validate_manifest(tmp_path / "m.jsonl", tmp_path / "out", ValidationConfig(max_duration=3.0, workers=1),
                      progress=False)
    reasons = {json.loads(line)["id"]: json.loads(line)["reason"].split(":")[0]
               for line in open(tmp_path / "out/rejects.jsonl")}
    assert reasons == {"short": "too short", "long": "too long", "clip": "clipping", "silent": "silence",
                       "wrongdur": "duration mismatch"}


def test_no_usable_rows_is_reported(tmp_path):
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "a", "audio": "x.wav", "text": "t", "language": "en",
                                                  "speaker": "s"}) + "\n")
    report = validate_manifest(tmp_path / "m.jsonl", tmp_path / "out", progress=False)
    assert report.clean == 0 and report.rejected == 1
