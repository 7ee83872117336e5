"""Integration: real tiny trainings through scripts/train.py (subprocesses, as a user runs them)."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, subprocess_env

TRAIN = [sys.executable, str(REPO / "scripts" / "train.py")]


def common_overrides(corpus: Path, run_root: Path, name: str, max_steps: int) -> list[str]:
    return [
        f"data.corpus={corpus}", f"run_root={run_root}", f"experiment_name={name}",
        f"trainer.max_steps={max_steps}", "trainer.accelerator=cpu", "trainer.log_every_n_steps=1",
        "trainer.check_val_every_n_epoch=1000", "trainer.enable_progress_bar=false",
        "data.num_workers=0", "data.crop_seconds=1.0", "data.max_seconds_per_batch=4.0",
        "checkpoint.every_n_steps=3",
    ]


def step_losses(run_dir: Path) -> dict[int, float]:
    losses = {}
    with open(run_dir / "logs" / "metrics.csv") as f:
        for row in csv.DictReader(f):
            if row.get("train/loss"):
                losses[int(row["step"])] = float(row["train/loss"])
    return losses


def only_run(root: Path, name: str) -> Path:
    runs = [p for p in (root / name).iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def test_kill_and_resume_continues_step_and_loss(tiny_corpus, tmp_path):
    steps = 16
    env = subprocess_env()
    # Reference: one uninterrupted run.
    subprocess.run(TRAIN + common_overrides(tiny_corpus, tmp_path, "straight", steps), env=env, check=True,
                   cwd=REPO, capture_output=True)
    reference = step_losses(only_run(tmp_path, "straight"))
    assert max(reference) == steps - 1 or max(reference) == steps

    # Interrupted run: SIGTERM once the first periodic checkpoint exists, then resume=auto.
    args = TRAIN + common_overrides(tiny_corpus, tmp_path, "killed", steps)
    proc = subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while not list((tmp_path / "killed").glob("*/checkpoints/step=*.ckpt")):
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0].decode()
    run_dir = only_run(tmp_path, "killed")
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    killed_at = last["global_step"]
    assert 3 <= killed_at < steps, out[-3000:]
    assert "SIGTERM: saved" in out

    resumed = subprocess.run(args + ["resume=auto"], env=env, cwd=REPO, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert only_run(tmp_path, "killed") == run_dir  # same folder, continued
    final = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert final["global_step"] == steps
    continued = step_losses(run_dir)
    after = sorted(s for s in continued if s >= killed_at)
    assert after and after[0] == killed_at and after[-1] == max(reference)
    # Same data order, optimizer state, schedule and RNG: the resumed curve equals the uninterrupted one.
    for s in after:
        assert continued[s] == pytest.approx(reference[s], rel=1e-4, abs=1e-5), (s, continued[s], reference[s])
    assert (run_dir / "config.yaml").exists() and len(list((run_dir / "launches").iterdir())) == 2


def test_wrong_key_fails_before_training_starts(tiny_corpus, tmp_path):
    """Through the real script: a typo stops the run in seconds, names the key, and leaves no run behind."""
    args = TRAIN + common_overrides(tiny_corpus, tmp_path, "bad", 2) + ["+task.lrr=0.1"]
    result = subprocess.run(args, env=subprocess_env(), cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0
    assert "task.lrr" in result.stdout + result.stderr
    assert not (tmp_path / "bad").exists()


def test_two_process_ddp_on_cpu(tiny_corpus, tmp_path):
    args = TRAIN + common_overrides(tiny_corpus, tmp_path, "ddp", 4) + ["trainer=ddp", "trainer.devices=2",
                                                                         "trainer.accelerator=cpu"]
    result = subprocess.run(args, env=subprocess_env(), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_dir = only_run(tmp_path, "ddp")
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 4
    losses = step_losses(run_dir)
    assert len(losses) >= 3 and all(torch.isfinite(torch.tensor(v)) for v in losses.values())


def test_validation_logs_media_to_every_logger(tiny_corpus, tmp_path):
    args = TRAIN + common_overrides(tiny_corpus, tmp_path, "media", 8) + [
        "logger=[csv,tensorboard,wandb]", "trainer.check_val_every_n_epoch=1", "data.val_fraction=0.3"]
    result = subprocess.run(args, env=subprocess_env(), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_dir = only_run(tmp_path, "media")
    media = sorted(p.suffix for p in (run_dir / "logs" / "media").iterdir())
    assert ".png" in media and ".wav" in media
    with open(run_dir / "logs" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert any(r.get("val/eer") for r in rows) and any(r.get("val/acc") for r in rows)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "logs" / "tensorboard"), size_guidance={"audio": 0, "images": 0})
    events.Reload()
    assert "val/input/audio" in events.Tags()["audio"] and "val/input/spectrogram" in events.Tags()["images"]
    wandb_media = list((run_dir / "wandb").glob("offline-run-*/files/media/**/*.*"))
    assert {p.suffix for p in wandb_media} >= {".wav", ".png"}, wandb_media
