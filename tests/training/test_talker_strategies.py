"""The talker under each distributed strategy: FSDP2 and DDP train, save and resume here (2 CPU processes, gloo);
DeepSpeed ZeRO-2/3 need CUDA, so here their configs compose and their Trainer and strategy objects build.

Resume checks compare the logged per-step losses of a SIGTERM-interrupted + ``resume=auto`` run with an
uninterrupted one. Both runs do the same arithmetic in the same order (restored float32 weights and optimizer
state, schedule, data position and RNG; gloo on CPU is deterministic), and FSDP2's bf16 compute casts the same
float32 weights the same way in both, so the curves agree to float rounding: the tolerance (rel 1e-4) only
absorbs reduction-order noise, far below a single optimizer step's change of the loss (~1e-2 here).
"""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from qtts.models.talker.model import TTSModel
from qtts.runs import DISTRIBUTED_METADATA as METADATA_FILENAME
from qtts.runs import is_distributed_checkpoint, newest_checkpoint
from tests.conftest import REPO, subprocess_env
from tests.training.test_train_script import TRAIN, only_run
from qtts.training.configs import CONFIG_DIR

STEPS, KILL_STEP = 5, 2


def talker_args(codes: Path, root: Path, name: str, *extra: str) -> list[str]:
    return TRAIN + [
        "experiment=talker_demo", f"data.codes={codes}", f"run_root={root}", f"experiment_name={name}",
        "trainer.accelerator=cpu", "trainer.devices=2", f"trainer.max_steps={STEPS}", "trainer.log_every_n_steps=1",
        "trainer.check_val_every_n_epoch=1000", "trainer.enable_progress_bar=false", "data.num_workers=0",
        "data.max_tokens_per_batch=600", "data.val_fraction=0.0", "checkpoint.every_n_steps=3",
        "task.warmup_steps=2", *extra,
    ]


def run(args: list[str]) -> str:
    env = subprocess_env() | {"PYTHONPATH": str(REPO)}
    result = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    return out


def losses(run_dir: Path) -> dict[int, float]:
    with open(run_dir / "logs" / "metrics.csv") as f:
        return {int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")}


def trainer_state(ckpt: Path) -> dict:
    """The trainer state of a checkpoint file or of a distributed checkpoint folder."""
    path = ckpt / METADATA_FILENAME if ckpt.is_dir() else ckpt
    return torch.load(path, map_location="cpu", weights_only=True)


def interrupted_then_resumed(codes: Path, root: Path, trainer: str, reference: dict[int, float]) -> Path:
    args = talker_args(codes, root, "killed", f"trainer={trainer}")
    out = run(args + ["+callbacks.kill._target_=tests.helpers.signals.SigtermDuringStep",
                      f"+callbacks.kill.step={KILL_STEP}"])
    run_dir = only_run(root, "killed")
    assert "SIGTERM: saved" in out
    assert trainer_state(run_dir / "checkpoints" / "last.ckpt")["global_step"] == KILL_STEP + 1
    assert newest_checkpoint(run_dir) is not None

    run(args + ["resume=auto"])
    assert only_run(root, "killed") == run_dir  # the same folder, continued
    assert trainer_state(run_dir / "checkpoints" / "last.ckpt")["global_step"] == STEPS
    continued = losses(run_dir)
    assert sorted(continued) == sorted(reference) == list(range(STEPS))
    for step in continued:
        assert continued[step] == pytest.approx(reference[step], rel=1e-4), (step, continued, reference)
    return run_dir


# -- FSDP2 ---------------------------------------------------------------------------------------------------
def fsdp2_straight_run(codes: Path, root: Path) -> tuple[Path, dict[int, float]]:
    run(talker_args(codes, root, "fsdp2", "trainer=fsdp2"))
    run_dir = only_run(root, "fsdp2")
    return run_dir, losses(run_dir)


def test_fsdp2_trains_saves_and_exports(talker_codes, tmp_path):
    """2 processes, per-block fully_shard with bf16 compute: the loss falls, checkpoints are distributed folders
    (one shard per rank, no temporary folders left) and the export gathers the full weights."""
    run_dir, reference = fsdp2_straight_run(talker_codes, tmp_path)
    assert sorted(reference) == list(range(STEPS)) and all(torch.isfinite(torch.tensor(list(reference.values()))))
    assert reference[STEPS - 1] < reference[0] - 0.5, reference
    ckpts = run_dir / "checkpoints"
    for name in ("last.ckpt", "step_00000003.ckpt"):
        assert is_distributed_checkpoint(ckpts / name)
        assert len(list((ckpts / name).glob("*.distcp"))) == 2
    assert not list(ckpts.glob(".*"))  # no temporary folders left behind
    assert trainer_state(ckpts / "last.ckpt")["global_step"] == STEPS
    assert newest_checkpoint(run_dir) in {str(ckpts / "last.ckpt"), str(ckpts / f"step_{STEPS:08d}.ckpt")}
    exported = TTSModel.from_pretrained(run_dir / "export")  # strict: every key, full shapes, float32
    assert all(p.dtype == torch.float32 for p in exported.parameters())
    sharded_checkpoint_opens(run_dir, exported)


def sharded_checkpoint_opens(run_dir: Path, exported: TTSModel) -> None:
    """A distributed checkpoint folder opens whole (``qtts.runs``: synthesis, export, evaluation), with the final
    weights, alone and as a run folder's newest checkpoint once ``export/`` is gone (it raised IsADirectoryError)."""
    from qtts.runs import open_trained

    expected = exported.state_dict()
    shutil.rmtree(run_dir / "export")
    for source in (run_dir / "checkpoints" / "last.ckpt", run_dir):
        opened = open_trained(source)
        assert opened.settings["init_from"] is None and opened.model.config.to_dict() == exported.config.to_dict()
        got = opened.model.state_dict()
        assert sorted(got) == sorted(expected)
        for key, value in expected.items():
            torch.testing.assert_close(got[key], value, msg=key)


@pytest.mark.slow
def test_fsdp2_resumes_exactly(talker_codes, tmp_path):
    """A SIGTERM-interrupted FSDP2 run continued with resume=auto repeats the uninterrupted loss curve."""
    _, reference = fsdp2_straight_run(talker_codes, tmp_path / "straight")
    interrupted_then_resumed(talker_codes, tmp_path / "resumed", "fsdp2", reference)


def test_fsdp2_config_builds_its_strategy(tmp_path):
    from hydra import compose, initialize_config_dir
    from torch.distributed.fsdp import MixedPrecisionPolicy

    from qtts.training.config import validate_config
    from qtts.training.run import build_trainer
    from qtts.training.strategies import FSDP2Strategy

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=talker_demo", "trainer=fsdp2", "trainer.devices=2",
                                                      "trainer.accelerator=cpu", f"run_dir={tmp_path}"])
    validate_config(cfg, {"task": {"model"}})
    trainer = build_trainer(cfg, tmp_path)
    strategy = trainer.strategy
    assert isinstance(strategy, FSDP2Strategy) and trainer.precision == "32-true"
    assert strategy.param_dtype == torch.bfloat16 and strategy.reduce_dtype == torch.float32
    strategy._device_mesh = {"data_parallel": "mesh"}
    block, root = strategy.fully_shard_kwargs(), strategy.fully_shard_kwargs(root=True)
    assert block["mp_policy"] == MixedPrecisionPolicy(torch.bfloat16, torch.float32, cast_forward_inputs=True)
    assert root["mp_policy"].cast_forward_inputs is False and block["mesh"] == "mesh"


def test_configure_model_shards_every_block_once_and_matches_the_plain_model(talker_codes):
    """In-process, world size 1, float32 policy: the sharded model gives the plain model's loss and gradients
    (the loss runs as the root's forward), and a second configure_model call changes nothing."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule

    from qtts.training.datamodules import TalkerDataModule
    from qtts.data.talker_dataset import collate_talker
    from qtts.models.talker.config import tiny
    from qtts.tasks.talker import TalkerTask
    from qtts.training.strategies import FSDP2Strategy

    data = TalkerDataModule(str(talker_codes), val_fraction=0.0, num_workers=0)
    data.setup()
    batch = collate_talker([data.train_set[(i, 100 + i)] for i in range(3)])
    torch.manual_seed(0)
    plain = TalkerTask(tiny())
    sharded = TalkerTask(tiny())
    sharded.load_state_dict(plain.state_dict())
    plain.losses(batch).total.backward()
    expected = {n: p.grad.clone() for n, p in plain.model.named_parameters() if p.grad is not None}

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        strategy = FSDP2Strategy(param_dtype=None, reduce_dtype=None)
        strategy._device_mesh = init_device_mesh("cpu", (1, 1), mesh_dim_names=("data_parallel", "tensor_parallel"))
        sharded._trainer = SimpleNamespace(strategy=strategy, global_step=0)
        sharded.configure_model()
        sharded.configure_model()  # idempotent
        talker = sharded.model.talker
        blocks = [*talker.model.layers, *talker.code_predictor.model.layers]
        assert isinstance(sharded.model, FSDPModule) and all(isinstance(b, FSDPModule) for b in blocks)
        loss = sharded.losses(batch)
        assert loss.total.item() == pytest.approx(plain.losses(batch).total.item(), rel=1e-5)
        loss.total.backward()
        grads = {n: p.grad.full_tensor() for n, p in sharded.model.named_parameters() if p.grad is not None}
        assert grads.keys() == expected.keys()
        for name, grad in grads.items():
            torch.testing.assert_close(grad, expected[name], rtol=1e-4, atol=1e-6, msg=name)
    finally:
        sharded._trainer = None
        dist.destroy_process_group()


def test_configure_model_does_nothing_without_model_parallel():
    from qtts.models.talker.config import tiny
    from qtts.tasks.talker import TalkerTask

    task = TalkerTask(tiny())
    before = [type(m) for m in task.modules()]
    task._trainer = SimpleNamespace(strategy=object())
    try:
        task.configure_model()
    finally:
        task._trainer = None
    assert [type(m) for m in task.modules()] == before and not hasattr(task.model, "sharded_losses")


# -- DDP -----------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_ddp_talker_resumes_exactly(talker_codes, tmp_path):
    run(talker_args(talker_codes, tmp_path / "straight", "ddp", "trainer=ddp"))
    run_dir = only_run(tmp_path / "straight", "ddp")
    reference = losses(run_dir)
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()  # DDP: one file, written atomically by rank 0
    resumed = interrupted_then_resumed(talker_codes, tmp_path / "resumed", "ddp", reference)
    assert (resumed / "checkpoints" / "last.ckpt").is_file()


# -- DeepSpeed (GPU only: construction here) -----------------------------------------------------------------
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_configs_build_their_strategy_and_trainer(stage, tmp_path):
    pytest.importorskip("deepspeed")
    from hydra import compose, initialize_config_dir
    from lightning.pytorch.strategies import DeepSpeedStrategy

    from qtts.training.config import validate_config
    from qtts.training.run import build_trainer

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=talker_demo", f"trainer=deepspeed_zero{stage}",
                                                      "trainer.devices=1", "trainer.accelerator=cpu",
                                                      f"run_dir={tmp_path}"])
    validate_config(cfg, {"task": {"model"}})
    trainer = build_trainer(cfg, tmp_path)
    strategy = trainer.strategy
    assert isinstance(strategy, DeepSpeedStrategy)
    zero = strategy.config["zero_optimization"]
    assert zero["stage"] == stage
    assert zero.get("offload_optimizer", {}).get("device", "none") in (None, "none")  # offload off by default
    if stage == 3:
        assert zero.get("offload_param", {}).get("device", "none") in (None, "none")
    else:
        assert zero["allgather_bucket_size"] == zero["reduce_bucket_size"] == 200_000_000
    assert trainer.precision == "bf16-mixed"


def test_talker_optimizer_is_one_client_optimizer_with_a_step_schedule():
    """What Lightning's DeepSpeedStrategy accepts: a single torch optimizer (wrapped by the DeepSpeed engine) and
    at most one scheduler, stepped per optimizer step."""
    from qtts.models.talker.config import tiny
    from qtts.tasks.talker import TalkerTask

    task = TalkerTask(tiny(), warmup_steps=2)
    task._trainer = SimpleNamespace(estimated_stepping_batches=10)
    try:
        config = task.configure_optimizers()
    finally:
        task._trainer = None
    assert isinstance(config["optimizer"], torch.optim.Optimizer)
    assert isinstance(config["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.LRScheduler)
    assert config["lr_scheduler"]["interval"] == "step"
    params = [p for group in config["optimizer"].param_groups for p in group["params"]]
    assert len(params) == len({id(p) for p in params}) == sum(1 for p in task.parameters() if p.requires_grad)
