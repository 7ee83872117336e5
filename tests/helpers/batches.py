"""A callback that appends each training step's sample ids to a JSON-lines file (what a resume must replay)."""

import json
from pathlib import Path
from typing import Any

import lightning as L


class RecordBatchIds(L.Callback):
    def __init__(self, path: str):
        self.path = Path(path)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        row = {"step": trainer.global_step, "epoch": trainer.current_epoch, "batch_idx": batch_idx,
               "ids": list(batch["ids"])}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
