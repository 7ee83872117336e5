"""Reading and writing the official folder format: ``config.json`` + ``model.safetensors`` (or shards listed
in ``model.safetensors.index.json``), with errors that name the file and the keys, and atomic writes."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

CONFIG_NAME, WEIGHTS_NAME, INDEX_NAME = "config.json", "model.safetensors", "model.safetensors.index.json"


def read_json(path: Path) -> dict[str, Any]:
    try:
        values = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read JSON ({e})") from e
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(values).__name__}")
    return values


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` then rename over ``path``: a killed job never leaves a truncated file that looks complete."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def write_json(path: Path, values: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n"))


def weights_path(folder: Path) -> Path:
    """The file that names the weights: ``model.safetensors`` (preferred, as transformers does) or the index."""
    for name in (WEIGHTS_NAME, INDEX_NAME):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder}: no {WEIGHTS_NAME} nor {INDEX_NAME}")


def load_weights(folder: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """All tensors of a folder (one file or shards) and the path to name in errors."""
    path = weights_path(folder)
    if path.name == WEIGHTS_NAME:
        return _load(path), path
    weight_map = read_json(path).get("weight_map")
    if not isinstance(weight_map, dict):
        raise ValueError(f"{path}: no 'weight_map' object")
    weights: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        tensors = _load(folder / shard)
        stray = sorted(k for k in tensors if weight_map.get(k) != shard)
        if stray:
            raise ValueError(f"{folder / shard}: keys the index does not list for this shard: {stray[:5]}")
        weights.update(tensors)
    missing = sorted(k for k in weight_map if k not in weights)
    if missing:
        raise ValueError(f"{path}: keys listed but absent from their shard: {missing[:5]}")
    return weights, path


def save_weights(folder: Path, state: dict[str, torch.Tensor]) -> None:
    weights = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    atomic_write(folder / WEIGHTS_NAME, lambda tmp: save_file(weights, str(tmp), metadata={"format": "pt"}))


def save_folder(folder: str | os.PathLike, state: dict[str, torch.Tensor], config: dict[str, Any],
                extra: dict[str, dict[str, Any]] | None = None) -> None:
    """A released-format folder: ``model.safetensors``, the ``extra`` JSON files, then (last) ``config.json``, each
    written atomically, so a folder whose config.json exists is complete."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(folder, state)
    for name, values in (extra or {}).items():
        write_json(folder / name, values)
    write_json(folder / CONFIG_NAME, config)


def check_weights(expected: dict[str, torch.Tensor], weights: dict[str, torch.Tensor], path: Path) -> None:
    """Raise one error naming the file and every missing, unexpected or misshapen key (not just the first)."""
    problems = [f"missing {k}" for k in expected if k not in weights]
    problems += [f"unexpected {k}" for k in weights if k not in expected]
    problems += [
        f"{k}: shape {tuple(weights[k].shape)} in file, {tuple(v.shape)} in model"
        for k, v in expected.items() if k in weights and weights[k].shape != v.shape
    ]
    if problems:
        shown = "; ".join(problems[:10]) + (f"; … {len(problems) - 10} more" if len(problems) > 10 else "")
        raise ValueError(f"{path}: weights do not match the config ({shown})")


def _load(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (OSError, SafetensorError) as e:
        raise ValueError(f"{path}: cannot read weights ({e})") from e
