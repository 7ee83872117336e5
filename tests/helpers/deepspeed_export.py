"""Run under ``torchrun --nproc_per_node 2``: a tiny talker task in a real DeepSpeed engine (CPU, gloo, bf16: what
Lightning's DeepSpeedStrategy builds, which itself refuses CPU), two optimizer steps, then the export gather; once
under ZeRO-2 (full fine-tune, frozen speaker encoder) and once under ZeRO-3 (LoRA with a trained language row).

argv: CODES INIT_FROM OUT. For each run rank 0 writes OUT/zeroN/export (and adapter/ for LoRA) from
``gather_full_state`` through ``TalkerTask.export``, the engine writes OUT/zeroN/deepspeed.ckpt/ (a DeepSpeed
checkpoint folder, as Lightning saves one), and rank 0 OUT/zeroN/reference.pt: the initial weights, the engine's
own 16-bit weights (``_zero3_consolidated_16bit_state_dict`` under ZeRO-3, the module's full copies under ZeRO-2),
the gathered state and the names of the trained parameters, for the test to compare.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import deepspeed
import torch
import torch.distributed as dist
from lightning.pytorch.strategies import DeepSpeedStrategy

from qtts.data.talker_dataset import collate_talker
from qtts.tasks.talker import TalkerTask
from qtts.training.datamodules import TalkerDataModule
from qtts.training.strategies import gather_full_state

LORA = dict(targets=["attention", "mlp"], r=2, alpha=4.0, dropout=0.0)


def to_bf16(value):
    """The batch as Lightning's DeepSpeed precision plugin hands it over (floating tensors in the engine's dtype)."""
    if isinstance(value, torch.Tensor):
        return value.to(torch.bfloat16) if value.is_floating_point() else value
    if isinstance(value, dict):
        return {k: to_bf16(v) for k, v in value.items()}
    return value


def main(codes: str, init_from: str, out: str) -> None:
    deepspeed.init_distributed("gloo")
    train(codes, init_from, Path(out) / "zero2", stage=2, lora=False)
    train(codes, init_from, Path(out) / "zero3", stage=3, lora=True)


def train(codes: str, init_from: str, out: Path, stage: int, lora: bool) -> None:
    rank = dist.get_rank()
    data = TalkerDataModule(codes, val_fraction=0.0, num_workers=0)
    data.setup()
    batches = [to_bf16(collate_talker([data.train_set[(2 * s + rank, 100 + s)]])) for s in range(2)]
    torch.manual_seed(0)
    task = TalkerTask(init_from=init_from, lr=1e-2, warmup_steps=0, lora=LORA if lora else None,
                      train_language_rows=["english"] if lora else None,
                      speaker_encoder="joint" if lora else "frozen")  # frozen weights on both paths
    initial = {k: v.detach().clone() for k, v in task.state_dict().items()}
    trainable = [name for name, p in task.named_parameters() if p.requires_grad]
    task._trainer = SimpleNamespace(estimated_stepping_batches=10)
    optimizer = task.configure_optimizers()["optimizer"]
    task._trainer = None
    config = {"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": stage}, "bf16": {"enabled": True},
              "zero_allow_untested_optimizer": True}
    engine, *_ = deepspeed.initialize(model=task, optimizer=optimizer, config=config,
                                      model_parameters=[p for p in task.parameters() if p.requires_grad])
    task.forward = lambda batch: task.losses(batch).total  # Lightning runs training_step as the engine's forward
    for batch in batches:
        loss = engine(batch)
        engine.backward(loss)
        engine.step()

    if stage == 3:
        engine_copy = engine._zero3_consolidated_16bit_state_dict()
    else:
        engine_copy = {k: v.detach().cpu().clone() for k, v in task.state_dict().items()}
    state = gather_full_state(DeepSpeedStrategy(stage=stage), task)
    # a DeepSpeed checkpoint folder as Lightning's DeepSpeedStrategy writes it (tag "checkpoint", the trainer state
    # as client state), for qtts.runs to open in one process
    engine.save_checkpoint(str(out / "deepspeed.ckpt"), tag="checkpoint",
                           client_state={"hyper_parameters": dict(task.hparams), "global_step": 2})
    if rank == 0:
        assert state is not None
        task.export(out / "export", state=state)
        torch.save({"initial": initial, "engine": engine_copy, "gathered": state, "trainable": trainable},
                   out / "reference.pt")
    else:
        assert state is None
    dist.barrier()


if __name__ == "__main__":
    main(*sys.argv[1:4])
