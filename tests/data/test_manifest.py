import json
import os

import pytest

from qtts.data.manifest import ManifestError, Utterance, read_manifest, write_manifest

DROP = object()  # a field left out of the row
GOOD = {"id": "u1", "audio": "wavs/u1.wav", "text": "Hello.", "language": "en", "speaker": "s1", "duration": 1.5}


def write_lines(path, lines) -> str:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines),
                    encoding="utf-8")
    return str(path)


def parse_error(tmp_path, bad_line) -> ManifestError:
    """Read a manifest whose line 3 is ``bad_line`` (after a good row and a blank line)."""
    path = write_lines(tmp_path / "m.jsonl", [GOOD, "", bad_line, {**GOOD, "id": "u9"}])
    with pytest.raises(ManifestError) as err:
        read_manifest(path)
    assert str(err.value).startswith(f"{path}:3")
    assert err.value.where == f"{path}:3"
    return err.value


@pytest.mark.parametrize("change, field, words", [
    (dict(text=DROP), "text", "missing"),
    (dict(speaker=None), "speaker", "missing"),  # null counts as missing
    (dict(language=7), "language", "expected a string, got int"),
    (dict(id="  "), "id", "empty"),
    (dict(ref_text=["a"]), "ref_text", "expected a string, got list"),
    (dict(duration=-0.5), "duration", "non-negative"),
    (dict(duration="1.5"), "duration", "expected a number"),
    (dict(duration=True), "duration", "expected a number"),
    (dict(duration=10**400), "duration", "finite"),
    (dict(start=2.0, end=2.0), "end", "not after start"),
    (dict(start=2.0, end=1.0), "end", "not after start"),
])
def test_schema_errors_name_file_line_and_field(tmp_path, change, field, words):
    row = {k: v for k, v in {**GOOD, **change}.items() if v is not DROP}
    err = parse_error(tmp_path, row)
    assert err.field == field
    assert f"field '{field}'" in str(err) and words in str(err)


@pytest.mark.parametrize("literal", ["NaN", "Infinity"])
def test_non_finite_durations_are_rejected(tmp_path, literal):
    err = parse_error(tmp_path, json.dumps(GOOD).replace("1.5", literal))
    assert err.field == "duration" and "finite" in str(err)


@pytest.mark.parametrize("line, words", [("{not json", "invalid JSON"), ('["a list"]', "expected a JSON object")])
def test_undecodable_lines_name_file_and_line(tmp_path, line, words):
    err = parse_error(tmp_path, line)
    assert err.field is None and words in str(err)


def test_relative_paths_resolve_against_the_manifest_folder(tmp_path, monkeypatch):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rows = [{**GOOD, "ref_audio": "refs/r.wav"}, {**GOOD, "id": "u2", "audio": "/abs/u2.wav"}]
    write_lines(corpus / "m.jsonl", rows)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    for path in (corpus / "m.jsonl", os.path.join("..", "corpus", "m.jsonl")):  # absolute and relative
        first, second = read_manifest(path)
        assert first.audio == str(corpus / "wavs" / "u1.wav")
        assert first.ref_audio == str(corpus / "refs" / "r.wav")
        assert second.audio == "/abs/u2.wav" and second.ref_audio is None


def test_resolved_paths_survive_a_rewrite_into_another_folder(tmp_path, monkeypatch):
    # A manifest read through a relative path and written elsewhere must still point at the same files.
    (tmp_path / "src").mkdir()
    write_lines(tmp_path / "src" / "m.jsonl", [GOOD])
    monkeypatch.chdir(tmp_path)
    write_manifest("out/clean.jsonl", read_manifest("src/m.jsonl"))
    monkeypatch.chdir(tmp_path / "out")
    assert read_manifest("clean.jsonl")[0].audio == str(tmp_path / "src" / "wavs" / "u1.wav")


def test_fields_types_and_unknown_keys_round_trip(tmp_path):
    row = {**GOOD, "start": 1, "end": 2.25, "instruct": "calm", "dnsmos": 3.4, "tags": ["a", {"b": None}],
           "note": "ünïcode"}
    path = write_lines(tmp_path / "m.jsonl", [row])
    (utt,) = read_manifest(path)
    assert (utt.start, utt.end, utt.duration, utt.instruct) == (1.0, 2.25, 1.5, "calm")
    assert isinstance(utt.start, float)
    assert utt.extra == {"dnsmos": 3.4, "tags": ["a", {"b": None}], "note": "ünïcode"}
    assert write_manifest(tmp_path / "copy.jsonl", [utt]) == 1
    (again,) = read_manifest(tmp_path / "copy.jsonl")
    assert again == utt
    assert "ünïcode" in (tmp_path / "copy.jsonl").read_text(encoding="utf-8")  # not \\u-escaped
    assert "extra" not in json.loads((tmp_path / "copy.jsonl").read_text(encoding="utf-8"))


def test_write_manifest_exact_content_and_no_temp_file(tmp_path):
    out = tmp_path / "new" / "m.jsonl"
    rows = [Utterance("a", "/x/a.wav", "one", "en", "s", duration=1.0),
            {"id": "b", "audio": "b.wav", "text": "two", "language": "de", "speaker": "t"}]
    assert write_manifest(out, rows) == 2
    assert out.read_text(encoding="utf-8").splitlines() == [
        '{"id": "a", "audio": "/x/a.wav", "text": "one", "language": "en", "speaker": "s", "duration": 1.0}',
        '{"id": "b", "audio": "b.wav", "text": "two", "language": "de", "speaker": "t"}',
    ]
    assert os.listdir(out.parent) == ["m.jsonl"]


def test_failed_write_keeps_the_old_manifest_and_leaves_no_temp_file(tmp_path):
    out = tmp_path / "m.jsonl"
    write_manifest(out, [GOOD])
    before = out.read_bytes()

    def rows():
        yield {**GOOD, "id": "new"}
        raise RuntimeError("upstream failed")

    with pytest.raises(RuntimeError, match="upstream failed"):
        write_manifest(out, rows())
    assert out.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.jsonl"]
