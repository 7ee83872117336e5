"""A run's training curves from its ``logs/metrics.csv``: read once, summarised per window of steps, drawn.

The CSV logger writes one row per logging call, with the metrics not logged by that call left empty (training rows,
learning-rate rows and validation rows interleave), so every reader needs the same unpicking: ``read_metrics`` turns
the file into ``{metric: [(step, value), …]}``. ``curve_table`` summarises it per window of steps (mean of the
training values inside a window, last value of a rarer metric such as a validation score), what a report shows of a
long run; ``plot_curves`` draws the full curves, one panel per metric. ``qtts eval curve RUN`` prints the table.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

from qtts.models.checkpoint import atomic_write

METRICS_CSV = Path("logs") / "metrics.csv"  # where the csv logger (configs/logger/csv.yaml) writes in a run folder
Curves = dict[str, list[tuple[int, float]]]


def metrics_path(run: str | Path) -> Path:
    """``run``'s metrics file: ``run`` itself when it is a CSV file, else ``run/logs/metrics.csv``; a clear error
    when neither exists."""
    run = Path(run)
    path = run if run.suffix == ".csv" else run / METRICS_CSV
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics file (a run folder trained with the csv logger has "
                                f"{METRICS_CSV})")
    return path


def read_metrics(run: str | Path) -> Curves:
    """Every metric of ``run`` (a run folder or a metrics.csv) as ``(step, value)`` pairs in file order; empty
    cells and the bookkeeping columns ``step``/``epoch`` are not metrics. A value that is not a number raises a
    ValueError naming the file, line and column."""
    path = metrics_path(run)
    curves: Curves = {}
    with open(path, newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                step = int(float(row["step"]))
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"{path}:{line}: column 'step' must be a number, got {row.get('step')!r}") from None
            for key, cell in row.items():
                if key in ("step", "epoch") or cell in (None, ""):
                    continue
                try:
                    curves.setdefault(key, []).append((step, float(cell)))
                except ValueError:
                    raise ValueError(f"{path}:{line}: column {key!r} must be a number, got {cell!r}") from None
    return curves


def window_means(points: Sequence[tuple[int, float]], every: int) -> dict[int, float]:
    """Mean of the finite values per window of ``every`` steps, keyed by the window's end: steps in (``end`` −
    ``every``, ``end``] (step 0 joins the first window). Lightning logs a training value after batch ``s`` as step
    ``s`` and a validation run after ``n`` steps as step ``n``, so the validation at step 400 lands in the window of
    the 400 steps it followed. NaN values (metrics a step did not measure) are left out."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    sums: dict[int, list[float]] = {}
    for step, value in points:
        if math.isfinite(value):
            sums.setdefault(max(1, -(-step // every)) * every, []).append(value)
    return {end: sum(values) / len(values) for end, values in sums.items()}


def curve_table(curves: Curves, keys: Sequence[str], every: int) -> str:
    """A markdown table: one row per window of ``every`` steps that has any of ``keys``, one column per key (the
    mean of its values in the window); a key the run never logged raises a KeyError listing those it did."""
    missing = [k for k in keys if k not in curves]
    if missing:
        raise KeyError(f"metrics {missing} were not logged; the run has {sorted(curves)}")
    columns = {key: window_means(curves[key], every) for key in keys}
    ends = sorted(set().union(*columns.values()))
    lines = ["| step | " + " | ".join(keys) + " |", "|---:|" + "---:|" * len(keys)]
    for end in ends:
        cells = [f"{columns[k][end]:.4g}" if end in columns[k] else "" for k in keys]
        lines.append(f"| {end} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(curves: Curves, keys: Sequence[str], out: str | Path) -> Path:
    """Draw each of ``keys`` against the step, one panel each (matplotlib's Agg backend), into the PNG ``out``,
    atomically."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4 * len(keys), 3.2), dpi=100)
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, key in zip(axes, keys, strict=True):
        points = [(s, v) for s, v in curves[key] if math.isfinite(v)]
        ax.plot([s for s, _ in points], [v for _, v in points], marker="." if len(points) < 50 else None)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(out)
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png"))
    return out
