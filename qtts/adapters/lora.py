"""LoRA on the talker through peft: target presets, standard peft adapter folders, several adapters at inference.

The presets name the released modules (``talker.model.layers.N.self_attn.q_proj`` …), so an adapter trained here is
an ordinary peft adapter of the released model. peft changes the model in place (a LoRA layer wraps each target);
the qtts code keeps calling the same ``TTSModel``, and the ``PeftModel`` returned by ``add_lora`` /
``load_adapters`` is only the handle that saves, loads, switches and merges adapters.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer

from qtts.models.talker import TTSModel

PRESETS = {
    "attention": r"talker\.model\.layers\.\d+\.self_attn\.(q|k|v|o)_proj",
    "mlp": r"talker\.model\.layers\.\d+\.mlp\.(gate|up|down)_proj",
    "predictor": r"talker\.code_predictor\.model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)",
    "embeddings": r"talker\.model\.(codec_embedding|text_embedding)",
}


@dataclass
class LoraSettings:
    """``targets``: preset names (``PRESETS``); ``r``/``alpha``/``dropout`` as in the LoRA paper (scale alpha / r)."""

    targets: list[str] = field(default_factory=lambda: ["attention", "mlp"])
    r: int = 16
    alpha: float = 32.0
    dropout: float = 0.05

    def __post_init__(self):
        unknown = sorted(set(self.targets) - set(PRESETS))
        if unknown or not self.targets:
            raise ValueError(f"LoRA targets must be among {sorted(PRESETS)}, got {self.targets}")
        if self.r < 1:
            raise ValueError(f"LoRA rank r must be >= 1, got {self.r}")

    def peft_config(self) -> LoraConfig:
        pattern = "^(" + "|".join(PRESETS[t] for t in self.targets) + ")$"
        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout, target_modules=pattern)


def add_lora(model: TTSModel, settings: LoraSettings, name: str = "default") -> PeftModel:
    """Wrap the targets with a new trainable adapter and freeze everything else (in place)."""
    return get_peft_model(model, settings.peft_config(), adapter_name=name)


def load_adapters(model: TTSModel, folders: dict[str, str | os.PathLike], trainable: bool = False) -> PeftModel:
    """Load peft adapter folders (``{name: folder}``) onto ``model``; the first becomes the active one."""
    names = list(folders)
    if not names:
        raise ValueError("no adapters to load")
    peft_model = PeftModel.from_pretrained(model, str(folders[names[0]]), adapter_name=names[0], is_trainable=trainable)
    for name in names[1:]:
        peft_model.load_adapter(str(folders[name]), adapter_name=name, is_trainable=trainable)
    return peft_model


def lora_layers(model: torch.nn.Module) -> list[LoraLayer]:
    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def set_adapter(model: torch.nn.Module, name: str | None, scale: float = 1.0) -> None:
    """Use adapter ``name`` at ``scale`` (its trained strength × scale), or none (``name=None``: the base model)."""
    layers = lora_layers(model)
    if not layers:
        raise ValueError("the model has no LoRA adapters")
    for layer in layers:
        if name is None:
            layer.enable_adapters(False)
            continue
        if name not in layer.lora_A and name not in getattr(layer, "lora_embedding_A", {}):
            raise ValueError(f"no adapter {name!r}; loaded: {sorted(adapter_names(model))}")
        layer.enable_adapters(True)
        layer.set_adapter(name)
        layer.scaling[name] = layer.lora_alpha[name] / layer.r[name] * scale


def adapter_names(model: torch.nn.Module) -> set[str]:
    return {name for layer in lora_layers(model) for name in layer.r}


@torch.no_grad()
def merge_lora(peft_model: PeftModel) -> TTSModel:
    """Fold the active adapter into the weights and drop the LoRA layers: a plain model with the released keys."""
    return peft_model.merge_and_unload()


def save_adapter(peft_model: PeftModel, folder: str | os.PathLike, name: str = "default",
                 base: str | os.PathLike | None = None) -> Path:
    """A standard peft adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``); ``base``, the model
    folder it was trained on, is recorded as its ``base_model_name_or_path`` (``qtts.runs`` opens it from there)."""
    folder = Path(folder)
    if base is not None:
        peft_model.peft_config[name].base_model_name_or_path = str(Path(base).resolve())
    peft_model.save_pretrained(str(folder), selected_adapters=[name])
    nested = folder / name  # peft puts non-default adapters in a subfolder
    return nested if name != "default" and nested.is_dir() else folder
