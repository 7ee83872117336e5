"""Waveforms for training: rows of a corpus → 24 kHz crops with speaker and language labels.

Randomness (the crop offset) comes from the per-item seed that ``DurationBatchSampler`` hands
over with each index, so batches are identical whatever the worker count and after a resume.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from qtts.audio.io import SAMPLE_RATE, load_audio
from qtts.audio.loudness import normalize_loudness


class AudioCorpus(Dataset):
    """Map-style dataset over corpus rows (a ``datasets.Dataset`` or a list of dicts).

    crop_seconds: take a random window of this length (shorter items are returned whole);
    None returns whole utterances.
    loudness_lufs: normalise each clip to this BS.1770 loudness (None keeps the recorded level).
    with_text: items also carry the row's ``text`` and ``language`` code (ASR training); a crop would cut the
    transcript, so it needs ``crop_seconds=None``.
    """

    def __init__(self, rows: Any, sample_rate: int = SAMPLE_RATE, crop_seconds: float | None = None,
                 speakers: Sequence[str] | None = None, languages: Sequence[str] | None = None,
                 loudness_lufs: float | None = None, with_text: bool = False):
        if with_text and crop_seconds is not None:
            raise ValueError(f"with_text needs whole utterances (crop_seconds=None), got crop_seconds={crop_seconds}")
        self.rows = rows
        self.with_text = with_text
        self.sample_rate = sample_rate
        self.crop_seconds = crop_seconds
        self.loudness_lufs = loudness_lufs
        self.speakers = list(speakers) if speakers is not None else sorted(set(_column(rows, "speaker")))
        self.languages = list(languages) if languages is not None else sorted(set(_column(rows, "language")))
        self._speaker_index = {s: i for i, s in enumerate(self.speakers)}
        self._language_index = {s: i for i, s in enumerate(self.languages)}

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (key, index_seed(key))
        row = self.rows[int(index)]
        start, end = row.get("start"), row.get("end")
        if self.crop_seconds is not None and row["duration"] > self.crop_seconds:
            offset = random.Random(seed).uniform(0.0, row["duration"] - self.crop_seconds)
            start = (start or 0.0) + offset
            end = start + self.crop_seconds
        wav, _ = load_audio(row["audio"], self.sample_rate, mono=True, start=start, end=end)
        if self.loudness_lufs is not None:
            wav = normalize_loudness(wav, self.sample_rate, self.loudness_lufs)
        item = {
            "id": row["id"],
            "wav": wav[0],
            "speaker": self._speaker_index.get(row["speaker"], -1),
            "language": self._language_index.get(row["language"], -1),
        }
        if self.with_text:
            item["text"], item["language_code"] = row["text"], row["language"]
        return item


def _column(rows: Any, name: str) -> Sequence[Any]:
    """One field of every row: a ``datasets.Dataset`` is indexed by column name, a list of dicts is not."""
    return [row[name] for row in rows] if isinstance(rows, (list, tuple)) else rows[name]


def index_seed(index: int) -> int:
    return (int(index) * 2_654_435_761) & 0x7FFFFFFF


def collate_audio(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Right-pad waveforms into ``wav (B, T)`` with ``lengths (B,)`` in samples; items with transcripts
    (``AudioCorpus(with_text=True)``) add ``texts`` and ``language_codes`` (lists)."""
    lengths = torch.tensor([item["wav"].numel() for item in items])
    wav = torch.zeros(len(items), int(lengths.max()))
    for row, item in zip(wav, items):
        row[: item["wav"].numel()] = item["wav"]
    batch = {
        "ids": [item["id"] for item in items],
        "wav": wav,
        "lengths": lengths,
        "speaker": torch.tensor([item["speaker"] for item in items]),
        "language": torch.tensor([item["language"] for item in items]),
    }
    if all("text" in item for item in items):
        batch["texts"] = [item["text"] for item in items]
        batch["language_codes"] = [item["language_code"] for item in items]
    return batch
