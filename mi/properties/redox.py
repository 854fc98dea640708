"""Oxidation-state-aware theoretical capacity: how many working ions the redox-active cations let go.

Extracting one working ion of charge z removes z electrons, which some cation must give up by being
oxidised. So the ions that can leave are bounded twice: by the working ions in the formula, and by the
oxidation headroom of the redox-active cations,

    headroom = sum over redox-active elements e of  n_e * (highest accessible state of e - its starting state)
    ions     = min(n_working_ion, headroom / z)

Starting states are pymatgen's most probable guess (`Composition.oxi_state_guesses`: charge balance
weighted by how often each oxidation state occurs in the ICSD) on the integer formula, with the
redox-active elements restricted to their accessible states (`ACCESSIBLE_STATES`). pymatgen enumerates
every assignment, which never returns on a formula scaled to thousands of atoms (Li3.001Cr0.999Mo3O12 is
Li3001Cr999Mo3000O12000); here the same guess comes from a bounded programme
(`mi.candidates.generate.chemistry.probable_states`: same ranking, same ties), and a composition beyond
its bound (`MAX_WORK`) gets the guess's continuous relaxation on its fractional amounts
(`relaxed_states`), the limit of ever finer formulas. Guesses are memoised by reduced formula; the
pymatgen path stays callable (`pymatgen_guesses`) for comparison. Only the
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
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from functools import lru_cache

from pymatgen.core import Composition, Element

from mi.candidates.generate.chemistry import TooComplex, electronegativity, probable_states, relaxed_states
from mi.features.composition import by_element

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
# Steps of the exact programme per composition: a few milliseconds at most. Every formula of the Materials
# Project sample in the tests stays below it; beyond it the relaxation answers in microseconds.
MAX_WORK = 200_000
_slow_path = False  # True inside `pymatgen_guesses`


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
    """pymatgen's own most probable guess (the slow path, kept for comparison)."""
    comp = Composition(formula)
    override = {el: ACCESSIBLE_STATES[el] for el in redox}
    try:
        guesses = comp.oxi_state_guesses(oxi_states_override=override)
    except ValueError:  # pymatgen knows no oxidation states for some element
        return None
    return tuple(sorted(guesses[0].items())) if guesses else None


@contextmanager
def pymatgen_guesses() -> Iterator[None]:
    """Inside this block starting states come from pymatgen's `oxi_state_guesses` itself (unbounded: for
    comparison on formulas it can finish, in this process only)."""
    global _slow_path
    before, _slow_path = _slow_path, True
    try:
        yield
    finally:
        _slow_path = before


@lru_cache(maxsize=65536)
def _solve(amounts: tuple[tuple[str, Fraction], ...]) -> tuple[tuple[str, float], ...] | None:
    """Starting states of a reduced composition (amounts as fractions, any order); memoised."""
    override = {el: ACCESSIBLE_STATES[el] for el, _ in amounts if el in ACCESSIBLE_STATES}
    scale = math.lcm(*(f.denominator for _, f in amounts))  # reduced: the integer formula pymatgen sees
    # pymatgen's element order (its formula: by electronegativity, then symbol) decides its ties
    order = sorted(((el, int(f * scale)) for el, f in amounts), key=lambda p: (electronegativity(p[0]) or math.inf, p[0]))
    try:
        states = probable_states(order, override, MAX_WORK)
    except TooComplex:
        relaxed = relaxed_states([(el, f) for el, f in amounts], override)
        return None if relaxed is None else tuple(sorted((el, float(q)) for (el, _), q in zip(amounts, relaxed)))
    if states is None:
        return None
    return tuple(sorted((el, q) for (el, _), q in zip(order, states)))


@lru_cache(maxsize=65536)
def _reduced(amounts: tuple[tuple[str, float], ...]) -> tuple[tuple[str, Fraction], ...]:
    """The reduced composition as fractions (denominators up to 1000, as `integer_composition`), by symbol."""
    fractions = [(el, Fraction(a).limit_denominator(_MAX_DENOMINATOR)) for el, a in amounts]
    fractions = [(el, f) for el, f in fractions if f > 0]
    scale = math.lcm(*(f.denominator for _, f in fractions))
    # in whole numbers: f * scale, over their gcd (f / (gcd / scale), without Fraction arithmetic)
    whole = [(el, f.numerator * (scale // f.denominator)) for el, f in fractions]
    divisor = math.gcd(*(n for _, n in whole))
    return tuple(sorted((el, Fraction(n, divisor)) for el, n in whole))


def starting_oxidation_states(composition: Composition) -> dict[str, float] | None:
    """Average oxidation state per element (most probable charge-balanced guess, redox-active elements
    within `ACCESSIBLE_STATES`); None when no charge-balanced guess exists."""
    if _slow_path:
        comp = integer_composition(composition)
        redox = tuple(sorted(el.symbol for el in comp if el.symbol in ACCESSIBLE_STATES))
        guess = _guess(comp.formula, redox)
        return dict(guess) if guess is not None else None
    amounts = tuple((el.symbol, float(a)) for el, a in by_element(composition).items())
    guess = _solve(_reduced(amounts))
    return dict(guess) if guess is not None else None


def redox_headroom(composition: Composition, working_ion: str) -> float:
    """Electrons per formula unit of `composition` that its redox-active cations can give up: the sum of
    n_e * (highest accessible state - starting state). 0.0 without redox-active cations; NaN when no
    charge-balanced oxidation states exist (e.g. a peroxide, or Fe4+ needed)."""
    comp = by_element(composition)
    redox = [el for el in comp if el.symbol in ACCESSIBLE_STATES and el.symbol != working_ion]
    if not redox:
        return 0.0
    states = starting_oxidation_states(comp)
    if states is None:
        return math.nan
    return float(sum(comp[el] * (max(ACCESSIBLE_STATES[el.symbol]) - states[el.symbol]) for el in redox))


def extractable_ions(composition: Composition, working_ion: str, charge: int) -> float:
    """Working ions per formula unit that can leave: min(n in the formula, headroom / charge)."""
    n = by_element(composition)[Element(working_ion)]
    if n == 0:
        return 0.0
    headroom = redox_headroom(composition, working_ion)
    if math.isnan(headroom):
        return math.nan
    return min(float(n), max(headroom, 0.0) / charge)
