"""Lattice hygiene before an oracle calculation.

A left-handed lattice (negative determinant) describes a perfectly good crystal, but cell filters that
deform the cell (ASE's FrechetCellFilter, used for CHGNet relaxations) take matrix logarithms of the
deformation and can run away in time and memory on one. Every structure is made right-handed first.
"""

from __future__ import annotations

import numpy as np
from pymatgen.core import Lattice, Structure


def right_handed(structure: Structure) -> Structure:
    """The same crystal on a right-handed lattice (the structure itself if it already is one).

    The lattice vectors are negated (a, b, c -> -a, -b, -c) and the fractional coordinates with them, so
    every Cartesian position, the cell volume and the site properties stay as they were.
    """
    matrix = structure.lattice.matrix
    if np.linalg.det(matrix) > 0:
        return structure
    return Structure(
        Lattice(-matrix),
        [site.species for site in structure],
        -structure.frac_coords,
        site_properties=structure.site_properties or None,
        properties=dict(getattr(structure, "properties", {}) or {}),
    )
