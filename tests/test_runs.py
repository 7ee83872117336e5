"""``qtts.runs``: what a run leaves behind opens whole, and what cannot be read is named (fast checks on hand-made
checkpoints; sharded folders and LoRA runs are opened in tests/training/test_talker_strategies.py and
tests/adapters/test_custom_voice.py, from real runs)."""

from __future__ import annotations

import pytest
import torch

from qtts.cli import main
from qtts.models.talker import TTSModel, tiny
from qtts.runs import checkpoint_step, newest_checkpoint, open_trained

ROW = 3000  # a free codec row (a new speaker's)


def talker_checkpoint(path, model: TTSModel, step: int = 7, rows: dict | None = None) -> dict:
    """A Lightning-style talker checkpoint of ``model``, with trained rows beside the model's keys."""
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    for name, (ids, weight) in (rows or {}).items():
        state[f"trained_rows.{name}.rows"] = torch.tensor(ids)
        state[f"trained_rows.{name}.weight"] = weight
    checkpoint = {"state_dict": state, "global_step": step,
                  "hyper_parameters": {"model": model.config.to_dict(), "init_from": None, "codec": None}}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return checkpoint


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return TTSModel(tiny("base", predictor_hidden=32, layers=1, predictor_layers=1)).eval()


def test_full_checkpoint_keeps_its_trained_rows(model, tmp_path):
    """Rows trained on a frozen table live beside the table in the checkpoint; the opened model has them."""
    trained = torch.randn(1, model.config.talker_config.hidden_size)
    ckpt = tmp_path / "run" / "checkpoints" / "step_00000007.ckpt"
    talker_checkpoint(ckpt, model, rows={"codec_embedding": ([ROW], trained)})
    for source in (ckpt, tmp_path / "run"):
        opened = open_trained(source)
        table = opened.model.talker.model.codec_embedding.weight
        torch.testing.assert_close(table[ROW], trained[0])
        torch.testing.assert_close(table[ROW + 1], model.talker.model.codec_embedding.weight[ROW + 1])
        assert opened.settings["codec"] is None and opened.folder is None and opened.tokenizer_folder is None
    assert checkpoint_step(ckpt) == 7 and newest_checkpoint(tmp_path / "run") == str(ckpt)


def test_unreadable_checkpoints_are_named(model, tmp_path):
    """A damaged checkpoint is an error naming it, not skipped for an older one (nor an IsADirectoryError)."""
    run = tmp_path / "run"
    talker_checkpoint(run / "checkpoints" / "step_00000005.ckpt", model, step=5)
    broken = run / "checkpoints" / "last.ckpt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=f"{broken}: cannot read checkpoint"):
        newest_checkpoint(run)
    with pytest.raises(ValueError, match=f"{broken}: cannot read checkpoint"):
        open_trained(broken)
    torch.save({"state_dict": {}}, broken)
    with pytest.raises(ValueError, match="not a talker training checkpoint"):
        open_trained(broken)
    with pytest.raises(FileNotFoundError, match="not a model folder, run folder, checkpoint or adapter"):
        open_trained(tmp_path / "nothing")


def test_cli_reports_a_bad_source_in_one_line(tmp_path, capsys):
    (tmp_path / "last.ckpt").write_bytes(b"\0" * 10)
    assert main(["export", str(tmp_path / "last.ckpt"), str(tmp_path / "out")]) == 2
    assert f"{tmp_path / 'last.ckpt'}: cannot read checkpoint" in capsys.readouterr().err


def test_opening_a_checkpoint_imports_no_training_stack(model, tmp_path):
    import subprocess
    import sys

    ckpt = tmp_path / "step_00000001.ckpt"
    talker_checkpoint(ckpt, model, step=1)
    code = (f"import sys; from qtts.runs import open_trained; open_trained({str(ckpt)!r}); "
            "print(sorted(m for m in ('lightning', 'hydra', 'omegaconf') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.parametrize("key", ["state_dict", "model"])  # FSDP2 (ModelParallelStrategy), FSDP1 (FSDPStrategy)
def test_distributed_checkpoint_layouts_open(model, tmp_path, key):
    """A torch.distributed.checkpoint folder as Lightning writes it: the task's weights under ``key`` in the
    ``*.distcp`` shards and the trainer state in ``meta.pt``; read here in one process, without a process group."""
    import torch.distributed.checkpoint as dcp

    folder = tmp_path / "run" / "checkpoints" / "last.ckpt"
    trained = torch.randn(1, model.config.talker_config.hidden_size)
    state = talker_checkpoint(tmp_path / "plain.ckpt", model, rows={"codec_embedding": ([ROW], trained)})
    dcp.save({key: state.pop("state_dict"), "optimizer_0": {"step": torch.tensor(3.0)}}, checkpoint_id=str(folder),
             no_dist=True)
    torch.save(state, folder / "meta.pt")
    opened = open_trained(tmp_path / "run")  # a run folder without export/: its newest checkpoint, this folder
    expected = model.state_dict()
    for name, value in opened.model.state_dict().items():
        if name != "talker.model.codec_embedding.weight":
            assert torch.equal(value, expected[name]), name
    torch.testing.assert_close(opened.model.talker.model.codec_embedding.weight[ROW], trained[0])
    assert checkpoint_step(folder) == 7
