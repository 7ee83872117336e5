"""Integration: real tiny trainings through scripts/train.py (subprocesses, as a user runs them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from qtts.eval.curves import read_metrics
from tests.conftest import REPO, subprocess_env

TRAIN = [sys.executable, str(REPO / "scripts" / "train.py")]


def common_overrides(corpus: Path, run_root: Path, name: str, max_steps: int) -> list[str]:
    """Tiny CPU run: 15 training utterances, 1 s crops, 4 per batch, 4 batches per epoch."""
    return [
        f"data.corpus={corpus}", f"run_root={run_root}", f"experiment_name={name}",
        f"trainer.max_steps={max_steps}", "trainer.accelerator=cpu", "trainer.log_every_n_steps=1",
        "trainer.check_val_every_n_epoch=1000", "trainer.enable_progress_bar=false",
        "data.num_workers=0", "data.crop_seconds=1.0", "data.max_seconds_per_batch=4.0",
        "checkpoint.every_n_steps=3",
    ]


def step_losses(run_dir: Path) -> dict[int, float]:
    return dict(read_metrics(run_dir)["train/loss"])


def only_run(root: Path, name: str) -> Path:
    runs = [p for p in (root / name).iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def record_batches(path: Path) -> list[str]:
    """Overrides that append each step's sample ids to ``path`` (``batch_ids`` reads them)."""
    return ["+callbacks.record._target_=tests.helpers.batches.RecordBatchIds", f"+callbacks.record.path={path}"]


def batch_ids(path: Path) -> dict[int, list[str]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    steps = [row["step"] for row in rows]
    assert len(steps) == len(set(steps)), steps  # no step trained twice
    return {row["step"]: row["ids"] for row in rows}


@pytest.fixture(scope="module")
def reference_run(tiny_corpus, tmp_path_factory) -> tuple[dict[int, float], dict[int, list[str]]]:
    """One uninterrupted run to compare interrupted ones against: its losses and sample ids per step."""
    root = tmp_path_factory.mktemp("reference")
    subprocess.run(TRAIN + common_overrides(tiny_corpus, root, "straight", STEPS) + record_batches(root / "ids.jsonl"),
                   env=subprocess_env() | {"PYTHONPATH": str(REPO)}, check=True, cwd=REPO, capture_output=True)
    return step_losses(only_run(root, "straight")), batch_ids(root / "ids.jsonl")


@pytest.fixture(scope="module")
def reference_losses(reference_run) -> dict[int, float]:
    return reference_run[0]


STEPS = 12


@pytest.mark.parametrize("kill_step", [3, 5])  # 4 batches per epoch: the last batch of epoch 0, then mid-epoch
def test_sigterm_then_resume_continues_step_and_loss(tiny_corpus, tmp_path, reference_losses, kill_step):
    env = subprocess_env() | {"PYTHONPATH": str(REPO)}
    args = TRAIN + common_overrides(tiny_corpus, tmp_path, "killed", STEPS)
    killed = subprocess.run(args + ["+callbacks.kill._target_=tests.helpers.signals.SigtermDuringStep",
                                    f"+callbacks.kill.step={kill_step}"], env=env, cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    out = killed.stdout + killed.stderr
    run_dir = only_run(tmp_path, "killed")
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == kill_step + 1, out[-3000:]  # the step in flight finished and was saved
    assert "SIGTERM: saved" in out

    resumed = subprocess.run(args + ["resume=auto"], env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert only_run(tmp_path, "killed") == run_dir  # same folder, continued
    final = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert final["global_step"] == STEPS
    # Same data order, optimizer state, schedule and RNG: one continuous curve equal to the uninterrupted one.
    continued = step_losses(run_dir)
    assert sorted(continued) == sorted(reference_losses) == list(range(STEPS))
    for s in continued:
        assert continued[s] == pytest.approx(reference_losses[s], rel=1e-4, abs=1e-5), (s, continued, reference_losses)
    assert (run_dir / "config.yaml").exists() and len(list((run_dir / "launches").iterdir())) == 2


def test_more_steps_from_a_finished_run_continue_it(tiny_corpus, tmp_path, reference_run):
    """A run that reached its max_steps, launched again with more steps (``resume=auto``: its ``last.ckpt``),
    trains the same batches with the same losses as one uninterrupted run: stopped at the end of epoch 0 (step 4,
    4 batches per epoch), continued to mid-epoch 1 (step 5), continued to the end. Lightning counts an epoch
    stopped at max_steps as finished, so a last.ckpt written at training end would go on with the next epoch's
    data (and skip the rest of this one)."""
    env = subprocess_env() | {"PYTHONPATH": str(REPO)}
    run_dir = None
    for max_steps, position in ((4, (0, 4)), (5, (1, 1)), (STEPS, (2, 4))):  # (epoch, batches done in it)
        args = common_overrides(tiny_corpus, tmp_path, "more", max_steps) + record_batches(tmp_path / "ids.jsonl")
        result = subprocess.run(TRAIN + args + (["resume=auto"] if run_dir else []), env=env, cwd=REPO,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        run_dir = run_dir or only_run(tmp_path, "more")
        assert only_run(tmp_path, "more") == run_dir
        last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        assert last["global_step"] == max_steps
        assert last["AudioDataModule"] == dict(zip(("epoch", "batches_done"), position)), max_steps

    # ModelCheckpoint's step files are in the state last.ckpt restored (SaveLast saves after it): checkpoint.keep=3
    # pruned step 3, written by the first launch
    names = {p.name for p in (run_dir / "checkpoints").iterdir()}
    assert names == {"last.ckpt", "step_00000006.ckpt", "step_00000009.ckpt", "step_00000012.ckpt"}
    reference_losses, reference_ids = reference_run
    assert batch_ids(tmp_path / "ids.jsonl") == reference_ids
    continued = step_losses(run_dir)
    assert sorted(continued) == sorted(reference_losses) == list(range(STEPS))
    for s in continued:
        assert continued[s] == pytest.approx(reference_losses[s], rel=1e-4, abs=1e-5), (s, continued, reference_losses)


def test_more_epochs_from_a_finished_run_continue_it(tiny_corpus, tmp_path, reference_run):
    """The same for a run that stopped at its max_epochs (one epoch, then three): a last.ckpt written at training
    end would skip the whole next epoch."""
    env = subprocess_env() | {"PYTHONPATH": str(REPO)}
    run_dir = None
    for max_epochs in (1, STEPS // 4):
        args = common_overrides(tiny_corpus, tmp_path, "epochs", -1) + [f"trainer.max_epochs={max_epochs}"]
        args += record_batches(tmp_path / "ids.jsonl") + (["resume=auto"] if run_dir else [])
        result = subprocess.run(TRAIN + args, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        run_dir = run_dir or only_run(tmp_path, "epochs")
        last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        assert last["AudioDataModule"] == {"epoch": max_epochs - 1, "batches_done": 4}

    reference_losses, reference_ids = reference_run
    assert batch_ids(tmp_path / "ids.jsonl") == reference_ids
    continued = step_losses(run_dir)
    assert sorted(continued) == sorted(reference_losses)
    for s in continued:
        assert continued[s] == pytest.approx(reference_losses[s], rel=1e-4, abs=1e-5), (s, continued, reference_losses)


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
    curves = read_metrics(run_dir)
    assert curves.get("val/eer") and curves.get("val/acc")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "logs" / "tensorboard"), size_guidance={"audio": 0, "images": 0})
    events.Reload()
    assert "val/input/audio" in events.Tags()["audio"] and "val/input/spectrogram" in events.Tags()["images"]
    wandb_media = list((run_dir / "wandb").glob("offline-run-*/files/media/**/*.*"))
    assert {p.suffix for p in wandb_media} >= {".wav", ".png"}, wandb_media


def test_qtts_train_runs_in_process_as_the_script_does(tiny_corpus, tmp_path, reference_losses, capsys):
    """``qtts train OVERRIDES`` composes the packaged configs and trains in this process: the same losses as
    ``scripts/train.py OVERRIDES`` (the reference run); a wrong key is one line naming it."""
    from qtts.cli import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the script's subprocess (OMP_NUM_THREADS=1): the same summation order
    try:
        assert main(["train", *common_overrides(tiny_corpus, tmp_path, "in_process", STEPS)]) == 0
    finally:
        torch.set_num_threads(threads)
    losses = step_losses(only_run(tmp_path, "in_process"))
    assert sorted(losses) == sorted(reference_losses)
    for step, loss in losses.items():
        assert loss == pytest.approx(reference_losses[step], rel=1e-4, abs=1e-5), (step, losses, reference_losses)
    assert main(["train", "experiment=speaker_encoder_demo", "task.learning_rate=1"]) == 2
    assert "task.learning_rate" in capsys.readouterr().err
