"""GSPO / GRPO task on a tiny random model with a rule reward on the utterance length: the mean reward rises within
30 CPU steps, LoRA (adapter-off KL reference) and full weights (frozen copy) both train a step with ratio 1 at the
first minibatch, a stopped and resumed run ends with the weights of an uninterrupted one, and the configs compose."""

from __future__ import annotations

import json
import statistics
import time

import lightning as L
import pytest
import torch

TEXTS = ["Hello there.", "Good night, moon.", "One more line.", "The cat sat down."]
TARGET_FRAMES = 8  # the random model says these in ~15 frames: the reward asks for shorter utterances
MAX_FRAMES = 24
LENGTH_REWARD = "tests.tasks.test_gspo:length_reward"

pytestmark = pytest.mark.usefixtures("one_thread")


def length_reward(samples) -> list[float]:
    """The toy rule reward: −|frames − target| / target."""
    return [-abs(s.frames - TARGET_FRAMES) / TARGET_FRAMES for s in samples]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny random Base model (EOS every dozen frames or so) and a JSONL test set of four prompts."""
    from qtts.models.random_release import tiny_codec_config, write_random_release
    from qtts.models.talker import tiny

    root = tmp_path_factory.mktemp("gspo")
    model = write_random_release(root / "base", tiny("base", predictor_hidden=32), tiny_codec_config(),
                                 eos_scale=3.0)
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "text": t, "language": "en"}) + "\n"
                               for i, t in enumerate(TEXTS)))
    return str(model), str(prompts)


def make_task(model: str, **overrides):
    from qtts.tasks.gspo import GSPOTask

    settings = dict(rewards={"weights": {LENGTH_REWARD: 1.0}}, group_size=4, minibatches=1, lr=3e-4,
                    sampling={"max_new_tokens": MAX_FRAMES})
    return GSPOTask(model, **(settings | overrides))


class Record(L.Callback):
    def __init__(self):
        self.metrics: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.metrics.append({k: float(v) for k, v in trainer.callback_metrics.items()})


def fit(task, prompts: str, max_steps: int, root, ckpt_path=None, callbacks=(), batch_size: int = 4,
        val_fraction: float = 0.0):
    """Train in process; the run's export (``export/``, ``adapter/``) lands in ``root``."""
    from qtts.training.datamodules import PromptDataModule

    record = Record()
    saves = any(isinstance(c, L.pytorch.callbacks.Checkpoint) for c in callbacks)
    trainer = L.Trainer(accelerator="cpu", max_steps=max_steps, logger=False, enable_checkpointing=saves,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        use_distributed_sampler=False, log_every_n_steps=1, callbacks=[record, *callbacks],
                        default_root_dir=str(root))
    data = PromptDataModule(prompts, batch_size=batch_size, val_fraction=val_fraction)
    trainer.fit(task, datamodule=data, ckpt_path=ckpt_path)
    return record.metrics


@pytest.mark.slow
def test_mean_reward_rises_within_30_steps(setup, tmp_path):
    """GSPO (sequence importance, full weights, on-policy updates) on the length reward: the mean reward of the last
    five rollout steps is well above the first five's."""
    model, prompts = setup
    start = time.perf_counter()
    metrics = fit(make_task(model), prompts, max_steps=30, root=tmp_path)
    rewards = [m["train/reward"] for m in metrics]
    frames = [m["train/frames"] for m in metrics]
    print(f"{time.perf_counter() - start:.1f} s", "reward", [round(r, 2) for r in rewards],
          "frames", [round(f, 1) for f in frames])
    assert len(rewards) == 30
    first, last = statistics.mean(rewards[:5]), statistics.mean(rewards[-5:])
    assert last > first + 0.15, (first, last)
    assert statistics.mean(frames[-5:]) < statistics.mean(frames[:5])  # it learned to stop sooner
    assert all(m["train/rollout_logprob_gap"] < 1e-4 for m in metrics)  # ratio 1 at each first minibatch


@pytest.mark.parametrize("mode", ["lora_grpo", "full_copy"])
def test_lora_and_full_weights_train_a_step_with_kl(setup, mode, tmp_path):
    """LoRA with GRPO's token ratios (reference = adapter off) and full weights with a frozen copy (GSPO): two
    rollout steps of two minibatches each; the first minibatch's ratio is 1, the KL starts at 0 (policy =
    reference) and only what should train moves."""
    model, prompts = setup
    if mode == "lora_grpo":
        task = make_task(model, importance="token", kl_coef=0.1, minibatches=2, lr=3e-3,
                         lora={"targets": ["attention", "mlp"], "r": 4, "alpha": 8.0, "dropout": 0.05})
    else:
        task = make_task(model, kl_coef=0.1, minibatches=2, reference="copy")
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    metrics = fit(task, prompts, max_steps=4, root=tmp_path / "run", batch_size=2)
    assert len(metrics) == 2 and task.global_step == 4
    for m in metrics:
        assert m["train/rollout_logprob_gap"] < 1e-4 and m["train/kl"] >= 0 and 0 <= m["train/clip_fraction"] <= 1
    after = task.model.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert (tmp_path / "run" / "export" / "config.json").is_file()  # the talker task's export
    if mode == "lora_grpo":
        assert moved and all("lora_" in k for k in moved), sorted(moved)[:5]
        assert task.hparams.importance == "token" and (tmp_path / "run" / "adapter" / "adapter_config.json").is_file()
    else:
        assert any("codec_head" in k for k in moved)
        reference = task._reference[0].state_dict()
        assert all(torch.equal(reference[k], before[k]) for k in reference)  # the copy stays init_from


@pytest.mark.slow
def test_resume_equals_an_uninterrupted_run(setup, tmp_path):
    """Stopped after two rollout steps (mid-epoch: one prompt per batch, four per epoch) and resumed from last.ckpt,
    the run ends with the weights of a straight four-step run: rollouts are seeded from the global step, the
    minibatch order too, and the data position, optimiser and schedule come back from the checkpoint. (The lr is
    constant after its warm-up: a cosine would span each launch's max_steps.)"""
    from qtts.training.callbacks import RNGState, SaveLast

    model, prompts = setup
    settings = dict(minibatches=2, lr=1e-3, warmup_steps=2, min_lr_ratio=1.0)
    straight = make_task(model, **settings)
    expected_metrics = fit(straight, prompts, max_steps=8, root=tmp_path / "straight", batch_size=1)
    first = make_task(model, **settings)
    fit(first, prompts, max_steps=4, root=tmp_path / "split", batch_size=1,
        callbacks=[SaveLast(tmp_path / "split" / "checkpoints"), RNGState()])
    resumed = make_task(model, **settings)
    metrics = fit(resumed, prompts, max_steps=8, root=tmp_path / "split",
                  ckpt_path=str(tmp_path / "split" / "checkpoints" / "last.ckpt"), batch_size=1, callbacks=[RNGState()])
    assert resumed.global_step == straight.global_step == 8
    assert [m["train/reward"] for m in metrics] == [m["train/reward"] for m in expected_metrics[2:]]
    expected = straight.model.state_dict()
    moved = [k for k, v in first.model.state_dict().items() if not torch.equal(v, expected[k])]
    assert moved  # the last two steps changed the weights: the comparison below is not trivial
    for name, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=0, msg=name)


def test_validation_scores_the_held_out_prompts(setup, tmp_path):
    """val_fraction 0.25 holds out p0 and p1 (by the hash of their ids): the epoch's end samples them, logs their
    mean reward and its components, and samples them alike at every validation (seeded by the batch)."""
    model, prompts = setup
    task = make_task(model)
    fit(task, prompts, max_steps=2, root=tmp_path, batch_size=2, val_fraction=0.25)
    data = task.trainer.datamodule
    assert [i.id for i in data.val_set.items] == ["p0", "p1"] and [i.id for i in data.train_set.items] == ["p2", "p3"]
    metrics = {k: float(v) for k, v in task.trainer.callback_metrics.items()}
    assert -3.0 <= metrics["val/reward"] <= 0.0
    assert metrics["val/reward"] == pytest.approx(metrics["val/reward_length_reward"])
    assert 0 < metrics["val/frames"] <= MAX_FRAMES
    first = task.rollout(data.val_set.items, seed=5)[0].codes
    again = task.rollout(data.val_set.items, seed=5)[0].codes
    assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_rewards_from_a_yaml_file(setup, tmp_path):
    """task.rewards may name a YAML file of the reward config, as ``qtts mine-pairs --rewards``; a bad one is named."""
    model, _ = setup
    path = tmp_path / "rewards.yaml"
    path.write_text(f'weights: {{"{LENGTH_REWARD}": 2.0, eos: 0.5}}\nframes_per_word: [2, 12]\n')
    task = make_task(model, rewards=str(path))
    assert task.rewards.weights == {LENGTH_REWARD: 2.0, "eos": 0.5}
    assert task.rewards.config.frames_per_word == (2.0, 12.0)
    path.write_text("weight: {eos: 1.0}\n")
    with pytest.raises(ValueError, match=f"{path}.*weight"):
        make_task(model, rewards=str(path))


def test_bad_settings_are_named(setup):
    model, _ = setup
    with pytest.raises(ValueError, match="task.reference=copy"):
        make_task(model, kl_coef=0.1)
    with pytest.raises(ValueError, match="top_k"):
        make_task(model, sampling={"top_k": 50})
    with pytest.raises(ValueError, match="task.group_size"):
        make_task(model, group_size=1)
    with pytest.raises(ValueError, match="task.importance"):
        make_task(model, importance="frame")


def test_experiment_config_composes_and_instantiates(setup):
    """experiment=gspo (LoRA, sequence importance), with task.importance=token for GRPO, passes the config checks
    and builds its task and data module."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from qtts.training.config import validate_config
    from qtts.training.configs import CONFIG_DIR

    model, prompts = setup
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=gspo", f"task.init_from={model}",
                                                      f"data.prompts={prompts}", "task.importance=token"])
    validate_config(cfg, {"task": {"model"}})
    assert cfg.task.lora.r == 16 and cfg.model is None and cfg.trainer.gradient_clip_val is None
    task = instantiate(cfg.task, _convert_="object")
    assert task.hparams.importance == "token" and task._peft and not task.automatic_optimization
    data = instantiate(cfg.data)
    data.setup()
    assert [item.id for item in data.train_set.items] == [f"p{i}" for i in range(len(TEXTS))]
