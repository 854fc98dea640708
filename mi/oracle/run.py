"""`mi label CONFIG`: candidates -> oracle labels, in chunks, resumable.

The candidates are read as `mi screen` reads them (files, folders, a generator), in a fixed order, and
cut into chunks of ``output.chunk_size``. Each chunk is labelled and written atomically to
``<out>/chunks/chunk_<n>.json`` with the ids and content hashes it holds and the hash of the labelling
settings (``oracle`` and ``labels``); ``--resume`` keeps every chunk whose candidates and settings match
and labels only the rest (so candidates may be added after the finished chunks). At the end the chunks are gathered into

* ``labels.json``: ``{"units", "provenance", "data": [records]}``, a record per labelled candidate with
  ``id, formula, source``, the targets, what the oracle did, ``structure`` (the input cell) and
  ``relaxed_structure`` (pymatgen dicts): `mi train` reads it as a ``table`` dataset with
  ``structure_column: structure``;
* ``failures.csv`` (``id, file, record, stage, reason``) and ``manifest.json``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from pymatgen.core import Structure
from tqdm.auto import tqdm

from mi import __version__
from mi.candidates.base import Candidate, Failure
from mi.config import LabelConfig, LabelTargetsConfig, OracleConfig
from mi.errors import InputError
from mi.files import atomic_write_csv, atomic_write_json

log = logging.getLogger(__name__)


def compact_structure(structure: Structure, decimals: int = 6) -> dict:
    """A pymatgen Structure dict without the redundant Cartesian coordinates (Structure.from_dict reads it)."""
    return {
        "@module": "pymatgen.core.structure",
        "@class": "Structure",
        "lattice": {"matrix": [[round(float(x), decimals) for x in row] for row in structure.lattice.matrix]},
        "sites": [
            {
                "species": [{"element": str(sp), "occu": float(occ)} for sp, occ in site.species.items()],
                "abc": [round(float(x), decimals) for x in site.frac_coords],
            }
            for site in structure
        ],
    }


def build_labeller(o: OracleConfig, labels: LabelTargetsConfig, resolve: Callable[[str], Path]):
    """The `OracleLabeller` of an ``oracle:`` and a ``labels:`` section (`mi label` and `mi loop` alike); paths
    through `resolve` (relative to the config file)."""
    from mi.oracle.label import OracleLabeller
    from mi.oracle.registry import get_oracle

    oracle = get_oracle(o.name, model_name=o.model, fmax=o.fmax, max_steps=o.max_steps, time_limit_s=o.time_limit_s,
                        max_memory_mb=o.max_memory_mb, relax_cell=o.relax_cell, batch_size=o.batch_size, device=o.device)
    cache = None if labels.cache_dir in (None, "auto") else resolve(labels.cache_dir)
    entries = resolve(labels.entries_file) if labels.entries_file else None
    return OracleLabeller(oracle, references=labels.references, entries_file=entries,
                          working_ion=labels.working_ion, voltage=labels.voltage, cache_dir=cache)


def _records(candidates: list[Candidate], result) -> list[dict]:
    by_id = {c.id: c for c in candidates}
    out = []
    for cid, row in result.frame.iterrows():
        c = by_id[cid]
        record = {"id": cid, "formula": c.formula, "source": c.source}
        record.update({k: (None if isinstance(v, float) and v != v else v) for k, v in row.to_dict().items()})
        record["structure"] = compact_structure(c.structure)
        record["relaxed_structure"] = compact_structure(result.relaxed[cid])
        out.append(record)
    return out


def _settings_hash(cfg: LabelConfig) -> str:
    import hashlib

    payload = json.dumps(cfg.model_dump(mode="json", include={"oracle", "labels"}), sort_keys=True)
    return "sha256:" + hashlib.sha256(payload.encode()).hexdigest()


def label_from_config(cfg: LabelConfig, out: Path | None = None, *, resume: bool = False,
                      progress: bool = True) -> dict:
    """Label the configured candidates into `out` (default ``output.dir``); returns the manifest."""
    from mi.candidates import read_candidates

    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    out = Path(out) if out is not None else cfg.resolve(cfg.output.dir)
    chunks_dir = out / "chunks"
    chunks_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        for old in chunks_dir.glob("chunk_*.json"):
            old.unlink()
    config_hash = cfg.hash()
    # A chunk is reused when its candidates (ids and content) and the labelling settings are the same, so a
    # resumed run may also change which candidates come after the finished chunks.
    settings_hash = _settings_hash(cfg)

    candidates, failures = read_candidates(cfg.candidates, cfg.resolve)
    if not candidates:
        raise InputError(f"no usable candidates to label ({len(failures)} failures)")
    labeller = build_labeller(cfg.oracle, cfg.labels, cfg.resolve)
    size = cfg.output.chunk_size
    chunks = [candidates[i : i + size] for i in range(0, len(candidates), size)]
    records: list[dict] = []
    reused = 0
    for n, chunk in enumerate(tqdm(chunks, desc="label", unit="chunk", disable=not progress)):
        path = chunks_dir / f"chunk_{n:05d}.json"
        ids = [c.id for c in chunk]
        contents = [c.content_hash for c in chunk]
        if resume and path.is_file():
            try:
                saved = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                saved = {}
            same = saved.get("ids") == ids and saved.get("content_hashes") == contents
            if same and saved.get("settings_hash") == settings_hash:
                records += saved["records"]
                failures += [Failure(**f) for f in saved["failures"]]
                reused += 1
                continue
        result = labeller.label_details(chunk)
        chunk_records = _records(chunk, result)
        atomic_write_json(path, {"settings_hash": settings_hash, "ids": ids, "content_hashes": contents,
                                 "records": chunk_records,
                                 "failures": [f.__dict__ | {} for f in result.failures]}, indent=None)
        records += chunk_records
        failures += result.failures
    for extra in sorted(chunks_dir.glob("chunk_*.json"))[len(chunks):]:
        extra.unlink()  # chunks of an earlier, longer run

    provenance = labeller.provenance()
    atomic_write_json(out / "labels.json", {"units": labeller.units, "provenance": provenance, "data": records},
                      indent=None)
    import pandas as pd

    atomic_write_csv(out / "failures.csv", pd.DataFrame([f.as_row() for f in failures], columns=list(Failure.COLUMNS)))
    manifest = {
        "mi_version": __version__,
        "name": cfg.name,
        "config_hash": config_hash,
        "config": cfg.model_dump(mode="json"),
        "provenance": provenance,
        "targets": labeller.units,
        "counts": {"candidates": len(candidates), "labelled": len(records), "failed": len(failures),
                   "chunks": len(chunks), "chunks_reused": reused},
        "started_at": started,
        "ended_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": round(time.perf_counter() - t0, 2),
        "out_dir": str(out),
    }
    atomic_write_json(out / "manifest.json", manifest)
    return manifest
