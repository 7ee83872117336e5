"""Reading test sets: a JSONL manifest and a Seed-TTS-eval meta.lst into the same items; errors name file, line and
field."""

from __future__ import annotations

import json

import pytest

from qtts.data.manifest import ManifestError
from qtts.eval.testset import TestItem, read_testset


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_jsonl_and_meta_lst_read_to_the_same_items(tmp_path):
    folder = tmp_path / "en"
    folder.mkdir()
    (folder / "meta.lst").write_text(
        "u1|Prompt one.|prompt-wavs/u1.wav|Target one.|wavs/u1.wav\n"
        "\n"
        "u2|Prompt two.|prompt-wavs/u2.wav|Target two.\n", encoding="utf-8")
    _jsonl(folder / "set.jsonl", [
        {"id": "u1", "text": "Target one.", "language": "english", "audio": "wavs/u1.wav",
         "ref_audio": "prompt-wavs/u1.wav", "ref_text": "Prompt one."},
        {"id": "u2", "text": "Target two.", "language": "en", "ref_audio": "prompt-wavs/u2.wav",
         "ref_text": "Prompt two.", "speaker": "spk", "duration": 1.5},
    ])
    from_list = read_testset(folder / "meta.lst")
    assert read_testset(folder) == from_list  # the folder or its meta.lst
    assert from_list[0] == TestItem("u1", "Target one.", "en", audio=str(folder / "wavs/u1.wav"),
                                    ref_audio=str(folder / "prompt-wavs/u1.wav"), ref_text="Prompt one.",
                                    where=f"{folder / 'meta.lst'}:1")
    assert from_list[1].audio is None and from_list[1].where.endswith("meta.lst:3")
    from_jsonl = read_testset(folder / "set.jsonl")
    strip = lambda item: (item.id, item.text, item.language, item.audio, item.ref_audio, item.ref_text)  # noqa: E731
    assert [strip(i) for i in from_jsonl] == [strip(i) for i in from_list]
    assert (from_jsonl[1].speaker, from_jsonl[1].duration) == ("spk", 1.5)
    with pytest.raises(ValueError, match=r"item 'u2' has no audio to score"):
        from_list[1].needs_audio()


def test_language_filters_jsonl_and_names_a_list(tmp_path):
    _jsonl(tmp_path / "t.jsonl", [{"id": "a", "text": "Hi.", "language": "en"},
                                  {"id": "b", "text": "你好。", "language": "chinese"}])
    assert [i.id for i in read_testset(tmp_path / "t.jsonl", "zh")] == ["b"]
    assert read_testset(tmp_path / "t.jsonl", "zh")[0].language == "zh"
    with pytest.raises(ValueError, match="no items of language 'de'"):
        read_testset(tmp_path / "t.jsonl", "de")
    (tmp_path / "meta.lst").write_text("u|p|p.wav|Hallo.\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no language column"):
        read_testset(tmp_path / "meta.lst")  # the folder is not named by a language
    assert read_testset(tmp_path, "german")[0].language == "de"


@pytest.mark.parametrize(("content", "match"), [
    ("u|p|p.wav\n", r"meta.lst:1: expected utt\|prompt_text\|prompt_wav\|target_text\[\|gt_wav\], got 3 fields"),
    ("u|p|p.wav|t|g.wav|x\n", "meta.lst:1: .* got 6 fields"),
    ("u|p|p.wav|t\nu|p|p.wav|t2\n", r"meta.lst:2: field 'id': 'u' is used twice \(also .*meta.lst:1\)"),
    ("u|p|p.wav| \n", "meta.lst:1: field 'text': empty"),
])
def test_bad_meta_lst_lines_are_named(tmp_path, content, match):
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "meta.lst").write_text(content, encoding="utf-8")
    with pytest.raises(ManifestError, match=match):
        read_testset(tmp_path / "en")


@pytest.mark.parametrize(("row", "match"), [
    ('{"id": "a", "language": "en"}', "t.jsonl:1: field 'text': missing"),
    ('{"id": "a", "text": 3, "language": "en"}', "t.jsonl:1: field 'text': expected a string, got int"),
    ('{"id": "a", "text": "x", "language": "xx"}', "t.jsonl:1: field 'language': unknown language 'xx'"),
    ('{"id": "a", "text": "x", "language": "en", "ref_text": "p"}', "t.jsonl:1: field 'ref_audio': missing"),
    ('{"id": "a", "text": "x", "language": "en", "duration": -1}', "t.jsonl:1: field 'duration'"),
    ('{"id": "a", "text": "x", "language": "en", "start": 2, "end": 1}', "t.jsonl:1: field 'end': end 1.0 is not"),
    ('{"id": "a", "text": "x"', r"t.jsonl:1: invalid JSON"),
    ('[1]', "t.jsonl:1: expected a JSON object"),
])
def test_bad_jsonl_rows_are_named(tmp_path, row, match):
    (tmp_path / "t.jsonl").write_text(row + "\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=match):
        read_testset(tmp_path / "t.jsonl")


def test_missing_test_set(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_testset(tmp_path / "nope.jsonl")
    with pytest.raises(FileNotFoundError, match="must hold a Seed-TTS-eval meta.lst"):
        read_testset(tmp_path)
