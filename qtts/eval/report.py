"""The report of an evaluation: per-utterance result rows summarised per system and language by the Seed-TTS-eval
rules (``qtts.eval.scoring``), written as ``report.json`` and ``report.md``.

The report is computed from ``results.jsonl`` alone (each row keeps its edit counts), so a resumed run gives the
same report as an uninterrupted one. Per language and overall: ``n``, the headline ``wer`` (mean of per-utterance
rates × 100; a CER for zh/ja/ko, see ``unit``), ``corpus_wer`` (total edits / total reference units × 100),
``above_50`` (utterances above 50 %, kept in both), and the means of ``sim``, ``mos`` and any codec metric the rows
carry (None when no row has it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qtts.eval.scoring import OVERALL, UtteranceScore, summarize_by_language
from qtts.models.checkpoint import atomic_write

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
MEANS = ("sim", "mos", "pesq_wb", "pesq_nb", "stoi", "mel_distance", "si_sdr")  # averaged when rows carry them


def score_of(row: dict[str, Any]) -> UtteranceScore:
    """The ``UtteranceScore`` a result row was made from."""
    return UtteranceScore(errors=row["errors"], units=row["units"], rate=row["wer"], unit=row["unit"])


def summarize_rows(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{language: stats, …, "overall": stats}`` of one system's result rows (at least one)."""
    summaries = summarize_by_language((row["language"], score_of(row)) for row in rows)
    groups: dict[str, list[dict[str, Any]]] = {OVERALL: list(rows)}
    for row in rows:
        groups.setdefault(row["language"], []).append(row)
    out = {}
    for language, summary in summaries.items():
        group = groups[language]
        units = {row["unit"] for row in group}
        stats: dict[str, Any] = {
            "n": summary.count,
            "unit": units.pop() if len(units) == 1 else "mixed",
            "wer": summary.mean_rate_x100,
            "corpus_wer": summary.corpus_rate_x100,
            "above_50": summary.above_50,
            "empty": sum(bool(row.get("empty")) for row in group),
        }
        for key in MEANS:
            values = [row[key] for row in group if row.get(key) is not None and not math.isnan(row[key])]
            stats[key] = sum(values) / len(values) if values else None
        out[language] = stats
    return {k: out[k] for k in [*sorted(k for k in out if k != OVERALL), OVERALL]}


def build_report(kind: str, systems: dict[str, Sequence[dict[str, Any]]], settings: dict[str, Any]) -> dict:
    """The report of an evaluation ``kind`` (asr, tts, codec) over each system's rows."""
    return {"kind": kind, "settings": settings,
            "systems": {name: summarize_rows(rows) for name, rows in systems.items() if rows}}


def write_report(out: str | Path, report: dict) -> tuple[Path, Path]:
    """``out/report.json`` and ``out/report.md``, each written atomically."""
    out = Path(out)
    text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    atomic_write(out / REPORT_JSON, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    markdown = format_report(report)
    atomic_write(out / REPORT_MD, lambda tmp: tmp.write_text(markdown, encoding="utf-8"))
    return out / REPORT_JSON, out / REPORT_MD


def _number(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def format_report(report: dict) -> str:
    """The report as Markdown tables, one per system."""
    settings = report.get("settings", {})
    lines = [f"# qtts eval {report['kind']}", ""]
    lines += [f"- {key}: `{value}`" for key, value in settings.items() if value is not None]
    for system, languages in report["systems"].items():
        metrics = [key for key in MEANS if any(stats.get(key) is not None for stats in languages.values())]
        empty = any(stats["empty"] for stats in languages.values())  # a column only when a clip had no samples
        header = ["language", "n", "WER/CER ×100 (mean)", "corpus ×100", "> 50 %", *(["empty"] if empty else []),
                  *metrics]
        lines += ["", f"## {system}", "", "| " + " | ".join(header) + " |",
                  "|---|" + "---:|" * (len(header) - 1)]
        for language, stats in languages.items():
            unit = "CER" if stats["unit"] == "char" else "WER" if stats["unit"] == "word" else "mixed"
            cells = [f"{language} ({unit})", str(stats["n"]), _number(stats["wer"], 2), _number(stats["corpus_wer"], 2),
                     str(stats["above_50"]), *([str(stats["empty"])] if empty else [])]
            cells += [_number(stats[key], 3) for key in metrics]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "WER/CER: mean of per-utterance rates × 100 (Seed-TTS-eval's headline); corpus: total edits / total "
              "reference units × 100; > 50 %: utterances above 50 %, kept in both.", ""]
    return "\n".join(lines)


COMPARISON_COLUMNS = {"sim": "SIM", "mos": "DNSMOS/MOS", "pesq_wb": "PESQ-WB", "pesq_nb": "PESQ-NB", "stoi": "STOI",
                      "mel_distance": "mel distance"}


def format_comparison(systems: dict[str, dict[str, Any]]) -> str:
    """One Markdown table comparing systems across reports: ``{label: stats}`` where each ``stats`` is one language's
    (or the overall) entry of a report's system, e.g. ``report["systems"]["reconstruction"]["en"]``. Columns for
    SIM, MOS and codec metrics appear when any system has them."""
    keys = [key for key in COMPARISON_COLUMNS if any(stats.get(key) is not None for stats in systems.values())]
    header = ["system", "n", "WER/CER ×100 (mean)", "corpus ×100", "> 50 %", *(COMPARISON_COLUMNS[k] for k in keys)]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for label, stats in systems.items():
        cells = [label, str(stats["n"]), _number(stats["wer"], 2), _number(stats["corpus_wer"], 2),
                 str(stats["above_50"]), *(_number(stats.get(key), 3) for key in keys)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
