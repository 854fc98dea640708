"""Feature sets: named, versioned descriptor families computed for a batch of candidates.

`featurize(candidates, sets)` returns one DataFrame indexed by candidate id with columns ``<set>.<feature>``
and a `Failure` for each candidate a set could not describe; `featurize_candidates` does the same with a
worker pool, a per-structure time limit and an on-disk cache, and says how many rows it computed and how
many it read from the cache. `graph_features` gives a graph network the neighbour list of a structure.

Sets (``features.sets``): ``composition`` (the 145 Magpie attributes, `mi.features.composition`),
``structure`` and ``working_ion`` (`mi.features.structure`). Their versions live in `FEATURE_SETS`.
"""

from __future__ import annotations

import importlib

# Names resolved on first use (PEP 562): loading a config imports `mi.features.sets` only, not the engine
# with pandas and pymatgen behind it.
_HOMES = {
    "FeatureCache": "cache", "default_cache_dir": "cache", "open_cache": "cache",
    "FeatureResult": "engine", "featurize": "engine", "featurize_candidates": "engine",
    "featurize_with_config": "engine",
    "graph_features": "graph", "load_graphs": "graph", "save_graphs": "graph",
    "FEATURE_SETS": "sets", "CompositionFeatureSet": "sets", "FeatureSet": "sets", "StructureFeatureSet": "sets",
    "WorkingIonFeatureSet": "sets", "feature_columns": "sets", "get_feature_set": "sets",
}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f"mi.features.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'mi.features' has no attribute {name!r}")


__all__ = [
    "FEATURE_SETS",
    "CompositionFeatureSet",
    "FeatureCache",
    "FeatureResult",
    "FeatureSet",
    "StructureFeatureSet",
    "WorkingIonFeatureSet",
    "default_cache_dir",
    "feature_columns",
    "featurize",
    "featurize_candidates",
    "featurize_with_config",
    "get_feature_set",
    "graph_features",
    "load_graphs",
    "open_cache",
    "save_graphs",
]
