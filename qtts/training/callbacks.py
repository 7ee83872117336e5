"""Callbacks and plugins that make a run survive interruption without losing work."""

from __future__ import annotations

import os
import random
import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write checkpoints to a temporary name and rename: a kill mid-write never corrupts the last one."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)


class RNGState(L.Callback):
    """Store and restore the Python, NumPy and torch RNGs (rank 0's), so resumed steps draw the same numbers.

    Kept as tensors and plain numbers so checkpoints load with ``torch.load(weights_only=True)``.
    """

    def state_dict(self) -> dict[str, Any]:
        _, keys, pos, has_gauss, cached = np.random.get_state()
        state = {
            "python": random.getstate(),
            "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                      "cached_gaussian": float(cached)},
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        random.setstate(state["python"])
        n = state["numpy"]
        np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                             n["cached_gaussian"]))
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class SaveLast(L.Callback):
    """Save ``last.ckpt`` when training ends and on SIGTERM (preemption, SLURM, ``kill``), so no step is lost.

    SIGTERM only raises a flag; the step in progress finishes, the checkpoint is written in
    ``on_train_batch_end`` (where periodic checkpoints are taken, so a resume continues exactly),
    and the run stops cleanly. Any rank's signal counts for all (one boolean all-reduce per step),
    so the collective save cannot deadlock under DDP; a launcher's child processes get the signal too.
    """

    def __init__(self, dirpath: str | os.PathLike):
        self.dirpath = Path(dirpath)
        self._saved_step: int | None = None
        self._sigterm = False
        self._stopping = False
        self._previous_handler: Any = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Installed here, after Lightning registered its own SIGTERM handler (between on_fit_start and the
        # training loop), and replacing it rather than chaining: Lightning's handler broadcasts a tensor from
        # inside the signal handler, which under DDP/FSDP pairs with whatever collective the other ranks are in
        # and deadlocks. Ours only raises a flag; the ranks agree on it at the end of the step.
        def on_sigterm(signum: int, frame: Any) -> None:
            if not self._sigterm and trainer.strategy.launcher is not None:
                trainer.strategy.launcher.kill(signum)
            self._sigterm = True

        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGTERM, on_sigterm)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer, "end of training")
        self._restore_handler()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_handler()

    def _restore_handler(self) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGTERM, self._previous_handler)
            self._previous_handler = None

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.strategy.reduce_boolean_decision(self._sigterm, all=False):
            self._save(trainer, "SIGTERM")
            self._stopping = True
            trainer.should_stop = True  # the step's metrics are still logged, then the epoch loop ends

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._stopping:
            # End the run here (exit status 0), as Lightning's own SIGTERM handling does, on every rank (they
            # agreed above): nothing after this may write a checkpoint (ModelCheckpoint runs later and would
            # overwrite last.ckpt at training end with a state past the epoch's end, which resumes in the next
            # epoch) and an interrupted run is not exported.
            raise SIGTERMException()

    def _save(self, trainer: L.Trainer, why: str) -> None:
        if self._saved_step == trainer.global_step:
            return
        path = self.dirpath / "last.ckpt"
        trainer.save_checkpoint(path)
        self._saved_step = trainer.global_step
        rank_zero_info(f"{why}: saved {path} at step {trainer.global_step}")
