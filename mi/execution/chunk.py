"""One chunk of candidates through the row-wise stages: features -> surrogate -> properties -> constraints.

Every stage here works row by row, so a chunk's rows come out the same whichever chunk, process or node
runs them; only the ranking needs all rows, and it runs on the shards afterwards (`mi.execution.merge`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from mi.candidates.base import Candidate, Failure
from mi.config import ScreenConfig

# Descriptor columns worth a researcher's eye in ranked.csv; the rest of the feature matrix stays internal.
REPORTED_STRUCTURE_FEATURES = ("volume_per_atom_A3", "packing_fraction")
STRUCTURE_COLUMN = "_structure_json"  # shards keep each kept row's structure for the top-k CIFs

# Loaded surrogates by checkpoint label, one per process: a worker or Ray task loads its model once.
_SURROGATES: dict[tuple[str, str], object] = {}


@dataclass
class ChunkResult:
    """The kept rows of one chunk and what happened to the rest."""

    index: int
    key: str
    table: pd.DataFrame  # rows that passed the constraints, unranked, plus STRUCTURE_COLUMN
    feature_failures: list[Failure] = field(default_factory=list)
    property_failures: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def chunk_key(candidates: Sequence[Candidate]) -> str:
    """A digest of the chunk's ids and contents: a resumed run reuses a shard only for the same chunk."""
    h = hashlib.sha256()
    for c in candidates:
        h.update(f"{c.id}\0{c.source}\0{c.record}\0{c.content_hash}\n".encode("utf-8", "surrogatepass"))
    return "sha256:" + h.hexdigest()


def get_surrogate(label: str, device: str):
    """The checkpoint `label` loaded once per process and moved to `device`."""
    from mi.models.checkpoint import load_checkpoint
    from mi.models.device import resolve_device

    key = (label, device)
    if key not in _SURROGATES:
        surrogate = load_checkpoint(label)
        surrogate.to(resolve_device(device))
        _SURROGATES[key] = surrogate
    return _SURROGATES[key]


def process_chunk(
    index: int,
    candidates: Sequence[Candidate],
    cfg: ScreenConfig,
    surrogate,
    *,
    progress: bool = False,
) -> ChunkResult:
    """Features, predictions, exact and derived properties and constraints for one chunk of candidates.

    `surrogate` is a loaded `Surrogate`, or ``(checkpoint label, device)`` to load (once per process).
    """
    from mi.data import load_element_facts
    from mi.features import featurize_with_config
    from mi.properties import compute_properties, derive_properties
    from mi.ranking import apply_constraints

    t0 = time.perf_counter()
    if isinstance(surrogate, tuple):
        surrogate = get_surrogate(*surrogate)
    sets = list(dict.fromkeys([*cfg.features.sets, *surrogate.spec.feature_sets]))
    featurized = featurize_with_config(
        candidates, sets, cfg.features, working_ion=cfg.properties.working_ion, resolve=cfg.resolve, progress=progress
    )
    features = featurized.features
    survivors = [c for c in candidates if c.id in features.index]

    predictions = surrogate.predict(features, survivors)  # element and graph models read the candidates
    element_table = (
        load_element_facts(cfg.resolve(cfg.properties.element_table)) if cfg.properties.element_table else None
    )
    properties, property_failures, notes = compute_properties(survivors, cfg.properties, element_table)

    base = pd.DataFrame(
        {"id": [c.id for c in survivors], "formula": [c.formula for c in survivors], "source": [c.source for c in survivors]}
    ).set_index("id", drop=False)
    reported = [f"structure.{n}" for n in REPORTED_STRUCTURE_FEATURES if f"structure.{n}" in features.columns]
    descriptors = features[reported].rename(columns=lambda c: c.split(".", 1)[1])
    # Working-ion conduction proxies (feature set 'working_ion') go into the table as they are, for ranking.
    conduction = features[[c for c in features.columns if str(c).startswith("working_ion.")]]
    table = base.join(properties, how="inner").join(predictions, how="left").join(descriptors, how="left")
    table = table.join(conduction, how="left")
    # Energy and stability windows read the surrogate's columns, so they come after the join.
    table, derived_notes = derive_properties(table, cfg.properties, element_table)
    table = table.reset_index(drop=True)
    rows_in = len(table)
    kept, removed = apply_constraints(table, cfg.ranking.constraints)
    kept = kept.reset_index(drop=True)
    structures = {c.id: c.structure for c in survivors if c.structure is not None}
    kept[STRUCTURE_COLUMN] = [
        json.dumps(structures[i].as_dict()) if i in structures else None for i in kept["id"]
    ]
    return ChunkResult(
        index=index,
        key=chunk_key(candidates),
        table=kept,
        feature_failures=list(featurized.failures),
        property_failures=list(property_failures),
        notes=[*notes, *derived_notes],
        counts={
            "candidates": len(candidates),
            "features_computed": featurized.computed,
            "features_from_cache": featurized.from_cache,
            "featurized": len(features),
            "rows": rows_in,
            "after_constraints": len(kept),
        },
        removed=removed,
        seconds=time.perf_counter() - t0,
    )


__all__ = ["ChunkResult", "REPORTED_STRUCTURE_FEATURES", "STRUCTURE_COLUMN", "chunk_key", "get_surrogate", "process_chunk"]
