"""The element-table calculators of a whole chunk at once: mass fractions times fact vectors.

`ElementMatrix` holds a chunk's compositions as arrays: for every row its elements' columns, amounts and
mass fractions, slot by slot (rows x slots, a slot per element of the row, padded with a zero column), in
the composition's order and in symbol order. A figure is then, per slot, the mass fractions times the
fact vector indexed by the slot's element (one value per element of the chunk, NaN where the table has no
fact), with missing facts as masks. Sums run slot by slot in the order the row-wise functions of
`mi.properties.supply` and `mi.properties.calculators` add their terms, so every value is the same float
(tests/test_element_matrix.py). `VECTORISED` maps calculator columns to these functions; a row whose
composition cannot be described (placeholder species, no atoms) is left to the row-wise calculator, which
reports it, and so is a redox capacity that needs oxidation states (a row with the working ion and a
redox-active cation). `formula_matrix` is the matrix of a table's formula column (the 'supply' text and
'demand'), its plain formulas read without pymatgen's parser.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Composition, Element

from mi.features.composition import by_element
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
    comp = by_element(composition)
    if comp is not composition and not all(isinstance(sp, Element) for sp in comp):
        return None
    items = [(el.symbol, float(amount)) for el, amount in comp.items()]
    if not items or sum(a for _, a in items) <= 0:
        return None
    return items


def element_matrix(compositions: Sequence[Composition]) -> ElementMatrix:
    return _matrix([_items(c) for c in compositions])


def _matrix(rows: list[list[tuple[str, float]] | None]) -> ElementMatrix:
    elements = tuple(sorted({s for items in rows if items for s, _ in items}))
    column = {s: j for j, s in enumerate(elements)}
    pad = len(elements)
    n = len(rows)
    slots = max((len(items) for items in rows if items), default=0)
    ok = np.array([bool(items) for items in rows], dtype=bool)
    where = [(r, k, column[s], a) for r, items in enumerate(rows) if items for k, (s, a) in enumerate(items)]
    r, k, j, a = (np.array(v) for v in zip(*where)) if where else (np.zeros(0, dtype=np.int64),) * 4
    index = np.full((n, slots), pad, dtype=np.int64)
    amount = np.zeros((n, slots))
    index[r, k], amount[r, k] = j, a
    mass = np.array([*(atomic_mass(e) for e in elements), 0.0])[index]
    weight = np.zeros(n)
    for slot in range(slots):  # pymatgen's Composition.weight: a sum in composition order (padding adds 0.0)
        weight = weight + amount[:, slot] * mass[:, slot]
    weight[~ok] = math.nan
    fraction = np.where(ok[:, None], amount * mass / weight[:, None], 0.0)
    order = np.argsort(index, axis=1, kind="stable")  # columns are in symbol order: by symbol, padding last
    sorted_index = np.take_along_axis(index, order, axis=1)
    sorted_fraction = np.take_along_axis(fraction, order, axis=1)
    return ElementMatrix(elements, ok, weight, index, amount, fraction, sorted_index, sorted_fraction)


@dataclass(frozen=True)
class FormulaMatrix:
    """The distinct formulas of a table's ``formula`` column, their matrix, and for each row of the column
    its formula's index."""

    formulas: list[str]
    matrix: ElementMatrix
    inverse: np.ndarray

    def composition(self, index: int) -> Composition:
        return supply.formula_composition(self.formulas[index])


_last_formulas: tuple = ((), None)  # (the column, its FormulaMatrix): the 'supply' text and 'demand' ask alike
_NUMBER = r"\d+(?:\.\d+)?"
_PLAIN_FORMULA = re.compile(rf"(?:[A-Z][a-z]?(?:{_NUMBER})?|\((?:[A-Z][a-z]?(?:{_NUMBER})?)+\)(?:{_NUMBER})?)+")
_TERM = re.compile(rf"([A-Z][a-z]?)({_NUMBER})?|\(([^()]+)\)({_NUMBER})?")


@functools.lru_cache(maxsize=1)
def _symbols() -> frozenset[str]:
    return frozenset(Element.from_Z(z).symbol for z in range(1, 119))


def _formula_items(formula: str) -> list[tuple[str, float]] | None:
    """`_items` of ``Composition(formula)`` read straight from a plain formula, as a reduced formula is written
    ("LiFePO4", "Li0.5CoO2", "Li6CoCu3(PO4)4": element symbols with whole or decimal amounts, groups in
    parentheses, none nested): the same symbols, floats and order as pymatgen's parser, which expands each
    group in place (its amounts times the group's) and adds up repeated elements in the order met. None
    for any other formula (pymatgen parses it)."""
    if not _PLAIN_FORMULA.fullmatch(formula):
        return None
    totals: dict[str, float] = {}
    for symbol, amount, group, times in _TERM.findall(formula):
        if symbol:
            terms = [(symbol, float(amount) if amount else 1.0)]
        else:
            factor = float(times) if times else 1.0
            inner: dict[str, float] = {}
            for el, n, _, _ in _TERM.findall(group):
                inner[el] = inner.get(el, 0.0) + (float(n) if n else 1.0) * factor
            terms = list(inner.items())
            if max(n for _, n in terms) >= 1e16:  # pymatgen writes it back as 1e+16, which it cannot read
                return None
        for el, n in terms:
            totals[el] = totals.get(el, 0.0) + n
    items = [(el, n) for el, n in totals.items() if abs(n) >= Composition.amount_tolerance]
    if not items or not {el for el, _ in items} <= _symbols() or len(items) < len(totals):
        return None
    return items


def formula_matrix(formulas: Sequence[str]) -> FormulaMatrix:
    """`FormulaMatrix` of a formula column, built once for the last column asked (a chunk's table-level
    groups read the same one). Plain formulas are read without building a Composition."""
    global _last_formulas
    key = tuple(formulas)
    last = _last_formulas  # one read: another thread may replace it
    if last[0] == key and last[1] is not None:
        return last[1]
    position: dict[str, int] = {}
    inverse = np.array([position.setdefault(f, len(position)) for f in key], dtype=np.int64)
    distinct = list(position)
    rows = [_formula_items(f) or _items(supply.formula_composition(f)) for f in distinct]
    result = FormulaMatrix(distinct, _matrix(rows), inverse)
    _last_formulas = (key, result)
    return result


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


def amount_of(m: ElementMatrix, symbol: str) -> np.ndarray:
    """The amount of `symbol` in each row (0.0 without it): ``composition.element_composition[symbol]``."""
    j = m.column(symbol)
    return np.zeros(len(m.ok)) if j is None else np.where(m.index == j, m.amount, 0.0).sum(axis=1)


def formula_capacity(m: ElementMatrix, working_ion: str) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """`calculators.capacity_mAh_g`: n z F / (3.6 M), the same operations in the same order; 0 without the ion."""
    from mi.properties.calculators import FARADAY_C_PER_MOL, ION_CHARGE

    if working_ion not in ION_CHARGE:  # the row-wise calculator says what is wrong
        return np.full(len(m.ok), math.nan), np.ones(len(m.ok), dtype=bool)
    n = amount_of(m, working_ion)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n == 0, 0.0, n * ION_CHARGE[working_ion] * FARADAY_C_PER_MOL / (3.6 * m.weight))


def redox_capacity(m: ElementMatrix, working_ion: str) -> tuple[np.ndarray, np.ndarray]:
    """`calculators.redox_capacity_mAh_g` where no oxidation states are needed: 0.0 for a row without the
    working ion or without a redox-active cation (no headroom). The rows left (returned as a mask) hold
    both, and go to the row-wise calculator and its memoised solver."""
    from mi.properties.redox import ACCESSIBLE_STATES

    n = amount_of(m, working_ion)
    active = np.array([*(e in ACCESSIBLE_STATES and e != working_ion for e in m.elements), False])
    zero = (n == 0) | ((n > 0) & ~active[m.index].any(axis=1))
    return np.zeros(len(m.ok)), ~zero


def capacity(m: ElementMatrix, ctx) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """`calculators._capacity`: the capacity of the configured mode."""
    if ctx.capacity_mode == "formula":
        return formula_capacity(m, ctx.working_ion)
    return redox_capacity(m, ctx.working_ion)


# column -> (matrix, context) -> values, or (values, rows left to the row-wise calculator); a figure of a row
# outside `ok` is computed row by row
VECTORISED: dict[str, Callable] = {
    "capacity_mAh_g": capacity,
    "capacity_formula_mAh_g": lambda m, ctx: formula_capacity(m, ctx.working_ion),
    "capacity_redox_mAh_g": lambda m, ctx: redox_capacity(m, ctx.working_ion),
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

