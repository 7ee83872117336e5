"""A callback that sends SIGTERM to its own process in the middle of a chosen step (as a scheduler would)."""

import os
import signal

import lightning as L


class SigtermDuringStep(L.Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step == self.step and trainer.is_global_zero:
            os.kill(os.getpid(), signal.SIGTERM)
