"""Exact property calculators: small plain functions of one candidate or one composition.

Each registered calculator turns (candidate, context) into one float. NaN means the value cannot be known
from what the candidate carries (no structure, no price); `why_missing` says why, for the run's notes.
A calculator raises only when the candidate itself is unusable (empty composition, placeholder species).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pymatgen.core import Composition, Element

from mi.candidates.base import Candidate

FARADAY_C_PER_MOL = 96485.33212
# Charge carried per working ion; Q = n * z * F / (3.6 * M).
ION_CHARGE = {"Li": 1, "Na": 1, "K": 1, "Mg": 2, "Ca": 2, "Zn": 2, "Al": 3}


def _elements(composition: Composition) -> Composition:
    """The composition by element (oxidation states dropped); raises for an empty or placeholder one."""
    comp = composition.element_composition
    placeholders = sorted(str(sp) for sp in comp if not isinstance(sp, Element))
    if placeholders:
        raise ValueError(f"composition has placeholder species {', '.join(placeholders)}")
    if comp.num_atoms <= 0:
        raise ValueError("composition is empty")
    return comp


def density_g_cm3(candidate: Candidate) -> float:
    """Crystal density (g/cm3) of the candidate's structure; NaN for a composition-only candidate."""
    if candidate.structure is None:
        return math.nan
    return float(candidate.structure.density)


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
    return n * ION_CHARGE[working_ion] * FARADAY_C_PER_MOL / (3.6 * float(comp.weight))


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
    weight = float(comp.weight)
    return sum(amount * float(el.atomic_mass) * prices[el.symbol] for el, amount in comp.items()) / weight


# --- registry ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """What calculators may need beyond the candidate."""

    working_ion: str = "Li"
    prices: Mapping[str, float] = field(default_factory=dict)  # element symbol -> USD/kg (absent = unknown)


@dataclass(frozen=True)
class Calculator:
    column: str
    unit: str
    compute: Callable[[Candidate, Context], float]
    why_missing: Callable[[Candidate, Context], str]  # asked only when compute gave NaN
    needs_prices: bool = False


def _no_structure(candidate: Candidate, ctx: Context) -> str:
    return "no structure (composition-only candidate)"


def _no_price(candidate: Candidate, ctx: Context) -> str:
    return f"no price for {', '.join(missing_prices(candidate.composition, ctx.prices))} in the element table"


def _not_computed(candidate: Candidate, ctx: Context) -> str:
    return "not computable"


CALCULATORS: dict[str, Calculator] = {
    "density": Calculator(
        "density_g_cm3", "g/cm3", lambda c, ctx: density_g_cm3(c), _no_structure
    ),
    "capacity": Calculator(
        "capacity_mAh_g", "mAh/g", lambda c, ctx: capacity_mAh_g(c.composition, ctx.working_ion), _not_computed
    ),
    "cost": Calculator(
        "cost_usd_kg", "USD/kg", lambda c, ctx: cost_usd_kg(c.composition, ctx.prices), _no_price, needs_prices=True
    ),
}
