"""Deduplication that scales: exact buckets first, pymatgen's StructureMatcher only inside a bucket.

A bucket is (reduced formula, fingerprint). The fingerprint is the sorted multiset of per-site neighbour
lists (species and distance, in units that scale with the cell), so structures that are the same up to
symmetry, cell choice and a uniform strain share it, and different ones rarely do.
Only the first structure of each distinct kind is kept, in compact form (lattice, species, float32
coordinates), so memory grows with the number of distinct candidates, not with all of them.
"""

from __future__ import annotations

import hashlib
import math
import sys
from collections import Counter

import numpy as np
from pymatgen.core import Lattice, Structure


def _species_key(site) -> str:
    return site.species_string


def fingerprint(structure: Structure) -> tuple:
    """Sorted per-site neighbour lists (species, distance in units of (V/N)^(1/3), 2 decimals) to 1.6 units.

    Equal for structures that differ by symmetry, cell choice or a uniform strain; it only buckets, the
    StructureMatcher decides.
    """
    n = len(structure)
    unit = (structure.volume / n) ** (1.0 / 3.0)
    centers, neighbors, _, distances = structure.get_neighbor_list(r=1.6 * unit)
    names = [_species_key(s) for s in structure]
    shells: list[list] = [[] for _ in range(n)]
    for c, nb, d in zip(centers.tolist(), neighbors.tolist(), np.round(distances / unit, 2).tolist()):
        shells[c].append((names[nb], d))
    counts = Counter((names[i], tuple(sorted(shells[i]))) for i in range(n))
    g = math.gcd(*counts.values())  # a supercell repeats every entry: divide the repeat out
    return tuple(sorted((entry, k // g) for entry, k in counts.items()))


class Deduplicator:
    """`is_new(structure)` is True the first time a structure (up to StructureMatcher equality) is seen."""

    def __init__(self, ltol: float = 0.2, stol: float = 0.3, angle_tol: float = 5.0):
        from pymatgen.analysis.structure_matcher import StructureMatcher

        self._matcher = StructureMatcher(ltol=ltol, stol=stol, angle_tol=angle_tol, primitive_cell=True, scale=True)
        self._buckets: dict[tuple, list[tuple[np.ndarray, tuple, np.ndarray, str | None]]] = {}
        self.comparisons = 0

    def is_new(self, structure: Structure, formula: str | None = None, group: str | None = None) -> bool:
        """True (and remembered) unless an equal structure was seen; never compares within one `group`."""
        # the fingerprint is large (a tuple per site): keep a digest of it, not the tuple
        digest = hashlib.blake2b(repr(fingerprint(structure)).encode(), digest_size=16).digest()
        key = (formula or structure.composition.reduced_formula, digest)
        bucket = self._buckets.setdefault(key, [])
        for matrix, species, frac, seen_group in bucket:
            if group is not None and seen_group == group:
                continue
            self.comparisons += 1
            if self._matcher.fit(Structure(Lattice(matrix), species, frac.astype(float)), structure):
                return False
        species = tuple(sys.intern(s.species_string) if s.is_ordered else s.species.as_dict() for s in structure)
        bucket.append((structure.lattice.matrix.copy(), species, structure.frac_coords.astype(np.float32), group))
        return True

    @property
    def distinct(self) -> int:
        return sum(len(b) for b in self._buckets.values())
