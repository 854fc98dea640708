"""Feature sets: named, versioned descriptor families computed for a batch of candidates.

`featurize(candidates, sets)` returns one DataFrame indexed by candidate id with columns ``<set>.<feature>``
and a `Failure` for each candidate a set could not describe; `featurize_candidates` does the same with a
worker pool, a per-structure time limit and an on-disk cache, and says how many rows it computed and how
many it read from the cache. `graph_features` gives a graph network the neighbour list of a structure.

Sets (``features.sets``): ``composition`` (the 145 Magpie attributes, `mi.features.composition`),
``structure`` and ``working_ion`` (`mi.features.structure`). Their versions live in `FEATURE_SETS`.
"""

from __future__ import annotations

from mi.features.cache import FeatureCache, default_cache_dir, open_cache
from mi.features.engine import FeatureResult, featurize, featurize_candidates, featurize_with_config
from mi.features.graph import graph_features, load_graphs, save_graphs
from mi.features.sets import (
    FEATURE_SETS,
    CompositionFeatureSet,
    FeatureSet,
    StructureFeatureSet,
    WorkingIonFeatureSet,
    feature_columns,
    get_feature_set,
)

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
