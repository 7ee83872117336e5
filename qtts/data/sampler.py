"""Duration-bucketed batches: similar lengths together, a frame budget per batch, DDP-aware, resumable.

Every rank builds the same global batch list from ``(seed, epoch)`` and takes its own slice, so
no communication is needed and all ranks take the same number of steps. ``skip_batches`` lets a
resumed run continue mid-epoch exactly where the checkpoint was taken; ``__len__`` stays the full
epoch length because the training loop counts the skipped batches as already done.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import torch.distributed as dist
from torch.utils.data import Sampler


class DurationBatchSampler(Sampler[list]):
    """Yields lists of ``(index, item_seed)``; ``item_seed`` makes per-item randomness (crops) reproducible.

    lengths: per-item length in frames (any unit, e.g. seconds × frame rate).
    max_frames: budget per batch, counted as ``longest item × batch size`` (what padding costs).
    num_buckets: items are sorted into this many length quantiles; batches never mix buckets.
    """

    def __init__(self, lengths: Sequence[float], max_frames: float, max_batch_size: int | None = None,
                 num_buckets: int = 10, shuffle: bool = True, seed: int = 0, drop_last: bool = False,
                 num_replicas: int | None = None, rank: int | None = None):
        if max_frames <= 0:
            raise ValueError(f"max_frames must be positive, got {max_frames}")
        if len(lengths) == 0:
            raise ValueError("no items to sample from")
        self.lengths = [float(x) for x in lengths]
        self.max_frames = max_frames
        self.max_batch_size = max_batch_size
        self.num_buckets = max(1, num_buckets)
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self._replicas = num_replicas
        self._rank = rank
        self.epoch = 0
        self.skip_batches = 0
        self._cache: tuple[tuple[int, int], list[list[int]]] | None = None

    @property
    def num_replicas(self) -> int:
        if self._replicas is not None:
            return self._replicas
        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1

    @property
    def rank(self) -> int:
        if self._rank is not None:
            return self._rank
        return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at each epoch start; a resumed skip applies to its own epoch only."""
        if epoch != self.epoch:
            self.skip_batches = 0
        self.epoch = epoch

    @property
    def sampler(self) -> DurationBatchSampler:
        """Lightning calls ``set_epoch`` on ``loader.batch_sampler.sampler``; this routes that call here."""
        return self

    def global_batches(self) -> list[list[int]]:
        """All ranks' batches for the current epoch, in order."""
        key = (self.epoch, self.num_replicas)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._build())
        return self._cache[1]

    def _build(self) -> list[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        order = list(range(len(self.lengths)))
        if self.shuffle:
            rng.shuffle(order)
        order.sort(key=lambda i: self.lengths[i])  # stable: equal lengths keep the shuffled order
        size = -(-len(order) // self.num_buckets)
        batches: list[list[int]] = []
        for start in range(0, len(order), size):
            bucket = order[start:start + size]
            if self.shuffle:
                rng.shuffle(bucket)
            batches.extend(self._pack(bucket))
        if self.shuffle:
            rng.shuffle(batches)
        world = self.num_replicas
        if len(batches) % world:
            if self.drop_last:
                batches = batches[: len(batches) - len(batches) % world]
            else:  # repeat batches from the front (cycling when there are fewer batches than ranks)
                batches += [batches[k % len(batches)] for k in range(world - len(batches) % world)]
        return batches

    def _pack(self, bucket: list[int]) -> list[list[int]]:
        batches, current, longest = [], [], 0.0
        for i in bucket:
            new_longest = max(longest, self.lengths[i])
            full = self.max_batch_size is not None and len(current) >= self.max_batch_size
            if current and (new_longest * (len(current) + 1) > self.max_frames or full):
                batches.append(current)
                current, new_longest = [], self.lengths[i]
            current.append(i)
            longest = new_longest
        if current:
            batches.append(current)
        return batches

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        mine = self.global_batches()[self.rank::self.num_replicas]
        skip, self.skip_batches = self.skip_batches, 0  # a resume skips once
        for batch in mine[skip:]:
            yield [(i, hash((self.seed, self.epoch, i)) & 0x7FFFFFFF) for i in batch]

    def __len__(self) -> int:
        return len(self.global_batches()) // self.num_replicas
