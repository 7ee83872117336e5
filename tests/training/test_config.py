"""Typed config checks on the real config tree: every mistake is caught before anything heavy, named."""

from __future__ import annotations

import json

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import get_object, instantiate
from omegaconf import OmegaConf

from qtts.training.config import ConfigError, missing_keys, validate_config
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


# Placeholders for the mandatory (???) values an experiment leaves to the command line.
MANDATORY = {"task.init_from": "some/model_folder", "data.codes": "some/codes", "data.pairs": "some/pairs",
             "data.prompts": "some/prompts.jsonl", "task.train_language_rows": ["newlang"],
             "callbacks.heldout_eval.sentences": "some/testset.jsonl"}
EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_config_is_valid(experiment):
    """Each file of configs/experiment/ (found by globbing, so a new one is covered) composes and passes the checks
    ``train`` runs, with placeholders for its mandatory values and the runtime keys ``train`` allows."""
    cfg = composed(f"experiment={experiment}")
    missing = missing_keys(cfg)
    unknown = [k for k in missing if k not in MANDATORY]
    assert not unknown, f"{experiment}: add a placeholder for the mandatory value(s) {unknown} to MANDATORY"
    cfg = composed(f"experiment={experiment}", *(f"{k}={json.dumps(MANDATORY[k])}" for k in missing))
    assert not missing_keys(cfg)
    data_cls = get_object(cfg.data._target_)
    validate_config(cfg, {"task": {"model", *getattr(data_cls, "TASK_INPUTS", ())}})
    assert cfg.experiment_name == experiment


def test_mandatory_values_behind_interpolations_are_named():
    """custom_voice's data.tokenizer is ${task.init_from}: the unset init_from is named, not an interpolation error."""
    with pytest.raises(ConfigError, match="task.init_from"):
        validate_config(composed("experiment=custom_voice"), {"task": {"model"}})


HINTS = """
from __future__ import annotations
{imports}

class Task:
    def __init__(self, lr: {lr} = 1.0, steps: int = 1):
        pass
"""


@pytest.mark.parametrize("imports, lr, error", [
    ("", "Undefined", "NameError|Undefined"),                     # a typo or a missing import
    ("", "int | 'auto'", "TypeError"),                            # a string in a union
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from nowhere import Optim", "Optim", None),
])
def test_unresolvable_annotations_are_named(imports, lr, error, tmp_path, monkeypatch):
    """A bad annotation fails the check naming the target and the parameter (it used to switch off every type check
    of the target's keys); a name imported only for type checkers leaves that parameter unchecked, the rest checked."""
    module = f"hints_{len(imports)}_{len(lr)}"
    (tmp_path / f"{module}.py").write_text(HINTS.format(imports=imports, lr=lr))
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = OmegaConf.create({"task": {"_target_": f"{module}.Task", "lr": "fast", "steps": 2}})
    if error is not None:
        with pytest.raises(ConfigError, match=rf"task \({module}.Task\).*'lr'.*({error})"):
            validate_config(cfg)
        return
    validate_config(cfg)
    cfg.task.steps = "many"
    with pytest.raises(ConfigError, match="task.steps"):
        validate_config(cfg)
