"""What every importer shares: measure audio in worker processes, reject bad files instead of
stopping, and write the manifest with paths that survive moving the corpus folder.

An importer only walks its layout and builds ``Utterance`` rows (absolute audio path, no duration)
plus rejects for what it could already see is wrong (missing transcript, unknown language);
``finish_import`` measures every file, moves unreadable ones to the rejects and writes
``OUT.jsonl`` and ``OUT.rejects.jsonl`` (one ``{"path", "reason"}`` object per line).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from qtts.audio.io import AudioError, audio_info
from qtts.data.manifest import Utterance, write_manifest
from qtts.parallel import worker_pool

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus")


@dataclass
class Reject:
    """A file left out of the manifest; ``reason`` reads ``"kind: detail"`` so reports can count kinds."""

    path: str
    reason: str


@dataclass
class ImportResult:
    rows: list[Utterance]
    rejects: list[Reject] = field(default_factory=list)
    manifest: Path | None = None

    @property
    def hours(self) -> float:
        return sum(row.duration or 0.0 for row in self.rows) / 3600

    def summary(self) -> str:
        kinds: dict[str, int] = {}
        for reject in self.rejects:
            kind = reject.reason.split(":")[0]
            kinds[kind] = kinds.get(kind, 0) + 1
        speakers = len({row.speaker for row in self.rows})
        lines = [f"{len(self.rows)} rows, {speakers} speakers, {self.hours:.2f} h; {len(self.rejects)} rejected"]
        lines += [f"  {count:6d}  {kind}" for kind, count in sorted(kinds.items(), key=lambda kv: -kv[1])]
        if self.manifest is not None:
            lines.append(f"manifest: {self.manifest}  rejects: {rejects_path(self.manifest)}")
        return "\n".join(lines)


def clean_text(text: str) -> str:
    """NFC-normalise and collapse whitespace: transcripts come with BOMs, tabs and stray newlines."""
    return " ".join(unicodedata.normalize("NFC", text).replace("\ufeff", "").split())


def read_text_file(path: Path) -> str:
    return clean_text(path.read_text(encoding="utf-8-sig", errors="replace"))


def probe_duration(path: str) -> tuple[float | None, str | None]:
    """``(seconds, None)`` for a readable file, ``(None, reason)`` otherwise; never raises."""
    try:
        info = audio_info(path)
    except AudioError as err:
        kind = "missing audio" if "not found" in str(err) else "unreadable audio"
        return None, f"{kind}: {err}"
    except Exception as err:  # a decoder bug on one odd file must not end a long import
        return None, f"unreadable audio: {path}: {type(err).__name__}: {err}"
    if getattr(info, "truncated", False):
        return None, f"truncated audio: {path} holds less audio than its header declares"
    if info.frames <= 0:
        return None, f"no audio: {path} has no samples"
    return round(info.duration, 4), None


def probe_durations(
    paths: Sequence[str], workers: int = 2, desc: str = "measuring audio"
) -> list[tuple[float | None, str | None]]:
    """``probe_duration`` over many files (in ``workers`` processes), results in input order."""
    bar = dict(total=len(paths), desc=desc, unit="file", disable=not paths)
    if workers <= 1 or len(paths) < 2:
        return [probe_duration(p) for p in tqdm(paths, **bar)]
    chunk = max(1, min(64, len(paths) // (workers * 8)))
    with worker_pool(workers) as pool:
        return list(tqdm(pool.map(probe_duration, paths, chunksize=chunk), **bar))


def audio_ref(audio: str | os.PathLike, manifest: str | os.PathLike | None) -> str:
    """Path to write into ``manifest``: relative when the manifest's folder contains the audio
    (the corpus then moves as a whole), absolute otherwise."""
    audio_abs = Path(os.path.abspath(audio))
    if manifest is None:
        return str(audio_abs)
    base = Path(os.path.abspath(manifest)).parent
    try:
        return audio_abs.relative_to(base).as_posix()
    except ValueError:
        return str(audio_abs)


def rejects_path(manifest: str | os.PathLike) -> Path:
    manifest = Path(manifest)
    stem = manifest.name[: -len(manifest.suffix)] if manifest.suffix else manifest.name
    return manifest.with_name(f"{stem}.rejects.jsonl")


def write_rejects(path: str | os.PathLike, rejects: Iterable[Reject]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for reject in rejects:
            f.write(json.dumps(asdict(reject), ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def finish_import(
    candidates: Iterable[Utterance],
    rejects: list[Reject],
    out: str | os.PathLike | None = None,
    workers: int = 2,
    desc: str = "measuring audio",
) -> ImportResult:
    """Drop duplicate ids, measure durations, reject unreadable audio, write ``out`` (if given).

    ``candidates`` carry absolute audio paths; the written rows carry ``audio_ref`` paths.
    """
    seen: set[str] = set()
    unique: list[Utterance] = []
    for row in candidates:
        if row.id in seen:
            rejects.append(Reject(row.audio, f"duplicate id: {row.id}"))
            continue
        seen.add(row.id)
        unique.append(row)
    rows: list[Utterance] = []
    for row, (duration, reason) in zip(unique, probe_durations([r.audio for r in unique], workers, desc)):
        if reason is not None:
            rejects.append(Reject(row.audio, reason))
            continue
        row.duration = duration
        row.audio = audio_ref(row.audio, out)
        rows.append(row)
    result = ImportResult(rows, rejects)
    if out is not None:
        result.manifest = Path(out)
        write_manifest(out, rows)
        write_rejects(rejects_path(out), rejects)
    return result


def importer_parser(description: str | None, root_help: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help=root_help)
    parser.add_argument("out", type=Path, help="manifest to write (.jsonl); rejects go next to it as .rejects.jsonl")
    parser.add_argument("--workers", type=int, default=2, help="processes that read audio headers (default 2)")
    return parser


def report(result: ImportResult, show: int = 10) -> int:
    """Print the summary and the first rejects; exit status 1 when nothing was imported."""
    print(result.summary(), file=sys.stderr)
    for reject in result.rejects[:show]:
        print(f"  rejected {reject.path}: {reject.reason}", file=sys.stderr)
    if len(result.rejects) > show:
        print(f"  ... and {len(result.rejects) - show} more", file=sys.stderr)
    return 0 if result.rows else 1
