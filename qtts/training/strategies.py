"""FSDP2 through Lightning's ``ModelParallelStrategy``: tasks shard themselves in ``configure_model``.

``FSDP2Strategy`` adds three things to Lightning's strategy: data-parallel over every process by default
(``tensor_parallel_size=1``), the ``fully_shard`` settings (mixed-precision policy, resharding) that tasks read
through ``fully_shard_kwargs()``, and atomic distributed checkpoints: every rank writes its shard into
``.NAME.tmp/`` and rank 0 swaps the folder in, so a kill mid-save never leaves a half-written ``last.ckpt/``.

A distributed checkpoint is a folder (``NAME.ckpt/`` with ``meta.pt``, the trainer state, and one
``*.distcp`` shard per rank); it resumes under the same strategy with any number of processes.
"""

from __future__ import annotations

import os
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.fabric.plugins.collectives.torch_collective import default_pg_timeout
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.strategies import ModelParallelStrategy


def _dtype(name: str | None) -> torch.dtype | None:
    if name is None:
        return None
    dtype = getattr(torch, str(name).removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"not a torch dtype: {name!r}")
    return dtype


class FSDP2Strategy(ModelParallelStrategy):
    """param_dtype / reduce_dtype: the ``MixedPrecisionPolicy`` of every shard (``bfloat16`` compute with
    ``float32`` gradient reduction by default; ``param_dtype: null`` trains in float32). Sharded parameters and
    optimizer state stay float32 either way. Use with ``precision: 32-true`` (the policy does the casting)."""

    def __init__(self, param_dtype: str | None = "bfloat16", reduce_dtype: str | None = "float32",
                 reshard_after_forward: bool = True, data_parallel_size: Literal["auto"] | int = "auto",
                 tensor_parallel_size: int = 1, save_distributed_checkpoint: bool = True,
                 process_group_backend: str | None = None, timeout: timedelta | None = default_pg_timeout):
        super().__init__(data_parallel_size=data_parallel_size, tensor_parallel_size=tensor_parallel_size,
                         save_distributed_checkpoint=save_distributed_checkpoint,
                         process_group_backend=process_group_backend, timeout=timeout)
        self.param_dtype = _dtype(param_dtype)
        self.reduce_dtype = _dtype(reduce_dtype)
        self.reshard_after_forward = reshard_after_forward

    def setup_environment(self) -> None:
        if self._data_parallel_size == "auto":  # Lightning's "auto" means one replica per node; here: all processes
            world = self.num_nodes * self.num_processes
            if world % int(self._tensor_parallel_size):
                raise ValueError(f"world size {world} is not a multiple of tensor_parallel_size "
                                 f"{self._tensor_parallel_size}")
            self._data_parallel_size = world // int(self._tensor_parallel_size)
        super().setup_environment()

    def fully_shard_kwargs(self, root: bool = False) -> dict[str, Any]:
        """Keyword arguments for ``torch.distributed.fsdp.fully_shard``. The root keeps its forward inputs as
        they are (float32 audio features are computed before the cast to the weights' dtype)."""
        from torch.distributed.fsdp import MixedPrecisionPolicy

        kwargs: dict[str, Any] = {"mesh": self.device_mesh["data_parallel"],
                                  "reshard_after_forward": self.reshard_after_forward}
        if self.param_dtype is not None or self.reduce_dtype is not None:
            kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=self.param_dtype, reduce_dtype=self.reduce_dtype,
                                                       cast_forward_inputs=not root)
        return kwargs

    def save_checkpoint(self, checkpoint: dict[str, Any], filepath: _PATH, storage_options: Any = None) -> None:
        if not self._save_distributed_checkpoint:  # one file through the CheckpointIO plugin
            return super().save_checkpoint(checkpoint, filepath, storage_options)
        path = Path(self.broadcast(str(filepath)))
        tmp = path.with_name(f".{path.name}.tmp")
        if self.global_rank == 0 and tmp.exists():
            shutil.rmtree(tmp)
        self.barrier()
        super().save_checkpoint(checkpoint, tmp, storage_options)
        self.barrier()
        if self.global_rank == 0:
            _swap_in(tmp, path)
        self.barrier()


def _swap_in(new: Path, path: Path) -> None:
    """Replace ``path`` (folder, file or nothing) by the folder ``new``; the old one is gone only once the new
    one is in place."""
    if not path.exists():
        os.replace(new, path)
        return
    old = path.with_name(f".{path.name}.old")
    if old.is_dir():
        shutil.rmtree(old)
    elif old.exists():
        old.unlink()
    os.replace(path, old)
    os.replace(new, path)
    if old.is_dir():
        shutil.rmtree(old)
    else:
        old.unlink()


# -- the full weights at the end of a run (exports) -----------------------------------------------------------
GatherMethod = Literal["deepspeed", "fsdp", "module"]


def full_state_method(strategy: Any) -> GatherMethod:
    """How ``gather_full_state`` collects the full weights under ``strategy`` (a Lightning strategy, or None):

    - ``deepspeed`` (``DeepSpeedStrategy``, every ZeRO stage): each trained parameter from the optimizer's float32
      master (``deepspeed.utils.safe_get_full_fp32_param``, gathered from its partitions), each frozen one from the
      engine's copy (``deepspeed.zero.GatheredParameters`` under ZeRO-3). The module's own parameters are not the
      trained values: under ``bf16-mixed``/``16-mixed`` the engine keeps 16-bit copies of the float32 masters (ZeRO-1/2
      full on every rank, masters partitioned; ZeRO-3 both partitioned), and ZeRO-3's consolidated state dict
      (``_zero3_consolidated_16bit_state_dict``) returns those 16-bit copies too.
    - ``fsdp`` (Lightning's ``FSDPStrategy``, FSDP1): ``get_model_state_dict`` on the strategy's root
      ``FullyShardedDataParallel`` wrapper (the task's own submodules hold only flat shards).
    - ``module`` (anything else: FSDP2 / ``ModelParallelStrategy``, whose ``fully_shard`` modules live inside the
      task; DDP; one device; no trainer): ``get_model_state_dict`` on the task itself.
    """
    from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy

    if isinstance(strategy, DeepSpeedStrategy):
        return "deepspeed"
    if isinstance(strategy, FSDPStrategy):
        return "fsdp"
    return "module"


def holds_full_weights(strategy: Any) -> bool:
    """Whether every rank's own modules hold the full trained weights (one device, DDP): an export then reads them
    as they are, with no gather and no second copy of the model."""
    from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, SingleDeviceStrategy

    return isinstance(strategy, (SingleDeviceStrategy, DDPStrategy)) and not isinstance(strategy, DeepSpeedStrategy)


def gather_full_state(strategy: Any, module: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """The full (unsharded) state dict of ``module`` (the LightningModule; its own key names) as CPU tensors on
    global rank 0, None on the other ranks. A collective under sharded strategies: every rank must call it, in the
    same place (``on_train_end``). Parameters are float32 where training kept float32 masters (FSDP1/2 shards,
    DeepSpeed's optimizer) and otherwise as held (a DeepSpeed engine's 16-bit copy of a frozen weight)."""
    import torch.distributed as dist

    rank0 = not dist.is_initialized() or dist.get_rank() == 0
    method = full_state_method(strategy)
    if method == "deepspeed":
        state = _deepspeed_full_state(module, rank0)
    else:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        root = strategy.model if method == "fsdp" else module
        state = get_model_state_dict(root, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return state if rank0 else None


def _deepspeed_full_state(module: torch.nn.Module, rank0: bool) -> dict[str, torch.Tensor]:
    """One parameter at a time (the largest, the text table, is the peak memory), on every rank in the same order:
    both gathers are collectives."""
    import deepspeed
    from deepspeed.utils import safe_get_full_fp32_param

    state: dict[str, torch.Tensor] = {}
    seen: dict[int, str] = {}
    for name, value in module.state_dict(keep_vars=True).items():
        if not isinstance(value, torch.nn.Parameter):  # buffers: ZeRO never partitions them
            if rank0:
                state[name] = value.detach().to("cpu", copy=True)
            continue
        if id(value) in seen:  # a tied parameter: gathered once
            if rank0:
                state[name] = state[seen[id(value)]]
            continue
        seen[id(value)] = name
        full = safe_get_full_fp32_param(value)  # trained: the optimizer's float32 master; frozen: None
        if full is not None:
            if rank0:
                state[name] = full.detach().to("cpu", copy=True)
            continue
        with deepspeed.zero.GatheredParameters([value], modifier_rank=None):  # a no-op unless ZeRO-3 partitioned it
            if rank0:
                state[name] = value.detach().to("cpu", copy=True)
    return state
