"""Typed config checks on the real config tree: every mistake is caught before anything heavy, named."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from qtts.training.config import ConfigError, validate_config
from tests.conftest import REPO
from qtts.training.configs import CONFIG_DIR

RUNTIME = {"task": {"model", "num_speakers", "num_languages"}}


def composed(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def test_default_and_demo_configs_are_valid():
    validate_config(composed(), RUNTIME)
    cfg = composed("experiment=speaker_encoder_demo")
    validate_config(cfg, RUNTIME)
    assert cfg.experiment_name == "speaker_encoder_demo" and cfg.trainer.max_steps == 60


@pytest.mark.parametrize("override, named", [
    ("+task.lrr=0.1", "task.lrr"),
    ("task.lr=fast", "task.lr"),
    ("task.warmup_steps=1.5", "task.warmup_steps"),
    ("+trainer.max_step=3", "trainer.max_step"),
    ("model.enc_dim=-4", "enc_dim"),
    ("+model.width=3", "model.width"),
    ("model.enc_channels=[64,64]", "enc_channels"),
    ("data.val_fraction=high", "data.val_fraction"),
    ("+data.shuffle_buffer=3", "data.shuffle_buffer"),
    ("resume=yes", "resume"),
    ("+checkpoints=3", "checkpoints"),
    ("logger=wandb", None),
])
def test_mistakes_are_named(override, named):
    cfg = composed(override)
    if named is None:
        validate_config(cfg, RUNTIME)
        return
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, RUNTIME)
    assert named in str(err.value)


@pytest.mark.parametrize("experiment", ["talker_demo", "pretrain_s1", "pretrain_s2", "pretrain_s3", "codec_demo"])
def test_talker_and_stage_configs_are_valid(experiment):
    overrides = [f"experiment={experiment}"]
    if experiment in ("pretrain_s2", "pretrain_s3"):
        overrides.append("task.init_from=some/folder")
    cfg = composed(*overrides)
    validate_config(cfg, {"task": {"model"}})
    if experiment.startswith("pretrain"):
        assert cfg.data.max_length == (32768 if experiment == "pretrain_s3" else 8192)


def test_unset_mandatory_values_are_named():
    with pytest.raises(ConfigError, match="task.init_from"):
        validate_config(composed("experiment=pretrain_s2"), {"task": {"model"}})


def test_required_task_inputs_must_come_from_somewhere():
    with pytest.raises(ConfigError, match="task.num_speakers"):
        validate_config(composed(), {"task": {"model"}})


@pytest.mark.parametrize("trainer", ["default", "cpu", "ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"])
def test_strategy_configs_build(trainer, tmp_path):
    """Each strategy config is valid and constructs its Lightning strategy (fitting FSDP/DeepSpeed needs GPUs)."""
    cfg = composed(f"trainer={trainer}", f"run_dir={tmp_path}")
    validate_config(cfg, RUNTIME)
    node = cfg.trainer.get("strategy")
    if not isinstance(node, str):
        if "DeepSpeed" in node._target_:
            pytest.importorskip("deepspeed")
        strategy = instantiate(node)
        assert type(strategy).__name__ == node._target_.rsplit(".", 1)[1]
        if "DeepSpeed" in node._target_:
            assert strategy.config["zero_optimization"]["stage"] == int(trainer[-1])
