"""Composition descriptors: the 145 Magpie attributes of Ward et al. (2016), vectorised over a batch.

L. Ward, A. Agrawal, A. Choudhary, C. Wolverton, npj Comput. Mater. 2, 16028 (2016),
doi:10.1038/npjcompumats.2016.28. The element table ships with mi (``data/magpie_elements.csv``, built from
matminer's copy of the Magpie tables by ``data/build_magpie_elements.py``; provenance in ``data/README.md``).

For each of the 22 Magpie element properties (matminer's ``ElementProperty.from_preset("magpie")`` list) six
statistics over the elements of a composition, with x_i the amount of element i:

* ``min`` / ``max`` / ``range`` over the elements present;
* ``mean``     sum_i x_i p_i / sum_i x_i;
* ``avg_dev``  sum_i x_i |p_i - mean| / sum_i x_i;
* ``mode``     the smallest p_i among the elements of largest amount (amounts equal within numpy.isclose,
  compared as given, the way matminer does it).

Then the stoichiometry norms (``L0_norm`` = number of elements, ``Lp_norm`` = (sum_i f_i^p)^(1/p) with f_i the
atomic fractions), the fractions of valence electrons in s, p, d and f orbitals (mean NsValence / mean
NValence, ...), and ionic character: ``compound_possible`` (1 if one oxidation state per element from
Magpie's list can make the formula neutral), ``max_ionic_char`` and ``avg_ionic_char`` (sum over pairs
f_i f_j (1 - exp(-(X_i - X_j)^2 / 4)), Pauling electronegativity X from the same table).

Equality with matminer is tested: ``ElementProperty.from_preset("magpie")``, ``Stoichiometry()``,
``ValenceOrbital(props=["frac"])`` and ``IonProperty(data_source=MagpieData(), fast=True)``.
As there (``impute_nan=True``), a property an element lacks in the Magpie tables is replaced by that
property's mean over the elements that have it (e.g. the electronegativity of He); elements with no Magpie
data at all (Z > 112) are refused. Oxidation states on species are ignored (Fe2+ counts as Fe).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
from pymatgen.core import Composition, Element

MAGPIE_TABLE = "magpie_elements.csv"
MAGPIE_PROPERTIES: tuple[str, ...] = (
    "Number",
    "MendeleevNumber",
    "AtomicWeight",
    "MeltingT",
    "Column",
    "Row",
    "CovalentRadius",
    "Electronegativity",
    "NsValence",
    "NpValence",
    "NdValence",
    "NfValence",
    "NValence",
    "NsUnfilled",
    "NpUnfilled",
    "NdUnfilled",
    "NfUnfilled",
    "NUnfilled",
    "GSvolume_pa",
    "GSbandgap",
    "GSmagmom",
    "SpaceGroupNumber",
)
STATS: tuple[str, ...] = ("min", "max", "range", "mean", "avg_dev", "mode")  # matminer's order
NORMS: tuple[int, ...] = (0, 2, 3, 5, 7, 10)
ORBITALS: tuple[str, ...] = ("s", "p", "d", "f")
ION_FEATURES: tuple[str, ...] = ("compound_possible", "max_ionic_char", "avg_ionic_char")
MAX_Z = 118
# Above this many charge sums per formula the neutrality search gives up (NaN): high-entropy formulas with
# many multivalent elements, where matminer would enumerate millions of combinations.
MAX_CHARGE_SUMS = 200_000


@dataclass(frozen=True)
class MagpieTable:
    """Magpie element data, rows indexed by Z (row 0 unused).

    ``raw`` keeps the blanks of the source as NaN; ``values`` has them imputed; ``has_data`` is False for
    elements without a single value; ``oxidation_states[Z]`` is a tuple (imputed where the source has none).
    """

    raw: np.ndarray
    values: np.ndarray
    has_data: np.ndarray
    oxidation_states: tuple[tuple[float, ...], ...]
    symbols: tuple[str, ...]


def _float(text: str) -> float:
    return float(text) if text.strip() else math.nan


@lru_cache(maxsize=1)
def magpie_table() -> MagpieTable:
    """The packaged Magpie element table, read on first use and imputed as matminer's MagpieData does."""
    text = (resources.files("mi.features") / "data" / MAGPIE_TABLE).read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    raw = np.full((MAX_Z + 1, len(MAGPIE_PROPERTIES)), np.nan)
    states: list[list[float]] = [[] for _ in range(MAX_Z + 1)]
    symbols = [""] * (MAX_Z + 1)
    for row in rows:
        z = int(row["Z"])
        symbols[z] = row["element"]
        raw[z] = [_float(row[name]) for name in MAGPIE_PROPERTIES]
        states[z] = [float(t) for t in row["OxidationStates"].split()]
    values = raw.copy()
    # matminer's impute_nan: the mean over Z = 1..118 of the values the source has (same order, same floats).
    column_means = np.array([np.nanmean(raw[1:, k]) for k in range(raw.shape[1])])  # 1-D sums, as matminer
    values[1:] = np.where(np.isnan(raw[1:]), column_means, raw[1:])
    mean_state = float(np.round(np.nanmean([s for z in range(1, MAX_Z + 1) for s in states[z]])))
    oxidation = tuple(tuple(s) if s else (mean_state,) for s in states)
    has_data = np.concatenate([[False], ~np.all(np.isnan(raw[1:]), axis=1)])
    for array in (raw, values, has_data):
        array.setflags(write=False)
    return MagpieTable(raw, values, has_data, oxidation, tuple(symbols))


def composition_feature_names() -> list[str]:
    names = [f"{stat}_{prop}" for prop in MAGPIE_PROPERTIES for stat in STATS]
    names += [f"L{p}_norm" for p in NORMS]
    names += [f"frac_{o}_valence" for o in ORBITALS]
    names += list(ION_FEATURES)
    return names


def by_element(composition: Composition) -> Composition:
    """``composition.element_composition`` (the same elements, amounts and order), without building a new
    Composition when the composition is already by element, as a formula's is: that costs more than
    what a chunk then computes from it."""
    if all(isinstance(sp, Element) for sp in composition):
        return composition
    return composition.element_composition


def _padded(compositions: Sequence[Composition]) -> tuple[np.ndarray, np.ndarray]:
    """(Z, amount) arrays of shape (n, most elements); padding has Z = 0 and amount 0."""
    table = magpie_table()
    rows: list[list[tuple[int, float]]] = []
    for i, composition in enumerate(compositions):
        pairs = [(int(getattr(el, "Z", 0)), float(amount)) for el, amount in by_element(composition).items()]
        if not pairs:
            raise ValueError(f"composition #{i} is empty")
        for z, amount in pairs:
            if not 1 <= z <= MAX_Z:
                raise ValueError(f"composition #{i} ({composition}): only elements Z = 1..{MAX_Z} have Magpie data")
            if not table.has_data[z]:
                symbol = table.symbols[z]
                raise ValueError(f"composition #{i} ({composition}): the Magpie tables have no data for {symbol}")
            if not (amount > 0 and math.isfinite(amount)):
                raise ValueError(f"composition #{i} ({composition}): amounts must be positive and finite")
        rows.append(pairs)
    width = max(len(r) for r in rows)
    z = np.zeros((len(rows), width), dtype=np.int64)
    amounts = np.zeros((len(rows), width))
    for i, pairs in enumerate(rows):
        z[i, : len(pairs)] = [p[0] for p in pairs]
        amounts[i, : len(pairs)] = [p[1] for p in pairs]
    return z, amounts


def _compound_possible(z_row: np.ndarray, amount_row: np.ndarray, states: tuple[tuple[float, ...], ...]) -> float:
    """1.0 if one oxidation state per element can make the formula neutral (|sum| <= 1e-8), else 0.0.

    The same question as matminer's IonProperty(fast=True), answered by growing the set of reachable charge
    sums element by element instead of enumerating every combination.
    """
    sums = {0.0}
    for z, amount in zip(z_row, amount_row):
        if z == 0:
            break
        sums = {s + q * amount for s in sums for q in states[z]}
        if len(sums) > MAX_CHARGE_SUMS:
            return math.nan
    return 1.0 if any(abs(s) <= 1e-8 for s in sums) else 0.0


def composition_features(compositions: Sequence[Composition]) -> np.ndarray:
    """Descriptors of each composition, in the order of `composition_feature_names()`; shape (n, 145).

    Raises ValueError for an empty composition, a non-positive amount, or an element the Magpie tables do
    not cover (the caller isolates which composition it was).
    """
    n_features = len(composition_feature_names())
    if len(compositions) == 0:
        return np.empty((0, n_features))
    table = magpie_table()
    z, w = _padded(compositions)  # w: amounts as given, the weights matminer uses
    present = w > 0
    total = w.sum(axis=1)
    values = table.values[z]  # (n, m, k); padding reads row 0 (NaN), masked below
    filled = np.where(present[..., None], values, 0.0)

    mean = (w[..., None] * filled).sum(axis=1) / total[:, None]
    avg_dev = (w[..., None] * np.abs(filled - mean[:, None, :]) * present[..., None]).sum(axis=1) / total[:, None]
    low = np.where(present[..., None], filled, np.inf).min(axis=1)
    high = np.where(present[..., None], filled, -np.inf).max(axis=1)
    largest = w.max(axis=1, keepdims=True)
    most = present & (np.abs(w - largest) <= 1e-8 + 1e-5 * np.abs(largest))  # numpy.isclose(w, w.max())
    mode = np.where(most[..., None], filled, np.inf).min(axis=1)
    stats = np.stack([low, high, high - low, mean, avg_dev, mode], axis=2)  # (n, k, stats)
    stats = stats.reshape(len(z), -1)  # property-major, matching composition_feature_names()

    fractions = w / total[:, None]
    norms = [present.sum(axis=1).astype(float)]
    norms += [np.sum(fractions**p, axis=1) ** (1.0 / p) for p in NORMS[1:]]

    n_valence = mean[:, MAGPIE_PROPERTIES.index("NValence")]
    orbital = mean[:, [MAGPIE_PROPERTIES.index(f"N{o}Valence") for o in ORBITALS]]
    with np.errstate(invalid="ignore", divide="ignore"):
        valence = np.where(n_valence[:, None] > 0, orbital / n_valence[:, None], np.nan)

    x = filled[:, :, MAGPIE_PROPERTIES.index("Electronegativity")]
    pair = present[:, :, None] & present[:, None, :] & np.triu(np.ones((z.shape[1],) * 2, dtype=bool), k=1)
    ionic = np.where(pair, 1.0 - np.exp(-0.25 * (x[:, :, None] - x[:, None, :]) ** 2), 0.0)
    max_ionic = ionic.max(axis=(1, 2))
    avg_ionic = (fractions[:, :, None] * fractions[:, None, :] * ionic).sum(axis=(1, 2))
    single = present.sum(axis=1) == 1  # matminer: a single element is a "compound", with no ionic character
    possible = np.array(
        [1.0 if one else _compound_possible(zr, wr, table.oxidation_states) for zr, wr, one in zip(z, w, single)]
    )
    ion = np.column_stack([possible, max_ionic, avg_ionic])

    return np.column_stack([stats, np.column_stack(norms), valence, ion])
