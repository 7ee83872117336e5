"""Loggers that behave well across resumes."""

from __future__ import annotations

import csv
import os

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


class ContinuingWriter(ExperimentWriter):
    """Keeps an earlier launch's ``metrics.csv`` (Lightning's writer deletes it) and continues it.

    At the first save, rows logged at or after the first new step are dropped: a resumed run redoes
    those steps, so the file ends up as one curve without duplicates.
    """

    def __init__(self, log_dir: str) -> None:
        path = os.path.join(log_dir, self.NAME_METRICS_FILE)
        kept = path + ".previous"
        if os.path.isfile(path):
            os.replace(path, kept)  # out of reach of the base class, which removes metrics.csv
        super().__init__(log_dir)
        self._previous = kept if os.path.isfile(kept) else None

    def save(self) -> None:
        if self._previous is not None and self.metrics:
            first_new = min(int(m["step"]) for m in self.metrics)
            with open(self._previous, newline="") as f:
                old = [row for row in csv.DictReader(f) if row.get("step") and int(row["step"]) < first_new]
            self.metrics = old + self.metrics
            os.remove(self._previous)
            self._previous = None
        super().save()


class ContinuingCSVLogger(CSVLogger):
    """Lightning's CSV logger whose metrics file continues across ``resume`` instead of starting over."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = ContinuingWriter(log_dir=self.log_dir)
        return self._experiment
