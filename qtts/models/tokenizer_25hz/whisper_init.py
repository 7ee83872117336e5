"""Initialise the 25 Hz tokenizer's encoder from a local Whisper checkpoint (a transformers folder: Whisper, or the
Qwen2-Audio audio tower, which is Whisper's encoder), as stage 1 starts in the paper (Qwen2-Audio continually
pretrained) — ``reference/tokenizer-25hz.md`` §3.

The encoder is Whisper's with the VQ modules inserted after block ``audio_vq_layers``, so the stem, every block and
the final norm map one to one (``model.encoder.layers.i.self_attn.q_proj`` → ``blocks.i.attn.query``, …); the VQ's
down/up-sampling convs, codebook, ``project_after_vq_pe``, ``proj`` and ``audio_bos_eos_token`` are not in Whisper
and keep their initialisation. Whisper's positions are fixed sinusoids, which the encoder computes itself: the file's
are checked against them rather than copied.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from qtts.models.checkpoint import CONFIG_NAME, load_weights, read_json
from qtts.models.tokenizer_25hz.encoder import WhisperVQEncoder, sinusoids

WHISPER_MODEL_TYPES = ("whisper", "qwen2_audio", "qwen2_audio_encoder")
PREFIXES = ("model.encoder.", "encoder.", "audio_tower.", "")  # WhisperForConditionalGeneration, WhisperModel, …
LAYER_NAMES = {
    "self_attn.q_proj": "attn.query", "self_attn.k_proj": "attn.key", "self_attn.v_proj": "attn.value",
    "self_attn.out_proj": "attn.out", "self_attn_layer_norm": "attn_ln", "final_layer_norm": "mlp_ln",
    "fc1": "mlp.0", "fc2": "mlp.2",
}
TOP_NAMES = {"conv1": "conv1", "conv2": "conv2", "layer_norm": "ln_post"}


def whisper_to_encoder_keys(weights: dict[str, torch.Tensor], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """A Whisper encoder's tensors (any of the prefixes above) → ``WhisperVQEncoder`` keys; decoder and projector
    tensors are left out. ``source`` names the file in errors."""
    prefix = next((p for p in PREFIXES if f"{p}conv1.weight" in weights), None)
    if prefix is None:
        raise ValueError(f"{source}: no Whisper encoder in it (no conv1.weight under {[p for p in PREFIXES if p]})")
    layer = re.compile(r"layers\.(\d+)\.(.+)\.(weight|bias)$")
    out: dict[str, torch.Tensor] = {}
    for key, value in weights.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        top, _, leaf = name.rpartition(".")
        if top in TOP_NAMES and leaf in ("weight", "bias"):
            out[f"{TOP_NAMES[top]}.{leaf}"] = value
        elif (match := layer.match(name)) and match.group(2) in LAYER_NAMES:
            out[f"blocks.{match.group(1)}.{LAYER_NAMES[match.group(2)]}.{match.group(3)}"] = value
        elif name == "embed_positions.weight":
            out["positional_embedding"] = value
    return out


def init_from_whisper_(encoder: WhisperVQEncoder, folder: str | os.PathLike) -> list[str]:
    """Copy a local Whisper folder's encoder into ``encoder`` (in place); returns the encoder's keys Whisper does
    not have (they keep their initialisation). Every Whisper block must find a block: the counts, widths and mel
    bins must match, and a mismatch is an error naming the folder and the keys."""
    folder = Path(folder)
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        raise FileNotFoundError(f"Whisper folder {folder} has no {CONFIG_NAME} (expected a transformers Whisper or "
                                "Qwen2-Audio folder)")
    model_type = read_json(config_path).get("model_type")
    if model_type not in WHISPER_MODEL_TYPES:
        raise ValueError(f"{config_path}: model_type {model_type!r} is not one of {list(WHISPER_MODEL_TYPES)}")
    weights, path = load_weights(folder)
    mapped = whisper_to_encoder_keys(weights, str(path))
    positions = mapped.pop("positional_embedding", None)
    if positions is not None:
        expected = sinusoids(*positions.shape)
        if not torch.allclose(positions.float(), expected, atol=1e-4):
            raise ValueError(f"{path}: embed_positions are not Whisper's fixed sinusoids, which the encoder computes "
                             "itself; a checkpoint with learned positions cannot initialise it")
    blocks = {int(k.split(".")[1]) for k in mapped if k.startswith("blocks.")}
    if len(blocks) != encoder.config.n_layer:
        raise ValueError(f"{path}: {len(blocks)} Whisper blocks, but the encoder has encoder_config.n_layer "
                         f"{encoder.config.n_layer}")
    own = encoder.state_dict()
    wrong = [f"{k}: {tuple(v.shape)} in file, {tuple(own[k].shape)} in the encoder" for k, v in mapped.items()
             if k not in own or v.shape != own[k].shape]
    if wrong:
        raise ValueError(f"{path}: Whisper does not fit the encoder config (n_state, n_head, n_mels): "
                         + "; ".join(wrong[:5]))
    encoder.load_state_dict({k: v.to(own[k].dtype) for k, v in mapped.items()}, strict=False)
    return sorted(k for k in own if k not in mapped and k != "positional_embedding")
