"""The per-utterance results of an evaluation: ``OUT/results.jsonl``, appended one line per utterance as it is scored.

Each line is written whole and flushed to disk before the next, so a killed run loses at most the utterance it was
scoring: on a rerun the rows already there are skipped, and a torn last line (a crash mid-write) is cut off and
redone. A damaged line anywhere else is an error naming the file and line (results are not silently dropped).

``OUT/settings.json`` records what the results were made with (test set, ASR, embedder, …); a rerun into the same
folder with other settings is refused, so results of two setups never mix in one report.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from qtts.models.checkpoint import atomic_write

RESULTS = "results.jsonl"
SETTINGS = "settings.json"


class ResultsStore:
    """The rows of ``out/results.jsonl``, keyed by ``(system, id)``: ``system`` tells apart the audio scored for one
    utterance (``audio``; a codec evaluation scores its ``original`` and its ``reconstruction``)."""

    def __init__(self, out: str | os.PathLike, settings: dict[str, Any]):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.path = self.out / RESULTS
        _check_settings(self.out / SETTINGS, settings)
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}
        self._load()

    def _load(self) -> None:
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        keep = len(data)
        if lines[-1]:  # no newline at the end: the last write was torn
            keep = len(data) - len(lines[-1])
            lines = lines[:-1]
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                key = (row["system"], row["id"])
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
                raise ValueError(f"{self.path}:{number}: not a result row ({e}); remove the line to redo it") from e
            self.rows[key] = row
        if keep < len(data):
            with open(self.path, "r+b") as f:
                f.truncate(keep)

    def done(self, system: str, ident: str) -> bool:
        return (system, ident) in self.rows

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        """Append ``rows`` (each with ``system`` and ``id``), one line each, flushed and synced."""
        with open(self.path, "a", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
                self.rows[(row["system"], row["id"])] = row

    def select(self, system: str, ids: Iterable[str]) -> list[dict[str, Any]]:
        """The rows of ``system`` for ``ids`` (in that order; ids not scored yet are left out)."""
        return [self.rows[(system, i)] for i in ids if (system, i) in self.rows]


def _check_settings(path: Path, settings: dict[str, Any]) -> None:
    expected = json.loads(json.dumps(settings))  # as it reads back (tuples → lists)
    if path.is_file():
        found = json.loads(path.read_text(encoding="utf-8"))
        if found != expected:
            changed = sorted(k for k in found.keys() | expected.keys() if found.get(k) != expected.get(k))
            raise ValueError(f"{path.parent} holds results made with other settings ({', '.join(changed)}: "
                             f"{ {k: found.get(k) for k in changed} } there, { {k: expected.get(k) for k in changed} } "
                             "now); use another --out folder")
        return
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(expected, indent=2) + "\n", encoding="utf-8"))
