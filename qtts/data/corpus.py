"""A validated manifest as a Hugging Face dataset on disk (Arrow shards), and a summary of it.

Arrow shards are memory-mapped, so random access stays cheap for corpora far larger than RAM;
``open_corpus(..., streaming=True)`` iterates shard by shard for jobs that only stream. Text is
tokenized once here (``text_ids``: the content ids of the ChatML target) so training never runs
the tokenizer. Later stages add columns (codec codes) to the same rows.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import datasets

from qtts.data.manifest import Utterance, read_manifest

FEATURES = datasets.Features({
    "id": datasets.Value("string"),
    "audio": datasets.Value("string"),
    "text": datasets.Value("string"),
    "language": datasets.Value("string"),
    "speaker": datasets.Value("string"),
    "duration": datasets.Value("float32"),
    "start": datasets.Value("float32"),
    "end": datasets.Value("float32"),
    "ref_audio": datasets.Value("string"),
    "ref_text": datasets.Value("string"),
    "instruct": datasets.Value("string"),
})
TEXT_IDS = datasets.Sequence(datasets.Value("int32"))


def build_corpus(manifest: str | os.PathLike, out_dir: str | os.PathLike,
                 encode_text: Callable[[str], list[int]] | None = None, rows_per_shard: int = 50_000,
                 num_proc: int | None = None) -> datasets.Dataset:
    """Write ``manifest`` (a clean one: every row has a duration) to ``out_dir`` as Arrow shards."""
    manifest, out_dir = Path(manifest), Path(out_dir)
    rows = read_manifest(manifest)
    missing = [r.id for r in rows if r.duration is None]
    if missing:
        raise ValueError(f"{manifest}: rows without 'duration' (run `qtts data validate` first): {missing[:5]}")
    features = FEATURES.copy()
    if encode_text is not None:
        features["text_ids"] = TEXT_IDS

    def generate() -> Iterator[dict[str, Any]]:
        for row in rows:
            record = {name: getattr(row, name) for name in FEATURES}
            if encode_text is not None:
                record["text_ids"] = encode_text(row.text)
            yield record

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # left by a killed build: its stale shards must not join this one
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f".{out_dir.name}.cache") as cache:
        ds = datasets.Dataset.from_generator(generate, features=features, cache_dir=cache)
        num_shards = min(len(rows), max(1, -(-len(rows) // rows_per_shard)))
        ds.save_to_disk(str(tmp), num_shards=num_shards, num_proc=num_proc)
    _replace_dir(tmp, out_dir)
    return datasets.load_from_disk(str(out_dir))


def open_corpus(path: str | os.PathLike, streaming: bool = False) -> datasets.Dataset | datasets.IterableDataset:
    """Open a corpus folder written by ``build_corpus`` (or a JSONL manifest, read as a dataset)."""
    path = Path(path)
    if path.is_file():
        rows = [_row_dict(r) for r in read_manifest(path)]
        ds = datasets.Dataset.from_list(rows, features=FEATURES)
    else:
        if not (path / "dataset_info.json").exists():
            raise FileNotFoundError(f"{path}: not a corpus folder (no dataset_info.json); "
                                    "build it with `qtts data build`")
        ds = datasets.load_from_disk(str(path))
    if streaming:
        return ds.to_iterable_dataset(num_shards=max(1, len(ds.cache_files)))
    return ds


def summarize(ds: datasets.Dataset) -> dict[str, Any]:
    """Utterances, hours and speakers per language and per speaker."""
    langs: dict[str, dict[str, Any]] = defaultdict(lambda: {"utterances": 0, "seconds": 0.0, "speakers": set()})
    speakers: dict[str, dict[str, Any]] = defaultdict(lambda: {"utterances": 0, "seconds": 0.0, "language": ""})
    for lang, spk, dur in zip(ds["language"], ds["speaker"], ds["duration"]):
        entry = langs[lang]
        entry["utterances"] += 1
        entry["seconds"] += dur
        entry["speakers"].add(spk)
        s = speakers[spk]
        s["utterances"] += 1
        s["seconds"] += dur
        s["language"] = lang
    return {
        "languages": {k: {**v, "speakers": len(v["speakers"])} for k, v in sorted(langs.items())},
        "speakers": dict(sorted(speakers.items())),
        "utterances": len(ds),
        "seconds": float(sum(ds["duration"])),
    }


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"{'language':<10} {'speakers':>8} {'utts':>7} {'minutes':>8} {'mean s':>7}"]
    for lang, v in summary["languages"].items():
        lines.append(f"{lang:<10} {v['speakers']:>8} {v['utterances']:>7} {v['seconds'] / 60:>8.2f} "
                     f"{v['seconds'] / v['utterances']:>7.2f}")
    lines.append(f"{'total':<10} {len(summary['speakers']):>8} {summary['utterances']:>7} "
                 f"{summary['seconds'] / 60:>8.2f}")
    lines.append("")
    lines.append(f"{'speaker':<24} {'language':<10} {'utts':>6} {'minutes':>8}")
    for spk, v in summary["speakers"].items():
        lines.append(f"{spk:<24} {v['language']:<10} {v['utterances']:>6} {v['seconds'] / 60:>8.2f}")
    return "\n".join(lines)


def _row_dict(row: Utterance) -> dict[str, Any]:
    return {name: getattr(row, name) for name in FEATURES}


def _replace_dir(src: Path, dst: Path) -> None:
    """Swap a finished folder into place so readers never see half a corpus."""
    if dst.exists():
        old = dst.with_name(dst.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)
