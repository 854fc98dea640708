"""Exact property calculators: small plain functions of one candidate or one composition.

Each registered calculator turns (candidate, context) into one float (a flag: 1.0 / 0.0). NaN means the
value cannot be known from what the candidate carries (no structure, no price, a missing element fact);
`why_missing` says why, for the run's notes. A calculator raises only when the candidate itself is
unusable (empty composition, placeholder species).

`CALCULATORS` maps the names used in ``properties.calculators`` to groups of calculators, one column each.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pandas as pd
from pymatgen.core import Composition, Element, Species

from mi.candidates.base import Candidate
from mi.features.composition import by_element
from mi.properties import redox, supply
from mi.properties.supply import molar_mass

FARADAY_C_PER_MOL = 96485.33212
# Charge carried per working ion; Q = n * z * F / (3.6 * M).
ION_CHARGE = {"Li": 1, "Na": 1, "K": 1, "Mg": 2, "Ca": 2, "Zn": 2, "Al": 3}


def _elements(composition: Composition) -> Composition:
    """The composition by element (oxidation states dropped); raises for an empty or placeholder one."""
    comp = by_element(composition)
    placeholders = sorted(str(sp) for sp in comp if not isinstance(sp, Element))
    if placeholders:
        raise ValueError(f"composition has placeholder species {', '.join(placeholders)}")
    if comp.num_atoms <= 0:
        raise ValueError("composition is empty")
    return comp


@functools.lru_cache(maxsize=1)
def _unit_factors() -> tuple[float, float]:
    """pymatgen's amu -> g and A^3 -> cm^3 factors, as its `Structure.density` computes them."""
    from pymatgen.core.units import Length, Mass

    return float(Mass(1, "amu").to("g")), float(Length(1, "ang").to("cm") ** 3)


_last_density: tuple = (None, math.nan)  # (structure, density): the capacity per volume asks again


def density_g_cm3(candidate: Candidate) -> float:
    """Crystal density (g/cm3) of the candidate's structure; NaN for a composition-only candidate.

    pymatgen's ``Structure.density`` in plain arithmetic (the same floats: mass over cell volume with its
    unit factors), once per structure: its unit objects cost more than the rest."""
    global _last_density
    structure = candidate.structure
    if structure is None:
        return math.nan
    last = _last_density  # one read: another thread may replace it
    if last[0] is structure:
        return last[1]
    composition = structure.composition
    if all(isinstance(sp, (Element, Species)) for sp in composition):
        grams, cm3 = _unit_factors()
        density = (molar_mass(composition) * grams) / (structure.volume * cm3)
    else:  # placeholder species: pymatgen knows their mass, if anyone does
        density = float(structure.density)
    _last_density = (structure, density)
    return density


def capacity_mAh_g(composition: Composition, working_ion: str = "Li") -> float:
    """Theoretical gravimetric capacity (mAh/g) with every working ion in the formula extracted.

    Q = n * z * F / (3.6 * M): n the amount of the working ion in the composition, z its charge (1 for Li,
    Na, K; 2 for Mg, Ca, Zn; 3 for Al), M the molar mass (g/mol) of that same composition. 0.0 when the
    composition holds no working ion.
    """
    comp = _elements(composition)
    n = comp[working_ion]
    if n == 0:
        return 0.0
    return n * ION_CHARGE[working_ion] * FARADAY_C_PER_MOL / (3.6 * molar_mass(comp))


_last_capacity: tuple = (None, None, None, math.nan)  # (composition, ion, solver, capacity): three columns ask


def redox_capacity_mAh_g(composition: Composition, working_ion: str = "Li") -> float:
    """Theoretical gravimetric capacity (mAh/g) counting only the working ions that the redox-active
    cations can release (`mi.properties.redox`): Q = n_out * z * F / (3.6 * M), with
    n_out = min(n, headroom / z). NaN when no charge-balanced oxidation states exist."""
    global _last_capacity
    last = _last_capacity  # one read: another thread may replace it
    if last[0] is composition and last[1] == working_ion and last[2] == redox._slow_path:
        return last[3]
    comp = _elements(composition)
    n_out = redox.extractable_ions(comp, working_ion, ION_CHARGE[working_ion])
    z = ION_CHARGE[working_ion]
    capacity = math.nan if math.isnan(n_out) else n_out * z * FARADAY_C_PER_MOL / (3.6 * molar_mass(comp))
    _last_capacity = (composition, working_ion, redox._slow_path, capacity)
    return capacity


def volumetric_capacity_mAh_cm3(capacity_mAh_g: float, density_g_cm3: float) -> float:
    """mAh/g x g/cm3; NaN when either is unknown."""
    return capacity_mAh_g * density_g_cm3


def missing_prices(composition: Composition, prices: Mapping[str, float]) -> list[str]:
    """Elements of the composition without a finite price, sorted by symbol."""
    return sorted(
        el.symbol for el in _elements(composition) if not math.isfinite(prices.get(el.symbol, math.nan))
    )


def cost_usd_kg(composition: Composition, prices: Mapping[str, float]) -> float:
    """Raw-material cost (USD/kg): element prices weighted by mass fraction; NaN if any price is unknown."""
    comp = _elements(composition)
    if missing_prices(comp, prices):
        return math.nan
    weight = molar_mass(comp)
    return sum(amount * float(el.atomic_mass) * prices[el.symbol] for el, amount in comp.items()) / weight


# --- registry ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """What calculators may need beyond the candidate."""

    working_ion: str = "Li"
    prices: Mapping[str, float] = field(default_factory=dict)  # element symbol -> USD/kg (absent = unknown)
    facts: pd.DataFrame | None = None  # the element table, indexed by symbol (None: no calculator needs it)
    capacity_mode: str = "redox"
    min_mass_fraction: float = 0.01
    feoc_china_refining_pct: float = 50.0
    crma_top_country_pct: float = 65.0

    @property
    def table(self) -> pd.DataFrame:
        if self.facts is None:
            raise RuntimeError("this calculator needs the element table (needs_facts=True)")
        return self.facts


@dataclass(frozen=True)
class Calculator:
    column: str
    unit: str
    compute: Callable[[Candidate, Context], float]
    why_missing: Callable[[Candidate, Context], str]  # asked only when compute gave NaN
    needs_prices: bool = False
    needs_facts: bool = False  # reads the element table beyond prices
    flag: bool = False  # a yes/no finding (1.0 / 0.0), written as a boolean column
    # (element-table column, what it is): a finite value leaves out the elements lacking that fact (an
    # unknown share raises no flag); the run's notes name them.
    caveat: tuple[str, str] | None = None
    # (element-table column, what it is): a NaN comes from elements lacking that fact; notes count them.
    missing_fact: tuple[str, str] | None = None
    needs_structure: bool = False  # NaN for a composition-only candidate (compute is not asked)


def _no_structure(candidate: Candidate, ctx: Context) -> str:
    return "no structure (composition-only candidate)"


def _no_price(candidate: Candidate, ctx: Context) -> str:
    return f"no price for {', '.join(missing_prices(candidate.composition, ctx.prices))} in the element table"


def _not_computed(candidate: Candidate, ctx: Context) -> str:
    return "not computable"


def _no_oxidation_states(candidate: Candidate, ctx: Context) -> str:
    return "no charge-balanced oxidation states within the accessible redox states (mi.properties.redox)"


def _no_fact(column: str, what: str | None = None) -> Callable[[Candidate, Context], str]:
    def why(candidate: Candidate, ctx: Context) -> str:
        if column not in ctx.table.columns:
            return f"the element table has no {column} column"
        return f"no {what or column} for {', '.join(supply.missing_facts(candidate.composition, ctx.table, column))}"

    return why


def _capacity(candidate: Candidate, ctx: Context) -> float:
    if ctx.capacity_mode == "formula":
        return capacity_mAh_g(candidate.composition, ctx.working_ion)
    return redox_capacity_mAh_g(candidate.composition, ctx.working_ion)


def _capacity_why(candidate: Candidate, ctx: Context) -> str:
    return _no_oxidation_states(candidate, ctx) if ctx.capacity_mode == "redox" else "not computable"


def _capacity_mAh_cm3(candidate: Candidate, ctx: Context) -> float:
    return volumetric_capacity_mAh_cm3(_capacity(candidate, ctx), density_g_cm3(candidate))


def _capacity_mAh_cm3_why(candidate: Candidate, ctx: Context) -> str:
    return _no_structure(candidate, ctx) if candidate.structure is None else _capacity_why(candidate, ctx)


def _flag(found: bool) -> float:
    return 1.0 if found else 0.0


def _no_target_price(candidate: Candidate, ctx: Context) -> str:
    gaps = [e for e in supply.missing_facts(candidate.composition, ctx.table, "price_usd_per_kg")]
    gaps = [e for e in gaps if e in supply.RECOVERY_TARGETS_2031]
    return f"no price for {', '.join(gaps)} (an element with an EU 2031 recovery target)"


def _risk_why(candidate: Candidate, ctx: Context) -> str:
    return _no_fact("hhi_production", "production HHI")(candidate, ctx)


CALCULATORS: dict[str, tuple[Calculator, ...]] = {
    "density": (
        Calculator("density_g_cm3", "g/cm3", lambda c, ctx: density_g_cm3(c), _no_structure, needs_structure=True),
    ),
    "capacity": (
        Calculator("capacity_mAh_g", "mAh/g", _capacity, _capacity_why),
        Calculator("capacity_mAh_cm3", "mAh/cm3", _capacity_mAh_cm3, _capacity_mAh_cm3_why, needs_structure=True),
        Calculator(
            "capacity_formula_mAh_g",
            "mAh/g",
            lambda c, ctx: capacity_mAh_g(c.composition, ctx.working_ion),
            _not_computed,
        ),
        Calculator(
            "capacity_redox_mAh_g",
            "mAh/g",
            lambda c, ctx: redox_capacity_mAh_g(c.composition, ctx.working_ion),
            _no_oxidation_states,
        ),
    ),
    "cost": (
        Calculator(
            "cost_usd_kg", "USD/kg", lambda c, ctx: cost_usd_kg(c.composition, ctx.prices), _no_price, needs_prices=True
        ),
    ),
    "supply": (
        Calculator(
            "supply_risk",
            "0-1",
            lambda c, ctx: supply.supply_risk(c.composition, ctx.table),
            _risk_why,
            needs_facts=True,
            missing_fact=("hhi_production", "production HHI"),
        ),
        Calculator(
            "hhi_production",
            "0-10000",
            lambda c, ctx: supply.weighted(c.composition, ctx.table, "hhi_production"),
            _no_fact("hhi_production", "production HHI"),
            needs_facts=True,
            missing_fact=("hhi_production", "production HHI"),
        ),
        Calculator(
            "hhi_reserve",
            "0-10000",
            lambda c, ctx: supply.weighted(c.composition, ctx.table, "hhi_reserve"),
            _no_fact("hhi_reserve", "reserve HHI"),
            needs_facts=True,
            missing_fact=("hhi_reserve", "reserve HHI"),
        ),
        Calculator(
            "feoc_exposed",
            "flag",
            lambda c, ctx: _flag(
                supply.feoc_elements(c.composition, ctx.table, ctx.feoc_china_refining_pct, ctx.min_mass_fraction)
            ),
            _not_computed,
            needs_facts=True,
            flag=True,
            caveat=("china_refining_share_pct", "China refining share"),
        ),
        Calculator(
            "crma_concentration_flag",
            "flag",
            lambda c, ctx: _flag(
                supply.crma_elements(c.composition, ctx.table, ctx.crma_top_country_pct, ctx.min_mass_fraction)
            ),
            _not_computed,
            needs_facts=True,
            flag=True,
            caveat=("top_mine_share_pct", "top mining country share"),  # unknown refining: see feoc_exposed
        ),
        Calculator(
            "eu_crm_mass_fraction",
            "kg/kg",
            lambda c, ctx: supply.eu_crm_mass_fraction(c.composition, ctx.table),
            _no_fact("eu_crm_2023", "EU CRMA 2023 list status"),
            needs_facts=True,
            missing_fact=("eu_crm_2023", "EU CRMA 2023 list status"),
        ),
        Calculator("co_free", "flag", lambda c, ctx: _flag(not supply.contains(c.composition, "Co")), _not_computed,
                   flag=True),
        Calculator("ni_free", "flag", lambda c, ctx: _flag(not supply.contains(c.composition, "Ni")), _not_computed,
                   flag=True),
    ),
    "co2": (
        Calculator(
            "co2_kg_per_kg",
            "kg CO2e/kg",
            lambda c, ctx: supply.co2_kg_per_kg(c.composition, ctx.table),
            _no_fact("co2_kg_per_kg", "CO2 factor"),
            needs_facts=True,
            missing_fact=("co2_kg_per_kg", "CO2 factor"),
        ),
        Calculator(
            "co2_lower_bound_kg_per_kg",
            "kg CO2e/kg",
            lambda c, ctx: supply.co2_lower_bound_kg_per_kg(c.composition, ctx.table),
            _no_fact("co2_kg_per_kg", "CO2 factor"),
            needs_facts=True,
            caveat=("co2_kg_per_kg", "CO2 factor"),
            # NaN when none of the elements has a factor: counted per element, not one note per combination
            missing_fact=("co2_kg_per_kg", "CO2 factor"),
        ),
    ),
    "circularity": (
        Calculator(
            "recoverable_value_usd_kg",
            "USD/kg",
            lambda c, ctx: supply.recoverable_value_usd_kg(c.composition, ctx.table),
            _no_target_price,
            needs_facts=True,
        ),
        Calculator(
            "recycled_content_2031_kg_per_kg",
            "kg/kg",
            lambda c, ctx: supply.recycled_content_2031_kg_per_kg(c.composition),
            _not_computed,
        ),
    ),
}
