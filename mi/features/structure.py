"""Structure descriptors: density, volume per atom, packing fraction.

A candidate without a structure (a formula from a CSV) gets a row of NaN: "unknown", which a model imputes.

Packing fraction = sum over sites and species of occupancy * 4/3 pi r^3, divided by the cell volume, with
r the element's empirical atomic radius (Slater 1964, pymatgen ``Element.atomic_radius``), or pymatgen's
calculated radius (Clementi 1967, ``atomic_radius_calculated``) where no empirical one exists. Oxidation
states are ignored (an Fe2+ site counts as an Fe atom). Partial occupancies and vacancies are weighted by
occupancy, so volume per atom divides by the summed occupancy, not by the number of sites.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pymatgen.core import Structure

from mi.features.composition import MAX_Z, PROPERTIES, element_property_table

FEATURES: tuple[str, ...] = ("density_g_cm3", "volume_per_atom_A3", "packing_fraction")


def structure_feature_names() -> list[str]:
    return list(FEATURES)


def _sphere_radius_table() -> np.ndarray:
    table = element_property_table()
    empirical = table[:, PROPERTIES.index("atomic_radius")]
    calculated = table[:, PROPERTIES.index("atomic_radius_calculated")]
    return np.where(np.isnan(empirical), calculated, empirical)


def _one(structure: Structure, radii: np.ndarray) -> list[float]:
    volume = float(structure.volume)
    if not volume > 0:
        raise ValueError(f"cell volume is {volume:g} A^3; a structure needs a positive volume")
    z, occupancy = [], []
    for site in structure:
        for species, occ in site.species.items():
            element = getattr(species, "element", species)
            number = int(getattr(element, "Z", 0))
            if not 1 <= number <= MAX_Z:
                raise ValueError(f"species {species} is not an element with Z = 1..{MAX_Z}")
            z.append(number)
            occupancy.append(float(occ))
    n_atoms = float(np.sum(occupancy))
    if not n_atoms > 0:
        raise ValueError("the structure has no atoms")
    spheres = np.sum(np.asarray(occupancy) * 4.0 / 3.0 * math.pi * radii[np.asarray(z)] ** 3)
    return [float(structure.density), volume / n_atoms, float(spheres) / volume]


def structure_features(structures: Sequence[Structure | None]) -> np.ndarray:
    """Descriptors of each structure, in the order of `structure_feature_names()`; None gives a NaN row.

    Raises ValueError for a cell of non-positive volume, no atoms, or a species that is not an element
    with Z = 1..103.
    """
    radii = _sphere_radius_table()
    out = np.full((len(structures), len(FEATURES)), np.nan)
    for i, structure in enumerate(structures):
        if structure is not None:
            out[i] = _one(structure, radii)
    return out
