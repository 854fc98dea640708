"""The named, versioned feature sets a config selects (``features.sets``) and checkpoints record.

A set's ``version`` changes whenever its numbers would change for the same input; checkpoints record the
versions they were trained with and refuse to load against others, and the feature cache keys on it.

Two kinds of set:

* batch sets (``composition``, ``element_fraction``) are vectorised over many candidates at once, in this process;
* per-structure sets (``structure``, ``working_ion``) describe one structure at a time from a shared
  `StructureAnalysis`, so the engine can run them in worker processes under a time limit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pymatgen.core import Composition

from mi.candidates.base import Candidate
from mi.errors import ConfigError
from mi.features.composition import by_element, composition_feature_names, composition_features
from mi.features.structure import (
    StructureAnalysis,
    structure_feature_names,
    structure_row,
    working_ion_feature_names,
    working_ion_fraction,
    working_ion_row,
)


class FeatureSet:
    """A named, versioned family of descriptors. Subclasses define `names` and `compute`."""

    name: str = ""
    version: int = 0
    per_structure: bool = False  # computed one structure at a time (worker pool, time limit)
    uses_working_ion: bool = False  # its numbers depend on the working ion (part of the cache key)

    def names(self) -> list[str]:
        raise NotImplementedError

    def compute(self, candidates: Sequence[Candidate], working_ion: str | None = None) -> np.ndarray:
        """Float array of shape (len(candidates), len(self.names())); raises if any candidate fails."""
        if not self.per_structure:
            raise NotImplementedError
        return np.array([self.compute_one(c, working_ion) for c in candidates]).reshape(len(candidates), -1)

    def compute_one(self, candidate: Candidate, working_ion: str | None = None) -> np.ndarray:
        """One candidate's row (per-structure sets)."""
        if candidate.structure is None:
            return self.compute_without_structure(candidate, working_ion)
        return self.compute_structure(StructureAnalysis(candidate.structure), working_ion)

    def compute_structure(self, analysis: StructureAnalysis, working_ion: str | None) -> np.ndarray:
        raise NotImplementedError

    def compute_without_structure(self, candidate: Candidate, working_ion: str | None) -> np.ndarray:
        return np.full(len(self.names()), np.nan)

    def columns(self) -> list[str]:
        return [f"{self.name}.{n}" for n in self.names()]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, version={self.version})"


class CompositionFeatureSet(FeatureSet):
    """The 145 Magpie attributes: element-property statistics, stoichiometry, valence, ionic character."""

    name = "composition"
    version = 2  # v1: pymatgen element data, 113 columns; v2: the Magpie table, equal to matminer

    def names(self) -> list[str]:
        return composition_feature_names()

    def compute(self, candidates: Sequence[Candidate], working_ion: str | None = None) -> np.ndarray:
        return composition_features([c.composition for c in candidates])


class ElementFractionFeatureSet(FeatureSet):
    """Atomic fraction of each element H..Lr (ElemNet's input): a network's first layer on these learns an
    embedding per element, which the Magpie statistics cannot express (Jha et al., Sci. Rep. 8, 17593 (2018))."""

    name = "element_fraction"
    version = 1
    max_z = 103

    def names(self) -> list[str]:
        from pymatgen.core import Element

        return [f"x_{Element.from_Z(z).symbol}" for z in range(1, self.max_z + 1)]

    def compute(self, candidates: Sequence[Candidate], working_ion: str | None = None) -> np.ndarray:
        out = np.zeros((len(candidates), self.max_z))
        for i, candidate in enumerate(candidates):
            composition = candidate.composition
            if by_element(composition) is composition:
                # fractional_composition by element, without its two Compositions: amount / atoms (and
                # what pymatgen drops as zero)
                total, tolerance = composition.num_atoms, Composition.amount_tolerance
                fractions = [(el, a / total) for el, a in composition.items() if abs(a / total) >= tolerance]
            else:
                fractions = composition.fractional_composition.element_composition.items()
            for element, fraction in fractions:
                if not 1 <= element.Z <= self.max_z:
                    raise ValueError(f"element {element} (Z={element.Z}) is outside H..Lr")
                out[i, element.Z - 1] += fraction
        return out


class StructureFeatureSet(FeatureSet):
    """Density, packing, coordination and bond lengths, space group; NaN for composition-only candidates."""

    name = "structure"
    version = 2  # v1: density, volume per atom, packing fraction only
    per_structure = True

    def names(self) -> list[str]:
        return structure_feature_names()

    def compute_structure(self, analysis: StructureAnalysis, working_ion: str | None) -> np.ndarray:
        return structure_row(analysis)


class WorkingIonFeatureSet(FeatureSet):
    """Working-ion site fraction, ion-ion distances, volume per anion, bond-valence-sum deviation."""

    name = "working_ion"
    version = 1
    per_structure = True
    uses_working_ion = True

    def names(self) -> list[str]:
        return working_ion_feature_names()

    def compute_structure(self, analysis: StructureAnalysis, working_ion: str | None) -> np.ndarray:
        return working_ion_row(analysis, _require_ion(working_ion))

    def compute_without_structure(self, candidate: Candidate, working_ion: str | None) -> np.ndarray:
        row = np.full(len(self.names()), np.nan)
        row[0] = working_ion_fraction(candidate.composition, _require_ion(working_ion))
        return row


def _require_ion(working_ion: str | None) -> str:
    if not working_ion:
        raise ConfigError("features.sets: 'working_ion' needs the screen's working ion (properties.working_ion)")
    return working_ion


FEATURE_SETS: dict[str, FeatureSet] = {
    "composition": CompositionFeatureSet(),
    "element_fraction": ElementFractionFeatureSet(),
    "structure": StructureFeatureSet(),
    "working_ion": WorkingIonFeatureSet(),
}


def get_feature_set(name: str) -> FeatureSet:
    if name not in FEATURE_SETS:
        known = ", ".join(sorted(FEATURE_SETS))
        raise ConfigError(f"features.sets: unknown feature set {name!r} (known: {known})")
    return FEATURE_SETS[name]


def check_names(cfg) -> None:
    """Refuse a config (any kind) that names an unknown feature set, with the file and key path of each.

    Called by `mi validate` and before a screen, training or loop starts (config, the ground layer, cannot
    know the sets); the fields that name sets are each section's ``feature_set_fields``."""
    from mi.config import invalid_config, sections

    known = ", ".join(sorted(FEATURE_SETS))
    problems = [
        (f"{path}.{field}[{i}]" if path else f"{field}[{i}]", f"unknown feature set {name!r} (known: {known})")
        for path, section in sections(cfg)
        for field in getattr(section, "feature_set_fields", ())
        for i, name in enumerate(getattr(section, field))
        if name not in FEATURE_SETS
    ]
    if problems:
        raise invalid_config(cfg, problems)


def feature_columns(sets: Sequence[str]) -> list[str]:
    """The column names `featurize` produces for these sets, in order."""
    return [column for name in dict.fromkeys(sets) for column in get_feature_set(name).columns()]
