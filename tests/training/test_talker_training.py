"""Integration: a tiny talker pretrains on the synthetic corpus's codes (extracted by a 12.5 Hz codec), and
packing several utterances per row changes nothing but speed."""

from __future__ import annotations

import subprocess

import pytest
import torch

from qtts.data.talker_dataset import collate_talker
from qtts.eval.curves import read_metrics
from qtts.models.talker.config import tiny
from qtts.models.talker.model import TTSModel
from qtts.tasks.talker import TalkerTask
from qtts.training.datamodules import TalkerDataModule
from tests.conftest import REPO, subprocess_env
from tests.training.test_train_script import TRAIN, only_run


def test_tiny_talker_pretrains_and_exports(talker_codes, tmp_path):
    args = TRAIN + [
        "experiment=talker_demo", f"data.codes={talker_codes}", f"run_root={tmp_path}", "trainer.accelerator=cpu",
        "trainer.max_steps=40", "trainer.log_every_n_steps=1", "trainer.check_val_every_n_epoch=1000",
        "trainer.enable_progress_bar=false", "data.num_workers=0", "data.max_tokens_per_batch=600",
        "data.val_fraction=0.0", "checkpoint.every_n_steps=1000", "task.warmup_steps=3",
    ]
    result = subprocess.run(args, env=subprocess_env(), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_dir = only_run(tmp_path, "talker_demo")
    curves = read_metrics(run_dir)
    loss = [v for _, v in curves["train/loss"]]
    assert len(loss) >= 35
    first, last = sum(loss[:5]) / 5, sum(loss[-5:]) / 5
    assert last < 0.6 * first, loss  # the loss falls clearly
    assert any(v > 0 for _, v in curves["train/tokens_per_s"])
    exported = TTSModel.from_pretrained(run_dir / "export")  # the released folder format, strict load
    assert exported.speaker_encoder is not None


def test_packed_and_padded_batches_give_the_same_loss(talker_codes):
    data = TalkerDataModule(str(talker_codes), val_fraction=0.0, num_workers=0, auto_language_prob=0.5)
    data.setup()
    items = [data.train_set[(i, 1000 + i)] for i in range(6)]
    torch.manual_seed(0)
    task = TalkerTask(tiny()).eval()
    padded = collate_talker(items)
    longest = max(len(item["sequence"]) for item in items)
    packed = collate_talker(items, pack_length=3 * longest)
    assert len(packed["tracks"]) < len(padded["tracks"]) and int(packed["tracks"].document_ids.max()) >= 1
    with torch.no_grad():
        a, b = task.losses(padded), task.losses(packed)
    assert a.talker_tokens == b.talker_tokens and a.predictor_frames == b.predictor_frames
    assert b.talker.item() == pytest.approx(a.talker.item(), abs=1e-5)
    assert b.predictor.item() == pytest.approx(a.predictor.item(), abs=1e-5)
    assert torch.allclose(a.predictor_accuracy, b.predictor_accuracy)


def test_loader_mels_give_the_same_xvectors(talker_codes):
    """The collate computes the speaker encoder's mels in the workers; the x-vectors equal the in-step path."""
    data = TalkerDataModule(str(talker_codes), val_fraction=0.0, num_workers=0)
    data.setup()
    batch = collate_talker([data.train_set[(i, i)] for i in range(3)])
    torch.manual_seed(0)
    task = TalkerTask(tiny()).eval()
    with torch.no_grad():
        from_loader = task.xvectors(batch)
        in_step = task.xvectors({k: v for k, v in batch.items() if k != "reference_mels"})
    assert from_loader.shape == (3, 64)
    assert torch.allclose(from_loader, in_step, atol=1e-5)
    assert not batch["packed"] and batch["num_tokens"] == int(batch["tracks"].attention_mask.sum())


def test_validation_logs_teacher_forced_and_target_audio(talker_codes, monkeypatch):
    import json

    import qtts.tasks.talker as talker_module

    codec = json.loads((talker_codes / "info.json").read_text())["codec"]
    data = TalkerDataModule(str(talker_codes), val_fraction=0.0, num_workers=0)
    data.setup()
    batch = collate_talker([data.train_set[(i, i)] for i in range(2)])
    task = TalkerTask(tiny(), codec=codec).eval()
    logged = {}
    monkeypatch.setattr(talker_module, "log_audio",
                        lambda loggers, tag, wav, sr, step, spec=None: logged.setdefault(tag, (wav, sr)))
    task.log_samples(batch)
    frames = int(((batch["tracks"].labels[0] != -100) & (batch["tracks"].code_labels[0, :, 0] != -100)).sum())
    assert set(logged) == {"val/teacher_forced", "val/target"}
    for wav, sr in logged.values():
        assert sr == 24000 and wav.shape == (frames * 1920,) and torch.isfinite(wav).all()
    assert {k.split(".")[0] for k in task.state_dict()} == {"model"}  # the codec stays out of checkpoints


def test_train_accuracies_read_at_any_step_are_that_steps(talker_codes, tmp_path):
    """The accuracies' argmaxes run only on logging steps. Whatever reads the metrics at another step (a callback,
    the row a stopped run writes at its last step) gets NaN, never an earlier step's accuracy beside this step's
    loss (which read as a loss spike at accuracy 1.0)."""
    import math

    import lightning as L

    every = 4
    data = TalkerDataModule(str(talker_codes), val_fraction=0.0, num_workers=0, max_tokens_per_batch=600)
    torch.manual_seed(0)
    task = TalkerTask(tiny(), lr=1e-2)
    truth, seen = [], []
    losses = task.losses

    def measured(batch):  # the step's loss, and its accuracy measured on the same batch and weights
        loss = losses(batch)
        with torch.no_grad():
            truth.append(losses({**batch, "with_accuracy": True}).talker_accuracy.item())
        return loss

    task.losses = measured

    class Read(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            seen.append(float(trainer.callback_metrics["train/talker_acc"]))

    trainer = L.Trainer(accelerator="cpu", max_steps=16, log_every_n_steps=every, logger=False, callbacks=[Read()],
                        default_root_dir=tmp_path,  # the task exports there at the end
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        use_distributed_sampler=False)
    trainer.fit(task, datamodule=data)
    assert len(seen) == len(truth) == 16
    logging = [step == 0 or (step + 1) % every == 0 for step in range(16)]
    for step, (got, want) in enumerate(zip(seen, truth)):
        if logging[step]:
            assert got == pytest.approx(want, abs=1e-6), (step, got, want)
        else:
            assert math.isnan(got), (step, got, want)
    # the accuracy moved between a logging step and a later step, so a kept value would have been wrong there
    last_logged = [truth[max(s for s in range(step + 1) if logging[s])] for step in range(16)]
    assert any(abs(truth[s] - last_logged[s]) > 1e-6 for s in range(16) if not logging[s]), truth
