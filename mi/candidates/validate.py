"""Physical sanity checks: what makes a parsed entry unusable for screening.

Each check returns a reason a user understands, or None. The reader turns reasons into failures.
"""

from __future__ import annotations

import math

import numpy as np
from pymatgen.core import Composition, DummySpecies, Element, Species, Structure


def composition_problem(composition: Composition) -> str | None:
    if len(composition) == 0 or composition.num_atoms <= 0:
        return "empty composition"
    for species, amount in composition.items():
        if isinstance(species, DummySpecies) or not isinstance(species, (Element, Species)):
            return f"unknown element {getattr(species, 'symbol', str(species))!r}"
        if not math.isfinite(amount) or amount <= 0:
            return f"non-positive or non-finite amount {amount!r} of {species}"
    return None


def structure_problem(
    structure: Structure,
    *,
    min_distance_A: float,
    min_volume_per_atom_A3: float,
    max_atoms: int,
) -> str | None:
    n = len(structure)
    if n == 0:
        return "structure has no sites"
    if n > max_atoms:
        return f"{n} sites is more than candidates.max_atoms={max_atoms}"
    matrix = structure.lattice.matrix
    if not np.all(np.isfinite(matrix)):
        return "lattice has NaN or infinite entries"
    volume = abs(float(np.linalg.det(matrix)))
    if volume < 1e-6:
        return "cell volume is zero (degenerate lattice)"
    if not np.all(np.isfinite(structure.frac_coords)):
        return "coordinates have NaN or infinite entries"
    problem = composition_problem(structure.composition)
    if problem:
        return problem
    for i, site in enumerate(structure):
        occupancy = sum(site.species.values())
        if occupancy > 1.0 + 1e-3:
            return f"site {i} has total occupancy {occupancy:.3f} > 1"
    if volume / n < min_volume_per_atom_A3:
        return (
            f"volume per site {volume / n:.3g} A^3 is below candidates.min_volume_per_atom_A3="
            f"{min_volume_per_atom_A3} (collapsed cell)"
        )
    centers, _, _, distances = structure.get_neighbor_list(r=min_distance_A)
    if len(distances):
        k = int(np.argmin(distances))
        return (
            f"overlapping atoms: site {int(centers[k])} has a neighbour at {float(distances[k]):.3f} A "
            f"(candidates.min_distance_A={min_distance_A})"
        )
    return None
