"""``report.png``: an evaluation at a glance, drawn with matplotlib's Agg backend (no display needed).

Left, the headline WER/CER (mean × 100) per language and system as grouped bars; right, the histogram of the
per-utterance rates (× 100, the last bin holding 100 % and above), one outline per system.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qtts.eval.scoring import OVERALL
from qtts.models.checkpoint import atomic_write

REPORT_PNG = "report.png"
HISTOGRAM_EDGES = list(range(0, 111, 10))  # the last bin, [100, 110], holds every rate of 100 % and above


def plot_report(out: str | Path, report: dict, rows: dict[str, Sequence[dict[str, Any]]]) -> Path:
    """Draw ``report`` (``qtts.eval.report.build_report``) and the per-utterance ``rows`` of each system into
    ``out/report.png``, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure  # a Figure of its own: no pyplot state shared between threads

    systems = list(report["systems"])
    languages = [lang for lang in report["systems"][systems[0]] if lang != OVERALL] + [OVERALL]
    fig = Figure(figsize=(11, 4.2), dpi=100)
    bars, hist = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    width = 0.8 / len(systems)
    for s, system in enumerate(systems):
        stats = report["systems"][system]
        heights = [stats[lang]["wer"] if lang in stats else 0.0 for lang in languages]
        xs = [i + (s - (len(systems) - 1) / 2) * width for i in range(len(languages))]
        drawn = bars.bar(xs, heights, width=width, label=system)
        bars.bar_label(drawn, fmt="%.1f", fontsize=7)
        rates = [min(100 * row["wer"], 105) for row in rows[system]]
        hist.hist(rates, bins=HISTOGRAM_EDGES, histtype="step", linewidth=1.5, label=system)
    bars.set_xticks(range(len(languages)), languages)
    bars.set_ylabel("WER / CER × 100 (mean per utterance)")
    bars.set_title("per language")
    hist.set_xlabel("WER / CER × 100 per utterance (last bin: ≥ 100)")
    hist.set_ylabel("utterances")
    hist.set_title("distribution")
    if len(systems) > 1:
        bars.legend(fontsize=8)
        hist.legend(fontsize=8)
    fig.suptitle(f"qtts eval {report['kind']}")
    fig.tight_layout()
    path = Path(out) / REPORT_PNG
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    return path
