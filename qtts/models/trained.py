"""Whatever training left behind → a plain ``TTSModel`` and the run's settings, for synthesis and export.

Accepted: a model folder (released or exported), a run folder (its ``export/`` when the run finished, else its
newest checkpoint), or a talker checkpoint file. A LoRA checkpoint holds only what trained (adapters, speaker
rows); its model is rebuilt from the run's ``init_from`` and the adapters are merged in.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from qtts.models.checkpoint import CONFIG_NAME
from qtts.models.talker import TTSModel


def load_trained(source: str | os.PathLike, dtype: torch.dtype | None = torch.float32) -> tuple[TTSModel, dict]:
    """(model, hparams); hparams are the run's task settings (``codec``, ``init_from``, …), empty for a folder."""
    source = Path(source)
    if source.is_dir() and (source / CONFIG_NAME).is_file():
        return TTSModel.from_pretrained(source, dtype=dtype), {"init_from": str(source)}
    from qtts.training.run import newest_checkpoint  # Hydra and Lightning: only for runs and checkpoints
    if source.is_dir():
        checkpoint = newest_checkpoint(source)
        hparams = _hparams(checkpoint) if checkpoint else {}
        if (source / "export" / CONFIG_NAME).is_file():
            return TTSModel.from_pretrained(source / "export", dtype=dtype), hparams
        if checkpoint is None or not Path(checkpoint).is_file():
            raise FileNotFoundError(f"{source}: no model folder, export/ or checkpoint file under checkpoints/")
        source = Path(checkpoint)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no model folder, run folder or checkpoint file")
    hparams = _hparams(source)
    if not hparams.get("lora"):
        return TTSModel.from_training_checkpoint(source, dtype)
    return _merged_lora(source, hparams, dtype), hparams


def _hparams(checkpoint: str | os.PathLike) -> dict[str, Any]:
    return dict(torch.load(checkpoint, map_location="cpu", weights_only=True).get("hyper_parameters") or {})


def _merged_lora(path: Path, hparams: dict, dtype: torch.dtype | None) -> TTSModel:
    from qtts.adapters.lora import LoraSettings, add_lora, merge_lora

    if not hparams.get("init_from"):
        raise ValueError(f"{path}: a LoRA checkpoint needs its run's init_from model, which is not recorded")
    model = TTSModel.from_pretrained(hparams["init_from"], dtype=torch.float32)
    peft_model = add_lora(model, LoraSettings(**hparams["lora"]))
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    trained = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    missing = [k for k in trained if k not in model.state_dict()]
    if missing:
        raise ValueError(f"{path}: keys that the LoRA model of init_from does not have: {missing[:5]}")
    model.load_state_dict(trained, strict=False)
    merged = merge_lora(peft_model).eval()
    return merged.to(dtype) if dtype is not None else merged
