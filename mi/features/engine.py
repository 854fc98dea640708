"""Featurize a batch of candidates: cache first, then batch sets in chunks, then structures in a worker pool.

* **Batch sets** (composition) run in this process, a few thousand candidates per array operation; if a
  chunk raises, it is recomputed one candidate at a time to find the culprits.
* **Per-structure sets** (structure, working_ion) run together on one `StructureAnalysis` per structure.
  With ``workers > 1`` and more than one chunk of structures (``workers="auto"``: one per core, from 500
  structures on, since starting the pool takes a second or two), chunks go to worker processes forked
  from a forkserver (spawned where there is none). A structure that runs past ``timeout_s`` gets its
  worker killed (a hard limit, even inside C code) and is reported; the rest of its chunk goes to a fresh
  worker. A worker that dies (memory, a crash) costs only the structure it was on. In this process
  (``workers`` 0 or 1, or one chunk only) the limit is a SIGALRM timer, which interrupts Python code only;
  the size guards in `mi.features.structure` keep C code from running away on absurd cells. Like any
  multiprocessing code, a script that asks for workers needs the ``if __name__ == "__main__":`` guard.
* **Cache**: rows are looked up by ``Candidate.content_hash`` before any work, and each finished chunk is
  written back at once (see `mi.features.cache`).

Every candidate a set cannot describe becomes one `Failure` (stage ``features``); the others go on.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import Element
from tqdm.auto import tqdm

from mi.candidates.base import Candidate, Failure
from mi.errors import ConfigError
from mi.features.cache import FeatureCache, open_cache
from mi.features.sets import FEATURE_SETS, FeatureSet, get_feature_set
from mi.features.structure import StructureAnalysis

log = logging.getLogger(__name__)

BATCH_CHUNK = 4096  # compositions per array operation: bounds the padded arrays' memory
AUTO_POOL_MIN_STRUCTURES = 500  # workers="auto" runs fewer structures in this process
WORKER_START_LIMIT_S = 300.0  # a worker that cannot even import mi in this long is a broken install


@dataclass
class FeatureResult:
    """Features indexed by candidate id, the failures, and where each (candidate, set) row came from."""

    features: pd.DataFrame
    failures: list[Failure]
    computed: int = 0  # (candidate, set) rows computed in this call, failures included
    from_cache: int = 0  # (candidate, set) rows read from the cache
    timed_out: int = 0  # structures stopped by the time limit
    seconds: float = 0.0
    counts_by_set: dict[str, dict[str, int]] = field(default_factory=dict)
    cache_problems: list[str] = field(default_factory=list)  # cache packs refused (corrupt, tampered): recomputed


class _Timeout(BaseException):
    """Raised by the in-process timer; a BaseException so that `except Exception` in library code can't eat it."""


@contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    usable = (
        seconds is not None
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def _alarm(signum, frame):
        raise _Timeout()

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _address_space() -> int | None:
    """Bytes of virtual address space this process maps now (Linux), or None where unknown."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


@contextmanager
def _memory_limit(megabytes: float | None) -> Iterator[None]:
    """Let the code inside allocate at most `megabytes` more address space (RLIMIT_AS, Linux).

    Past it an allocation fails: Python code gets a MemoryError, which the caller reports as the structure
    exceeding the limit, and the process lives on. The previous limit is restored on the way out, so the
    rest of the run is not bound by it. Where RLIMIT_AS or /proc is missing (macOS, Windows), no limit.
    """
    try:
        import resource
    except ImportError:
        resource = None
    current = _address_space() if megabytes is not None and resource is not None and sys.platform == "linux" else None
    if current is None:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = current + int(megabytes * 2**20)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _memory_reason(megabytes: float | None) -> str:
    return f"features: exceeded the memory limit of {megabytes:g} MB (features.max_memory_mb)"


def _reason(set_name: str, exc: BaseException) -> str:
    return f"{set_name} features: {type(exc).__name__}: {exc}"


def _cacheable(result: Any) -> bool:
    """Rows and deterministic errors are cached; time-outs, dead workers and lack of memory depend on the run."""
    if not isinstance(result, str):
        return True
    return not result.startswith("features: ") and "MemoryError" not in result and "memory limit" not in result


def describe_structure(
    structure, set_names: Sequence[str], working_ion: str | None, max_memory_mb: float | None = None
) -> dict[str, Any]:
    """Rows of the per-structure sets `set_names` for one structure: name -> float array, or a reason str.

    With `max_memory_mb`, the structure may allocate at most that much more memory; past it every set gets
    the reason "exceeded the memory limit".
    """
    try:
        with _memory_limit(max_memory_mb):
            try:
                analysis = StructureAnalysis(structure)
            except MemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - reported per candidate
                return {name: _reason(name, exc) for name in set_names}
            out: dict[str, Any] = {}
            for name in set_names:
                try:
                    out[name] = np.asarray(FEATURE_SETS[name].compute_structure(analysis, working_ion), dtype=float)
                except MemoryError:
                    raise
                except Exception as exc:  # noqa: BLE001 - reported per candidate
                    out[name] = _reason(name, exc)
            return out
    except MemoryError:
        reason = _memory_reason(max_memory_mb) if max_memory_mb is not None else "features: MemoryError: out of memory"
        return {name: reason for name in set_names}


def warm_up() -> None:
    """Load the element tables and the lazily imported pymatgen modules the per-structure sets use."""
    from pymatgen.optimization.neighbors import find_points_in_spheres  # noqa: F401
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer  # noqa: F401

    from mi.features.composition import magpie_table
    from mi.features.structure import _bond_valence_tables, _sphere_radii

    magpie_table(), _sphere_radii(), _bond_valence_tables()


# --- worker processes -------------------------------------------------------------------------------


def _worker_main(conn) -> None:
    """Worker loop: receive lists of (job id, structure, set names, working ion); send one result per job."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops the workers
    warm_up()  # load tables and lazy imports now, so the time limit measures structures, not imports
    conn.send(("ready",))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        for job, structure, set_names, working_ion, max_memory_mb in message:
            conn.send(("result", job, describe_structure(structure, set_names, working_ion, max_memory_mb)))


# The modules whose import takes seconds (bond-valence tables, spglib), loaded once in the forkserver; a
# screen's chunk workers (`mi.execution.local`) add theirs to the same server.
FORKSERVER_PRELOAD = ("mi.features.engine", "pymatgen.core.bond_valence", "pymatgen.symmetry.analyzer")


def pool_context(preload: Sequence[str] = FORKSERVER_PRELOAD):
    """forkserver where there is one, else spawn; never a plain fork of this process.

    A fork of the parent could copy torch's threads mid-lock and deadlock. A forkserver is a fresh, single-
    threaded process that imports `preload` once, when it starts (mi.features by default); each worker (and
    each replacement for a killed one) is then forked from it in milliseconds instead of importing pymatgen
    anew. One server serves the whole process: a later `preload` changes nothing once it runs.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(preload))
        return context
    return multiprocessing.get_context("spawn")


class _Worker:
    def __init__(self, context):
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child,), daemon=True, name="mi-features")
        self.process.start()
        child.close()
        self.spawned = time.monotonic()
        self.ready = False
        self.queue: deque[int] = deque()  # jobs sent, in the order the worker runs them
        self.started: float | None = None  # when the job at the head of the queue started

    def send(self, jobs: list[tuple]) -> None:
        self.conn.send(jobs)
        if not self.queue and self.ready:
            self.started = time.monotonic()
        self.queue.extend(job for job, *_ in jobs)

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.process.kill()
        else:
            try:
                self.conn.send(None)
            except (OSError, ValueError):
                pass
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        self.conn.close()


def _run_pool(
    jobs: dict[int, tuple],
    n_workers: int,
    chunk_size: int,
    timeout_s: float | None,
    on_result: Callable[[int, dict[str, Any] | str, bool], None],
    max_memory_mb: float | None = None,
) -> None:
    """Run `jobs` (id -> (structure, set names, working ion)) on `n_workers` spawned processes.

    `on_result(job, outcome, timed_out)` gets a dict of rows/reasons per set, or one reason for every set
    (time-out, dead worker).
    """
    context = pool_context()
    order = list(jobs)
    pending = deque(order[k : k + chunk_size] for k in range(0, len(order), chunk_size))
    workers = [_Worker(context) for _ in range(min(n_workers, len(pending)))]

    def feed(worker: _Worker, ids: Sequence[int]) -> None:
        worker.send([(job, *jobs[job]) for job in ids])

    def replace(worker: _Worker, reason: str, timed_out: bool) -> _Worker:
        rest = list(worker.queue)
        worker.stop(kill=True)
        if rest:
            on_result(rest[0], reason, timed_out)
        fresh = _Worker(context)
        if rest[1:]:
            fresh.queue.extend(rest[1:])  # sent again once the fresh worker is ready
        return fresh

    try:
        while True:
            for worker in workers:
                if worker.ready and len(worker.queue) <= 1 and pending:
                    feed(worker, pending.popleft())
            busy = [w for w in workers if w.queue or not w.ready]
            if not busy and not pending:
                break
            now = time.monotonic()
            deadlines = [w.started + timeout_s - now for w in busy if w.started is not None and timeout_s]
            ready = wait([w.conn for w in busy], timeout=max(0.0, min(deadlines)) if deadlines else 1.0)
            for k, worker in enumerate(workers):
                if worker.conn in ready:
                    try:
                        message = worker.conn.recv()
                    except (EOFError, OSError):
                        worker.process.join(timeout=5)
                        code = worker.process.exitcode
                        if not worker.ready:  # no structure to blame: the worker cannot start at all
                            raise RuntimeError(f"a feature worker process exited on start-up (exit code {code})")
                        died = f"features: worker process died (exit code {code})"
                        if max_memory_mb is not None:  # an allocation refused inside C code ends the worker
                            died += f"; it may have exceeded the memory limit of {max_memory_mb:g} MB"
                        workers[k] = replace(worker, died, False)
                        continue
                    if message[0] == "ready":
                        worker.ready = True
                        if worker.queue:
                            resend = list(worker.queue)
                            worker.queue.clear()
                            feed(worker, resend)
                        continue
                    _, job, outcome = message
                    worker.queue.popleft()
                    worker.started = time.monotonic() if worker.queue else None
                    on_result(job, outcome, False)
                elif worker.started is not None and timeout_s and time.monotonic() - worker.started > timeout_s:
                    reason = f"features: timed out after {timeout_s:g} s (features.timeout_s)"
                    workers[k] = replace(worker, reason, True)
                elif not worker.ready and time.monotonic() - worker.spawned > WORKER_START_LIMIT_S:
                    raise RuntimeError(f"a feature worker process did not start within {WORKER_START_LIMIT_S:g} s")
    finally:
        for worker in workers:
            worker.stop(kill=bool(worker.queue))


# --- the engine -------------------------------------------------------------------------------------


def resolve_workers(workers: int | str | None) -> int:
    """``"auto"``: one per CPU core this process may use, at most 8; otherwise the number given."""
    if workers is None or workers == "auto":
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:
            cores = os.cpu_count() or 1
        return max(1, min(8, cores))
    return max(0, int(workers))


def _cache_folder(feature_set: FeatureSet, working_ion: str | None) -> str:
    ion = working_ion if feature_set.uses_working_ion else None
    return FeatureCache.folder_name(feature_set.name, feature_set.version, ion)


def _compute_batch_isolating(
    feature_set: FeatureSet, candidates: Sequence[Candidate], working_ion: str | None
) -> tuple[np.ndarray, list[str]]:
    """Values and a reason per candidate ("" = ok) for a batch set; one by one if the batch raises."""
    width = len(feature_set.names())
    try:
        values = np.asarray(feature_set.compute(candidates, working_ion), dtype=float).reshape(len(candidates), width)
        return values, [""] * len(candidates)
    except ConfigError:
        raise
    except Exception:  # noqa: BLE001 - isolate the bad candidates below
        pass
    values = np.full((len(candidates), width), np.nan)
    reasons = []
    for k, candidate in enumerate(candidates):
        try:
            values[k] = np.asarray(feature_set.compute([candidate], working_ion), dtype=float).reshape(width)
            reasons.append("")
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad candidate must not stop the run
            reasons.append(_reason(feature_set.name, exc))
    return values, reasons


def featurize_candidates(
    candidates: Sequence[Candidate],
    sets: Sequence[str],
    *,
    working_ion: str | None = None,
    workers: int | str = 0,
    chunk_size: int = 32,
    timeout_s: float | None = None,
    max_memory_mb: float | None = None,
    cache: FeatureCache | str | os.PathLike | None = None,
    progress: bool = False,
) -> FeatureResult:
    """Features of every candidate that all `sets` can describe, and a Failure for each one they cannot.

    The DataFrame is indexed by candidate id (index name ``id``), columns ``<set>.<feature>``, float64.
    `cache` is a `FeatureCache`, a folder, or None (no cache).
    """
    started = time.perf_counter()
    feature_sets = [get_feature_set(name) for name in dict.fromkeys(sets)]
    if any(fs.uses_working_ion for fs in feature_sets):
        if not working_ion:
            raise ConfigError("features.sets: 'working_ion' needs the screen's working ion (properties.working_ion)")
        if not Element.is_valid_symbol(str(working_ion)):
            raise ConfigError(f"properties.working_ion: {working_ion!r} is not an element")
    if chunk_size < 1:
        raise ConfigError(f"features.chunk_size: must be at least 1, got {chunk_size}")
    if cache is not None and not isinstance(cache, FeatureCache):
        cache = open_cache(cache)
    n = len(candidates)
    keys = [c.content_hash for c in candidates]
    values = {fs.name: np.full((n, len(fs.names())), np.nan) for fs in feature_sets}
    reasons = {fs.name: [""] * n for fs in feature_sets}
    todo = {fs.name: np.ones(n, dtype=bool) for fs in feature_sets}
    counts = {fs.name: {"computed": 0, "from_cache": 0} for fs in feature_sets}
    timed_out = 0

    if cache is not None and n:
        for fs in feature_sets:
            hits = cache.get(_cache_folder(fs, working_ion), fs.names(), keys)
            for k, key in enumerate(keys):
                if key in hits:
                    values[fs.name][k], reasons[fs.name][k] = hits[key]
                    todo[fs.name][k] = False
            counts[fs.name]["from_cache"] = int((~todo[fs.name]).sum())

    def store(fs: FeatureSet, rows: Sequence[int], cache_ok: Sequence[bool] | None = None) -> None:
        counts[fs.name]["computed"] += len(rows)
        if cache is None:
            return
        keep = [k for i, k in enumerate(rows) if cache_ok is None or cache_ok[i]]
        cache.put(
            _cache_folder(fs, working_ion),
            fs.names(),
            [keys[k] for k in keep],
            values[fs.name][keep],
            [reasons[fs.name][k] for k in keep],
        )

    # Batch sets, in chunks.
    for fs in (fs for fs in feature_sets if not fs.per_structure):
        missing = np.flatnonzero(todo[fs.name])
        for start in range(0, len(missing), BATCH_CHUNK):
            rows = missing[start : start + BATCH_CHUNK].tolist()
            chunk_values, chunk_reasons = _compute_batch_isolating(fs, [candidates[k] for k in rows], working_ion)
            values[fs.name][rows] = chunk_values
            for k, reason in zip(rows, chunk_reasons):
                reasons[fs.name][k] = reason
            store(fs, rows)

    # Per-structure sets: cheap rows for candidates without a structure here, structures as jobs.
    structure_sets = [fs for fs in feature_sets if fs.per_structure]
    jobs: dict[int, tuple] = {}
    for k, candidate in enumerate(candidates):
        needed = [fs.name for fs in structure_sets if todo[fs.name][k]]
        if not needed:
            continue
        if candidate.structure is None:
            for name in needed:
                try:
                    values[name][k] = FEATURE_SETS[name].compute_without_structure(candidate, working_ion)
                except ConfigError:
                    raise
                except Exception as exc:  # noqa: BLE001 - reported per candidate
                    reasons[name][k] = _reason(name, exc)
        else:
            jobs[k] = (candidate.structure, needed, working_ion, max_memory_mb)
    for fs in structure_sets:
        store(fs, [k for k, c in enumerate(candidates) if todo[fs.name][k] and c.structure is None])

    finished: dict[str, list[int]] = {fs.name: [] for fs in structure_sets}
    cacheable: dict[str, list[bool]] = {fs.name: [] for fs in structure_sets}
    bar = tqdm(total=len(jobs), desc="structure features", unit="structure", disable=not progress, leave=False)

    def flush(force: bool = False) -> None:
        for fs in structure_sets:
            if finished[fs.name] and (force or len(finished[fs.name]) >= chunk_size):
                store(fs, finished[fs.name], cacheable[fs.name])
                finished[fs.name], cacheable[fs.name] = [], []

    def on_result(job: int, outcome: dict[str, Any] | str, was_timeout: bool) -> None:
        nonlocal timed_out
        timed_out += int(was_timeout)
        for name in jobs[job][1]:
            result = outcome if isinstance(outcome, str) else outcome[name]
            if isinstance(result, str):
                reasons[name][job] = result
            else:
                values[name][job] = result
            finished[name].append(job)
            cacheable[name].append(_cacheable(outcome if isinstance(outcome, str) else result))
        bar.update(1)
        flush()

    n_workers = resolve_workers(workers)
    if workers in (None, "auto") and len(jobs) < AUTO_POOL_MIN_STRUCTURES:
        n_workers = 1  # starting workers (seconds each: they import pymatgen) would cost more than the work
    n_workers = min(n_workers, math.ceil(len(jobs) / chunk_size))
    try:
        if n_workers > 1:
            _run_pool(jobs, n_workers, chunk_size, timeout_s, on_result, max_memory_mb)
        else:
            if jobs and (timeout_s is not None or max_memory_mb is not None):
                warm_up()  # imports and tables must not count against the first structure's limits
            for job, (structure, needed, ion, memory_mb) in jobs.items():
                try:
                    with _time_limit(timeout_s):
                        limit = {"max_memory_mb": memory_mb} if memory_mb is not None else {}
                        outcome = describe_structure(structure, needed, ion, **limit)
                except _Timeout:
                    on_result(job, f"features: timed out after {timeout_s:g} s (features.timeout_s)", True)
                    continue
                on_result(job, outcome, False)
        flush(force=True)
    finally:
        bar.close()

    if cache is not None:
        for fs in feature_sets:
            cache.compact(_cache_folder(fs, working_ion), fs.names())

    # One failure per candidate that any set could not describe.
    failures: list[Failure] = []
    alive = np.ones(n, dtype=bool)
    for k, candidate in enumerate(candidates):
        messages = list(dict.fromkeys(reasons[fs.name][k] for fs in feature_sets if reasons[fs.name][k]))
        if messages:
            alive[k] = False
            failures.append(
                Failure(
                    source=candidate.source,
                    record=candidate.record,
                    stage="features",
                    reason="; ".join(messages),
                    id=candidate.id,
                )
            )
    columns = [column for fs in feature_sets for column in fs.columns()]
    blocks = [values[fs.name][alive] for fs in feature_sets]
    data = np.hstack(blocks) if blocks else np.empty((int(alive.sum()), 0))
    index = pd.Index([c.id for c, ok in zip(candidates, alive) if ok], name="id", dtype=object)
    frame = pd.DataFrame(data, index=index, columns=columns, dtype=float)
    return FeatureResult(
        features=frame,
        failures=failures,
        computed=sum(c["computed"] for c in counts.values()),
        from_cache=sum(c["from_cache"] for c in counts.values()),
        timed_out=timed_out,
        seconds=time.perf_counter() - started,
        counts_by_set=counts,
        cache_problems=list(cache.problems) if cache is not None else [],
    )


def featurize(candidates: Sequence[Candidate], sets: Sequence[str], **options) -> tuple[pd.DataFrame, list[Failure]]:
    """`featurize_candidates` returning only (features, failures); in-process and without a cache by default."""
    result = featurize_candidates(candidates, sets, **options)
    return result.features, result.failures


def featurize_with_config(
    candidates: Sequence[Candidate],
    sets: Sequence[str],
    config,
    *,
    working_ion: str | None,
    resolve: Callable[[str], os.PathLike] | None = None,
    progress: bool = False,
) -> FeatureResult:
    """`featurize_candidates` with the options of a `FeaturesConfig`; relative cache paths go through `resolve`."""
    cache_dir = config.cache_dir
    if cache_dir is not None and cache_dir != "auto" and resolve is not None:
        cache_dir = resolve(cache_dir)
    return featurize_candidates(
        candidates,
        sets,
        working_ion=working_ion,
        workers=config.workers,
        chunk_size=config.chunk_size,
        timeout_s=config.timeout_s,
        max_memory_mb=getattr(config, "max_memory_mb", None),
        cache=open_cache(cache_dir),
        progress=progress,
    )
