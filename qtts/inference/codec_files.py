"""Audio files ↔ code files with a speech tokenizer (``qtts codec encode/decode``, the demo's reconstructions).

One output per input, ``OUT/<stem>.npy`` (int64, frames × groups) or ``OUT/<stem>.wav`` (the codec's rate); each
written atomically. A failing input is reported in its result and the others go on: one bad file costs only itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from qtts.audio.io import load_audio, save_audio
from qtts.models.checkpoint import atomic_write


@dataclass
class FileResult:
    source: Path
    out: Path
    error: str | None = None  # the reason, naming the file; None when written


def encode_files(codec, inputs: Iterable[str | os.PathLike], out_dir: str | os.PathLike) -> list[FileResult]:
    """Audio files (any rate; resampled to the codec's input rate) → ``<stem>.npy`` codes."""
    def encode(path: Path, out: Path) -> None:
        wav, _ = load_audio(path, sample_rate=codec.config.input_sample_rate)
        codes = codec.encode([wav[0]])[0].cpu().numpy()
        atomic_write(out, lambda tmp: _save_npy(tmp, codes))

    return _each(inputs, out_dir, ".npy", encode)


def decode_files(codec, inputs: Iterable[str | os.PathLike], out_dir: str | os.PathLike,
                 windowed: bool = False) -> list[FileResult]:
    """``.npy`` code files (frames × groups, integers) → ``<stem>.wav``; ``windowed``: qwen-tts's windowed decode
    (``SpeechTokenizer.decode``)."""
    def decode(path: Path, out: Path) -> None:
        try:
            codes = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise ValueError(f"cannot read codes ({e})") from e
        if codes.dtype.kind not in "iu":
            raise ValueError(f"codes must be integers, got {codes.dtype}")
        wav = codec.decode([torch.from_numpy(codes.astype(np.int64))], windowed=windowed)[0]
        save_audio(out, wav.cpu(), codec.sample_rate)

    return _each(inputs, out_dir, ".wav", decode)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save would add ".npy" to the temporary name
        np.save(f, array)


def _each(inputs: Iterable[str | os.PathLike], out_dir: str | os.PathLike, suffix: str,
          convert: Callable[[Path, Path], None]) -> list[FileResult]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[FileResult] = []
    written: set[Path] = set()
    for name in inputs:
        path = Path(name)
        out = out_dir / (path.stem + suffix)
        try:
            if out in written:
                raise ValueError(f"another input already wrote {out}")
            if not path.is_file():
                raise FileNotFoundError("file not found")
            convert(path, out)
        except (OSError, RuntimeError, ValueError) as e:  # AudioError is a RuntimeError
            message = str(e) if str(e).startswith(str(path)) else f"{path}: {e}"
            results.append(FileResult(path, out, message))
            continue
        written.add(out)
        results.append(FileResult(path, out))
    return results
