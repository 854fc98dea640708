"""The Ray backend: each chunk is one Ray task (features, surrogate, properties, constraints).

Ray is optional (``pip install 'mi[ray]'``) and imported only here, when a config asks for it. The
driver reads the candidates and ships chunks to tasks, a bounded number in flight (``execution.workers``,
default: the cluster's CPUs); each task loads the checkpoint once per worker process and runs on a GPU
when ``execution.num_gpus`` reserves one (``model.device: auto`` then picks CUDA, which Ray makes
visible to the task). Results come back to the driver, which writes the Parquet shards, so a cluster
needs no shared file system; it does need mi installed on every node, and a checkpoint path that every
node can read (``builtin:`` checkpoints ship in the wheel).

Cluster address: ``execution.address``, else ``RAY_ADDRESS``, else a local Ray started for the run (and
stopped after it). ``auto`` joins the cluster running on this machine. A Ray already initialised by the
caller (a notebook, a test) is used as it is.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from mi.candidates.base import Candidate
from mi.config import ScreenConfig
from mi.errors import ConfigError
from mi.execution.chunk import ChunkResult, run_chunk
from mi.execution.local import single_process_config


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "execution.backend: ray needs the Ray package: pip install 'mi[ray]' (or use backend: local)"
        ) from None
    return ray


def _chunk_task(index: int, candidates: list[Candidate], cfg: ScreenConfig, checkpoint: tuple) -> ChunkResult:
    import torch

    # A task owns the CPUs Ray gave it, not the whole node: keep torch from oversubscribing them.
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1") or 1)))
    return run_chunk(index, candidates, cfg, checkpoint)


def run_ray(
    chunks: Iterable[tuple[int, list[Candidate]]],
    cfg: ScreenConfig,
    checkpoint: tuple,
) -> Iterator[ChunkResult]:
    """ChunkResults of `chunks` computed as Ray tasks, in completion order."""
    ray = import_ray()
    execution = cfg.execution
    started_here = False
    if not ray.is_initialized():
        address = execution.address or os.environ.get("RAY_ADDRESS") or None
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(include_dashboard=False, log_to_driver=False)
        started_here = True
    try:
        task = ray.remote(num_cpus=1, num_gpus=execution.num_gpus or 0, max_retries=2)(_chunk_task)
        if execution.workers == "auto":
            in_flight = max(1, int(ray.cluster_resources().get("CPU", 1)))
        else:
            in_flight = int(execution.workers)
        in_flight = max(2, 2 * in_flight)  # a queue deep enough to keep every worker busy
        task_cfg = ray.put(single_process_config(cfg))
        pending = []
        for index, candidates in chunks:
            pending.append(task.remote(index, candidates, task_cfg, checkpoint))
            if len(pending) >= in_flight:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    yield ray.get(ref)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield ray.get(ref)
    finally:
        if started_here:
            ray.shutdown()


__all__ = ["import_ray", "run_ray"]
