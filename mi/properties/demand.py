"""Scale-up demand: the elements a chemistry would need at a market scenario, against world mine output.

Per candidate, from its theoretical specific energy E (Wh/kg, ``specific_energy_Wh_kg`` of the 'energy'
group: capacity x voltage) and the mass fractions w_e of its elements:

* kg of element e per kWh: ``w_e / (E / 1000)`` (E / 1000 is kWh per kg of active material);
* tonnes a year at the scenario (``properties.demand``: ``twh_per_year``, default 5.5, and the ``share``
  of that market the chemistry takes, default 1.0):
  ``kg/kWh x twh_per_year x 1e9 kWh/TWh x share / 1000 kg/t``;
* supply share: those tonnes / ``world_mine_production_t`` of the element table (tonnes of contained
  element; ``production_year`` says which year). A blank production figure is unknown: that element's
  share is NaN, never 0, and the run's notes name it.

Columns (the 'demand' group, after the surrogate): ``demand_<El>_t_per_year`` for the elements present in
the table's candidates (0 for a candidate without the element; a screen's merged table has them for the
elements its ranked candidates need, whatever the chunking: `complete_merged`), ``max_supply_share`` and
``limiting_element`` over the candidate's elements with a known production figure, and
``max_supply_share_std`` (first order from the voltage's std: E_std / E). Without a specific energy (no
voltage) the row's figures are NaN and a note says so.

The energy is the theoretical one of the active material alone, with every releasable working ion
extracted; real cells store less per kg of cathode and also need anode, electrolyte and the rest, so
these tonnes are a lower bound on what a chemistry at that scale would need.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from pymatgen.core import Composition, Element

from mi.config import DemandConfig, PropertiesConfig
from mi.properties import supply
from mi.properties.columns import float_column as _column
from mi.properties.columns import ids_where as _ids
from mi.properties.columns import plural as _plural
from mi.properties.element_matrix import formula_matrix

KWH_PER_TWH = 1e9
KG_PER_TONNE = 1000.0
PRODUCTION = "world_mine_production_t"


def column(element: str) -> str:
    """The tonnes-a-year column of `element`."""
    return f"demand_{element}_t_per_year"


_COLUMN = re.compile(r"demand_([A-Z][a-z]?)_t_per_year")


def _by_z(element: str) -> tuple[int, str]:
    """The order of the tonnes-a-year columns: by atomic number."""
    return (Element(element).Z if Element.is_valid_symbol(element) else 999, element)


def complete_merged(table: pd.DataFrame) -> pd.DataFrame:
    """The tonnes-a-year columns of a table merged from a screen's chunks, the same whatever the chunking.

    A chunk writes ``demand_<El>_t_per_year`` only for the elements its own rows hold, so after the merge a
    row from a chunk without El is empty there, and a column can exist only because some chunk held a row a
    constraint then removed. Here a row with a specific energy and no value gets 0 (it lacks the element:
    a row holding it got its tonnes in its chunk), and a column stays only where some row needs the element
    (a positive value), in order of atomic number as one chunk writes them (the merge's order of columns
    follows each chunk's, and two chunks may share no element to place theirs by). Changes `table` in place
    (no copy of the other columns) and returns it."""
    if "specific_energy_Wh_kg" not in table.columns:
        return table
    with_energy = _column(table, "specific_energy_Wh_kg") > 0
    names = [c for c in table.columns if _COLUMN.fullmatch(str(c))]
    for name in names:
        values = pd.to_numeric(table[name], errors="coerce").to_numpy(dtype=float)
        if not (values > 0).any():
            del table[name]
        elif (missing := np.isnan(values) & with_energy).any():
            table[name] = np.where(missing, 0.0, values)
    names = [c for c in names if c in table.columns]
    ordered = sorted(names, key=lambda c: _by_z(_COLUMN.fullmatch(c).group(1)))
    if names != ordered:  # the block moves as a whole, to where its first column was
        at = table.columns.get_loc(names[0])
        block = {c: table.pop(c) for c in names}
        for k, name in enumerate(ordered):
            table.insert(at + k, name, block[name])
    return table


def kg_per_kwh(composition: Composition, specific_energy_Wh_kg: float) -> dict[str, float]:
    """element -> kg per kWh of theoretical energy; NaN for every element when the energy is not positive."""
    kwh_per_kg = specific_energy_Wh_kg / 1000.0 if specific_energy_Wh_kg > 0 else math.nan
    return {e: w / kwh_per_kg for e, w in supply.mass_fractions(composition).items()}


def tonnes_per_year(kg_per_kwh: float, scenario: DemandConfig) -> float:
    """Tonnes a year of an element at `scenario` from its kg per kWh."""
    return kg_per_kwh * scenario.twh_per_year * KWH_PER_TWH * scenario.share / KG_PER_TONNE


def production_t(table: pd.DataFrame, element: str) -> float:
    """World mine production (t) of `element`; NaN when the table has no figure (or 0: no share can be taken)."""
    value = supply.fact(table, element, PRODUCTION)
    return float(value) if isinstance(value, (int, float)) and value > 0 else math.nan


@dataclass(frozen=True)
class ElementDemand:
    element: str
    mass_fraction: float
    kg_per_kwh: float
    t_per_year: float
    world_mine_production_t: float  # NaN: unknown
    production_year: str | None
    supply_share: float  # t_per_year / world_mine_production_t; NaN when production is unknown


def element_demand(
    composition: Composition, specific_energy_Wh_kg: float, table: pd.DataFrame, scenario: DemandConfig
) -> list[ElementDemand]:
    """Per element of `composition`, heaviest demand first (module docstring)."""
    out = []
    w = supply.mass_fractions(composition)
    for element, kg in kg_per_kwh(composition, specific_energy_Wh_kg).items():
        tonnes = tonnes_per_year(kg, scenario)
        produced = production_t(table, element)
        year = supply.fact(table, element, "production_year")
        out.append(
            ElementDemand(
                element=element,
                mass_fraction=w[element],
                kg_per_kwh=kg,
                t_per_year=tonnes,
                world_mine_production_t=produced,
                production_year=None if isinstance(year, float) else str(year),
                supply_share=tonnes / produced,
            )
        )
    return sorted(out, key=lambda d: -d.mass_fraction)


def limiting(demands: list[ElementDemand]) -> tuple[float, str | None]:
    """(max supply share, its element) over the elements with a known share; (NaN, None) if none has one."""
    known = [d for d in demands if not math.isnan(d.supply_share)]
    if not known:
        return math.nan, None
    top = max(known, key=lambda d: d.supply_share)
    return top.supply_share, top.element


# --- the 'demand' group of derived properties ------------------------------------------------------------


def demand(table: pd.DataFrame, cfg: PropertiesConfig, element_table: pd.DataFrame | None = None):
    """The 'demand' columns of `table` (needs ``formula`` and ``specific_energy_Wh_kg``) and notes."""
    if element_table is None:
        from mi.data import load_element_facts

        element_table = load_element_facts()
    scenario = cfg.demand
    source = element_table.attrs.get("source", "the given element table")
    notes: list[str] = []
    energy = _column(table, "specific_energy_Wh_kg")
    if "specific_energy_Wh_kg" not in table.columns:
        notes.append(
            "demand figures are missing for every candidate: no specific_energy_Wh_kg column (calculator 'energy')"
        )
    elif len(table) and not np.isfinite(energy).any():
        notes.append(
            "demand figures are missing for every candidate: no specific energy (no voltage, or no capacity; "
            "see the energy notes)"
        )
    distinct = formula_matrix(table["formula"].astype(str).tolist())  # each distinct formula once
    m = distinct.matrix
    # each distinct formula's elements and mass fractions, slot by slot in the composition's order (a formula
    # the matrix cannot describe goes through `supply.mass_fractions`, which says what is wrong)
    odd = {r: supply.mass_fractions(distinct.composition(r)) for r in np.flatnonzero(~m.ok).tolist()}
    present = set(m.elements) | {e for w in odd.values() for e in w}
    elements = sorted(present, key=_by_z)
    pad = len(elements)
    where = {e: j for j, e in enumerate(elements)}
    slot = np.array([*(where[e] for e in m.elements), pad])[m.index]  # distinct formulas x slots -> element column
    weight = m.fraction
    if odd:
        width = max(slot.shape[1], *(len(w) for w in odd.values()))
        slot = np.pad(slot, ((0, 0), (0, width - slot.shape[1])), constant_values=pad)
        weight = np.pad(weight, ((0, 0), (0, width - weight.shape[1])))
        for r, w in odd.items():
            slot[r, : len(w)], weight[r, : len(w)] = [where[e] for e in w], list(w.values())
    if not slot.shape[1]:  # no formula has an element
        slot, weight = np.full((len(slot), 1), pad), np.zeros((len(slot), 1))
    fractions = np.zeros((len(m.ok), pad + 1))
    np.put_along_axis(fractions, slot, weight, axis=1)  # the padding column collects zeros
    production = np.array([*(production_t(element_table, e) for e in elements), np.nan])

    factor = scenario.twh_per_year * KWH_PER_TWH * scenario.share / KG_PER_TONNE
    with_energy = energy > 0
    rows = distinct.inverse
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # rows without an energy: NaN
        tonnes = np.where(with_energy[:, None], fractions[rows] / (energy / 1000.0)[:, None] * factor, np.nan)
        slots = slot[rows]  # rows x slots
        known = (slots < pad) & ~np.isnan(production[slots])  # a production figure to take a share of
        share = np.where(known, np.take_along_axis(tonnes, slots, axis=1) / production[slots], -np.inf)
    best = share.argmax(axis=1)  # the first largest, in the composition's order (as max() over a dict)
    has_share = with_energy & known.any(axis=1)
    max_share = np.where(has_share, np.take_along_axis(share, best[:, None], axis=1)[:, 0], np.nan)
    top = np.take_along_axis(slots, best[:, None], axis=1)[:, 0]
    limiting_element: list[str | None] = [elements[j] if h else None for j, h in zip(top.tolist(), has_share.tolist())]
    no_energy = np.flatnonzero(~with_energy).tolist()
    no_production = np.flatnonzero(with_energy & ~has_share).tolist()
    lacking = (slots < pad) & np.isnan(production[slots]) & with_energy[:, None]
    counts = np.bincount(slots[lacking], minlength=pad + 1)[:pad]
    unknown = Counter({elements[j]: int(counts[j]) for j in np.flatnonzero(counts).tolist()})
    tonnes = {e: tonnes[:, j] for j, e in enumerate(elements)}

    out = pd.DataFrame({column(e): tonnes[e] for e in elements}, index=table.index)
    out["max_supply_share"] = max_share
    with np.errstate(divide="ignore", invalid="ignore"):  # t ~ 1/E: the same relative std (NaN without one)
        out["max_supply_share_std"] = max_share * _column(table, "specific_energy_Wh_kg_std") / energy
    out["limiting_element"] = pd.Series(limiting_element, index=table.index, dtype=object)
    if "specific_energy_Wh_kg_in_domain" in table.columns:  # from an extrapolated voltage: flagged alike
        out["max_supply_share_in_domain"] = table["specific_energy_Wh_kg_in_domain"]

    if no_energy and "specific_energy_Wh_kg" in table.columns and len(no_energy) < len(table):
        notes.append(
            f"demand figures are missing for {_plural(len(no_energy))}: no specific energy "
            f"({_ids(table, np.isin(np.arange(len(table)), no_energy))})"
        )
    if len(no_energy) < len(table):
        years = sorted({str(y) for y in element_table.get("production_year", pd.Series(dtype=object)).dropna()})
        notes.append(
            f"demand_<element>_t_per_year: tonnes a year if the chemistry supplied {scenario_text(scenario)} at "
            "its theoretical specific energy (active material only, every "
            "releasable working ion: a lower bound on real demand); max_supply_share is the largest of those over "
            f"world mine production ({', '.join(years) or 'year not given'}, {source})"
        )
    if PRODUCTION not in element_table.columns:
        notes.append(f"max_supply_share is missing for every candidate: the element table has no {PRODUCTION} column")
    elif unknown:
        counts = ", ".join(f"{e} ({_plural(n)})" for e, n in sorted(unknown.items()))
        notes.append(
            f"max_supply_share leaves out elements without a world mine production figure (unknown, not zero) in "
            f"{source}: {counts}"
        )
        if no_production:
            notes.append(
                f"max_supply_share is missing for {_plural(len(no_production))}: none of their elements has a "
                f"world mine production figure ({_ids(table, np.isin(np.arange(len(table)), no_production))})"
            )
    return out, notes


def scenario_text(scenario: DemandConfig) -> str:
    """'5.5 TWh a year' or '20% of 5.5 TWh a year'."""
    market = f"{scenario.twh_per_year:g} TWh a year"
    return market if scenario.share == 1 else f"{scenario.share:.0%} of {market}"


def element_name(element: str) -> str:
    """'cobalt' for 'Co'."""
    return Element(element).long_name.lower()


def need_sentence(share: float, element: str, year: str | None, scenario: DemandConfig) -> str:
    """'at 5.5 TWh a year this chemistry needs 13 x the world's 2023 cobalt output'."""
    times = f"{share:.3g}" if share < 1000 else f"{share:,.0f}"
    year_text = f"{year} " if year else ""
    return (
        f"at {scenario_text(scenario)} this chemistry needs {times} x the world's {year_text}"
        f"{element_name(element)} output"
    )


def records(demands: list[ElementDemand]) -> list[Mapping[str, float | str | None]]:
    """Plain dicts (NaN -> None) for JSON."""
    return [
        {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in asdict(d).items()} for d in demands
    ]
