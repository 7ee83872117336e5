"""Process pools for data jobs that are safe in a process that already ran torch.

Forking a process whose OpenMP thread pool is alive can hang the child (libgomp is not fork-safe),
which happens as soon as a parent has run any torch op. Workers therefore start from a clean
fork server, and each uses one thread: there is one file per worker, more threads only contend.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor


def _single_threaded() -> None:
    import torch

    torch.set_num_threads(1)


def worker_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=max(1, workers), mp_context=multiprocessing.get_context("forkserver"),
                               initializer=_single_threaded)
