"""Sort a manifest into usable rows and rejected rows, never stopping at a bad one.

``validate_manifest(IN, OUT_DIR)`` checks every row (schema, duplicate id, text, language, that the
file exists and decodes, sample rate, channels, duration bounds, NaN/Inf, clipping, silence) and
appends each row to ``OUT_DIR/clean.jsonl`` or ``OUT_DIR/rejects.jsonl`` (the row plus the reason)
as it goes. A killed run resumes where it left off: rows already written are skipped and a torn
last line is dropped. Audio checks run in worker processes; order and duplicate detection stay in
the parent so results do not depend on the worker count.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from qtts.audio.io import AudioError, audio_info, load_audio
from qtts.data.manifest import ManifestError, Utterance, dumps_row, iter_raw_rows, parse_row
from qtts.parallel import worker_pool
from qtts.text.languages import get_language, is_known_language


@dataclass
class ValidationConfig:
    """What a usable row is; ``metadata["help"]`` is each field's ``qtts data validate`` help."""
    min_duration: float = field(default=0.3, metadata={"help": "shortest clip, seconds"})
    max_duration: float = field(default=30.0, metadata={"help": "longest clip, seconds"})
    min_sample_rate: int = field(default=8000, metadata={"help": "lowest sample rate, Hz"})
    max_channels: int = field(default=2, metadata={"help": "most audio channels"})
    max_clipped_fraction: float = field(default=0.01, metadata={"help": "largest share of samples at full scale"})
    silence_dbfs: float = field(default=-60.0, metadata={"help": "RMS below this (dBFS) is silence"})
    duration_tolerance: float = field(default=0.1, metadata={
        "help": "seconds, plus 5 %, the manifest's duration may differ from the audio's"})
    require_text: bool = field(default=True, metadata={"help": "a row needs a non-empty text"})
    workers: int = field(default=2, metadata={"help": "audio-checking worker processes"})


@dataclass
class ValidationReport:
    clean: int = 0
    rejected: int = 0
    resumed: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    out_dir: str = ""

    def add_reject(self, reason: str) -> None:
        self.rejected += 1
        kind = reason.split(":")[0]
        self.reasons[kind] = self.reasons.get(kind, 0) + 1

    def summary(self) -> str:
        lines = [f"clean: {self.clean}  rejected: {self.rejected}  (resumed past {self.resumed} rows)"]
        lines += [f"  {count:6d}  {reason}" for reason, count in sorted(self.reasons.items(), key=lambda kv: -kv[1])]
        return "\n".join(lines)


def check_audio(row: Utterance, cfg: ValidationConfig) -> tuple[float | None, str | None]:
    """Decode one row's audio and return ``(duration, None)`` or ``(None, reason)``."""
    try:
        info = audio_info(row.audio)
        if info.truncated:
            return None, f"truncated: {row.audio} holds less audio than its header declares"
        if info.sample_rate < cfg.min_sample_rate:
            return None, f"sample rate: {info.sample_rate} Hz < {cfg.min_sample_rate} Hz"
        if info.channels > cfg.max_channels:
            return None, f"channels: {info.channels} > {cfg.max_channels}"
        wav, sr = load_audio(row.audio, sample_rate=None, mono=False, start=row.start, end=row.end)
    except AudioError as err:
        reason = str(err).split(": ", 1)[-1]
        kind = "missing file" if "not found" in reason else "empty file" if "empty file" in reason else "undecodable"
        return None, f"{kind}: {err}"
    duration = wav.shape[-1] / sr
    if not torch.isfinite(wav).all():
        return None, "nan: audio contains NaN or Inf samples"
    if duration < cfg.min_duration:
        return None, f"too short: {duration:.2f} s < {cfg.min_duration} s"
    if duration > cfg.max_duration:
        return None, f"too long: {duration:.2f} s > {cfg.max_duration} s"
    if row.duration is not None and abs(row.duration - duration) > cfg.duration_tolerance + 0.05 * duration:
        return None, f"duration mismatch: field says {row.duration:.2f} s, audio has {duration:.2f} s"
    clipped = (wav.abs() >= 0.999).float().mean().item()
    if clipped > cfg.max_clipped_fraction:
        return None, f"clipping: {100 * clipped:.1f} % of samples at full scale"
    rms = wav.pow(2).mean().sqrt().item()
    dbfs = 20 * math.log10(max(rms, 1e-10))
    if dbfs < cfg.silence_dbfs:
        return None, f"silence: RMS {dbfs:.1f} dBFS < {cfg.silence_dbfs} dBFS"
    if row.ref_audio:
        try:
            audio_info(row.ref_audio)
        except AudioError as err:
            return None, f"bad ref_audio: {err}"
    return duration, None


def _check_text(row: Utterance, cfg: ValidationConfig) -> str | None:
    if cfg.require_text and not row.text.strip():
        return "empty text: the text field is empty or whitespace"
    if not is_known_language(row.language):
        return f"unknown language: {row.language!r}"
    return None


def _check_worker(args: tuple[dict[str, Any], ValidationConfig]) -> tuple[float | None, str | None]:
    row_dict, cfg = args
    extra = row_dict.pop("extra", {})
    return check_audio(Utterance(**row_dict, extra=extra), cfg)


def validate_manifest(manifest: str | os.PathLike, out_dir: str | os.PathLike, cfg: ValidationConfig | None = None,
                      progress: bool = True) -> ValidationReport:
    """Validate ``manifest`` into ``out_dir/{clean,rejects}.jsonl``; resumes if those files exist."""
    cfg = cfg or ValidationConfig()
    manifest, out_dir = Path(manifest), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clean_path, reject_path = out_dir / "clean.jsonl", out_dir / "rejects.jsonl"
    report = ValidationReport(out_dir=str(out_dir))
    done_lines: set[int] = set()
    seen_ids: dict[str, int] = {}
    for path in (clean_path, reject_path):
        for record in _read_done(path):
            line = record["source_line"] if path is clean_path else record["line"]
            done_lines.add(line)
            if record.get("id") is not None and record.get("reason", "").split(":")[0] != "duplicate id":
                seen_ids.setdefault(record["id"], line)
            if path is clean_path:
                report.clean += 1
            else:
                report.add_reject(record["reason"])
    report.resumed = len(done_lines)

    def pending() -> Iterator[tuple[int, Any]]:
        for number, raw in iter_raw_rows(manifest):
            if number not in done_lines:
                yield number, raw

    total = sum(1 for _ in iter_raw_rows(manifest))
    with open(clean_path, "a", encoding="utf-8") as clean_f, open(reject_path, "a", encoding="utf-8") as reject_f, \
            worker_pool(cfg.workers) as pool, \
            tqdm(total=total, initial=len(done_lines), desc=f"validate {manifest.name}", disable=not progress,
                 unit="row") as bar:

        def reject(number: int, raw: Any, reason: str) -> None:
            record = {"line": number, "id": raw.get("id") if isinstance(raw, dict) else None,
                      "reason": reason, "row": raw}
            reject_f.write(json.dumps(record, ensure_ascii=False) + "\n")
            reject_f.flush()
            report.add_reject(reason)

        batch: list[tuple[int, Any, Utterance]] = []

        def flush_batch() -> None:
            jobs = [(asdict(row), cfg) for _, _, row in batch]
            for (number, raw, row), (duration, reason) in zip(batch, pool.map(_check_worker, jobs, chunksize=4)):
                if reason is not None:
                    reject(number, raw, reason)
                else:
                    row.duration = round(duration, 4)
                    record = row.to_json()
                    record["source_line"] = number
                    clean_f.write(dumps_row(record) + "\n")
                    clean_f.flush()
                    report.clean += 1
                bar.update()
            batch.clear()

        for number, raw in pending():
            where = f"{manifest}:{number}"
            if isinstance(raw, ManifestError):
                reject(number, None, f"schema: {raw}")
                bar.update()
                continue
            try:
                row = parse_row(raw, where, manifest.parent)
            except ManifestError as err:
                reject(number, raw, f"schema: {err}")
                bar.update()
                continue
            if row.id in seen_ids:
                reject(number, raw, f"duplicate id: {row.id!r} first seen at line {seen_ids[row.id]}")
                bar.update()
                continue
            seen_ids[row.id] = number
            reason = _check_text(row, cfg)
            if reason is not None:
                reject(number, raw, reason)
                bar.update()
                continue
            row.language = get_language(row.language).code
            batch.append((number, raw, row))
            if len(batch) >= 64:
                flush_batch()
        flush_batch()
    (out_dir / "report.json").write_text(json.dumps(asdict(report), indent=2))
    return report


def _read_done(path: Path) -> list[dict[str, Any]]:
    """Records of an earlier run; a torn last line (the run was killed mid-write) is cut off the file."""
    if not path.exists():
        return []
    records, good_bytes = [], 0
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
            good_bytes += len(line)
    if good_bytes != path.stat().st_size:
        with open(path, "r+b") as f:
            f.truncate(good_bytes)
    return records
