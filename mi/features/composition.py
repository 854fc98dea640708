"""Composition descriptors from pymatgen's element data, computed for a whole batch at once.

An element-property table (rows Z = 1..103) is built once, on first use, from `pymatgen.core.Element`.
A batch of compositions becomes a padded array of (Z, atomic fraction) pairs; the statistics of every
property are then array operations over that padding:

* ``mean``      fraction-weighted mean            sum_i x_i p_i
* ``avg_dev``   fraction-weighted mean absolute deviation   sum_i x_i |p_i - mean|
* ``min`` / ``max`` / ``range`` over the elements present

A statistic is NaN when pymatgen has no value of that property for one of the elements present (for
example the electronegativity of a noble gas); models impute such values, they are not guessed here.
Stoichiometry norms (L0 = number of elements, Lp = (sum_i x_i^p)^(1/p)) and the fractions of valence
electrons in s, p, d and f orbitals (Magpie's ``frac sValence`` etc.) follow.

Valence-electron counts follow Magpie: every electron outside the noble-gas core of the neutral atom's
configuration (Fe [Ar].3d6.4s2 -> s 2, d 6; Pb [Xe].4f14.5d10.6s2.6p2 -> s 2, p 2, d 10, f 14).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from pymatgen.core import Composition, Element

MAX_Z = 103

# (column name, how to read it from an Element); values are plain floats, NaN where pymatgen has none.
PROPERTIES: tuple[str, ...] = (
    "Z",
    "atomic_mass",  # amu
    "mendeleev_no",
    "row",
    "group",
    "electronegativity",  # Pauling
    "atomic_radius",  # empirical (Slater), Angstrom
    "atomic_radius_calculated",  # Clementi, Angstrom
    "ionic_radius",  # average over pymatgen's ionic radii, Angstrom (an ionic-size proxy)
    "vdw_radius",  # Angstrom
    "melting_point",  # K
    "molar_volume",  # cm^3/mol
    "density_of_solid",  # g/cm^3
    "first_ionization_energy",  # eV
    "electron_affinity",  # eV
    "n_s_valence",
    "n_p_valence",
    "n_d_valence",
    "n_f_valence",
    "n_valence",
)
STATS: tuple[str, ...] = ("mean", "avg_dev", "min", "max", "range")
NORMS: tuple[int, ...] = (0, 2, 3, 5, 7, 10)
ORBITALS: tuple[str, ...] = ("s", "p", "d", "f")

_SUBSHELL = re.compile(r"(\d+)([spdf])(\d+)")


def _float(value) -> float:
    """A pymatgen value (FloatWithUnit, int, None) as a float; NaN where missing."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _valence_counts(element: Element) -> tuple[float, float, float, float]:
    """Electrons in s, p, d, f subshells outside the noble-gas core of the neutral atom."""
    structures = element.data.get("Electronic structure")
    text = structures.get("0") if isinstance(structures, dict) else structures
    if not text:
        return (math.nan,) * 4
    text = re.sub(r"^\[[A-Za-z]+\]\.?", "", str(text))  # drop the core, e.g. "[Ar]."
    counts = dict.fromkeys(ORBITALS, 0.0)
    for _n, orbital, electrons in _SUBSHELL.findall(text):
        counts[orbital] += float(electrons)
    return tuple(counts[o] for o in ORBITALS)


def _element_row(element: Element) -> list[float]:
    ionic = _float(element.average_ionic_radius)
    density = _float(element.density_of_solid)  # kg/m^3
    ionization = element.data.get("Ionization energies") or []
    s, p, d, f = _valence_counts(element)
    return [
        float(element.Z),
        _float(element.atomic_mass),
        _float(element.mendeleev_no),
        _float(element.row),
        _float(element.group),
        _float(element.X),
        _float(element.atomic_radius),
        _float(element.atomic_radius_calculated),
        ionic if ionic > 0 else math.nan,  # pymatgen writes 0 for "no ionic radius"
        _float(element.van_der_waals_radius),
        _float(element.melting_point),
        _float(element.molar_volume),
        density / 1000.0,
        _float(ionization[0]) if ionization else math.nan,
        _float(element.electron_affinity),
        s,
        p,
        d,
        f,
        s + p + d + f,
    ]


@lru_cache(maxsize=1)
def element_property_table() -> np.ndarray:
    """Read-only float64 array of shape (MAX_Z + 1, len(PROPERTIES)); row Z holds element Z, row 0 is NaN."""
    table = np.full((MAX_Z + 1, len(PROPERTIES)), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns for every property it lacks
        for z in range(1, MAX_Z + 1):
            table[z] = _element_row(Element.from_Z(z))
    table.setflags(write=False)
    return table


def composition_feature_names() -> list[str]:
    names = [f"{stat}_{prop}" for prop in PROPERTIES for stat in STATS]
    names += [f"L{p}_norm" for p in NORMS]
    names += [f"frac_{o}_valence" for o in ORBITALS]
    return names


def _padded(compositions: Sequence[Composition]) -> tuple[np.ndarray, np.ndarray]:
    """(Z, fraction) arrays of shape (n, max elements); padding has Z = 0 and fraction 0."""
    rows: list[list[tuple[int, float]]] = []
    for i, composition in enumerate(compositions):
        elements = composition.element_composition
        pairs = [(int(el.Z), float(amount)) for el, amount in elements.items()]
        if not pairs:
            raise ValueError(f"composition #{i} is empty")
        for z, amount in pairs:
            if not 1 <= z <= MAX_Z:
                raise ValueError(f"composition #{i} ({composition}): only elements Z = 1..{MAX_Z} are supported")
            if not amount > 0:
                raise ValueError(f"composition #{i} ({composition}): amounts must be positive")
        rows.append(pairs)
    width = max((len(r) for r in rows), default=1)
    z = np.zeros((len(rows), width), dtype=np.int64)
    x = np.zeros((len(rows), width))
    for i, pairs in enumerate(rows):
        z[i, : len(pairs)] = [p[0] for p in pairs]
        x[i, : len(pairs)] = [p[1] for p in pairs]
    x /= x.sum(axis=1, keepdims=True)
    return z, x


def composition_features(compositions: Sequence[Composition]) -> np.ndarray:
    """Descriptors of each composition, in the order of `composition_feature_names()`; shape (n, n_features).

    Raises ValueError for an empty composition, a non-positive amount, or an element beyond Z = 103
    (the caller isolates which composition it was).
    """
    n_features = len(composition_feature_names())
    if len(compositions) == 0:
        return np.empty((0, n_features))
    z, x = _padded(compositions)
    present = x > 0  # (n, m)
    values = element_property_table()[z]  # (n, m, k); padding reads row 0 (NaN) and is masked below
    missing = np.any(np.isnan(values) & present[..., None], axis=1)  # (n, k)
    filled = np.where(present[..., None], np.nan_to_num(values, nan=0.0), 0.0)

    mean = np.einsum("nm,nmk->nk", x, filled)
    avg_dev = np.einsum("nm,nmk->nk", x, np.abs(filled - mean[:, None, :]) * present[..., None])
    low = np.where(present[..., None], filled, np.inf).min(axis=1)
    high = np.where(present[..., None], filled, -np.inf).max(axis=1)
    stats = np.stack([mean, avg_dev, low, high, high - low], axis=2)  # (n, k, n_stats)
    stats[missing] = np.nan
    stats = stats.reshape(len(x), -1)  # property-major, matching composition_feature_names()

    norms = [present.sum(axis=1).astype(float)]
    norms += [np.sum(x**p, axis=1) ** (1.0 / p) for p in NORMS[1:]]

    valence_columns = [PROPERTIES.index(f"n_{o}_valence") for o in ORBITALS]
    total = mean[:, PROPERTIES.index("n_valence")]
    with np.errstate(invalid="ignore", divide="ignore"):
        fractions = mean[:, valence_columns] / total[:, None]
    fractions[missing[:, valence_columns].any(axis=1) | ~(total > 0)] = np.nan

    return np.column_stack([stats, np.column_stack(norms), fractions])
