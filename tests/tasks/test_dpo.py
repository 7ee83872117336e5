"""DPO task on a tiny random model and pairs mined from its own samples: ln 2 at the first step (policy =
reference), a widening margin within 20 CPU steps (LoRA through the train script; full weights in process, with
the reference cached in the checkpoint), the export."""

from __future__ import annotations

import json
import math
import subprocess

import pytest
import torch

from qtts.eval.curves import read_metrics
from tests.conftest import REPO, subprocess_env
from tests.training.test_train_script import TRAIN, only_run

TEXTS = ["Hello there.", "Good night, moon.", "One more line.", "The cat sat down.", "Where is the train?",
         "It is cold today.", "Read me a story.", "Time to go home."]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mined(tmp_path_factory):
    """A tiny random Base model (EOS every few frames) and 8 pairs mined from its samples by a loudness reward."""
    from qtts.eval.pairs import mine_pairs
    from qtts.eval.rewards import Rewards
    from qtts.models.random_release import tiny_codec_config, write_random_release
    from qtts.models.talker import tiny

    root = tmp_path_factory.mktemp("dpo")
    model = write_random_release(root / "base", tiny("base", predictor_hidden=32), tiny_codec_config(),
                                 eos_scale=3.0)
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "text": t, "language": "en"}) + "\n"
                               for i, t in enumerate(TEXTS)))
    rewards = Rewards({"weights": {"tests.eval.test_pairs:loudness": 1.0}})
    summary = mine_pairs(model, prompts, root / "pairs", group_size=4, rewards=rewards, min_gap=0.0, batch_size=4,
                         max_new_tokens=8, progress=False)
    assert summary["pairs"] == len(TEXTS)
    return model, root / "pairs"


def margins(task, rows) -> torch.Tensor:
    """β[(ℓw − ℓw_ref) − (ℓl − ℓl_ref)] of every pair under the task's current weights."""
    from qtts.tasks.dpo_losses import pair_logprob

    with torch.no_grad():
        logprobs, tracks, xvectors = task.pair_logprobs(rows)
        policy = pair_logprob(logprobs, task.hparams.length_normalize)
        reference = task.reference(rows, tracks, xvectors)
    n = len(rows)
    return task.hparams.beta * ((policy[:n] - reference[:n]) - (policy[n:] - reference[n:]))


def test_lora_dpo_starts_at_ln2_and_widens_the_margin(mined, tmp_path):
    """experiment=dpo (LoRA) through the train script: the first step's loss is ln 2 (B = 0: the adapter-off
    reference is the policy), 20 steps widen the margin, and the run exports the merged model and its adapter."""
    model, pairs = mined
    args = TRAIN + [
        "experiment=dpo", f"task.init_from={model}", f"data.pairs={pairs}", f"run_root={tmp_path}",
        "trainer.accelerator=cpu", "trainer.max_steps=20", "trainer.log_every_n_steps=1",
        "trainer.enable_progress_bar=false", "task.lr=3e-3", "task.warmup_steps=0", "task.beta=0.1",
        "data.max_batch_size=4", "checkpoint.every_n_steps=1000",
    ]
    result = subprocess.run(args, env=subprocess_env(), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_dir = only_run(tmp_path, "dpo")
    curves = read_metrics(run_dir)
    loss, margin = ([v for _, v in curves[key]] for key in ("train/loss", "train/margin"))
    print("loss", [round(v, 4) for v in loss], "margin", [round(v, 3) for v in margin])
    assert len(loss) == 20
    assert loss[0] == pytest.approx(math.log(2), abs=1e-6) and margin[0] == pytest.approx(0.0, abs=1e-6)
    assert sum(margin[-4:]) / 4 > 0.5 and sum(loss[-4:]) / 4 < 0.5 * math.log(2), (loss, margin)
    assert (run_dir / "adapter" / "adapter_config.json").is_file() and (run_dir / "export" / "config.json").is_file()
    from qtts.inference import Synthesizer
    from qtts.models.talker import TTSModel

    merged = Synthesizer.from_pretrained(run_dir / "checkpoints" / "last.ckpt").model  # the LoRA checkpoint opens
    exported = TTSModel.from_pretrained(run_dir / "export")
    for name, value in exported.state_dict().items():
        torch.testing.assert_close(merged.state_dict()[name], value, msg=name)


def test_full_weight_dpo_caches_the_reference_and_widens_the_margin(mined, tmp_path):
    """Full weights in process: the reference of every pair is computed before the first update (ln 2 then),
    kept in the checkpoint, and 20 steps widen the margin of the pairs."""
    import lightning as L

    from qtts.tasks.dpo import REFERENCE_KEY, DPOTask
    from qtts.training.datamodules import PairDataModule

    model, pairs = mined
    data = PairDataModule(str(pairs), max_batch_size=4)
    task = DPOTask(str(model), lr=3e-4, beta=0.1)
    losses = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    trainer = L.Trainer(accelerator="cpu", max_steps=20, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        use_distributed_sampler=False, callbacks=[Record()], default_root_dir=str(tmp_path))
    trainer.fit(task, datamodule=data)
    rows = list(data.train_set.rows)
    assert len(task._reference) == len(TEXTS) and losses[0] == pytest.approx(math.log(2), abs=1e-5)
    after = margins(task, rows)
    print("loss", [round(v, 4) for v in losses], "margins", after.tolist())
    assert after.mean() > 0.5 and (after > 0).float().mean() >= 0.75 and losses[-1] < 0.5 * math.log(2)
    checkpoint = {}
    task.on_save_checkpoint(checkpoint)
    fresh = DPOTask(str(model))
    fresh.on_load_checkpoint(checkpoint)
    assert fresh._reference == task._reference and set(checkpoint[REFERENCE_KEY]) == {r["id"] for r in rows}


def test_validation_logs_the_policys_samples(mined, tmp_path):
    """With held-out pairs, each validation logs val/margin and the policy's samples of the first pairs' requests
    (as GSPO's validation logs its rollouts): decoded clips in the CSV logger's media folder, no longer than the
    longest side of those pairs, the same clips at both validations of unchanged weights (lr 0: seeded alike)."""
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    from qtts.audio.io import audio_info
    from qtts.tasks.dpo import DPOTask
    from qtts.training.datamodules import PairDataModule
    from qtts.training.media import ROLLOUT_CLIPS

    model, pairs = mined
    data = PairDataModule(str(pairs), val_fraction=0.5, max_batch_size=8)
    task = DPOTask(str(model), lr=0.0)
    logger = CSVLogger(str(tmp_path), name="logs")
    trainer = L.Trainer(accelerator="cpu", max_steps=2, val_check_interval=1, logger=logger, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        use_distributed_sampler=False, default_root_dir=str(tmp_path))
    trainer.fit(task, datamodule=data)
    val_rows = list(data.val_set.rows)
    assert 0 < len(val_rows) < len(TEXTS) and "val/margin" in trainer.callback_metrics
    frames = max(len(r[f"{side}_codes"]) for r in val_rows for side in ("chosen", "rejected"))
    media = sorted((tmp_path / "logs").rglob("val_sample_*.wav"))
    steps = sorted({p.stem.split("-step")[1] for p in media})
    names = sorted({p.stem.split("-step")[0] for p in media})
    assert steps == ["00000001", "00000002"] and len(media) == 2 * len(names), [p.name for p in media]
    assert names == [f"val_sample_{k}" for k in range(len(names))] and 1 <= len(names) <= ROLLOUT_CLIPS
    for path in media:
        info = audio_info(path)
        assert info.sample_rate == 24_000 and 0 < info.duration <= frames * 0.08 + 1e-6, (path, info)
    first, second = ([p.read_bytes() for p in media if p.stem.endswith(step)] for step in steps)
    assert first == second
    # at most ROLLOUT_CLIPS a validation; without a codec (no speech_tokenizer/, no task.codec) nothing is sampled
    assert task.log_samples(val_rows) == min(ROLLOUT_CLIPS, len(val_rows))
    task.hparams.codec, task.hparams.init_from, task._sampler = None, str(tmp_path), []
    assert task.log_samples(val_rows) == 0


@pytest.mark.slow
@pytest.mark.parametrize("lora", ["r16", "null"])
def test_dpo_resumes_exactly(mined, tmp_path, lora):
    """A run resumed from its step-5 checkpoint (mid-epoch: 4 batches per epoch) continues the loss curve of an
    uninterrupted 8-step run: LoRA (adapter-only checkpoints) and full weights (the cached reference restored from
    the checkpoint, not recomputed from the moved weights)."""
    from tests.training.test_train_script import step_losses

    model, pairs = mined
    common = TRAIN + [
        "experiment=dpo", f"task.init_from={model}", f"data.pairs={pairs}", "trainer.accelerator=cpu",
        "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false", "task.lr=1e-3", "data.max_batch_size=3",
        "checkpoint.every_n_steps=5", "task.lora=null" if lora == "null" else "task.lora.r=4",
    ]

    def train(root, *extra):
        result = subprocess.run(common + [f"run_root={root}", *extra], env=subprocess_env(), cwd=REPO,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    train(tmp_path / "straight", "trainer.max_steps=8")
    straight = step_losses(only_run(tmp_path / "straight", "dpo"))
    train(tmp_path / "split", "trainer.max_steps=5")
    run_dir = only_run(tmp_path / "split", "dpo")
    train(tmp_path / "split", "trainer.max_steps=8", f"resume={run_dir / 'checkpoints' / 'step_00000005.ckpt'}")
    split = step_losses(run_dir)
    assert sorted(split) == sorted(straight) == list(range(8))
    for step in split:
        assert split[step] == pytest.approx(straight[step], rel=1e-4, abs=1e-6), (step, split, straight)
    assert straight[0] == pytest.approx(math.log(2), abs=1e-5)


def test_experiment_config_is_valid_and_the_task_keeps_both_hparams(mined):
    from hydra import compose, initialize_config_dir

    from qtts.tasks.dpo import DPOTask
    from qtts.training.config import ConfigError, validate_config
    from qtts.training.configs import CONFIG_DIR

    model, pairs = mined
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=dpo", f"task.init_from={model}",
                                                      f"data.pairs={pairs}"])
        bad = compose(config_name="train", overrides=["experiment=dpo", f"task.init_from={model}",
                                                      f"data.pairs={pairs}", "+task.bta=0.2"])
    validate_config(cfg, {"task": {"model"}})
    assert cfg.task.lora.r == 16 and cfg.model is None
    with pytest.raises(ConfigError, match="task.bta"):
        validate_config(bad, {"task": {"model"}})
    task = DPOTask(str(model), beta=0.3, nll_weight=0.5)
    assert task.hparams.beta == 0.3 and task.hparams.nll_weight == 0.5
    assert task.hparams.speaker_encoder == "frozen" and task.hparams.init_from == str(model)
    with pytest.raises(ValueError, match="task.beta"):
        DPOTask(str(model), beta=0.0)
