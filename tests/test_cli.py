"""The `qtts` command line on a small real corpus: exit codes, files written, summary printed."""

from __future__ import annotations

import json

from qtts.cli import main


def test_validate_build_summary(tiny_corpus, tmp_path, capsys):
    manifest = tiny_corpus.parent / "validated" / "clean.jsonl"
    assert main(["data", "validate", str(manifest), str(tmp_path / "v"), "--workers", "1"]) == 0
    assert len((tmp_path / "v" / "clean.jsonl").read_text().splitlines()) == 18
    assert main(["data", "build", str(tmp_path / "v" / "clean.jsonl"), str(tmp_path / "corpus")]) == 0
    capsys.readouterr()
    assert main(["data", "summary", str(tmp_path / "corpus"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["utterances"] == 18
    assert {k: v["speakers"] for k, v in summary["languages"].items()} == {"de": 3, "en": 3}
    from datasets import load_from_disk

    row = load_from_disk(str(tmp_path / "corpus"))[0]
    assert row["text_ids"] and 77091 not in row["text_ids"]  # content ids only, no ChatML role


def test_validate_exits_nonzero_when_nothing_is_usable(tmp_path, capsys):
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "a", "audio": "missing.wav", "text": "t",
                                                  "language": "en", "speaker": "s"}) + "\n")
    assert main(["data", "validate", str(tmp_path / "m.jsonl"), str(tmp_path / "out"), "--workers", "1"]) == 1
    assert "no usable row" in capsys.readouterr().err


def test_validate_registers_a_new_language(tiny_corpus, tmp_path, capsys):
    row = json.loads((tiny_corpus.parent / "validated" / "clean.jsonl").read_text().splitlines()[0])
    row["language"] = "xqz"
    row["audio"] = str((tiny_corpus.parent / "validated" / row["audio"]).resolve()) \
        if not row["audio"].startswith("/") else row["audio"]
    (tmp_path / "m.jsonl").write_text(json.dumps(row) + "\n")
    assert main(["data", "validate", str(tmp_path / "m.jsonl"), str(tmp_path / "a"), "--workers", "1"]) == 1
    assert "xqz" in (tmp_path / "a" / "rejects.jsonl").read_text()
    assert main(["data", "validate", str(tmp_path / "m.jsonl"), str(tmp_path / "b"), "--workers", "1",
                 "--language", "xqz:testish"]) == 0
    assert json.loads((tmp_path / "b" / "clean.jsonl").read_text())["language"] == "xqz"
    assert main(["data", "validate", str(tmp_path / "m.jsonl"), str(tmp_path / "c"), "--language", "xqy"]) == 2
