"""The local backend: chunks in this process, or in a pool of worker processes, a bounded number at a time.

Only a few chunks are ever in flight (two per worker), so memory stays that of a few chunks whatever the
number of candidates; results come back in completion order and are written as shards by the caller.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

from mi.candidates.base import Candidate
from mi.config import ScreenConfig
from mi.errors import CheckpointError, ConfigError
from mi.execution.chunk import ChunkResult, failed_chunk, run_chunk
from mi.features.engine import FORKSERVER_PRELOAD, pool_context, resolve_workers

CHUNK_PRELOAD = (
    "mi.execution.chunk", "mi.features.sets", "mi.properties.compute", "mi.models.screen_models",
    "mi.ranking.domain", "mi.data",
)


def single_process_config(cfg: ScreenConfig) -> ScreenConfig:
    """The config a chunk worker runs: structure features in the worker itself (no pool inside a pool)."""
    if cfg.features.workers in (0, 1):
        return cfg
    return cfg.model_copy(update={"features": cfg.features.model_copy(update={"workers": 1})})


def run_local(
    chunks: Iterable[tuple[int, list[Candidate]]],
    cfg: ScreenConfig,
    surrogate,
    checkpoint: tuple,
    *,
    workers: int | str = 1,
    progress: bool = False,
) -> Iterator[ChunkResult]:
    """ChunkResults of `chunks` (``(index, candidates)`` pairs), in completion order.

    One worker: in this process with the loaded `surrogate`. More: worker processes that load the
    models from their references (`ModelRef`s) once each. ``"auto"``: one per core (`resolve_workers`),
    but in this process when there is only one chunk (a worker takes seconds to start: it imports mi and
    loads the models). Rows are the same whichever: every stage of a chunk works row by row.
    """
    n = resolve_workers(workers)
    if workers == "auto" and n > 1:
        chunks = iter(chunks)
        ahead = list(itertools.islice(chunks, 2))
        if len(ahead) < 2:
            n = 1
        chunks = itertools.chain(ahead, chunks)
    if n <= 1:
        for index, candidates in chunks:
            yield run_chunk(index, candidates, cfg, surrogate, progress=progress)
        return
    context = _worker_context()
    worker_cfg = single_process_config(cfg)
    with ProcessPoolExecutor(max_workers=n, mp_context=context) as pool:
        jobs: dict[Future, tuple[int, list[Candidate]]] = {}
        pending: set[Future] = set()
        for index, candidates in chunks:
            future = pool.submit(run_chunk, index, candidates, worker_cfg, checkpoint)
            jobs[future] = (index, candidates)
            pending.add(future)
            if len(pending) >= 2 * n:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield _result(future, jobs.pop(future))
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield _result(future, jobs.pop(future))


def _worker_context():
    """`pool_context` importing once what every chunk worker imports."""
    return pool_context([*FORKSERVER_PRELOAD, *CHUNK_PRELOAD])


def in_workers(cfg: ScreenConfig, several_chunks: bool) -> bool:
    """Whether the chunks run outside this process (Ray tasks, or `run_local`'s pool), where each worker
    loads the models itself."""
    if cfg.execution.backend != "local":
        return True
    workers = cfg.execution.workers
    return resolve_workers(workers) > 1 and (several_chunks or workers != "auto")


def start_workers_early(cfg: ScreenConfig) -> None:
    """Start the forkserver of `run_local`'s workers now, so that its imports run while this process loads
    the models (seconds of a short screen's wall time); nothing for one worker or another backend."""
    if cfg.execution.backend != "local" or resolve_workers(cfg.execution.workers) <= 1:
        return
    if _worker_context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def _result(future: Future, job: tuple[int, list[Candidate]]) -> ChunkResult:
    """The chunk's result; what went wrong outside `run_chunk` (a result that cannot be sent back, a
    worker that died) makes the chunk's candidates failures too. A ConfigError or a checkpoint the worker
    cannot load still stops the run."""
    try:
        return future.result()
    except (ConfigError, CheckpointError):
        raise
    except Exception as exc:  # noqa: BLE001
        return failed_chunk(*job, exc)


__all__ = ["in_workers", "resolve_workers", "run_local", "single_process_config", "start_workers_early"]
