"""The element-table calculators of a whole chunk at once: mass fractions times fact vectors.

`ElementMatrix` holds a chunk's compositions as arrays: for every row its elements' columns, amounts and
mass fractions, slot by slot (rows x slots, a slot per element of the row, padded with a zero column), in
the composition's order and in symbol order. A figure is then, per slot, the mass fractions times the
fact vector indexed by the slot's element (one value per element of the chunk, NaN where the table has no
fact), with missing facts as masks. Sums run slot by slot in the order the row-wise functions of
`mi.properties.supply` and `mi.properties.calculators` add their terms, so every value is the same float
(tests/test_element_matrix.py). `VECTORISED` maps calculator columns to these functions; a row whose
composition cannot be described (placeholder species, no atoms) is left to the row-wise calculator, which
reports it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Composition, Element

from mi.properties import supply
from mi.properties.supply import atomic_mass


@dataclass(frozen=True)
class ElementMatrix:
    elements: tuple[str, ...]  # the chunk's elements; column len(elements) is the padding column
    ok: np.ndarray  # rows the matrix describes
    weight: np.ndarray  # molar mass of each row's formula (g/mol), as pymatgen sums it
    index: np.ndarray  # rows x slots: the column of each slot's element, composition order
    amount: np.ndarray  # rows x slots: amounts
    fraction: np.ndarray  # rows x slots: mass fractions
    sorted_index: np.ndarray  # the same three in symbol order
    sorted_fraction: np.ndarray

    @property
    def present(self) -> np.ndarray:
        return self.index < len(self.elements)

    def column(self, symbol: str) -> int | None:
        try:
            return self.elements.index(symbol)
        except ValueError:
            return None


def _items(composition: Composition) -> list[tuple[str, float]] | None:
    """(symbol, amount) in `element_composition` order; None for what the row-wise calculators refuse."""
    if all(isinstance(sp, Element) for sp in composition):
        comp = composition
    else:
        comp = composition.element_composition
        if not all(isinstance(sp, Element) for sp in comp):
            return None
    items = [(el.symbol, float(amount)) for el, amount in comp.items()]
    if not items or sum(a for _, a in items) <= 0:
        return None
    return items


def element_matrix(compositions: Sequence[Composition]) -> ElementMatrix:
    rows = [_items(c) for c in compositions]
    elements = tuple(sorted({s for items in rows if items for s, _ in items}))
    column = {s: j for j, s in enumerate(elements)}
    pad = len(elements)
    n = len(rows)
    slots = max((len(items) for items in rows if items), default=0)
    index = np.full((n, slots), pad, dtype=np.int64)
    amount = np.zeros((n, slots))
    fraction = np.zeros((n, slots))
    sorted_index = np.full((n, slots), pad, dtype=np.int64)
    sorted_fraction = np.zeros((n, slots))
    weight = np.full(n, math.nan)
    ok = np.zeros(n, dtype=bool)
    for r, items in enumerate(rows):
        if not items:
            continue
        total = 0  # pymatgen's Composition.weight: a sum in composition order, from int 0
        for symbol, a in items:
            total += a * atomic_mass(symbol)
        total = float(total)
        ok[r], weight[r] = True, total
        for k, (symbol, a) in enumerate(items):
            index[r, k], amount[r, k], fraction[r, k] = column[symbol], a, a * atomic_mass(symbol) / total
        for k, (symbol, a) in enumerate(sorted(items)):
            sorted_index[r, k], sorted_fraction[r, k] = column[symbol], a * atomic_mass(symbol) / total
    return ElementMatrix(elements, ok, weight, index, amount, fraction, sorted_index, sorted_fraction)


# --- fact vectors ------------------------------------------------------------------------------------


def _vector(m: ElementMatrix, value: Callable[[str], float], pad: float = 0.0) -> np.ndarray:
    return np.array([*(value(e) for e in m.elements), pad], dtype=float)


def numbers(m: ElementMatrix, table, column: str) -> np.ndarray:
    """`supply._number` of every element of the chunk (NaN: no fact), and 0 for the padding column."""
    return _vector(m, lambda e: supply._number(table, e, column))


def lacking(m: ElementMatrix, table, column: str) -> np.ndarray:
    """rows x slots: the slot's element has no value in `column` (`supply.missing_facts`)."""
    missing = np.array([*(supply._is_missing(supply.fact(table, e, column)) for e in m.elements), False])
    return missing[m.index]


def _weighted_sum(fraction: np.ndarray, index: np.ndarray, x: np.ndarray) -> np.ndarray:
    """sum over slots of w * x[element], slot by slot from 0.0 (the row-wise loop's order)."""
    total = np.zeros(len(fraction))
    for k in range(fraction.shape[1]):
        total = total + fraction[:, k] * x[index[:, k]]
    return total


def _nan_where(values: np.ndarray, missing: np.ndarray) -> np.ndarray:
    return np.where(missing, np.nan, values)


# --- the figures ---------------------------------------------------------------------------------------


def weighted(m: ElementMatrix, table, column: str) -> np.ndarray:
    """`supply.weighted` per row."""
    x = numbers(m, table, column)
    return _nan_where(_weighted_sum(m.fraction, m.index, x), np.isnan(x)[m.index].any(axis=1))


def supply_risk(m: ElementMatrix, table) -> np.ndarray:
    c = _vector(m, lambda e: supply.concentration(table, e))
    return _nan_where(_weighted_sum(m.fraction, m.index, c), np.isnan(c)[m.index].any(axis=1)) / 10000.0


def above(m: ElementMatrix, table, column: str, threshold_pct: float, min_mass_fraction: float) -> np.ndarray:
    """rows: some element of mass fraction >= `min_mass_fraction` has `column` > `threshold_pct`
    (`supply.elements_above` is not empty)."""
    share = numbers(m, table, column)[m.index]
    with np.errstate(invalid="ignore"):
        hit = (m.fraction >= min_mass_fraction) & ~np.isnan(share) & (share > threshold_pct) & m.present
    return hit.any(axis=1)


def crma_flag(m: ElementMatrix, table, top_pct: float, min_mass_fraction: float) -> np.ndarray:
    """`supply.crma_elements` is not empty: above the benchmark at some stage the table covers."""
    stages = getattr(supply, "CRMA_STAGES", {"mining": ("top_mine_share_pct", None)})
    flag = np.zeros(len(m.ok), dtype=bool)
    for column, _ in stages.values():
        flag |= above(m, table, column, top_pct, min_mass_fraction)
    return flag


def crma_words(m: ElementMatrix, table, top_pct: float, min_mass_fraction: float) -> list[str | None]:
    """``"; ".join(map(str, supply.crma_findings(...)))`` of every row ("" without findings, None for a row
    outside `ok`): the findings in symbol then stage order, each text built once per (element, stage) and
    each distinct pattern of findings joined once."""
    stages = list(supply.CRMA_STAGES.items())
    present = m.sorted_index < len(m.elements)
    token = np.full((len(m.ok), m.sorted_index.shape[1], len(stages)), -1, dtype=np.int64)
    texts: list[str] = []
    for s, (stage, (column, country_column)) in enumerate(stages):
        share = numbers(m, table, column)
        row_share = share[m.sorted_index]
        with np.errstate(invalid="ignore"):
            hit = present & (m.sorted_fraction >= min_mass_fraction) & ~np.isnan(row_share) & (row_share > top_pct)
        for j in np.unique(m.sorted_index[hit]):
            element = m.elements[j]
            country = "China" if country_column is None else supply.fact(table, element, country_column)
            country = "unnamed country" if supply._is_missing(country) else str(country)
            token[:, :, s][hit & (m.sorted_index == j)] = len(texts)
            texts.append(str(supply.CrmaFinding(element, stage, country, float(share[j]))))
    flat = token.reshape(len(m.ok), token.shape[1] * len(stages))  # slot by slot (symbol order), stage by stage within a slot
    if not flat.size:  # no rows, or none the matrix describes
        return ["" if ok else None for ok in m.ok]
    patterns, inverse = np.unique(flat, axis=0, return_inverse=True)
    words = ["; ".join(texts[t] for t in pattern if t >= 0) for pattern in patterns]
    return [words[i] if ok else None for i, ok in zip(inverse.ravel(), m.ok)]


def eu_crm_mass_fraction(m: ElementMatrix, table) -> np.ndarray:
    listed = np.array([*(supply.fact(table, e, "eu_crm_2023") in supply.EU_CRM_LISTED for e in m.elements), False])
    total = np.zeros(len(m.ok))
    for k in range(m.sorted_fraction.shape[1]):  # supply.eu_crm_elements: symbol order
        total = total + np.where(listed[m.sorted_index[:, k]], m.sorted_fraction[:, k], 0.0)
    return _nan_where(total, lacking(m, table, "eu_crm_2023").any(axis=1))


def co2_lower_bound(m: ElementMatrix, table) -> np.ndarray:
    x = numbers(m, table, "co2_kg_per_kg")
    known = ~np.isnan(x)[m.index] & m.present
    total = np.zeros(len(m.ok))
    for k in range(m.fraction.shape[1]):
        total = total + np.where(known[:, k], m.fraction[:, k] * np.nan_to_num(x[m.index[:, k]]), 0.0)
    return _nan_where(total, ~known.any(axis=1))


def _targeted(m: ElementMatrix, targets: dict[str, float], price: np.ndarray | None = None):
    """sum over the targeted elements (symbol order) of w * target (* price); rows missing a price."""
    target = _vector(m, lambda e: targets.get(e, 0.0))
    is_target = np.array([*(e in targets for e in m.elements), False])
    total = np.zeros(len(m.ok))
    missing = np.zeros(len(m.ok), dtype=bool)
    for k in range(m.sorted_fraction.shape[1]):
        j = m.sorted_index[:, k]
        term = m.sorted_fraction[:, k] * target[j]
        if price is not None:
            term = term * price[j]
            missing |= is_target[j] & np.isnan(price[j])
        total = total + np.where(is_target[j], term, 0.0)
    return total, missing


def recoverable_value(m: ElementMatrix, table) -> np.ndarray:
    total, missing = _targeted(m, supply.RECOVERY_TARGETS_2031, numbers(m, table, "price_usd_per_kg"))
    return _nan_where(total, missing)


def recycled_content(m: ElementMatrix) -> np.ndarray:
    return _targeted(m, supply.RECYCLED_CONTENT_2031)[0]


def cost(m: ElementMatrix, prices) -> np.ndarray:
    """`calculators.cost_usd_kg`: sum of amount * mass * price over the weight; NaN if a price is unknown."""
    p = _vector(m, lambda e: prices.get(e, math.nan))
    mass = _vector(m, atomic_mass)
    total = np.zeros(len(m.ok))
    for k in range(m.amount.shape[1]):
        j = m.index[:, k]
        total = total + m.amount[:, k] * mass[j] * p[j]
    missing = (~np.isfinite(p[m.index]) & m.present).any(axis=1)
    return _nan_where(total / m.weight, missing)


def free_of(m: ElementMatrix, symbol: str) -> np.ndarray:
    j = m.column(symbol)
    return np.ones(len(m.ok)) if j is None else (~(m.index == j).any(axis=1)).astype(float)


# column -> (matrix, context) -> values; a figure of a row outside `ok` is computed row by row
VECTORISED: dict[str, Callable] = {
    "cost_usd_kg": lambda m, ctx: cost(m, ctx.prices),
    "supply_risk": lambda m, ctx: supply_risk(m, ctx.table),
    "hhi_production": lambda m, ctx: weighted(m, ctx.table, "hhi_production"),
    "hhi_reserve": lambda m, ctx: weighted(m, ctx.table, "hhi_reserve"),
    "feoc_exposed": lambda m, ctx: above(
        m, ctx.table, "china_refining_share_pct", ctx.feoc_china_refining_pct, ctx.min_mass_fraction
    ).astype(float),
    "crma_concentration_flag": lambda m, ctx: crma_flag(
        m, ctx.table, ctx.crma_top_country_pct, ctx.min_mass_fraction
    ).astype(float),
    "eu_crm_mass_fraction": lambda m, ctx: eu_crm_mass_fraction(m, ctx.table),
    "co_free": lambda m, ctx: free_of(m, "Co"),
    "ni_free": lambda m, ctx: free_of(m, "Ni"),
    "co2_kg_per_kg": lambda m, ctx: weighted(m, ctx.table, "co2_kg_per_kg"),
    "co2_lower_bound_kg_per_kg": lambda m, ctx: co2_lower_bound(m, ctx.table),
    "recoverable_value_usd_kg": lambda m, ctx: recoverable_value(m, ctx.table),
    "recycled_content_2031_kg_per_kg": lambda m, ctx: recycled_content(m),
}


def missing_facts(m: ElementMatrix, table, column: str) -> dict[int, list[str]]:
    """`supply.missing_facts` of the rows that lack a fact (row -> sorted symbols), from the masks; a row
    not in it lacks none."""
    missing = np.array([*(supply._is_missing(supply.fact(table, e, column)) for e in m.elements), False])
    rows, slots = np.nonzero(missing[m.sorted_index])  # row by row, slots in symbol order
    names = np.array([*m.elements, ""], dtype=object)[m.sorted_index[rows, slots]]
    out: dict[int, list[str]] = {}
    for r, name in zip(rows.tolist(), names.tolist()):
        out.setdefault(r, []).append(name)
    return out
