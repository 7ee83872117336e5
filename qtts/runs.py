"""Open anything a talker run leaves behind: the model, and where its codec, tokenizer and sampling settings are.

One reader for every consumer (``Synthesizer``, ``qtts synth``, ``qtts export``, ``qtts eval-talker``, the demo),
so a folder that opens for one opens for all. Accepted sources:

- a model folder (released, or a qtts ``export/``): ``config.json`` + weights;
- a run folder: its ``export/`` when the run finished, else its newest checkpoint (the run's settings come from
  that checkpoint either way);
- a checkpoint: a Lightning ``.ckpt`` file (full, or LoRA: the adapters and trained rows are applied to the run's
  ``init_from`` and merged), a distributed checkpoint folder (FSDP2 / FSDP1 sharded: ``meta.pt`` + ``*.distcp``)
  or a DeepSpeed folder (``latest`` + ``checkpoint/``); sharded weights are gathered into one state here;
- a peft ``adapter/`` folder of a LoRA run: applied to the base it names (its run's ``init_from``).

Nothing here imports Lightning or Hydra: opening a run for inference costs only the model's own imports.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from qtts.models.checkpoint import CONFIG_NAME
from qtts.models.codec.model import SUBFOLDER
from qtts.models.talker import TTSConfig, TTSModel
from qtts.text.tokenizer import has_tokenizer

DISTRIBUTED_METADATA = "meta.pt"  # the trainer state inside a distributed checkpoint folder (Lightning's name)
ADAPTER_CONFIG = "adapter_config.json"
TASK_PREFIX = "model."  # the task's state-dict prefix of the TTSModel's keys


@dataclass
class Trained:
    """A model opened from ``source``, and where its extras are.

    ``settings``: the run's task settings (``codec``, ``init_from``, ``lora``, …; empty for a plain model folder).
    ``folder``: the released-layout folder holding ``speech_tokenizer/``, tokenizer files and the generation
    config for this model: the model folder itself, or the folder the run started from.
    ``tokenizer_folder``: the folder of the text tokenizer (an adapter's own when it added tokens), or None for the
    built-in Qwen2 BPE.
    """

    model: TTSModel
    source: Path
    settings: dict[str, Any] = field(default_factory=dict)
    folder: Path | None = None
    tokenizer_folder: Path | None = None

    @property
    def init_from(self) -> str | None:
        """The folder the model was trained from (for a model folder: itself)."""
        value = self.settings.get("init_from")
        return str(value) if value else (str(self.folder) if self.folder is not None else None)

    @property
    def codec_folder(self) -> Path | None:
        """The speech tokenizer: the run's ``codec``, else the ``speech_tokenizer/`` of ``folder``."""
        if self.settings.get("codec"):
            return Path(self.settings["codec"])
        if self.folder is not None and (self.folder / SUBFOLDER / CONFIG_NAME).is_file():
            return self.folder
        return None

    def text_tokenizer(self):
        from qtts.text.tokenizer import load_text_tokenizer

        return load_text_tokenizer(self.tokenizer_folder)

    def speech_tokenizer(self, codec: str | os.PathLike | None = None):
        from qtts.models.codec.model import SpeechTokenizer

        codec = codec if codec is not None else self.codec_folder
        if codec is None:
            raise FileNotFoundError(f"{self.source}: no {SUBFOLDER}/ (nor a run codec); pass codec= (a speech "
                                    "tokenizer folder)")
        return SpeechTokenizer.from_pretrained(codec)


def open_trained(source: str | os.PathLike, dtype: torch.dtype | None = torch.float32) -> Trained:
    """Open a model folder, run folder, checkpoint (file or sharded folder) or adapter folder (see the module
    docstring). ``dtype=None`` keeps the stored dtypes."""
    source = Path(source)
    if (source / CONFIG_NAME).is_file():
        model = TTSModel.from_pretrained(source, dtype=dtype)
        return Trained(model, source, {}, source, source if has_tokenizer(source) else None)
    if (source / ADAPTER_CONFIG).is_file():
        return _open_adapter(source, dtype)
    if is_checkpoint(source):
        return _open_checkpoint(source, dtype)
    if (source / "checkpoints").is_dir() or (source / "export" / CONFIG_NAME).is_file():  # a run folder
        checkpoint = newest_checkpoint(source)
        if (source / "export" / CONFIG_NAME).is_file():
            opened = open_trained(source / "export", dtype)
            settings = _settings(Path(checkpoint))[0] if checkpoint else {}
            return Trained(opened.model, source, settings, opened.folder, opened.tokenizer_folder)
        if checkpoint is None:
            raise FileNotFoundError(f"{source}: a run folder without export/ and without checkpoints")
        return _open_checkpoint(Path(checkpoint), dtype)
    raise FileNotFoundError(f"{source}: not a model folder, run folder, checkpoint or adapter folder")


# -- checkpoints ---------------------------------------------------------------------------------------------


def newest_checkpoint(run_dir: str | os.PathLike) -> str | None:
    """The checkpoint with the highest step under ``run_dir/checkpoints``: ``*.ckpt`` files, or ``*.ckpt``
    folders (distributed checkpoints of FSDP2 / FSDP1 / DeepSpeed). An unreadable one is an error naming it."""
    ckpts = [p for p in (Path(run_dir) / "checkpoints").glob("*.ckpt") if is_checkpoint(p)]
    if not ckpts:
        return None
    return str(max(ckpts, key=lambda p: (checkpoint_step(p), p.stat().st_mtime)))


def is_checkpoint(path: str | os.PathLike) -> bool:
    """A checkpoint file, a distributed checkpoint folder (``meta.pt``) or a DeepSpeed folder (``latest``)."""
    path = Path(path)
    return path.is_file() or is_distributed_checkpoint(path) or is_deepspeed_checkpoint(path)


def is_distributed_checkpoint(path: str | os.PathLike) -> bool:
    path = Path(path)
    return path.is_dir() and (path / DISTRIBUTED_METADATA).is_file()


def is_deepspeed_checkpoint(path: str | os.PathLike) -> bool:
    path = Path(path)
    return path.is_dir() and (path / "latest").is_file()


def checkpoint_step(path: str | os.PathLike) -> int:
    """A checkpoint's global step: from its name (``step_N``), else read from its trainer state."""
    path = Path(path)
    if path.stem.startswith("step_") and path.stem[5:].isdigit():
        return int(path.stem[5:])
    return int(_trainer_state(path).get("global_step", -1))


def _trainer_state(path: Path) -> dict[str, Any]:
    """Everything of a checkpoint but its tensors' bulk: the whole file (memory-mapped), or a sharded folder's
    trainer-state file. Read as plain data (``weights_only``: nothing in a checkpoint runs code, nor imports
    Lightning); DeepSpeed's own files pickle its objects. Unreadable: a ValueError naming the file."""
    plain = True
    if is_distributed_checkpoint(path):
        path = path / DISTRIBUTED_METADATA
    elif is_deepspeed_checkpoint(path):
        path, plain = _deepspeed_model_states(path), False
    try:
        state = torch.load(path, map_location="cpu", weights_only=plain, mmap=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a damaged file; name the file
        raise ValueError(f"{path}: cannot read checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a checkpoint (a {type(state).__name__}, not a dict)")
    return state


def _deepspeed_model_states(folder: Path) -> Path:
    tag = (folder / "latest").read_text().strip()
    files = sorted((folder / tag).glob("*model_states.pt"))
    if not files:
        raise ValueError(f"{folder / tag}: no *model_states.pt in this DeepSpeed checkpoint")
    return files[0]


def _settings(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the task's settings, the whole trainer state) of a checkpoint."""
    state = _trainer_state(path)
    settings = state.get("hyper_parameters")
    if not isinstance(settings, dict) or not isinstance(settings.get("model"), dict):
        raise ValueError(f"{path}: not a talker training checkpoint (no hyper_parameters.model)")
    return dict(settings), state


def _task_state(path: Path, trainer_state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The task's full (unsharded) state dict of a checkpoint file or folder."""
    if is_distributed_checkpoint(path):
        return _read_distributed(path)
    if is_deepspeed_checkpoint(path):
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        state = get_fp32_state_dict_from_zero_checkpoint(str(path))
        return {k.removeprefix("_forward_module."): v for k, v in state.items()}
    if "state_dict" not in trainer_state:
        raise ValueError(f"{path}: no state_dict")
    return trainer_state["state_dict"]


def _read_distributed(path: Path) -> dict[str, torch.Tensor]:
    """The model part of a distributed checkpoint (torch.distributed.checkpoint), gathered in this one process:
    Lightning's ModelParallelStrategy (FSDP2) stores it under ``state_dict``, FSDPStrategy (FSDP1) under
    ``model``; optimizer shards are not read."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

    reader = FileSystemReader(str(path))
    keys = {k.split(".")[0] for k in reader.read_metadata().state_dict_metadata}
    top = next((k for k in ("state_dict", "model") if k in keys), None)
    if top is None:
        raise ValueError(f"{path}: a distributed checkpoint without model weights (has {sorted(keys)})")
    state: dict[str, Any] = {}
    try:
        _load_state_dict(state, storage_reader=reader, planner=_EmptyStateDictLoadPlanner(keys={top}), no_dist=True)
    except Exception as e:  # noqa: BLE001 - name the folder whatever the reader raised
        raise ValueError(f"{path}: cannot read the distributed checkpoint ({type(e).__name__}: {e})") from e
    return state[top]


def _open_checkpoint(path: Path, dtype: torch.dtype | None) -> Trained:
    settings, trainer_state = _settings(path)
    task_state = _task_state(path, trainer_state)
    folder = _folder(settings.get("init_from"))
    if settings.get("lora"):
        model = _lora_model(path, settings, task_state)
    else:
        weights = {k[len(TASK_PREFIX):]: v for k, v in task_state.items() if k.startswith(TASK_PREFIX)}
        model = TTSModel.from_state(TTSConfig.from_dict(settings["model"]), weights, path, dtype=None)
        _fold_trained_rows(model, task_state, path)
    model = model.eval()
    if dtype is not None:
        model = model.to(dtype)
    tokenizer = folder if has_tokenizer(folder) else None
    return Trained(model, path, settings, folder, tokenizer)


def _lora_model(path: Path, settings: dict[str, Any], task_state: dict[str, torch.Tensor]) -> TTSModel:
    """A LoRA checkpoint holds the adapters and the trained rows: apply them to ``init_from``, then merge."""
    from qtts.adapters.lora import LoraSettings, add_lora, merge_lora

    if not settings.get("init_from"):
        raise ValueError(f"{path}: a LoRA checkpoint needs its run's init_from model, which is not recorded")
    model = TTSModel.from_pretrained(settings["init_from"], dtype=torch.float32)
    peft_model = add_lora(model, LoraSettings(**settings["lora"]))
    trained = {k[len(TASK_PREFIX):]: v for k, v in task_state.items() if k.startswith(TASK_PREFIX)}
    expected = model.state_dict()
    unknown = [k for k in trained if k not in expected]
    if unknown:
        raise ValueError(f"{path}: keys that the LoRA model of init_from does not have: {unknown[:5]}")
    model.load_state_dict(trained, strict=False)
    _fold_trained_rows(model, task_state, path)
    return merge_lora(peft_model)


def _fold_trained_rows(model: TTSModel, task_state: dict[str, torch.Tensor], path: Path) -> None:
    """Write the rows a run trained on frozen tables (``TalkerTask.trained_rows``) into the model's tables."""
    from qtts.adapters.trained_rows import fold_saved_rows

    try:
        fold_saved_rows(model, task_state)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e


# -- adapters ------------------------------------------------------------------------------------------------


def _open_adapter(folder: Path, dtype: torch.dtype | None) -> Trained:
    """A LoRA run's ``adapter/`` applied to its base (the ``base_model_name_or_path`` it names, else the run's
    ``init_from``), merged."""
    from qtts.adapters.added_rows import apply_added_rows, has_added_rows
    from qtts.adapters.lora import load_adapters, merge_lora

    base = adapter_base(folder)
    opened = open_trained(base, dtype=torch.float32)
    model = opened.model
    if has_added_rows(folder):
        apply_added_rows(model, folder)
    model = merge_lora(load_adapters(model, {"default": folder})).eval()
    if dtype is not None:
        model = model.to(dtype)
    tokenizer = folder if has_tokenizer(folder) else opened.tokenizer_folder
    return Trained(model, folder, {"init_from": str(base)}, opened.folder, tokenizer)


def adapter_base(folder: str | os.PathLike) -> Path:
    """The model folder a LoRA adapter folder was trained on."""
    folder = Path(folder)
    try:
        named = json.loads((folder / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    except ValueError as e:
        raise ValueError(f"{folder / ADAPTER_CONFIG}: {e}") from e
    if named and (Path(named) / CONFIG_NAME).is_file():
        return Path(named)
    run = folder.parent
    checkpoint = newest_checkpoint(run) if (run / "checkpoints").is_dir() else None
    init_from = _settings(Path(checkpoint))[0].get("init_from") if checkpoint else None
    if init_from and (Path(init_from) / CONFIG_NAME).is_file():
        return Path(init_from)
    raise FileNotFoundError(f"{folder}: cannot find the base model of this adapter (base_model_name_or_path "
                            f"{named!r} is not a model folder, and no run checkpoint above it names init_from)")


def _folder(path: str | os.PathLike | None) -> Path | None:
    return Path(path) if path is not None and Path(path).is_dir() else None
