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
from lightning.pytorch.callbacks import Checkpoint
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


class SaveLast(Checkpoint):
    """Own ``last.ckpt``: save it every ``every_n_steps`` steps, after the run's final step and on SIGTERM
    (preemption, SLURM, ``kill``), so no step is lost and ``resume`` continues exactly.

    Every save is taken in ``on_train_batch_end``, the one point where Lightning resumes exactly (it restarts the
    unfinished epoch after the saved batch). A run that stops at ``max_steps`` in the middle of an epoch is, for
    Lightning, past that epoch's end by ``on_train_end`` (it counts the epoch as finished and would resume in the
    next one, at the next epoch's data), so the final save happens at the end of the final step instead, where
    the saved position is the last trained batch; nothing writes ``last.ckpt`` after it. Only a stop Lightning
    decides after the batch (``EarlyStopping``, ``max_time``) is saved at ``on_train_end``: Lightning resumes that in
    the next epoch.

    SIGTERM only raises a flag; the step in progress finishes, the checkpoint is written at its end and the run
    stops cleanly. Any rank's signal counts for all (one boolean all-reduce per step), so the collective save
    cannot deadlock under DDP; a launcher's child processes get the signal too.

    A ``Checkpoint`` subclass, so Lightning runs it after ``ModelCheckpoint`` (its periodic ``step_N.ckpt`` is then
    already in the saved callback state, and pruned as usual after a resume).
    """

    def __init__(self, dirpath: str | os.PathLike, every_n_steps: int = 0):
        self.dirpath = Path(dirpath)
        self.every_n_steps = every_n_steps
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
        elif _final_batch(trainer):
            self._save(trainer, "end of training")
        elif self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0:
            self._save(trainer, None)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._stopping:
            # End the run here (exit status 0), as Lightning's own SIGTERM handling does, on every rank (they
            # agreed above): nothing after this may write a checkpoint (at training end the state is past an
            # epoch Lightning counts as finished, which resumes in the next epoch) and an interrupted run is not
            # exported.
            raise SIGTERMException()

    def _save(self, trainer: L.Trainer, why: str | None) -> None:
        """Write ``last.ckpt`` once per step; ``why`` (None: a periodic save, not logged) goes to the log."""
        if self._saved_step == trainer.global_step:
            return
        path = self.dirpath / "last.ckpt"
        trainer.save_checkpoint(path)
        self._saved_step = trainer.global_step
        if why is not None:
            rank_zero_info(f"{why}: saved {path} at step {trainer.global_step}")


def _final_batch(trainer: L.Trainer) -> bool:
    """Whether the batch that just ended is the run's last: it reached ``max_steps``, or it ended the final epoch
    (the same on every rank: their step counts and epoch lengths agree)."""
    if trainer.max_steps != -1 and trainer.global_step >= trainer.max_steps:
        return True
    max_epochs = trainer.max_epochs
    last_batch = trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
    return max_epochs is not None and max_epochs != -1 and last_batch and trainer.current_epoch + 1 >= max_epochs
