"""Oxidation-state-aware theoretical capacity: how many working ions the redox-active cations let go.

Extracting one working ion of charge z removes z electrons, which some cation must give up by being
oxidised. So the ions that can leave are bounded twice: by the working ions in the formula, and by the
oxidation headroom of the redox-active cations,

    headroom = sum over redox-active elements e of  n_e * (highest accessible state of e - its starting state)
    ions     = min(n_working_ion, headroom / z)

Starting states come from pymatgen's `Composition.oxi_state_guesses` (charge balance weighted by how
often each oxidation state occurs in the ICSD), run on the integer formula with the redox-active elements
restricted to their accessible states (`ACCESSIBLE_STATES`); the most probable guess is taken. Only the
sum of the redox-active elements' charges enters the headroom, so how a guess splits the charge between
them (Ni2+/Mn4+ or Ni3+/Mn3.67+ in LiNi0.5Mn1.5O4) does not change the result: LiNi0.5Mn1.5O4 has one
electron of headroom per formula unit, all of it Ni2+/Ni4+, and gives 146.7 mAh/g, not the Mn3+/Mn4+
count.

Limits: cation redox in intercalation hosts only. Anion redox (O2-/O-, S2-/S0 as in Li2S) and conversion
reactions are not counted (use ``capacity_mode: formula`` for those); insertion into a host without the
working ion (TiS2, FePO4) is not counted either. An element not in `ACCESSIBLE_STATES` is taken as redox
inactive.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache

from pymatgen.core import Composition, Element

# Oxidation states a cation can take in a working cathode, lowest to highest. The highest bounds the
# headroom; the list also keeps the oxidation-state guesser from assigning chemically absurd states
# (it puts Mn7+ in NMC811 when unconstrained). Fe stops at 3+ and Mn at 4+: Fe3+/4+ and Mn4+/7+ are not
# reached in practical cathodes.
ACCESSIBLE_STATES: dict[str, tuple[int, ...]] = {
    "Ti": (3, 4),
    "V": (3, 4, 5),
    "Cr": (3, 4, 5, 6),
    "Mn": (2, 3, 4),
    "Fe": (2, 3),
    "Co": (2, 3, 4),
    "Ni": (2, 3, 4),
    "Cu": (1, 2),
    "Nb": (4, 5),
    "Mo": (3, 4, 5, 6),
    "W": (4, 5, 6),
}

_MAX_DENOMINATOR = 1000  # LiNi0.8Mn0.1Co0.1O2 -> Li10Ni8MnCoO20; finer fractions than 1/1000 are rounded


def integer_composition(composition: Composition) -> Composition:
    """The smallest whole-number multiple of `composition` (by element); amounts are read as fractions
    with denominators up to 1000, so 0.333 is taken as 333/1000, not 1/3."""
    fractions = {
        el: Fraction(float(amount)).limit_denominator(_MAX_DENOMINATOR)
        for el, amount in composition.element_composition.items()
    }
    scale = math.lcm(*(f.denominator for f in fractions.values()))
    whole = Composition({el: int(f * scale) for el, f in fractions.items() if f > 0})
    return whole.reduced_composition


@lru_cache(maxsize=4096)
def _guess(formula: str, redox: tuple[str, ...]) -> tuple[tuple[str, float], ...] | None:
    comp = Composition(formula)
    override = {el: ACCESSIBLE_STATES[el] for el in redox}
    try:
        guesses = comp.oxi_state_guesses(oxi_states_override=override)
    except ValueError:  # pymatgen knows no oxidation states for some element
        return None
    return tuple(sorted(guesses[0].items())) if guesses else None


def starting_oxidation_states(composition: Composition) -> dict[str, float] | None:
    """Average oxidation state per element (most probable charge-balanced guess, redox-active elements
    within `ACCESSIBLE_STATES`); None when no charge-balanced guess exists."""
    comp = integer_composition(composition)
    redox = tuple(sorted(el.symbol for el in comp if el.symbol in ACCESSIBLE_STATES))
    guess = _guess(comp.formula, redox)
    return dict(guess) if guess is not None else None


def redox_headroom(composition: Composition, working_ion: str) -> float:
    """Electrons per formula unit of `composition` that its redox-active cations can give up: the sum of
    n_e * (highest accessible state - starting state). 0.0 without redox-active cations; NaN when no
    charge-balanced oxidation states exist (e.g. a peroxide, or Fe4+ needed)."""
    comp = composition.element_composition
    redox = [el for el in comp if el.symbol in ACCESSIBLE_STATES and el.symbol != working_ion]
    if not redox:
        return 0.0
    states = starting_oxidation_states(comp)
    if states is None:
        return math.nan
    return float(sum(comp[el] * (max(ACCESSIBLE_STATES[el.symbol]) - states[el.symbol]) for el in redox))


def extractable_ions(composition: Composition, working_ion: str, charge: int) -> float:
    """Working ions per formula unit that can leave: min(n in the formula, headroom / charge)."""
    n = composition.element_composition[Element(working_ion)]
    if n == 0:
        return 0.0
    headroom = redox_headroom(composition, working_ion)
    if math.isnan(headroom):
        return math.nan
    return min(float(n), max(headroom, 0.0) / charge)
