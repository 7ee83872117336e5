"""Log audio and spectrogram pictures to whichever loggers a run has (wandb, TensorBoard, CSV folder)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from qtts.audio.io import save_audio

ROLLOUT_CLIPS = 3  # sampled utterances a post-training validation logs (log_rollout_audio)
# Anchor colours of a dark-to-bright perceptual ramp (black, purple, orange, pale yellow).
_RAMP = np.array([[0, 0, 4], [80, 18, 123], [182, 54, 121], [251, 136, 97], [252, 253, 191]], dtype=np.float32)


def spectrogram_image(spec: torch.Tensor, floor_db: float = 80.0) -> np.ndarray:
    """``(freq, time)`` log-magnitude features → ``(freq, time, 3)`` uint8, low frequencies at the bottom."""
    x = spec.detach().float().cpu().numpy()
    x = np.clip(x - x.max(), -floor_db / 20 * np.log(10), 0.0) if x.size else x
    x = (x - x.min()) / max(float(x.max() - x.min()), 1e-8)
    pos = x * (len(_RAMP) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(_RAMP) - 2)
    frac = (pos - lo)[..., None]
    rgb = _RAMP[lo] * (1 - frac) + _RAMP[lo + 1] * frac
    return np.ascontiguousarray(rgb[::-1].astype(np.uint8))


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    """A minimal RGB PNG writer, so pictures need no imaging library."""
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(png)


def log_audio(loggers: Iterable, tag: str, wav: torch.Tensor, sample_rate: int, step: int,
              spec: torch.Tensor | None = None) -> None:
    """Send one clip (and optionally its ``(freq, time)`` spectrogram) to every logger that can take it."""
    wav = wav.detach().float().cpu().flatten()
    image = spectrogram_image(spec) if spec is not None else None
    for logger in loggers:
        kind = type(logger).__name__
        if kind == "WandbLogger":
            import wandb

            payload = {f"{tag}/audio": wandb.Audio(wav.numpy(), sample_rate=sample_rate)}
            if image is not None:
                payload[f"{tag}/spectrogram"] = wandb.Image(image)
            logger.experiment.log(payload, step=step)
        elif kind == "TensorBoardLogger":
            logger.experiment.add_audio(f"{tag}/audio", wav[None], step, sample_rate)
            if image is not None:
                logger.experiment.add_image(f"{tag}/spectrogram", image, step, dataformats="HWC")
        elif getattr(logger, "log_dir", None):
            folder = Path(logger.log_dir) / "media"
            save_audio(folder / f"{tag.replace('/', '_')}-step{step:08d}.wav", wav, sample_rate)
            if image is not None:
                write_png(folder / f"{tag.replace('/', '_')}-step{step:08d}.png", image)


def log_rollout_audio(loggers: Iterable, tag: str, rollouts, step: int, count: int = ROLLOUT_CLIPS) -> int:
    """The first sample of each of the first ``count`` prompts of decoded ``rollouts`` (``qtts.inference.rollouts``)
    to every logger, as ``TAG_0``, ``TAG_1``, …: what the post-training tasks (GSPO, DPO) let a person listen to at
    each validation. Returns how many clips were logged (0 when the rollouts have no audio)."""
    if not rollouts.audio:
        return 0
    logged = min(count, rollouts.num_prompts)
    for prompt in range(logged):
        row = rollouts.group(prompt).start
        log_audio(loggers, f"{tag}_{prompt}", rollouts.audio[row], rollouts.sample_rate, step)
    return logged
