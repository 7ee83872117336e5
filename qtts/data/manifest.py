"""The corpus manifest: one JSON object per line, one utterance per object.

Fields: ``id, audio, text, language, speaker, duration`` and optionally ``ref_audio, ref_text,
instruct, start, end`` (seconds into ``audio``). A relative audio path resolves against the
manifest's folder, so a corpus folder can move as a whole. Parsing names the file, line and
field of every problem (``ManifestError``); unknown keys are kept in ``extra``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

REQUIRED = ("id", "audio", "text", "language", "speaker")
OPTIONAL_TEXT = ("ref_audio", "ref_text", "instruct")
OPTIONAL_TIME = ("start", "end")


class ManifestError(ValueError):
    """A manifest row that does not fit the schema; the message names file, line and field."""

    def __init__(self, where: str, field_name: str | None, message: str):
        self.where, self.field, self.reason = where, field_name, message
        prefix = f"{where}: field '{field_name}'" if field_name else where
        super().__init__(f"{prefix}: {message}")


@dataclass
class Utterance:
    id: str
    audio: str
    text: str
    language: str
    speaker: str
    duration: float | None = None
    ref_audio: str | None = None
    ref_text: str | None = None
    instruct: str | None = None
    start: float | None = None
    end: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        row = {k: v for k, v in asdict(self).items() if k != "extra" and v is not None}
        row.update(self.extra)
        return row


_KNOWN = {f.name for f in fields(Utterance)} - {"extra"}


def resolve_path(value: str, base_dir: Path) -> str:
    path = Path(os.path.expanduser(value))
    return str(path if path.is_absolute() else os.path.abspath(base_dir / path))


def parse_row(raw: Any, where: str, base_dir: Path) -> Utterance:
    """Check one decoded JSON value against the schema and resolve its paths."""
    if not isinstance(raw, dict):
        raise ManifestError(where, None, f"expected a JSON object, got {type(raw).__name__}")
    values: dict[str, Any] = {key: string_field(raw, key, where, required=True) for key in REQUIRED}
    for key in ("id", "audio"):
        if not values[key].strip():
            raise ManifestError(where, key, "empty")
    for key in OPTIONAL_TEXT:
        if raw.get(key) is not None:
            values[key] = string_field(raw, key, where)
    for key in ("duration", *OPTIONAL_TIME):
        if raw.get(key) is not None:
            values[key] = _seconds(raw[key], where, key)
    if values.get("start") is not None and values.get("end") is not None and values["end"] <= values["start"]:
        raise ManifestError(where, "end", f"end {values['end']} is not after start {values['start']}")
    values["audio"] = resolve_path(values["audio"], base_dir)
    if values.get("ref_audio"):
        values["ref_audio"] = resolve_path(values["ref_audio"], base_dir)
    extra = {k: v for k, v in raw.items() if k not in _KNOWN}
    return Utterance(**values, extra=extra)


def string_field(raw: dict[str, Any], key: str, where: str, required: bool = False) -> str | None:
    """``raw[key]`` checked to be a string (None when absent and not ``required``); a ManifestError otherwise."""
    value = raw.get(key)
    if value is None:
        if required:
            raise ManifestError(where, key, "missing")
        return None
    if not isinstance(value, str):
        raise ManifestError(where, key, f"expected a string, got {type(value).__name__}")
    return value


def seconds_field(raw: dict[str, Any], key: str, where: str) -> float | None:
    """``raw[key]`` as finite non-negative seconds (None when absent); a ManifestError otherwise."""
    return None if raw.get(key) is None else _seconds(raw[key], where, key)


def _seconds(value: Any, where: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ManifestError(where, key, f"expected a number of seconds, got {value!r}")
    try:
        seconds = float(value)
    except OverflowError:  # an integer too large for a float
        seconds = math.inf
    if not math.isfinite(seconds) or seconds < 0:
        raise ManifestError(where, key, f"expected a finite non-negative number, got {value!r}")
    return seconds


def iter_raw_rows(path: str | os.PathLike) -> Iterator[tuple[int, Any | ManifestError]]:
    """Yield ``(line_number, decoded_json)`` per non-blank line; undecodable lines yield a ManifestError."""
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as err:
                yield number, ManifestError(f"{path}:{number}", None, f"invalid JSON ({err.msg})")


def read_manifest(path: str | os.PathLike) -> list[Utterance]:
    """Read a whole manifest; the first bad row raises (use ``qtts data validate`` to sort a dirty one)."""
    path = Path(path)
    rows = []
    for number, raw in iter_raw_rows(path):
        if isinstance(raw, ManifestError):
            raise raw
        rows.append(parse_row(raw, f"{path}:{number}", path.parent))
    return rows


def write_manifest(path: str | os.PathLike, rows: Iterable[Utterance | dict[str, Any]]) -> int:
    """Write rows atomically (temporary file, then rename); returns the number written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    count = 0
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(dumps_row(row) + "\n")
                count += 1
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count


def dumps_row(row: Utterance | dict[str, Any]) -> str:
    return json.dumps(row.to_json() if isinstance(row, Utterance) else row, ensure_ascii=False)
