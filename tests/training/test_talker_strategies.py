"""The talker under each distributed strategy: FSDP2 and DDP train, save and resume here (2 CPU processes, gloo);
DeepSpeed ZeRO-2/3 need CUDA under Lightning, so here their configs compose and their Trainer and strategy objects
build, and the export gather runs in a bare DeepSpeed engine (2 CPU processes). Every strategy's run ends with the
same complete ``export/``, written by rank 0 from the gathered full weights.

Resume checks compare the logged per-step losses of a SIGTERM-interrupted + ``resume=auto`` run with an
uninterrupted one. Both runs do the same arithmetic in the same order (restored float32 weights and optimizer
state, schedule, data position and RNG; gloo on CPU is deterministic), and FSDP2's bf16 compute casts the same
float32 weights the same way in both, so the curves agree to float rounding: the tolerance (rel 1e-4) only
absorbs reduction-order noise, far below a single optimizer step's change of the loss (~1e-2 here).
"""

from __future__ import annotations

import filecmp
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from qtts.eval.curves import read_metrics
from qtts.models.codec.model import SUBFOLDER, SpeechTokenizer
from qtts.models.random_release import tiny_codec_config, write_random_release
from qtts.models.talker.config import tiny
from qtts.models.talker.model import TTSModel
from qtts.runs import DISTRIBUTED_METADATA as METADATA_FILENAME
from qtts.runs import is_distributed_checkpoint, newest_checkpoint, open_trained
from qtts.training.configs import CONFIG_DIR
from qtts.training.strategies import full_state_method, gather_full_state, holds_full_weights
from tests.conftest import REPO, subprocess_env
from tests.training.test_train_script import TRAIN, only_run

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
    return dict(read_metrics(run_dir).get("train/loss", []))


def trainer_state(ckpt: Path) -> dict:
    """The trainer state of a checkpoint file or of a distributed checkpoint folder."""
    path = ckpt / METADATA_FILENAME if ckpt.is_dir() else ckpt
    return torch.load(path, map_location="cpu", weights_only=True)


RELEASE_FILES = ("config.json", "model.safetensors", "generation_config.json", "vocab.json", "merges.txt",
                 "tokenizer_config.json", "tokenizer.json")


def assert_complete_release(folder: Path, codec: Path) -> None:
    """What export_release writes: weights, config, text tokenizer, generation config and the codec's folder."""
    missing = [name for name in RELEASE_FILES if not (folder / name).is_file()]
    assert not missing, (missing, sorted(p.name for p in folder.iterdir()))
    match, mismatch, errors = filecmp.cmpfiles(codec, folder / SUBFOLDER, [p.name for p in codec.iterdir()],
                                               shallow=False)
    assert match and not mismatch and not errors, (mismatch, errors)


@pytest.fixture(scope="module")
def tiny_codec(tmp_path_factory) -> Path:
    """A speech tokenizer folder for task.codec: a run with one writes the complete released folder."""
    folder = tmp_path_factory.mktemp("tiny_codec")
    SpeechTokenizer(tiny_codec_config()).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_release(tmp_path_factory) -> Path:
    """A complete released-layout folder (random tiny talker, tokenizer, generation config, codec): init_from."""
    return write_random_release(tmp_path_factory.mktemp("tiny_release") / "base", tiny(), tiny_codec_config())


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
def fsdp2_straight_run(codes: Path, root: Path, *extra: str) -> tuple[Path, dict[int, float]]:
    run(talker_args(codes, root, "fsdp2", "trainer=fsdp2", *extra))
    run_dir = only_run(root, "fsdp2")
    return run_dir, losses(run_dir)


def test_fsdp2_trains_saves_and_exports(talker_codes, tiny_codec, tmp_path):
    """2 processes, per-block fully_shard with bf16 compute: the loss falls, checkpoints are distributed folders
    (one shard per rank, no temporary folders left) and the export is the complete released folder (tokenizer,
    generation config, speech_tokenizer/) holding exactly the trained float32 weights of the last checkpoint."""
    run_dir, reference = fsdp2_straight_run(talker_codes, tmp_path, f"task.codec={tiny_codec}")
    assert sorted(reference) == list(range(STEPS)) and all(torch.isfinite(torch.tensor(list(reference.values()))))
    assert reference[STEPS - 1] < reference[0] - 0.5, reference
    ckpts = run_dir / "checkpoints"
    for name in ("last.ckpt", "step_00000003.ckpt"):
        assert is_distributed_checkpoint(ckpts / name)
        assert len(list((ckpts / name).glob("*.distcp"))) == 2
    assert not list(ckpts.glob(".*"))  # no temporary folders left behind
    assert trainer_state(ckpts / "last.ckpt")["global_step"] == STEPS
    assert newest_checkpoint(run_dir) in {str(ckpts / "last.ckpt"), str(ckpts / f"step_{STEPS:08d}.ckpt")}
    assert_complete_release(run_dir / "export", tiny_codec)
    exported = TTSModel.from_pretrained(run_dir / "export", dtype=None)  # strict: every key, full shapes
    assert all(p.dtype == torch.float32 for p in exported.parameters())
    trained = open_trained(ckpts / "last.ckpt").model.state_dict()  # the sharded float32 weights, gathered here
    assert exported.state_dict().keys() == trained.keys()
    for name, weight in exported.state_dict().items():
        assert torch.equal(weight, trained[name]), name
    run_without_export_opens_its_sharded_checkpoint(run_dir, exported)


def run_without_export_opens_its_sharded_checkpoint(run_dir: Path, exported: TTSModel) -> None:
    """Without ``export/`` (an interrupted run), a run folder opens from its newest checkpoint, a distributed
    checkpoint folder (it raised IsADirectoryError), with the final weights."""
    expected = exported.state_dict()
    shutil.rmtree(run_dir / "export")
    opened = open_trained(run_dir)
    assert opened.settings["init_from"] is None and opened.model.config.to_dict() == exported.config.to_dict()
    got = opened.model.state_dict()
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


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

    from qtts.data.talker_dataset import collate_talker
    from qtts.models.talker.config import tiny
    from qtts.tasks.talker import TalkerTask
    from qtts.training.datamodules import TalkerDataModule
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


LORA = {"targets": ["attention", "mlp"], "r": 2, "alpha": 4.0, "dropout": 0.0}
LORA_REFUSED = "LoRA (task.lora) is not supported under trainer=fsdp2 or trainer=fsdp"


def test_lora_is_refused_under_fsdp_before_training(tiny_release):
    """LoRA trains and exports under FSDP2, but cannot resume (its checkpoints keep only what trains; Lightning
    loads FSDP's distributed checkpoints requiring every key): configure_model, which Lightning calls before the
    first step, refuses it under FSDP2 and FSDP1 and names DDP; other strategies pass."""
    from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy, SingleDeviceStrategy

    from qtts.tasks.talker import TalkerTask
    from qtts.training.strategies import FSDP2Strategy

    task = TalkerTask(init_from=str(tiny_release), lora=LORA)
    try:
        for strategy in (FSDP2Strategy(), FSDPStrategy()):
            task._trainer = SimpleNamespace(strategy=strategy)
            with pytest.raises(ValueError, match="use trainer=ddp") as refused:
                task.configure_model()
            assert LORA_REFUSED in str(refused.value)
        for strategy in (DDPStrategy(), SingleDeviceStrategy("cpu")):
            task._trainer = SimpleNamespace(strategy=strategy)
            task.configure_model()
    finally:
        task._trainer = None


@pytest.mark.slow
def test_lora_fsdp2_run_stops_before_its_first_step(talker_codes, tiny_release, tmp_path):
    """The whole 2-process launch: the refusal ends it before any step, checkpoint or export."""
    args = talker_args(talker_codes, tmp_path, "lora_fsdp2", "trainer=fsdp2", f"+task.init_from={tiny_release}",
                       "+task/lora=r16", "task.lora.r=2")
    env = subprocess_env() | {"PYTHONPATH": str(REPO)}
    result = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    out = result.stdout + result.stderr
    assert result.returncode != 0 and LORA_REFUSED in out and "use trainer=ddp" in out, out[-4000:]
    run_dir = only_run(tmp_path, "lora_fsdp2")
    assert not (run_dir / "export").exists() and not list(run_dir.glob("checkpoints/*"))
    assert not (run_dir / "logs" / "metrics.csv").is_file() or not losses(run_dir)


# -- the export gather, every strategy --------------------------------------------------------------------------
def test_full_state_method_for_each_strategy(monkeypatch):
    """Built without fitting (works on CPU): DeepSpeed (any stage) gathers its float32 masters; FSDP1 gathers through
    the strategy's root wrapper; FSDP2, DDP and one device through the task itself."""
    pytest.importorskip("deepspeed")  # DeepSpeedStrategy() needs it installed
    import torch.distributed.checkpoint.state_dict as dcp_state
    from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, FSDPStrategy, SingleDeviceStrategy

    from qtts.training.strategies import FSDP2Strategy

    assert full_state_method(DeepSpeedStrategy(stage=3)) == "deepspeed"
    assert full_state_method(DeepSpeedStrategy(stage=2)) == "deepspeed"
    assert full_state_method(FSDPStrategy()) == "fsdp"
    for strategy in (FSDP2Strategy(), DDPStrategy(), SingleDeviceStrategy("cpu"), None):
        assert full_state_method(strategy) == "module", strategy
    # the export reads the task's own modules only where they hold the full weights (no gather, no second copy)
    assert holds_full_weights(DDPStrategy()) and holds_full_weights(SingleDeviceStrategy("cpu"))
    assert not any(holds_full_weights(s) for s in (DeepSpeedStrategy(stage=2), FSDPStrategy(), FSDP2Strategy()))

    task, wrapper = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    calls = []
    monkeypatch.setattr(dcp_state, "get_model_state_dict",
                        lambda module, options: calls.append((module, options)) or {"weight": torch.zeros(1)})
    fsdp = FSDPStrategy()
    fsdp.model = wrapper  # what Lightning's FSDPStrategy holds after setup: FullyShardedDataParallel(task)
    assert gather_full_state(fsdp, task) == {"weight": torch.zeros(1)}
    assert gather_full_state(FSDP2Strategy(), task) is not None
    assert [c[0] for c in calls] == [wrapper, task]
    assert all(c[1].full_state_dict and c[1].cpu_offload for c in calls)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora_with_rows"])
def test_export_from_the_gathered_state_is_the_tasks_own_export(lora, tiny_release, tmp_path):
    """One process: the export written from the gathered state (a plain copy of the model built from it, with the
    run's LoRA layers and trained rows) is byte for byte the export of the task's own modules: merged weights,
    adapter folder with its added rows, tokenizer, generation config, speech_tokenizer/."""
    from qtts.tasks.talker import TalkerTask

    torch.manual_seed(0)
    task = TalkerTask(init_from=str(tiny_release), lora=LORA if lora else None,
                      train_language_rows=["english"] if lora else None)
    with torch.no_grad():  # as if trained: adapters, rows and weights away from their initial values
        for p in task.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    state = gather_full_state(None, task)
    assert state.keys() == task.state_dict().keys()
    task.export(tmp_path / "gathered" / "export", state=state)
    task.export(tmp_path / "own" / "export")
    assert_complete_release(tmp_path / "gathered" / "export", tiny_release / SUBFOLDER)
    assert (tmp_path / "gathered" / "adapter" / "adapter_model.safetensors").is_file() == lora

    def files(root: Path) -> list[str]:
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    names = files(tmp_path / "own")
    assert files(tmp_path / "gathered") == names
    match, mismatch, errors = filecmp.cmpfiles(tmp_path / "own", tmp_path / "gathered", names, shallow=False)
    assert not mismatch and not errors


def test_deepspeed_zero2_and_zero3_exports_hold_the_float32_masters(talker_codes, tiny_release, tmp_path):
    """A real DeepSpeed engine (2 CPU processes, gloo, bf16 as Lightning configures it): after two steps the export
    holds each trained weight's float32 master (which rounds to exactly the engine's 16-bit copy, and is finer than
    it), each frozen weight as the engine holds it (bf16), every key; ZeRO-2 full fine-tune with a frozen speaker
    encoder, ZeRO-3 LoRA with a trained language row (adapter/ written too); both folders complete."""
    if importlib.util.find_spec("deepspeed") is None:  # (not imported here: the engine runs in the children)
        pytest.skip("deepspeed is not installed")
    from safetensors.torch import load_file

    from qtts.tasks.talker import TalkerTask

    env = subprocess_env() | {"PYTHONPATH": str(REPO)}
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            str(REPO / "tests" / "helpers" / "deepspeed_export.py"), str(talker_codes), str(tiny_release),
            str(tmp_path)]
    result = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    for stage, lora in ((2, False), (3, True)):
        out = tmp_path / f"zero{stage}"
        saved = torch.load(out / "reference.pt", map_location="cpu", weights_only=True)
        initial, engine, gathered, trainable = saved["initial"], saved["engine"], saved["gathered"], saved["trainable"]
        assert gathered.keys() == initial.keys() == engine.keys()
        assert trainable and set(trainable) < set(gathered)
        finer = 0
        for name, value in gathered.items():
            if not value.is_floating_point():
                assert torch.equal(value, initial[name]), name
            elif name in trainable:
                assert value.dtype == torch.float32 and not torch.equal(value, initial[name]), name
                assert torch.equal(value.to(torch.bfloat16), engine[name].to(torch.bfloat16)), name
                finer += not torch.equal(value, engine[name].float())
            else:  # frozen: the engine's bf16 copy of the initial weight
                assert torch.equal(value, initial[name].to(torch.bfloat16)), name
        assert finer > len(trainable) // 2, (stage, finer, len(trainable))
        assert (out / "deepspeed.ckpt" / "latest").is_file()
        if not lora:  # the DeepSpeed checkpoint folder opens in one process with the trained float32 masters
            opened = open_trained(out / "deepspeed.ckpt", dtype=None).model.state_dict()
            for name in trainable:
                assert torch.equal(opened[name.removeprefix("model.")], gathered[name]), name

        assert_complete_release(out / "export", tiny_release / SUBFOLDER)
        assert (out / "adapter" / "adapter_model.safetensors").is_file() == lora
        # the same export as a plain task holding the gathered weights writes from its own modules
        task = TalkerTask(init_from=str(tiny_release), lora=LORA if lora else None,
                          train_language_rows=["english"] if lora else None)
        task.load_state_dict(gathered)
        task.export(tmp_path / f"plain{stage}" / "export")
        exported, expected = load_file(out / "export" / "model.safetensors"), \
            load_file(tmp_path / f"plain{stage}" / "export" / "model.safetensors")
        assert exported.keys() == expected.keys()
        for name, value in exported.items():
            assert value.dtype == torch.float32 and torch.equal(value, expected[name]), name


# -- DDP -----------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_ddp_talker_resumes_exactly(talker_codes, tmp_path):
    run(talker_args(talker_codes, tmp_path / "straight", "ddp", "trainer=ddp"))
    run_dir = only_run(tmp_path / "straight", "ddp")
    reference = losses(run_dir)
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()  # DDP: one file, written atomically by rank 0
    exported = TTSModel.from_pretrained(run_dir / "export", dtype=None).state_dict()  # gathered like any other
    trained = open_trained(run_dir / "checkpoints" / "last.ckpt", dtype=None).model
    assert exported.keys() == trained.state_dict().keys()
    assert all(torch.equal(exported[name], weight) for name, weight in trained.state_dict().items())
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
