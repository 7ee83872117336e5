import json
import os

import datasets
import numpy as np
import pytest
import soundfile as sf

from qtts.data.corpus import build_corpus, format_summary, open_corpus, summarize

SR = 24_000
# (id, language, speaker, seconds): 2 languages, 3 speakers, 7 utterances
UTTS = [("a1", "en", "ann", 0.25), ("a2", "en", "ann", 0.5), ("b1", "en", "bob", 0.75),
        ("c1", "de", "carl", 0.25), ("c2", "de", "carl", 0.3), ("c3", "de", "carl", 0.4), ("b2", "en", "bob", 1.0)]


def make_manifest(folder, utts=UTTS, with_duration=True):
    (folder / "wavs").mkdir(parents=True, exist_ok=True)
    with open(folder / "clean.jsonl", "w", encoding="utf-8") as f:
        for k, (uid, lang, spk, seconds) in enumerate(utts):
            sf.write(folder / "wavs" / f"{uid}.wav", np.zeros(int(seconds * SR), np.float32), SR)
            row = {"id": uid, "audio": f"wavs/{uid}.wav", "text": f"Text number {k}.", "language": lang,
                   "speaker": spk}
            if with_duration:
                row["duration"] = seconds
            if uid == "c2":
                row.update(start=0.05, end=0.35, ref_audio="wavs/c1.wav", ref_text="ref", instruct="slowly")
            f.write(json.dumps(row) + "\n")
    return folder / "clean.jsonl"


def encode(text: str) -> list[int]:
    return [ord(c) for c in text]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    manifest = make_manifest(root)
    build_corpus(manifest, root / "corpus", encode_text=encode, rows_per_shard=3)
    return manifest, root / "corpus"


def rows(ds, drop=("text_ids",)):
    return [{k: v for k, v in row.items() if k not in drop} for row in ds]


def test_build_writes_several_arrow_shards(built):
    manifest, folder = built
    shards = sorted(p for p in os.listdir(folder) if p.endswith(".arrow"))
    assert shards == [f"data-0000{i}-of-00003.arrow" for i in range(3)]
    assert sorted(os.listdir(folder.parent)) == ["clean.jsonl", "corpus", "wavs"]  # no tmp/cache folders left
    ds = open_corpus(folder)
    assert len(ds) == len(UTTS) and ds["id"] == [u[0] for u in UTTS]
    c2 = ds[4]
    assert c2["audio"] == str(manifest.parent / "wavs" / "c2.wav")
    assert c2["ref_audio"] == str(manifest.parent / "wavs" / "c1.wav")
    assert (c2["start"], c2["end"], c2["instruct"]) == (pytest.approx(0.05), pytest.approx(0.35), "slowly")
    assert ds[0]["start"] is None and ds[0]["ref_audio"] is None


def test_text_ids_only_when_an_encoder_is_given(built, tmp_path):
    _, folder = built
    ds = open_corpus(folder)
    assert ds["text_ids"] == [encode(t) for t in ds["text"]]
    plain = build_corpus(make_manifest(tmp_path), tmp_path / "plain")
    assert "text_ids" not in plain.column_names


def test_folder_and_jsonl_give_the_same_rows(built):
    manifest, folder = built
    from_jsonl = open_corpus(manifest)
    assert from_jsonl.features == {k: v for k, v in open_corpus(folder).features.items() if k != "text_ids"}
    assert rows(from_jsonl) == rows(open_corpus(folder))


@pytest.mark.parametrize("source", ["folder", "jsonl"])
def test_streaming_iterates_every_row(built, source):
    manifest, folder = built
    path = folder if source == "folder" else manifest
    stream = open_corpus(path, streaming=True)
    assert not hasattr(stream, "__len__")
    assert rows(stream) == rows(open_corpus(path))
    if source == "folder":
        assert stream.num_shards == 3


def test_rows_without_duration_are_refused(tmp_path):
    manifest = make_manifest(tmp_path, UTTS[:2], with_duration=False)
    with pytest.raises(ValueError, match=r"clean\.jsonl.*duration.*a1"):
        build_corpus(manifest, tmp_path / "corpus")
    assert not (tmp_path / "corpus").exists()


def test_open_rejects_a_folder_that_is_not_a_corpus(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a corpus folder"):
        open_corpus(tmp_path)


def test_rebuild_replaces_the_folder_and_leaves_nothing_behind(tmp_path):
    manifest = make_manifest(tmp_path)
    out = tmp_path / "corpus"
    build_corpus(manifest, out, rows_per_shard=2)
    (out / "stray.txt").write_text("from the old build")
    # a killed earlier build left its temporary folder with a shard of its own
    (tmp_path / "corpus.tmp").mkdir()
    (tmp_path / "corpus.tmp" / "data-00007-of-00009.arrow").write_text("stale")
    make_manifest(tmp_path, UTTS[:3])
    ds = build_corpus(manifest, out, rows_per_shard=2)
    assert ds["id"] == ["a1", "a2", "b1"]
    assert open_corpus(out)["id"] == ["a1", "a2", "b1"]
    assert sorted(os.listdir(out)) == ["data-00000-of-00002.arrow", "data-00001-of-00002.arrow",
                                       "dataset_info.json", "state.json"]
    assert sorted(os.listdir(tmp_path)) == ["clean.jsonl", "corpus", "wavs"]


def test_summary_counts_per_language_and_speaker(built):
    assert summarize(open_corpus(built[1]))["utterances"] == len(UTTS)
    durations = {"ann": [30.0, 90.0], "bob": [45.0], "carl": [12.5, 7.5, 100.0]}
    language = {"ann": "en", "bob": "en", "carl": "de"}
    ds = datasets.Dataset.from_dict({
        "speaker": [s for s, ds_ in durations.items() for _ in ds_],
        "language": [language[s] for s, ds_ in durations.items() for _ in ds_],
        "duration": [d for ds_ in durations.values() for d in ds_],
    })
    summary = summarize(ds)
    assert (summary["utterances"], summary["seconds"]) == (6, 285.0)
    assert summary["languages"] == {"de": {"utterances": 3, "seconds": 120.0, "speakers": 1},
                                    "en": {"utterances": 3, "seconds": 165.0, "speakers": 2}}
    assert summary["speakers"] == {"ann": {"utterances": 2, "seconds": 120.0, "language": "en"},
                                   "bob": {"utterances": 1, "seconds": 45.0, "language": "en"},
                                   "carl": {"utterances": 3, "seconds": 120.0, "language": "de"}}

    table = {line.split()[0]: line.split()[1:] for line in format_summary(summary).splitlines() if line.strip()}
    assert table["de"] == ["1", "3", "2.00", "40.00"]  # speakers, utterances, minutes, mean seconds
    assert table["en"] == ["2", "3", "2.75", "55.00"]
    assert table["total"] == ["3", "6", "4.75"]
    assert table["ann"] == ["en", "2", "2.00"]
    assert table["bob"] == ["en", "1", "0.75"]
    assert table["carl"] == ["de", "3", "2.00"]
