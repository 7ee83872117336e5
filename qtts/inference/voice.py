"""A reusable voice-clone prompt: what a Base model needs of a reference recording, computed once.

``xvector`` is the speaker encoder's vector of the reference (the x-vector slot of the prefill);
``ref_codes`` and ``ref_text`` turn on in-context cloning (the reference's codes and transcript continue into
the new text). Saving it lets a service clone a voice without the reference audio or the encoders.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from qtts.models.checkpoint import atomic_write


@dataclass
class VoicePrompt:
    xvector: torch.Tensor  # (talker width,)
    ref_codes: torch.Tensor | None = None  # (frames, 16) long; None: x-vector only
    ref_text: str | None = None

    def __post_init__(self):
        if (self.ref_codes is None) != (self.ref_text is None):
            raise ValueError("in-context cloning needs both ref_codes and ref_text (or neither, for x-vector only)")
        if self.xvector.dim() != 1:
            raise ValueError(f"xvector must be 1-D, got shape {tuple(self.xvector.shape)}")
        if self.ref_codes is not None and (self.ref_codes.dim() != 2 or self.ref_codes.shape[0] == 0):
            raise ValueError(f"ref_codes must be (frames >= 1, groups), got shape {tuple(self.ref_codes.shape)}")

    @property
    def in_context(self) -> bool:
        return self.ref_codes is not None

    def save(self, path: str | os.PathLike) -> None:
        """One ``.safetensors`` file (tensors, with the transcript in its metadata)."""
        tensors = {"xvector": self.xvector.detach().cpu().contiguous()}
        if self.ref_codes is not None:
            tensors["ref_codes"] = self.ref_codes.detach().cpu().long().contiguous()
        metadata = {"qtts": "voice_prompt", "ref_text": json.dumps(self.ref_text)}
        atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=metadata))

    @classmethod
    def load(cls, path: str | os.PathLike) -> VoicePrompt:
        from safetensors import safe_open

        path = Path(path)
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
        if metadata.get("qtts") != "voice_prompt":
            raise ValueError(f"{path}: not a voice prompt written by VoicePrompt.save")
        tensors = load_file(str(path))
        return cls(tensors["xvector"], tensors.get("ref_codes"), json.loads(metadata["ref_text"]))
