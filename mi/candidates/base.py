"""What flows out of the candidates stage: candidates, and failures for what could not be read."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
from pymatgen.core import Composition, Structure


@dataclass(frozen=True)
class Candidate:
    """One material to screen.

    `structure` is None for composition-only candidates (formula CSVs); every stage must accept that.
    `id` is stable across runs: it is taken from the source (file stem, CSV id column, database row).
    """

    id: str
    source: str
    record: str
    composition: Composition
    structure: Structure | None
    content_hash: str
    meta: dict = field(default_factory=dict, compare=False)

    @property
    def formula(self) -> str:
        return self.composition.reduced_formula

    @property
    def has_structure(self) -> bool:
        return self.structure is not None


@dataclass(frozen=True)
class Failure:
    """One input (or one stage on one candidate) that failed; written to the run's failures.csv."""

    source: str
    record: str
    stage: str
    reason: str
    id: str = ""

    COLUMNS = ("id", "file", "record", "stage", "reason")

    def as_row(self) -> dict[str, str]:
        return {"id": self.id, "file": self.source, "record": self.record, "stage": self.stage, "reason": self.reason}


def structure_hash(structure: Structure, decimals: int = 5) -> str:
    """Content hash of a structure, independent of site order and of the file format it came from.

    Lattice and fractional coordinates (wrapped into [0, 1)) are rounded so that a CIF and a POSCAR of the
    same cell hash alike.
    """
    lattice = np.round(structure.lattice.matrix, decimals) + 0.0  # + 0.0 turns -0.0 into 0.0
    # every site's coordinates in one array operation (the same rounding, element by element)
    fracs = (np.round(np.mod(np.round(structure.frac_coords, decimals), 1.0), decimals) + 0.0).tolist()
    sites = []
    for site, frac in zip(structure, fracs):
        species = sorted((str(sp), round(float(occ), 4)) for sp, occ in site.species.items())
        sites.append((species, frac))
    sites.sort()
    payload = json.dumps({"lattice": lattice.tolist(), "sites": sites}, sort_keys=True)
    return "sha256:" + hashlib.sha256(payload.encode()).hexdigest()


def composition_hash(composition: Composition) -> str:
    """Content hash of a composition: the same for Li2Fe2P2O8 and LiFePO4 (screening is per formula unit)."""
    # amount / num_atoms is what Composition.fractional_composition stores, without building a Composition
    # per candidate (a third of the reading time of a 100,000-formula screen)
    total = composition.num_atoms
    payload = json.dumps(sorted((str(el), round(float(x / total), 8)) for el, x in composition.items()))
    return "sha256:" + hashlib.sha256(payload.encode()).hexdigest()
