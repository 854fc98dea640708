"""Supply risk, carbon footprint and circularity of a composition, from the element table.

Every figure is a mass-fraction-weighted sum over the composition's elements, w_e = n_e M_e / M, using the
columns of the element table (`mi.data.load_element_facts`). A figure that needs a fact the table does not
have for one of the elements is NaN (`missing_facts` names the elements), never a sum that silently treats
the gap as zero. Flags are findings: they are True when the table shows the exposure and False otherwise;
an element whose share is unknown raises no flag, and `missing_facts` says which ones those are.

Formulas (w_e mass fraction; shares in %):

* ``hhi_production``, ``hhi_reserve``: sum_e w_e HHI_e (pymatgen's `HHIModel`, Gaultois et al. 2013).
* ``supply_risk`` in [0, 1]: sum_e w_e C_e / 10000 with the element's concentration
  C_e = max(HHI_production_e, 10000 (s_mine_e / 100)^2, 10000 (s_China,refining_e / 100)^2).
  A market whose largest supplier holds share s has HHI >= 10000 (s/100)^2, so the newer single-country
  shares (2023-2025) bound the older HHI (Gaultois et al. 2013) from below, and the worse of mining and refining
  counts. An unknown share is left out of the max; an unknown HHI_production makes the risk NaN.
* FEOC exposure: some element with w_e >= ``min_mass_fraction`` whose China refining share exceeds
  ``feoc_china_refining_pct`` (default 50%).
* CRMA concentration, at every stage the table covers: some element with w_e >= ``min_mass_fraction``
  whose top mining country, or China at refining (``china_refining_share_pct``, the only refining share
  the table has), holds more than ``crma_top_country_pct`` (65%, the CRMA 2023 single-country benchmark).
  `crma_findings` names element, stage, country and share ("Co refining China 70%").
* ``eu_crm_mass_fraction``: sum of w_e over elements on the EU CRMA 2023 list (strategic or critical).
* ``co2_kg_per_kg``: sum_e w_e CO2_e (cradle-to-gate, per kg of element); NaN if a factor is missing.
  ``co2_lower_bound_kg_per_kg`` sums the known factors only: factors are >= 0, so it is a lower bound.
* ``recoverable_value_usd_kg``: sum_e w_e r_e p_e over the elements with an EU 2031 material-recovery
  target r_e (Co, Cu, Ni, Pb 95%, Li 80%), p_e their price.
* ``recycled_content_2031_kg_per_kg``: sum_e w_e m_e, the recycled Co, Li, Ni (and Pb) per kg of material
  that the EU 2031 recycled-content minimums m_e (Co 16%, Li 6%, Ni 6%, Pb 85%) call for.

Element prices, shares and footprints mix bases and years (see mi/data/SOURCES.md); these are screening
proxies, not a life-cycle assessment or a legal determination.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd
from pymatgen.core import Composition, Element

from mi.features.composition import by_element

# Regulation (EU) 2023/1542 (shared/reference/eu_battery_regulation.md, S10a-S10e).
# Annex XII part C: material recovery from waste batteries by the end of 2031.
RECOVERY_TARGETS_2031 = {"Co": 0.95, "Cu": 0.95, "Ni": 0.95, "Pb": 0.95, "Li": 0.80}
# Article 8: minimum share of recycled content in new batteries from 2031.
RECYCLED_CONTENT_2031 = {"Co": 0.16, "Li": 0.06, "Ni": 0.06, "Pb": 0.85}
EU_CRM_LISTED = frozenset({"strategic", "critical"})


@functools.lru_cache(maxsize=None)
def atomic_mass(symbol: str) -> float:
    """pymatgen's atomic mass (g/mol) as a plain float."""
    return float(Element(symbol).atomic_mass)


def molar_mass(composition: Composition) -> float:
    """``float(composition.weight)``, the same float (the same sum in the same order), without pymatgen's
    unit objects, which cost more than the rest of a capacity or a mass fraction."""
    total = 0
    for el, amount in composition.items():
        total += amount * atomic_mass(el.symbol)
    return float(total)


@functools.lru_cache(maxsize=16384)
def formula_composition(formula: str) -> Composition:
    """``Composition(formula)``, parsed once per process for a chunk's worth of formulas: the table-level
    groups (CRMA words, demand) read the same ``formula`` column. Shared: not to be changed."""
    return Composition(formula)


def mass_fractions(composition: Composition) -> dict[str, float]:
    """element symbol -> mass fraction (sums to 1)."""
    comp = by_element(composition)
    total = molar_mass(comp)
    return {el.symbol: float(amount) * atomic_mass(el.symbol) / total for el, amount in comp.items()}


def fact(table: pd.DataFrame, element: str, column: str) -> float | str:
    """One cell of the element table; NaN when the column, the row or the value is absent."""
    if column not in table.columns or element not in table.index:
        return math.nan
    value = table.at[element, column]
    return math.nan if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _number(table: pd.DataFrame, element: str, column: str) -> float:
    value = fact(table, element, column)
    return float(value) if isinstance(value, (int, float)) else math.nan


def missing_facts(composition: Composition, table: pd.DataFrame, column: str) -> list[str]:
    """Elements of the composition without a value in `column`, sorted by symbol."""
    return sorted(el for el in mass_fractions(composition) if _is_missing(fact(table, el, column)))


def _is_missing(value: float | str) -> bool:
    return isinstance(value, float) and math.isnan(value)


def weighted(composition: Composition, table: pd.DataFrame, column: str) -> float:
    """sum_e w_e x_e for a numeric column; NaN if any element lacks it."""
    total = 0.0
    for element, w in mass_fractions(composition).items():
        x = _number(table, element, column)
        if math.isnan(x):
            return math.nan
        total += w * x
    return total


# --- supply ------------------------------------------------------------------------------------------


def concentration(table: pd.DataFrame, element: str) -> float:
    """C_e of the module docstring: HHI_production, raised to the single-country lower bounds."""
    hhi = _number(table, element, "hhi_production")
    if math.isnan(hhi):
        return math.nan
    shares = [_number(table, element, c) for c in ("top_mine_share_pct", "china_refining_share_pct")]
    return max([hhi, *(s**2 for s in shares if not math.isnan(s))])  # 10000 (s/100)^2 = s^2 for s in %


def supply_risk(composition: Composition, table: pd.DataFrame) -> float:
    """Mass-weighted concentration / 10000, in [0, 1]; NaN if an element has no HHI_production."""
    total = 0.0
    for element, w in mass_fractions(composition).items():
        c = concentration(table, element)
        if math.isnan(c):
            return math.nan
        total += w * c
    return total / 10000.0


def elements_above(
    composition: Composition, table: pd.DataFrame, column: str, threshold_pct: float, min_mass_fraction: float
) -> list[str]:
    """Elements with mass fraction >= `min_mass_fraction` whose `column` exceeds `threshold_pct`."""
    hits = []
    for element, w in sorted(mass_fractions(composition).items()):
        share = _number(table, element, column)
        if w >= min_mass_fraction and not math.isnan(share) and share > threshold_pct:
            hits.append(element)
    return hits


def feoc_elements(
    composition: Composition, table: pd.DataFrame, china_pct: float, min_mass_fraction: float
) -> list[str]:
    return elements_above(composition, table, "china_refining_share_pct", china_pct, min_mass_fraction)


@dataclass(frozen=True)
class CrmaFinding:
    """One element above the CRMA single-country benchmark at one stage."""

    element: str
    stage: str  # "mining" or "refining"
    country: str
    share_pct: float

    def __str__(self) -> str:
        return f"{self.element} {self.stage} {self.country} {self.share_pct:g}%"


# stage -> (share column, column of the country; None: the share is China's by definition)
CRMA_STAGES = {"mining": ("top_mine_share_pct", "top_mine_country"), "refining": ("china_refining_share_pct", None)}


def crma_findings(
    composition: Composition, table: pd.DataFrame, top_pct: float, min_mass_fraction: float
) -> list[CrmaFinding]:
    """Every (element, stage) whose single-country share exceeds `top_pct`, by element then stage."""
    hits = []
    for stage, (column, country_column) in CRMA_STAGES.items():
        for element in elements_above(composition, table, column, top_pct, min_mass_fraction):
            country = "China" if country_column is None else fact(table, element, country_column)
            country = "unnamed country" if _is_missing(country) else str(country)
            hits.append(CrmaFinding(element, stage, country, _number(table, element, column)))
    return sorted(hits, key=lambda f: (f.element, list(CRMA_STAGES).index(f.stage)))


def crma_elements(composition: Composition, table: pd.DataFrame, top_pct: float, min_mass_fraction: float) -> list[str]:
    """Elements above the CRMA benchmark at mining or refining, sorted by symbol."""
    return sorted({f.element for f in crma_findings(composition, table, top_pct, min_mass_fraction)})


def eu_crm_elements(composition: Composition, table: pd.DataFrame) -> list[str]:
    """Elements on the EU CRMA 2023 list (strategic or critical), sorted by symbol."""
    return sorted(e for e in mass_fractions(composition) if fact(table, e, "eu_crm_2023") in EU_CRM_LISTED)


def eu_crm_mass_fraction(composition: Composition, table: pd.DataFrame) -> float:
    """Mass fraction on the EU CRMA 2023 list; NaN if an element's list status is unknown."""
    if missing_facts(composition, table, "eu_crm_2023"):
        return math.nan
    w = mass_fractions(composition)
    return sum(w[e] for e in eu_crm_elements(composition, table))


def contains(composition: Composition, element: str) -> bool:
    return element in mass_fractions(composition)


# --- carbon --------------------------------------------------------------------------------------------


def co2_kg_per_kg(composition: Composition, table: pd.DataFrame) -> float:
    return weighted(composition, table, "co2_kg_per_kg")


def co2_lower_bound_kg_per_kg(composition: Composition, table: pd.DataFrame) -> float:
    """The known part of the CO2 sum; NaN only when no element has a factor."""
    w = mass_fractions(composition)
    known = [(w[e], _number(table, e, "co2_kg_per_kg")) for e in w]
    known = [(wi, x) for wi, x in known if not math.isnan(x)]
    return sum(wi * x for wi, x in known) if known else math.nan


# --- circularity -----------------------------------------------------------------------------------


def _targeted(composition: Composition, targets: dict[str, float]) -> Iterable[tuple[str, float, float]]:
    for element, w in sorted(mass_fractions(composition).items()):
        if element in targets:
            yield element, w, targets[element]


def recoverable_value_usd_kg(composition: Composition, table: pd.DataFrame) -> float:
    """USD per kg of material recovered at the EU 2031 targets; 0 when no targeted element is present
    (the regulation asks nothing of the others); NaN if a targeted element has no price."""
    total = 0.0
    for element, w, target in _targeted(composition, RECOVERY_TARGETS_2031):
        price = _number(table, element, "price_usd_per_kg")
        if math.isnan(price):
            return math.nan
        total += w * target * price
    return total


def recycled_content_2031_kg_per_kg(composition: Composition) -> float:
    """kg of recycled Co, Li, Ni (Pb) per kg of material at the EU 2031 minimums."""
    return sum(w * minimum for _, w, minimum in _targeted(composition, RECYCLED_CONTENT_2031))


def recycled_content_2031(composition: Composition) -> list[dict]:
    """Per regulated element: its mass fraction, the 2031 minimum and the recycled kg per kg of material."""
    return [
        {"element": e, "mass_fraction": w, "minimum_pct": 100 * m, "recycled_kg_per_kg_material": w * m}
        for e, w, m in _targeted(composition, RECYCLED_CONTENT_2031)
    ]


def recovery_2031(composition: Composition, table: pd.DataFrame) -> list[dict]:
    """Per element with a 2031 recovery target: mass fraction, target and recoverable USD per kg."""
    out = []
    for e, w, target in _targeted(composition, RECOVERY_TARGETS_2031):
        price = _number(table, e, "price_usd_per_kg")
        out.append(
            {
                "element": e,
                "mass_fraction": w,
                "target_pct": 100 * target,
                "recoverable_usd_per_kg_material": w * target * price if not math.isnan(price) else None,
            }
        )
    return out
