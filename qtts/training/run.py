"""One training run from a composed config: check it, pick the run folder, build everything, fit.

Run folders are ``<run_root>/<experiment_name>/<YYYYmmdd-HHMMSS>/`` with ``config.yaml`` (the
resolved config of the latest launch; earlier launches stay under ``launches/``), ``checkpoints/``
and ``logs/``. ``resume=auto`` continues the newest run of the experiment from its newest
checkpoint; ``resume=PATH.ckpt`` continues from that file (or distributed checkpoint folder), in its run folder.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import get_object, instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from omegaconf import DictConfig, OmegaConf

from qtts.runs import is_checkpoint, newest_checkpoint
from qtts.text.languages import register_language
from qtts.training.callbacks import AtomicCheckpointIO, RNGState, SaveLast
from qtts.training.config import validate_config
from qtts.training.configs import compose_config

_RUN_DIR_ENV = "QTTS_RUN_DIR"
_RESUME_ENV = "QTTS_RESUME_CKPT"


def train_experiment(overrides: Sequence[str]) -> Path:
    """``train`` of the config that these command-line overrides compose (``qtts train``, the demo): the same run
    as ``scripts/train.py OVERRIDES``, in this process."""
    return train(compose_config(overrides))


def train(cfg: DictConfig) -> Path:
    """Fit ``cfg.task`` on ``cfg.data``; returns the run folder."""
    for lang in cfg.get("languages") or []:
        register_language(**lang)
    data_cls = get_object(cfg.data._target_)
    validate_config(cfg, runtime_keys={"task": {"model", *getattr(data_cls, "TASK_INPUTS", ())}})
    if cfg.get("matmul_precision"):
        torch.set_float32_matmul_precision(cfg.matmul_precision)
    L.seed_everything(cfg.seed, workers=True)

    run_dir, ckpt = resolve_run(cfg)
    cfg.run_dir = str(run_dir)
    if int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0:
        write_config(cfg, run_dir)

    datamodule = instantiate(cfg.data)
    model_config = instantiate(cfg.model, _convert_="all") if cfg.get("model") is not None else None
    task_cls = get_object(cfg.task._target_)
    accepted = inspect.signature(task_cls).parameters
    facts = {k: v for k, v in datamodule.task_inputs().items() if k in accepted}  # what this task asks for
    task = instantiate(cfg.task, model=model_config, _convert_="object", **facts)
    trainer = build_trainer(cfg, run_dir)
    rank_zero_info(f"run folder: {run_dir}" + (f" (resuming from {ckpt})" if ckpt else ""))
    trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt)
    return run_dir


def resolve_run(cfg: DictConfig) -> tuple[Path, str | None]:
    """The run folder and the checkpoint to resume from; every DDP rank gets the launcher's choice."""
    if "LOCAL_RANK" in os.environ and _RUN_DIR_ENV in os.environ:
        return Path(os.environ[_RUN_DIR_ENV]), os.environ.get(_RESUME_ENV) or None
    experiment_root = Path(cfg.run_root) / cfg.experiment_name
    ckpt: str | None = None
    if cfg.get("run_dir"):
        run_dir = Path(cfg.run_dir)
        if cfg.resume == "auto":
            ckpt = newest_checkpoint(run_dir)
    elif cfg.resume == "auto":
        runs = sorted((p for p in experiment_root.glob("*") if newest_checkpoint(p)), key=lambda p: p.name)
        run_dir = runs[-1] if runs else new_run_dir(experiment_root)
        ckpt = newest_checkpoint(run_dir)
        if ckpt is None:
            rank_zero_info(f"resume=auto: no checkpoint under {experiment_root}, starting a new run")
    elif cfg.resume:
        ckpt = str(Path(cfg.resume).resolve())
        if not is_checkpoint(Path(ckpt)):
            raise FileNotFoundError(f"resume: checkpoint {ckpt} does not exist")
        run_dir = Path(ckpt).parent.parent
    else:
        run_dir = new_run_dir(experiment_root)
    run_dir = run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    os.environ[_RUN_DIR_ENV] = str(run_dir)
    os.environ[_RESUME_ENV] = ckpt or ""
    return run_dir, ckpt


def new_run_dir(experiment_root: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir, n = experiment_root / stamp, 1
    while run_dir.exists():
        run_dir, n = experiment_root / f"{stamp}-{n}", n + 1
    return run_dir


def write_config(cfg: DictConfig, run_dir: Path) -> None:
    text = OmegaConf.to_yaml(cfg, resolve=True)
    launches = run_dir / "launches"
    launches.mkdir(parents=True, exist_ok=True)
    (launches / f"{time.strftime('%Y%m%d-%H%M%S')}.yaml").write_text(text)
    tmp = run_dir / ".config.yaml.tmp"
    tmp.write_text(text)
    os.replace(tmp, run_dir / "config.yaml")


def build_trainer(cfg: DictConfig, run_dir: Path) -> L.Trainer:
    ckpt_dir = run_dir / "checkpoints"
    every = int(cfg.checkpoint.every_n_steps)
    callbacks: list[L.Callback] = [
        # step_00001000.ckpt: no '=' in the name, so `resume=PATH` needs no quoting on the command line
        # last.ckpt is SaveLast's alone: ModelCheckpoint's save_last would also rewrite it at the epoch's end and at
        # training end, where a run stopped by max_steps is past an epoch Lightning counts as finished (SaveLast).
        ModelCheckpoint(dirpath=ckpt_dir, filename="step_{step:08d}", every_n_train_steps=every, save_last=False,
                        save_top_k=int(cfg.checkpoint.keep), monitor="step", mode="max",
                        auto_insert_metric_name=False, enable_version_counter=False),
        SaveLast(ckpt_dir, every_n_steps=every),
        RNGState(),
    ]
    if cfg.trainer.get("enable_progress_bar", True):
        callbacks.append(TQDMProgressBar(refresh_rate=1))
    loggers = [instantiate(node) for node in (cfg.get("logger") or {}).values() if node is not None]
    if loggers:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    callbacks += [instantiate(node) for node in (cfg.get("callbacks") or {}).values() if node is not None]
    strategy = instantiate(cfg.trainer.strategy) if isinstance(cfg.trainer.get("strategy"), DictConfig) else None
    extra: dict[str, Any] = {"callbacks": callbacks, "logger": loggers or False}
    if strategy is not None:
        extra["strategy"] = strategy
    # Single files are written atomically by the plugin. FSDP2Strategy writes folders and swaps them in atomically
    # itself; DeepSpeed (a DDPStrategy subclass, so it gets the plugin too) writes its folders through its engine.
    if strategy is None or isinstance(strategy, (DDPStrategy, SingleDeviceStrategy)):
        extra["plugins"] = [AtomicCheckpointIO()]
    return instantiate(cfg.trainer, **extra)
