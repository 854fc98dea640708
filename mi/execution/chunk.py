"""One chunk of candidates through the row-wise stages: features -> surrogate -> properties -> constraints.

Every stage here works row by row, so a chunk's rows come out the same whichever chunk, process or node
runs them; only the ranking needs all rows, and it runs on the shards afterwards (`mi.execution.merge`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from mi.candidates.base import Candidate, Failure
from mi.config import ScreenConfig
from mi.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

# Descriptor columns worth a researcher's eye in ranked.csv; the rest of the feature matrix stays internal.
REPORTED_STRUCTURE_FEATURES = ("volume_per_atom_A3", "packing_fraction")
STRUCTURE_COLUMN = "_structure_json"  # shards keep each kept row's structure for the top-k CIFs

# Loaded screen models by their references, one set per process: a worker or Ray task loads them once.
_SURROGATES: dict[tuple, object] = {}


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
    removed_csv: str = ""  # removed.csv lines (no header) of the rows a constraint dropped
    seconds: float = 0.0


def chunk_key(candidates: Sequence[Candidate]) -> str:
    """A digest of the chunk's ids and contents: a resumed run reuses a shard only for the same chunk."""
    h = hashlib.sha256()
    for c in candidates:
        h.update(f"{c.id}\0{c.source}\0{c.record}\0{c.content_hash}\n".encode("utf-8", "surrogatepass"))
    return "sha256:" + h.hexdigest()


def get_surrogate(refs: tuple):
    """The screen's models (`mi.models.screen_models.ModelRef`s) loaded once per process."""
    from mi.models.screen_models import ScreenModels

    key = tuple(refs)
    if key not in _SURROGATES:
        _SURROGATES[key] = ScreenModels.load(refs)
    return _SURROGATES[key]


def process_chunk(
    index: int,
    candidates: Sequence[Candidate],
    cfg: ScreenConfig,
    surrogate,
    *,
    progress: bool = False,
) -> ChunkResult:
    """Features, exact properties, the leading constraints on them, predictions, derived properties and the
    remaining constraints for one chunk of candidates.

    `surrogate` is the loaded `ScreenModels`, or a tuple of their `ModelRef`s to load (once per process).
    """
    from mi.data import load_element_facts
    from mi.features import featurize_with_config
    from mi.properties import compute_properties, derive_properties
    from mi.ranking import split_by_constraints
    from mi.ranking.constraints import leading_constraints, removed_csv
    from mi.ranking.domain import drop_out_of_domain

    t0 = time.perf_counter()
    if isinstance(surrogate, tuple):
        surrogate = get_surrogate(surrogate)
    sets = list(dict.fromkeys([*cfg.features.sets, *surrogate.feature_sets]))
    featurized = featurize_with_config(
        candidates, sets, cfg.features, working_ion=cfg.properties.working_ion, resolve=cfg.resolve, progress=progress
    )
    features = featurized.features
    survivors = [c for c in candidates if c.id in features.index]

    # read once for the chunk's calculators and table-level groups (each would read the packaged one)
    element_table = load_element_facts(
        cfg.resolve(cfg.properties.element_table) if cfg.properties.element_table else None
    )
    properties, property_failures, notes = compute_properties(
        survivors, cfg.properties, element_table, timeout_s=cfg.features.timeout_s
    )

    base = pd.DataFrame(
        {"id": [c.id for c in survivors], "formula": [c.formula for c in survivors], "source": [c.source for c in survivors]}
    ).set_index("id", drop=False)
    reported = [f"structure.{n}" for n in REPORTED_STRUCTURE_FEATURES if f"structure.{n}" in features.columns]
    descriptors = features[reported].rename(columns=lambda c: c.split(".", 1)[1])
    # Working-ion conduction proxies (feature set 'working_ion') go into the table as they are, for ranking.
    conduction = features[[c for c in features.columns if str(c).startswith("working_ion.")]]
    exact = base.join(properties, how="inner").join(descriptors, how="left").join(conduction, how="left")
    rows_in = len(exact)
    # The leading constraints on exact columns (the presets' capacity rules remove some 95 % of a database's
    # formulas) go first: the rows they remove cost neither the models nor the derived properties, and each
    # removed row is removed by the same first constraint as on the whole table.
    constraints = cfg.ranking.constraints
    early = leading_constraints(constraints, exact.columns)
    exact, removed, removed_rows = split_by_constraints(exact.reset_index(drop=True), constraints, range(early))
    ids = set(exact["id"])
    # none left: the models and calculators still run, on the empty table, and give it its columns
    survivors = [c for c in survivors if c.id in ids]
    # element and graph models read the candidates
    predictions = surrogate.predict(features.loc[[c.id for c in survivors]], survivors)
    table = base.loc[exact["id"]].join(properties, how="inner").join(predictions, how="left")
    table = table.join(descriptors, how="left").join(conduction, how="left")
    # Energy and stability windows read the surrogate's columns, so they come after the join.
    table, derived_notes = derive_properties(table, cfg.properties, element_table)
    table = table.reset_index(drop=True)
    kept, later, later_rows = split_by_constraints(table, constraints, range(early, len(constraints)))
    removed.update(later)
    if len(later_rows):
        removed_rows = pd.concat([removed_rows, later_rows], ignore_index=True) if len(removed_rows) else later_rows
    kept, dropped, dropped_rows = drop_out_of_domain(kept, cfg.ranking)  # ranking.out_of_domain: drop
    removed = {**removed, **dropped}
    if len(dropped_rows):
        removed_rows = pd.concat([removed_rows, dropped_rows], ignore_index=True)
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
        removed_csv=removed_csv(removed_rows),
        seconds=time.perf_counter() - t0,
    )


# The stage a chunk stopped in: by the call in `process_chunk` that raised (its source line), else by the
# innermost mi module the exception passed through.
_CALLS = (
    ("featurize", "features"),
    ("surrogate", "surrogate"),
    ("predict", "surrogate"),
    ("compute_properties", "properties"),
    ("derive_properties", "properties"),
    ("load_element_facts", "properties"),
    ("constraints", "constraints"),
    ("out_of_domain", "constraints"),
    ("json.dumps", "export"),
)
_MODULES = (
    ("mi.features", "features"),
    ("mi.models", "surrogate"),
    ("mi.properties", "properties"),
    ("mi.data", "properties"),
    ("mi.ranking", "constraints"),
)


def _stage_of(exc: BaseException) -> str:
    import linecache

    stage = "screen"
    for frame, line_number in traceback.walk_tb(exc.__traceback__):
        if frame.f_code is process_chunk.__code__:
            line = linecache.getline(frame.f_code.co_filename, line_number)
            called = next((name for key, name in _CALLS if key in line), None)
            if called:
                return called
        module = str(frame.f_globals.get("__name__", ""))
        stage = next((name for prefix, name in _MODULES if module.startswith(prefix)), stage)
    return stage


def failed_chunk(index: int, candidates: Sequence[Candidate], exc: BaseException) -> ChunkResult:
    """The result of a chunk that raised: every one of its candidates becomes a failure naming the stage
    and the error, so that the run goes on and nothing vanishes."""
    stage = _stage_of(exc)
    text = " ".join(str(exc).split())[:300]
    reason = (
        f"the {stage} stage failed for this candidate's chunk of {len(candidates)} "
        f"({type(exc).__name__}: {text or 'no message'}); the chunk's candidates are not ranked"
    )
    failures = [Failure(c.source, c.record, stage, reason, id=c.id) for c in candidates]
    empty = pd.DataFrame({"id": pd.Series(dtype=object), "formula": pd.Series(dtype=object),
                          "source": pd.Series(dtype=object), STRUCTURE_COLUMN: pd.Series(dtype=object)})
    return ChunkResult(
        index=index,
        key=chunk_key(candidates),
        table=empty,
        feature_failures=failures if stage == "features" else [],
        property_failures=[] if stage == "features" else failures,
        notes=[f"chunk {index}: the {stage} stage raised {type(exc).__name__}; its {len(candidates)} candidates failed"],
        counts={"candidates": len(candidates), "rows": 0, "after_constraints": 0},
    )


def run_chunk(
    index: int,
    candidates: Sequence[Candidate],
    cfg: ScreenConfig,
    surrogate,
    *,
    progress: bool = False,
) -> ChunkResult:
    """`process_chunk`, with an exception in any stage turned into failures for the chunk's candidates
    (`failed_chunk`) instead of a lost run. A ConfigError (a constraint on a column no stage makes) is the
    config's fault, not the candidates': it still stops the run, and so does a checkpoint that a worker
    cannot load (every chunk would fail alike)."""
    try:
        return process_chunk(index, candidates, cfg, surrogate, progress=progress)
    except (ConfigError, CheckpointError):
        raise
    except Exception as exc:  # noqa: BLE001 - any stage, any library: the chunk fails, the run goes on
        log.warning("chunk %d failed", index, exc_info=True)
        return failed_chunk(index, candidates, exc)


__all__ = [
    "ChunkResult",
    "REPORTED_STRUCTURE_FEATURES",
    "STRUCTURE_COLUMN",
    "chunk_key",
    "failed_chunk",
    "get_surrogate",
    "process_chunk",
    "run_chunk",
]
