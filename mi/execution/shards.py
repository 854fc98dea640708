"""Parquet shards of a screen: one per chunk, each written atomically and sealed by a small JSON record.

``<run>/shards/chunk-000042.parquet`` holds the chunk's kept rows; ``chunk-000042.removed.csv`` the rows its
constraints removed, as removed.csv lines (most rows of a screen: a small JSON record could not carry them);
``chunk-000042.json`` is written after both (atomically, last) with the chunk key, the row count and the
two files' sha256, the chunk's failures, notes and counts. A shard counts as done only when its record
exists and the files match it, so a run killed anywhere leaves either a complete shard or one that a
resumed run computes again.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from mi.candidates.base import Failure
from mi.errors import MiError
from mi.execution.chunk import ChunkResult
from mi.files import atomic_file, atomic_write_json, atomic_write_text, sha256_file

SHARD_DIR = "shards"
PLAN_FILE = "plan.json"
SHARD_FORMAT = 2  # 2: removed rows in a side file, not in the record


def shard_dir(run_dir: Path) -> Path:
    return Path(run_dir) / SHARD_DIR


def _paths(run_dir: Path, index: int) -> tuple[Path, Path]:
    folder = shard_dir(run_dir)
    return folder / f"chunk-{index:06d}.parquet", folder / f"chunk-{index:06d}.json"


def _removed_path(run_dir: Path, index: int) -> Path:
    return shard_dir(run_dir) / f"chunk-{index:06d}.removed.csv"




def _write_parquet_atomic(path: Path, frame: pd.DataFrame) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    with atomic_file(path) as handle:
        pq.write_table(table, handle)


def write_shard(run_dir: Path, result: ChunkResult) -> dict:
    """Write the chunk's Parquet file, then its sealing record; returns the record."""
    parquet, record_path = _paths(run_dir, result.index)
    parquet.parent.mkdir(parents=True, exist_ok=True)
    _write_parquet_atomic(parquet, result.table)
    removed = None
    if result.removed_csv:
        path = atomic_write_text(_removed_path(run_dir, result.index), result.removed_csv)
        removed = {"file": path.name, "sha256": sha256_file(path)}
    record = {
        "format": SHARD_FORMAT,
        "index": result.index,
        "key": result.key,
        "rows": int(len(result.table)),
        "sha256": sha256_file(parquet),
        "feature_failures": [f.as_row() for f in result.feature_failures],
        "property_failures": [f.as_row() for f in result.property_failures],
        "notes": list(result.notes),
        "counts": dict(result.counts),
        "removed": dict(result.removed),
        "removed_csv": removed,  # None: no row removed
        "seconds": round(result.seconds, 3),
    }
    atomic_write_json(record_path, record)
    return record


def _failure(row: dict) -> Failure:
    return Failure(row["file"], row["record"], row["stage"], row["reason"], id=row["id"])


def record_failures(record: dict) -> tuple[list[Failure], list[Failure]]:
    return [_failure(r) for r in record["feature_failures"]], [_failure(r) for r in record["property_failures"]]


def complete_shard(run_dir: Path, index: int, key: str) -> dict | None:
    """The sealing record of shard `index` if it is complete and belongs to the chunk `key`, else None."""
    parquet, record_path = _paths(run_dir, index)
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != SHARD_FORMAT or record.get("key") != key:
        return None
    if not parquet.is_file() or sha256_file(parquet) != record.get("sha256"):
        return None
    removed = record.get("removed_csv")
    if removed is not None:
        path = _removed_path(run_dir, index)
        if not path.is_file() or sha256_file(path) != removed.get("sha256"):
            return None
    return record


def removed_files(run_dir: Path, records) -> list[Path]:
    """The removed-rows files of shard `records`, in their order (records without removed rows skipped)."""
    return [_removed_path(run_dir, r["index"]) for r in records if r.get("removed_csv")]


def shard_files(run_dir: Path, indices: list[int]) -> list[Path]:
    return [_paths(run_dir, i)[0] for i in indices]


def start_shards(run_dir: Path, plan: dict, resume: bool) -> None:
    """Make the shard folder for a run described by `plan` (config, chunk size).

    A fresh run empties it. A resumed run needs the same plan as the one that wrote the shards: anything
    else would mix rows of two different screens.
    """
    folder = shard_dir(run_dir)
    plan_path = folder / PLAN_FILE
    if resume and plan_path.is_file():
        try:
            previous = json.loads(plan_path.read_text(encoding="utf-8"))
        except ValueError:
            previous = None
        if previous != plan:
            changed = sorted(k for k in set(plan) | set(previous or {}) if (previous or {}).get(k) != plan.get(k))
            raise MiError(
                f"{plan_path}: the run in this folder was started with a different "
                f"{', '.join(changed) or 'plan'}; --resume needs the same config (run without --resume to start over)"
            )
    elif folder.is_dir():
        for stale in folder.iterdir():
            if stale.is_file() and (stale.name.startswith("chunk-") or stale.name.startswith(".chunk-")):
                stale.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(plan_path, plan)


__all__ = [
    "SHARD_DIR",
    "complete_shard",
    "record_failures",
    "removed_files",
    "shard_dir",
    "shard_files",
    "start_shards",
    "write_shard",
]
