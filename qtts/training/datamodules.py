"""Lightning data modules: corpus → stable split → length-bucketed, resumable loaders.

``SplitDataModule`` holds what every task's data shares (the hash split, the sampler and its mid-epoch
resume state); ``AudioDataModule`` serves waveform crops (speaker encoder, codec), ``TalkerDataModule``
dual-track sequences from extracted codes (the talker), ``PairDataModule`` mined preference pairs (DPO),
``PromptDataModule`` test-set prompts (GSPO / GRPO).
"""

from __future__ import annotations

import abc
import functools
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from qtts.audio.io import SAMPLE_RATE
from qtts.data.audio_dataset import AudioCorpus, collate_audio
from qtts.data.corpus import open_corpus
from qtts.data.mixture import mix_sources
from qtts.data.sampler import DurationBatchSampler
from qtts.data.talker_dataset import TalkerCorpus, collate_talker


class SplitDataModule(L.LightningDataModule, abc.ABC):
    """The validation split takes ``val_fraction`` of the rows by a hash of their id, so it is stable across
    runs and machines. A batch holds at most ``budget`` padded length units (``lengths`` of the items).
    Subclasses say how to open the rows (``open_rows``), make a dataset of a split (``make_dataset``), measure
    its items (``lengths``) and collate them (``collate``)."""

    def __init__(self, val_fraction: float, budget: float, max_batch_size: int | None, num_buckets: int,
                 num_workers: int, seed: int):
        super().__init__()
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.val_fraction = val_fraction
        self.budget = budget
        self.max_batch_size = max_batch_size
        self.num_buckets = num_buckets
        self.num_workers = num_workers
        self.seed = seed
        self.train_set: Any = None
        self.val_set: Any = None
        self._resume: dict[str, int] | None = None

    @abc.abstractmethod
    def open_rows(self) -> Any:
        """All rows (a ``datasets.Dataset`` with an ``id`` column)."""

    @abc.abstractmethod
    def make_dataset(self, rows: Any) -> Dataset:
        """The dataset of one split's rows."""

    @abc.abstractmethod
    def lengths(self, dataset: Any) -> list[float]:
        """Each item's length in the unit of ``budget``."""

    @abc.abstractmethod
    def collate(self) -> Callable[[list], Any]:
        """The DataLoader's ``collate_fn`` (picklable, for worker processes)."""

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        ds = self.open_rows()
        is_val = [zlib.crc32(i.encode()) % 10_000 < self.val_fraction * 10_000 for i in ds["id"]]
        train_idx = [i for i, v in enumerate(is_val) if not v]
        val_idx = [i for i, v in enumerate(is_val) if v]
        if not train_idx:
            raise ValueError(f"{self.source}: no training rows left after the validation split")
        self.train_set = self.make_dataset(ds.select(train_idx))
        self.val_set = self.make_dataset(ds.select(val_idx)) if val_idx else None

    def task_inputs(self) -> dict[str, Any]:
        """What a task needs to know about the data to build its heads (names in ``TASK_INPUTS``)."""
        return {}

    @property
    def source(self) -> str:
        return str(getattr(self, "corpus", type(self).__name__))

    def _loader(self, dataset: Any, shuffle: bool) -> DataLoader:
        sampler = DurationBatchSampler(self.lengths(dataset), self.budget, self.max_batch_size, self.num_buckets,
                                       shuffle=shuffle, seed=self.seed)
        if shuffle and self._resume is not None:
            sampler.epoch = self._resume["epoch"]
            sampler.skip_batches = self._resume["batches_done"]
            self._resume = None
        # A generator of its own: without one, each new iterator (an epoch, a validation) draws its worker seed
        # from the global RNG, so a resumed run, which starts a fresh iterator after the RNG state is restored,
        # would draw its dropout masks one number late.
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=self.collate(), num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, pin_memory=False,
                          generator=torch.Generator().manual_seed(self.seed))

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        self.setup()
        return self._loader(self.val_set, shuffle=False) if self.val_set is not None else []

    # Sampler position for mid-epoch resume: Lightning stores this in the checkpoint. Taken at a batch's end (where
    # every checkpoint of a run is saved: ModelCheckpoint's step files, SaveLast's last.ckpt), it is the epoch of the
    # last trained batch and the batches done in it, which is where Lightning resumes. After a stop at max_steps,
    # Lightning counts the stopped epoch as finished (the epoch is one more, the batches those of the stopped one),
    # which is why last.ckpt is not written at training end (SaveLast).
    def state_dict(self) -> dict[str, int]:
        trainer = self.trainer
        if trainer is None:
            return {}
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        return {"epoch": trainer.current_epoch, "batches_done": progress.ready}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state:
            self._resume = dict(state)


class AudioDataModule(SplitDataModule):
    """Waveform crops with speaker/language labels from a corpus folder (or a clean JSONL manifest).
    Batches hold at most ``max_seconds_per_batch`` of padded audio."""

    TASK_INPUTS = ("num_speakers", "num_languages")

    def __init__(self, corpus: str, val_fraction: float = 0.1, sample_rate: int = SAMPLE_RATE,
                 crop_seconds: float | None = 3.0, max_seconds_per_batch: float = 24.0,
                 max_batch_size: int | None = None, num_buckets: int = 10, num_workers: int = 2, seed: int = 0,
                 loudness_lufs: float | None = None):
        super().__init__(val_fraction, max_seconds_per_batch, max_batch_size, num_buckets, num_workers, seed)
        self.corpus = corpus
        self.sample_rate = sample_rate
        self.crop_seconds = crop_seconds
        self.max_seconds_per_batch = max_seconds_per_batch
        self.loudness_lufs = loudness_lufs
        self._speakers: list[str] = []
        self._languages: list[str] = []

    def open_rows(self) -> Any:
        ds = open_corpus(self.corpus)
        self._speakers, self._languages = sorted(set(ds["speaker"])), sorted(set(ds["language"]))
        return ds

    def make_dataset(self, rows: Any) -> AudioCorpus:
        return AudioCorpus(rows, sample_rate=self.sample_rate, crop_seconds=self.crop_seconds,
                           speakers=self._speakers, languages=self._languages, loudness_lufs=self.loudness_lufs)

    def lengths(self, dataset: AudioCorpus) -> list[float]:
        cap = self.crop_seconds or float("inf")
        return [min(d, cap) for d in dataset.rows["duration"]]

    def collate(self) -> Callable[[list], Any]:
        return collate_audio

    def task_inputs(self) -> dict[str, Any]:
        self.setup()
        return {"num_speakers": len(self.train_set.speakers), "num_languages": len(self.train_set.languages)}


class TranscribedAudioDataModule(AudioDataModule):
    """Whole utterances at ``sample_rate`` with their transcripts and language codes (``texts``,
    ``language_codes`` in each batch), for ASR training (the 25 Hz tokenizer's stage 1). Tells the task the
    character ``vocabulary`` of every transcript of the corpus (both splits, so validation never meets a
    character the head cannot write). Batches hold at most ``max_seconds_per_batch`` of padded audio."""

    TASK_INPUTS = ("vocabulary",)

    def __init__(self, corpus: str, val_fraction: float = 0.1, sample_rate: int = 16_000,
                 max_seconds_per_batch: float = 60.0, max_batch_size: int | None = None, num_buckets: int = 10,
                 num_workers: int = 2, seed: int = 0, loudness_lufs: float | None = None):
        super().__init__(corpus, val_fraction, sample_rate, None, max_seconds_per_batch, max_batch_size, num_buckets,
                         num_workers, seed, loudness_lufs)
        self._texts: list[str] = []

    def open_rows(self) -> Any:
        ds = super().open_rows()
        empty = [i for i, t in zip(ds["id"], ds["text"]) if not (t or "").strip()]
        if empty:
            raise ValueError(f"{self.corpus}: row(s) {empty[:5]} have an empty text (ASR needs transcripts)")
        self._texts = list(ds["text"])
        return ds

    def make_dataset(self, rows: Any) -> AudioCorpus:
        return AudioCorpus(rows, sample_rate=self.sample_rate, crop_seconds=None, speakers=self._speakers,
                           languages=self._languages, loudness_lufs=self.loudness_lufs, with_text=True)

    def task_inputs(self) -> dict[str, Any]:
        from qtts.models.tokenizer_25hz.asr_head import character_vocabulary

        self.setup()
        return {"vocabulary": character_vocabulary(self._texts)}


class TalkerDataModule(SplitDataModule):
    """Talker training examples from ``qtts data extract-codes`` folders.

    codes: one folder, or a mixture: a list of folders or of ``Source`` fields (path, weight, min_quality,
        quality_field, keep_unscored, upsample_longer_than, upsample_factor, languages, exclude_languages,
        speakers, exclude_speakers;
        ``qtts.data.mixture``).
    max_tokens_per_batch: positions per batch (padded: longest × batch size; packed: rows × pack_length).
    pack_length: pack several utterances per row, up to this many positions, attention kept inside each
        utterance (None: one utterance per row, right-padded).
    max_length: drop examples longer than this (the stage's context: 8192 in S1/S2, 32768 in S3).
    xvector: reserve the x-vector slot and load reference clips: must be on for Base models (with a speaker
        encoder) and off for CustomVoice / VoiceDesign ones.
    tokenizer: a model folder whose text tokenizer to use (None, or a folder without one: the built-in Qwen2 BPE).
    speakers_from: custom voices: a model folder whose ``spk_id`` gives every speaker of the data its codec row
        (``qtts speakers add`` writes one); ``clone_prob`` then mixes in x-vector (cloning) examples.
    languages_from: the model folder being trained: its ``codec_language_id`` gives each language its row (needed
        for languages added with ``qtts languages add``; None: the registry's released rows).
    The remaining options are ``TalkerCorpus``'s.
    """

    def __init__(self, codes: str | list, tokenizer: str | None = None, val_fraction: float = 0.05,
                 max_tokens_per_batch: int = 16_384, pack_length: int | None = None, max_length: int = 8192,
                 xvector: bool = True, reference: str = "self", reference_seconds: float = 6.0,
                 auto_language_prob: float = 0.2, streaming_prob: float = 0.0, speakers_from: str | None = None,
                 clone_prob: float = 0.0, languages_from: str | None = None, max_batch_size: int | None = None,
                 num_buckets: int = 10, num_workers: int = 2, seed: int = 0):
        super().__init__(val_fraction, max_tokens_per_batch, max_batch_size, num_buckets, num_workers, seed)
        if pack_length is not None and pack_length > max_tokens_per_batch:
            raise ValueError(f"pack_length {pack_length} exceeds max_tokens_per_batch {max_tokens_per_batch}")
        self.corpus = codes
        self.tokenizer_folder = tokenizer
        self.pack_length, self.max_length = pack_length, max_length
        speakers = _talker_config(speakers_from, "spk_id") if speakers_from is not None else None
        if speakers_from is not None and not speakers:
            raise ValueError(f"{speakers_from}/config.json names no speakers (talker_config.spk_id)")
        languages = _talker_config(languages_from, "codec_language_id") if languages_from is not None else None
        if languages_from is not None and not languages:
            raise ValueError(f"{languages_from}/config.json names no languages (talker_config.codec_language_id)")
        self.options = dict(xvector=xvector, reference=reference, reference_seconds=reference_seconds,
                            auto_language_prob=auto_language_prob, streaming_prob=streaming_prob,
                            speakers=speakers, clone_prob=clone_prob, languages=languages)
        self.dropped = 0

    def open_rows(self) -> Any:
        sources = [self.corpus] if isinstance(self.corpus, str) else list(self.corpus)
        rows = mix_sources(sources, self.seed)
        return rows.with_format("numpy", columns=["codes"], output_all_columns=True)

    def make_dataset(self, rows: Any) -> TalkerCorpus:
        tokenizer = self.text_tokenizer()
        dataset = TalkerCorpus(rows, tokenizer, **self.options)
        keep = [i for i, n in enumerate(dataset.lengths()) if n <= self.max_length]
        if len(keep) < len(dataset):
            self.dropped += len(dataset) - len(keep)
            dataset = TalkerCorpus(rows.select(keep), tokenizer, **self.options)
        return dataset

    def text_tokenizer(self):
        """The tokenizer folder's own tokenizer (a model folder may ship none: then the built-in Qwen2 BPE, which
        the released models use)."""
        from qtts.text.tokenizer import has_tokenizer, load_text_tokenizer

        folder = self.tokenizer_folder
        if folder is not None and not Path(folder).is_dir():
            raise FileNotFoundError(f"data.tokenizer: folder {folder} does not exist")
        return load_text_tokenizer(folder if has_tokenizer(folder) else None)

    def lengths(self, dataset: TalkerCorpus) -> list[float]:
        # Packed or not, a batch's positions are at most longest × count ≤ max_tokens_per_batch; packing then
        # fills rows of pack_length, about max_tokens_per_batch / pack_length of them.
        return dataset.lengths()

    def collate(self) -> Callable[[list], Any]:
        return functools.partial(collate_talker, pack_length=self.pack_length)


def _talker_config(folder: str, field: str) -> Any:
    """One field of a model folder's ``talker_config``."""
    from qtts.models.checkpoint import read_json

    return read_json(Path(folder) / "config.json").get("talker_config", {}).get(field)


class PairDataset(Dataset):
    """The rows of a mined pairs dataset (``qtts.eval.pairs``) as dicts; the sampler's ``(index, seed)`` keys are
    taken too (the seed is unused: a pair is what it is)."""

    def __init__(self, rows: Any):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index = key[0] if isinstance(key, tuple) else key
        return self.rows[int(index)]


def _rows(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The collate of pairs: the rows themselves (the DPO task lays them out with the model's tokenizer)."""
    return batch


class PairDataModule(SplitDataModule):
    """DPO pairs from ``qtts mine-pairs`` (its ``--out`` folder, or the ``dataset/`` inside it). A batch holds at
    most ``max_frames_per_batch`` frames counted as longest pair × pairs (a pair's length: its chosen and rejected
    frames together), and at most ``max_batch_size`` pairs."""

    def __init__(self, pairs: str, val_fraction: float = 0.0, max_frames_per_batch: int = 4096,
                 max_batch_size: int | None = 8, num_buckets: int = 4, num_workers: int = 0, seed: int = 0):
        super().__init__(val_fraction, max_frames_per_batch, max_batch_size, num_buckets, num_workers, seed)
        self.corpus = pairs

    def open_rows(self) -> Any:
        import datasets

        from qtts.eval.pairs import DATASET

        folder = Path(self.corpus)
        if (folder / DATASET).is_dir():
            folder = folder / DATASET
        if not folder.is_dir():
            raise FileNotFoundError(f"data.pairs: {self.corpus} is not a mined pairs folder (qtts mine-pairs --out)")
        rows = datasets.load_from_disk(str(folder))
        missing = {"id", "chosen_codes", "rejected_codes"} - set(rows.column_names)
        if missing:
            raise ValueError(f"data.pairs: {folder} has no column(s) {sorted(missing)}: not a mined pairs dataset")
        if len(rows) == 0:
            raise ValueError(f"data.pairs: {folder} holds no pairs (every prompt's samples were closer than min_gap?)")
        return rows

    def make_dataset(self, rows: Any) -> PairDataset:
        return PairDataset(rows)

    def lengths(self, dataset: PairDataset) -> list[float]:
        return [len(c) + len(r) for c, r in zip(dataset.rows["chosen_codes"], dataset.rows["rejected_codes"])]

    def collate(self) -> Callable[[list], Any]:
        return _rows


class PromptDataset(Dataset):
    """Test-set items (``qtts.eval.testset.TestItem``) by index; the sampler's ``(index, seed)`` keys are taken too."""

    def __init__(self, items: list):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        index = key[0] if isinstance(key, tuple) else key
        return self.items[int(index)]


def _items(batch: list) -> list:
    """The collate of prompts: the items themselves (the task voices them with the model it trains)."""
    return batch


class PromptDataModule(SplitDataModule):
    """Prompts for on-line post-training (GSPO / GRPO): the items of a test set (``qtts.eval.testset.read_testset``:
    JSONL with ``text, language`` and a voice per row (``ref_audio`` [+ ``ref_text``], ``speaker``, ``instruct``),
    or a Seed-TTS-eval list), ``batch_size`` prompts per step (each sampled ``task.group_size`` times), shuffled per
    epoch and resumed mid-epoch like every other data module. ``language``: keep only that language's items."""

    def __init__(self, prompts: str, batch_size: int = 4, language: str | None = None, val_fraction: float = 0.0,
                 num_workers: int = 0, seed: int = 0):
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        # every item has length 1: a budget of batch_size items, one bucket
        super().__init__(val_fraction, float(batch_size), batch_size, 1, num_workers, seed)
        self.corpus = prompts
        self.language = language
        self._items: dict[str, Any] = {}

    def open_rows(self) -> Any:
        import datasets

        from qtts.eval.testset import read_testset

        items = read_testset(self.corpus, self.language)  # a bad row is an error naming the file, line and field
        self._items = {item.id: item for item in items}
        return datasets.Dataset.from_dict({"id": [item.id for item in items]})

    def make_dataset(self, rows: Any) -> PromptDataset:
        return PromptDataset([self._items[i] for i in rows["id"]])

    def lengths(self, dataset: PromptDataset) -> list[float]:
        return [1.0] * len(dataset)

    def collate(self) -> Callable[[list], Any]:
        return _items

    def transfer_batch_to_device(self, batch: list, device: torch.device, dataloader_idx: int) -> list:
        """Prompts are test-set items (frozen dataclasses of text and paths): nothing to move."""
        return batch
