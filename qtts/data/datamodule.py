"""Lightning data module for waveform tasks: corpus → split → duration-bucketed, resumable loaders."""

from __future__ import annotations

import zlib
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from qtts.audio.io import SAMPLE_RATE
from qtts.data.audio_dataset import AudioCorpus, collate_audio
from qtts.data.corpus import open_corpus
from qtts.data.sampler import DurationBatchSampler


class AudioDataModule(L.LightningDataModule):
    """Waveform crops with speaker/language labels from a corpus folder (or a clean JSONL manifest).

    The validation split takes ``val_fraction`` of the utterances by a hash of their id, so it is
    stable across runs and machines. Batches hold at most ``max_seconds_per_batch`` of padded audio.
    """

    TASK_INPUTS = ("num_speakers", "num_languages")

    def __init__(self, corpus: str, val_fraction: float = 0.1, sample_rate: int = SAMPLE_RATE,
                 crop_seconds: float | None = 3.0, max_seconds_per_batch: float = 24.0,
                 max_batch_size: int | None = None, num_buckets: int = 10, num_workers: int = 2, seed: int = 0,
                 loudness_lufs: float | None = None):
        super().__init__()
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.corpus = corpus
        self.val_fraction = val_fraction
        self.sample_rate = sample_rate
        self.crop_seconds = crop_seconds
        self.max_seconds_per_batch = max_seconds_per_batch
        self.max_batch_size = max_batch_size
        self.num_buckets = num_buckets
        self.num_workers = num_workers
        self.seed = seed
        self.loudness_lufs = loudness_lufs
        self.train_set: AudioCorpus | None = None
        self.val_set: AudioCorpus | None = None
        self._resume: dict[str, int] | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        ds = open_corpus(self.corpus)
        speakers = sorted(set(ds["speaker"]))
        languages = sorted(set(ds["language"]))
        is_val = [zlib.crc32(i.encode()) % 10_000 < self.val_fraction * 10_000 for i in ds["id"]]
        train_idx = [i for i, v in enumerate(is_val) if not v]
        val_idx = [i for i, v in enumerate(is_val) if v]
        if not train_idx:
            raise ValueError(f"{self.corpus}: no training utterances left after the validation split")
        common = dict(sample_rate=self.sample_rate, crop_seconds=self.crop_seconds, speakers=speakers,
                      languages=languages, loudness_lufs=self.loudness_lufs)
        self.train_set = AudioCorpus(ds.select(train_idx), **common)
        self.val_set = AudioCorpus(ds.select(val_idx), **common) if val_idx else None

    def task_inputs(self) -> dict[str, Any]:
        """What a task needs to know about the data to build its heads."""
        self.setup()
        return {"num_speakers": len(self.train_set.speakers), "num_languages": len(self.train_set.languages)}

    def _loader(self, dataset: AudioCorpus, shuffle: bool) -> DataLoader:
        cap = self.crop_seconds or float("inf")
        lengths = [min(d, cap) for d in dataset.rows["duration"]]
        sampler = DurationBatchSampler(lengths, self.max_seconds_per_batch, self.max_batch_size, self.num_buckets,
                                       shuffle=shuffle, seed=self.seed)
        if shuffle and self._resume is not None:
            sampler.epoch = self._resume["epoch"]
            sampler.skip_batches = self._resume["batches_done"]
            self._resume = None
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_audio, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, pin_memory=False)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        self.setup()
        return self._loader(self.val_set, shuffle=False) if self.val_set is not None else []

    # Sampler position for mid-epoch resume: Lightning stores this in the checkpoint.
    def state_dict(self) -> dict[str, int]:
        trainer = self.trainer
        if trainer is None:
            return {}
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        return {"epoch": trainer.current_epoch, "batches_done": progress.ready}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state:
            self._resume = dict(state)
