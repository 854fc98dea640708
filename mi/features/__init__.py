"""Feature sets: named, versioned descriptor families computed for a batch of candidates.

`featurize(candidates, sets)` returns one DataFrame indexed by candidate id with columns
``<set>.<feature>``, and a `Failure` for each candidate a feature set could not describe. Each set is
computed for the whole batch at once; if the batch raises, the set is recomputed one candidate at a time
to find the culprits, and the others go on.

A set's ``version`` changes whenever its numbers would change for the same input; checkpoints record the
versions they were trained with and refuse to load against others.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from mi.candidates.base import Candidate, Failure
from mi.errors import ConfigError
from mi.features.composition import composition_feature_names, composition_features
from mi.features.structure import structure_feature_names, structure_features


class FeatureSet:
    """A named, versioned family of descriptors. Subclasses define `names` and `compute`."""

    name: str = ""
    version: int = 0

    def names(self) -> list[str]:
        raise NotImplementedError

    def compute(self, candidates: Sequence[Candidate]) -> np.ndarray:
        """Float array of shape (len(candidates), len(self.names())); raises if any candidate fails."""
        raise NotImplementedError

    def columns(self) -> list[str]:
        return [f"{self.name}.{n}" for n in self.names()]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, version={self.version})"


class CompositionFeatureSet(FeatureSet):
    """Fraction-weighted statistics of element properties, stoichiometry norms, valence fractions."""

    name = "composition"
    version = 1

    def names(self) -> list[str]:
        return composition_feature_names()

    def compute(self, candidates: Sequence[Candidate]) -> np.ndarray:
        return composition_features([c.composition for c in candidates])


class StructureFeatureSet(FeatureSet):
    """Density, volume per atom and packing fraction; NaN for composition-only candidates."""

    name = "structure"
    version = 1

    def names(self) -> list[str]:
        return structure_feature_names()

    def compute(self, candidates: Sequence[Candidate]) -> np.ndarray:
        return structure_features([c.structure for c in candidates])


FEATURE_SETS: dict[str, FeatureSet] = {
    "composition": CompositionFeatureSet(),
    "structure": StructureFeatureSet(),
}


def get_feature_set(name: str) -> FeatureSet:
    if name not in FEATURE_SETS:
        known = ", ".join(sorted(FEATURE_SETS))
        raise ConfigError(f"features.sets: unknown feature set {name!r} (known: {known})")
    return FEATURE_SETS[name]


def feature_columns(sets: Sequence[str]) -> list[str]:
    """The column names `featurize` produces for these sets, in order."""
    return [column for name in sets for column in get_feature_set(name).columns()]


def _compute_isolating(feature_set: FeatureSet, candidates: Sequence[Candidate]) -> tuple[np.ndarray, list[str | None]]:
    """Compute a set for a batch; on error, one by one. Returns values and a reason per candidate (None = ok)."""
    width = len(feature_set.names())
    try:
        values = np.asarray(feature_set.compute(candidates), dtype=float).reshape(len(candidates), width)
        return values, [None] * len(candidates)
    except Exception:  # noqa: BLE001 - isolate the bad candidates below
        pass
    values = np.full((len(candidates), width), np.nan)
    reasons: list[str | None] = []
    for i, candidate in enumerate(candidates):
        try:
            values[i] = np.asarray(feature_set.compute([candidate]), dtype=float).reshape(width)
            reasons.append(None)
        except Exception as exc:  # noqa: BLE001 - one bad candidate must not stop the run
            reasons.append(f"{feature_set.name} features: {type(exc).__name__}: {exc}")
    return values, reasons


def featurize(candidates: Sequence[Candidate], sets: Sequence[str]) -> tuple[pd.DataFrame, list[Failure]]:
    """Features of every candidate that all `sets` can describe, and a Failure for each one they cannot.

    The DataFrame is indexed by candidate id (index name ``id``), columns ``<set>.<feature>``, float64.
    """
    feature_sets = [get_feature_set(name) for name in dict.fromkeys(sets)]
    alive = list(candidates)
    blocks: list[np.ndarray] = []
    failures: list[Failure] = []
    for feature_set in feature_sets:
        values, reasons = _compute_isolating(feature_set, alive)
        keep = np.array([r is None for r in reasons], dtype=bool)
        for candidate, reason in zip(alive, reasons):
            if reason is not None:
                failures.append(
                    Failure(source=candidate.source, record=candidate.record, stage="features", reason=reason,
                            id=candidate.id)
                )
        blocks = [b[keep] for b in blocks] + [values[keep]]
        alive = [c for c, ok in zip(alive, keep) if ok]
    columns = [column for fs in feature_sets for column in fs.columns()]
    data = np.hstack(blocks) if blocks else np.empty((len(alive), 0))
    index = pd.Index([c.id for c in alive], name="id", dtype=object)
    return pd.DataFrame(data, index=index, columns=columns, dtype=float), failures


__all__ = [
    "FEATURE_SETS",
    "CompositionFeatureSet",
    "FeatureSet",
    "StructureFeatureSet",
    "feature_columns",
    "featurize",
    "get_feature_set",
]
