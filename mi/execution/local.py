"""The local backend: chunks in this process, or in a pool of worker processes, a bounded number at a time.

Only a few chunks are ever in flight (two per worker), so memory stays that of a few chunks whatever the
number of candidates; results come back in completion order and are written as shards by the caller.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

from mi.candidates.base import Candidate
from mi.config import ScreenConfig
from mi.execution.chunk import ChunkResult, process_chunk


def resolve_workers(workers: int | str) -> int:
    if workers == "auto":
        return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))
    return int(workers)


def single_process_config(cfg: ScreenConfig) -> ScreenConfig:
    """The config a chunk worker runs: structure features in the worker itself (no pool inside a pool)."""
    if cfg.features.workers in (0, 1):
        return cfg
    return cfg.model_copy(update={"features": cfg.features.model_copy(update={"workers": 1})})


def run_local(
    chunks: Iterable[tuple[int, list[Candidate]]],
    cfg: ScreenConfig,
    surrogate,
    checkpoint: tuple[str, str],
    *,
    workers: int | str = 1,
    progress: bool = False,
) -> Iterator[ChunkResult]:
    """ChunkResults of `chunks` (``(index, candidates)`` pairs), in completion order.

    One worker: in this process with the loaded `surrogate`. More: worker processes that load the
    checkpoint ``(label, device)`` once each.
    """
    n = resolve_workers(workers)
    if n <= 1:
        for index, candidates in chunks:
            yield process_chunk(index, candidates, cfg, surrogate, progress=progress)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    worker_cfg = single_process_config(cfg)
    with ProcessPoolExecutor(max_workers=n, mp_context=context) as pool:
        pending: set[Future] = set()
        for index, candidates in chunks:
            pending.add(pool.submit(process_chunk, index, candidates, worker_cfg, checkpoint))
            if len(pending) >= 2 * n:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()


__all__ = ["resolve_workers", "run_local", "single_process_config"]
