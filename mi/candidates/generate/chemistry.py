"""Chemistry for generation: oxidation states, charge balance, Shannon radii, electronegativity.

Everything comes from pymatgen's element data (no other dependency) and is cached: a generation run asks the
same few questions millions of times.
"""

from __future__ import annotations

import functools
import math
import operator
from fractions import Fraction
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pymatgen.core.periodic_table import Element

ROMAN = {1: "I", 2: "II", 3: "III", 4: "IV", 5: "V", 6: "VI", 7: "VII", 8: "VIII", 9: "IX", 10: "X", 11: "XI", 12: "XII"}


@functools.lru_cache(maxsize=None)
def oxidation_states(symbol: str, role: str) -> tuple[int, ...]:
    """States an element may take on a site of a given role (`prototypes.ROLES`).

    anion: the common negative states (no S-1 persulfides and the like). redox: the common positive states
    together with those seen in the ICSD (V3+, Ni3+, Ti3+ are only in the latter). working_ion and
    framework: the common positive states (so P stays 3+/5+ on a phosphate site, not the ICSD's P4+),
    falling back to the ICSD's where an element has no common positive state; a working ion also takes +1
    where the ICSD knows it (Cu+ as in delafossite CuFeO2: pymatgen's common state of Cu is 2+ only).
    """
    el = Element(symbol)
    if role == "anion":
        return tuple(sorted({q for q in el.common_oxidation_states if q < 0}))
    common = {q for q in el.common_oxidation_states if q > 0}
    icsd = {q for q in el.icsd_oxidation_states if q > 0}
    if role == "redox":
        return tuple(sorted(common | icsd))
    if role == "working_ion":
        return tuple(sorted((common or icsd) | ({1} & icsd)))
    return tuple(sorted(common or icsd))


@functools.lru_cache(maxsize=None)
def _group_totals(states: tuple[int, ...], n: int, mixed: bool) -> frozenset[int]:
    """Every total charge n sites can carry: each in one of `states` (mixed), or all in the same one."""
    if not mixed:
        return frozenset(n * q for q in states)
    totals = {0}
    for _ in range(n):
        totals = {t + q for t in totals for q in states}
    return frozenset(totals)


# A group of the cell's sites that takes one (mean) oxidation state: (element, role of its sites, number of
# sites, the published sites it fills as (published element, its oxidation state, coordination, sites)). The
# published sites only rank the neutral assignments; () ranks none above another.
Published = tuple[tuple[str, float, int, int], ...]
Group = tuple[str, str, int, Published]
# Ranking keys are summed as one integer per assignment, level by level: valence-mixed sites, then the
# departure from the published states, then the radius misfit; each level is counted in millionths and stays
# far below the next level's unit.
_LEVEL = 10**18
_UNIT = 10**6


@functools.lru_cache(maxsize=200_000)
def charge_balanced(groups: tuple[tuple[str, str, int], ...]) -> bool:
    """Can the cell be neutral? `groups` holds (element, role of its site, number of sites).

    Redox sites may mix valences (Mn3+/Mn4+ in LiMn2O4); the sites of one element in any other role share
    one state (no P3+/P5+ mixes on a phosphate site). Counts are the sites of the cell being built, so a
    fractional mean state needs a cell big enough to hold it.
    """
    return balanced_states(tuple((symbol, role, n, ()) for symbol, role, n in groups)) is not None


@functools.lru_cache(maxsize=200_000)
def balanced_states(groups: tuple[Group, ...]) -> tuple[float, ...] | None:
    """The (mean) oxidation state of every group in a neutral cell, or None where the cell cannot be neutral.

    The rules are `charge_balanced`'s. Where several assignments are neutral, the one kept has, in this order:
      1. the fewest sites in mixed valence (a redox group whose mean is none of its element's states): a
         valence is mixed only where no single one balances, so LiNi0.5Mn1.5O4 is Ni2+/Mn4+ (not Ni3.5+ and
         Mn3.5+ like the spinel's own Mn) and LiCrSb(PO4)3 Cr3+/Sb5+ (not Cr4+ beside Sb3+/Sb5+);
      2. the smallest departure from the published states, sum over sites of |state - published state|: an
         unsubstituted prototype keeps its own (LiMn2O4 Mn3.5+), the host of a substitution changes only as
         much as the charge needs (V2+ beside S6+ in LiVSO4F);
      3. the radii nearest the published ions', sum over sites of |r - r0| / r0 at the site's coordination
         (Cr3+/Sb5+ over Cr5+/Sb3+ on NASICON's Zr4+ site, V2+/S6+ over V4+/S4+ in LiVSO4F: the tie-break
         `site_radius` applies to one site);
      4. the first found, trying the groups in order and each one's lower totals first.
    """
    options = []
    for symbol, role, n, published in groups:
        group = _group_options(symbol, role, n, published)
        if not group:
            return None
        options.append(group)
    totals = neutral_totals(options)
    if totals is None:
        return None
    return tuple(total / n for total, (_, _, n, _) in zip(totals, groups))


def neutral_totals(options: Sequence[Sequence[tuple[int, Any]]], add: Callable[[Any, Any], Any] = operator.add):
    """The total charge of every group in the neutral assignment of smallest key, or None where none is neutral.

    ``options[i]`` lists group i's (total charge, cost); an assignment's key is the costs added up with `add`
    group by group, so ``add(key, cost)`` must keep the order of keys (a smaller key stays smaller). Charges
    are integers: a dynamic programme over the partial charge, each partial charge keeping the smallest key
    that reaches it, pruned to what the remaining groups can still bring back to zero. Between equal keys the
    first found wins (groups in order, each group's options in the order given).
    """
    # the charge the groups after each one can still bring: partial sums outside it cannot end neutral
    low, high = [0] * (len(options) + 1), [0] * (len(options) + 1)
    for i in range(len(options) - 1, -1, -1):
        low[i] = low[i + 1] + min(total for total, _ in options[i])
        high[i] = high[i + 1] + max(total for total, _ in options[i])
    best: dict[int, Any] = {0: None}  # charge of the groups so far -> the smallest key that reaches it
    chosen: list[dict[int, int]] = []  # per group: charge reached -> the group's total on the best way there
    for i, group in enumerate(options):
        reached: dict[int, Any] = {}
        total_of: dict[int, int] = {}
        floor, ceiling = -high[i + 1], -low[i + 1]
        for charge, key in best.items():
            for total, cost in group:
                c = charge + total
                if c < floor or c > ceiling:
                    continue
                new = cost if key is None else add(key, cost)
                old = reached.get(c)
                if old is None or new < old:
                    reached[c] = new
                    total_of[c] = total
        if not reached:
            return None
        chosen.append(total_of)
        best = reached
    totals = []
    charge = 0
    for total_of in reversed(chosen):
        totals.append(total_of[charge])
        charge -= totals[-1]
    return totals[::-1]


@functools.lru_cache(maxsize=None)
def _group_options(symbol: str, role: str, n: int, published: Published) -> tuple[tuple[int, int], ...]:
    """(total charge, rank key) for every total the group's n sites can carry (see `balanced_states`).

    A framework cation on tetrahedral sites only (the P of a phosphate, the Si of a silicate, the S of a
    sulfate) takes its highest state: a lone-pair state there (P3+, S4+, Sb3+) is a phosphite or sulfite, not
    the tetrahedral oxo-anion the prototype is made of.
    """
    states = oxidation_states(symbol, role)
    if role == "framework" and published and all(cn <= 4 for _, _, cn, _ in published):
        states = states[-1:]
    out = []
    for total in sorted(_group_totals(states, n, role == "redox")):
        mean = total / n
        mixed = n if mean not in states else 0
        departure = misfit = 0.0
        for original, oxi, cn, count in published:
            departure += count * abs(mean - oxi)
            r0 = ionic_radius(original, float(oxi), cn)
            r = r0 if symbol == original and mean == oxi else state_radius(symbol, mean, cn, role)
            if r0:
                misfit += count * (abs(r - r0) / r0 if r is not None else 1.0)
        out.append((total, (mixed * _LEVEL + round(departure * _UNIT)) * _LEVEL + round(misfit * _UNIT)))
    return tuple(out)


def _shannon(symbol: str, oxi: int, cn: int) -> float | None:
    """Shannon ionic radius (A) of symbol^oxi at coordination `cn`, or the nearest coordination listed."""
    table = Element(symbol).data.get("Shannon radii", {}).get(str(oxi))
    if not table:
        return None
    by_cn: dict[int, float] = {}
    inverse = {v: k for k, v in ROMAN.items()}
    for key, spins in table.items():
        number = inverse.get(key.rstrip("SQPY"))  # "IVSQ" (square planar), "IVPY" (pyramidal)
        if number is None or number in by_cn:
            continue
        spin = spins.get("High Spin") or spins.get("") or next(iter(spins.values()))
        by_cn[number] = float(spin["ionic_radius"])
    if not by_cn:
        return None
    nearest = min(by_cn, key=lambda k: (abs(k - cn), k))
    return by_cn[nearest]


@functools.lru_cache(maxsize=None)
def ionic_radius(symbol: str, oxi: float, cn: int) -> float | None:
    """Radius of an ion at a mean oxidation state (interpolated between the neighbouring integer states)."""
    lo, hi = math.floor(oxi), math.ceil(oxi)
    if lo == hi:
        r = _shannon(symbol, int(oxi), cn)
        if r is None:
            el = Element(symbol)
            r = el.ionic_radii.get(int(oxi)) if el.ionic_radii else None
            r = float(r) if r is not None else None
        return r
    r_lo, r_hi = ionic_radius(symbol, float(lo), cn), ionic_radius(symbol, float(hi), cn)
    if r_lo is None or r_hi is None:
        return r_lo if r_hi is None else r_hi
    return r_lo + (oxi - lo) * (r_hi - r_lo)


@functools.lru_cache(maxsize=None)
def state_radius(symbol: str, oxi: float, cn: int, role: str) -> float | None:
    """Radius of `symbol` at a (mean) oxidation state `oxi` on a site of `role`, coordination `cn`.

    A state the role allows has its own radius (`ionic_radius`) or none. A mean between states (mixed valence)
    is `ionic_radius`'s interpolation where both integer states around it have radii (Mn3.5+), otherwise
    interpolated between the nearest allowed states with radii below and above (Sb4+ from Sb3+ and Sb5+).
    """
    states = oxidation_states(symbol, role)
    lo, hi = math.floor(oxi), math.ceil(oxi)
    if oxi in states or None not in (ionic_radius(symbol, float(lo), cn), ionic_radius(symbol, float(hi), cn)):
        return ionic_radius(symbol, oxi, cn)
    known = [(q, ionic_radius(symbol, float(q), cn)) for q in states]
    below = [(q, r) for q, r in known if r is not None and q < oxi]
    above = [(q, r) for q, r in known if r is not None and q > oxi]
    if not below or not above:
        return ionic_radius(symbol, oxi, cn)
    (q0, r0), (q1, r1) = max(below), min(above)
    return r0 + (oxi - q0) / (q1 - q0) * (r1 - r0)


@functools.lru_cache(maxsize=None)
def site_radius(symbol: str, site_oxi: float, cn: int, role: str, original: str) -> float | None:
    """Radius of `symbol` on a site published with `original` at `site_oxi`, coordination `cn`.

    A substituent is taken in its allowed oxidation state closest to the site's own; between equally close
    states (S4+ and S6+ on a P5+ site) the one whose radius is nearer the original ion's wins.
    """
    r0 = ionic_radius(original, site_oxi, cn)
    if symbol == original:
        return r0
    options = []
    for q in oxidation_states(symbol, role):
        r = ionic_radius(symbol, float(q), cn)
        if r is not None:
            options.append((abs(q - site_oxi), abs(r - r0) if r0 is not None else 0.0, q, r))
    return min(options)[3] if options else None


@functools.lru_cache(maxsize=None)
def electronegativity(symbol: str) -> float | None:
    x = Element(symbol).X
    return None if x is None or math.isnan(x) else float(x)


def electronegativity_ordered(cations: Iterable[str], anions: Iterable[str]) -> bool:
    """Every cation less electronegative than every anion (the SMACT Pauling test); unknown X fails."""
    xc = [electronegativity(e) for e in cations]
    xa = [electronegativity(e) for e in anions]
    if any(x is None for x in (*xc, *xa)):
        return False
    return not xc or not xa or max(xc) < min(xa)  # type: ignore[type-var]


# --- oxidation-state guesses for whole compositions ---------------------------------------------------
#
# pymatgen's `Composition.oxi_state_guesses` ranks the charge-balanced assignments of an integer formula by
# how often each ion occurs in the ICSD (the sum over sites of the ion's count); it enumerates every multiset
# of states per element and every product of their sums, which explodes with the number of sites (a formula
# scaled to thousands of atoms never returns). `probable_states` solves the same problem by the programme
# of `neutral_totals`, with the same ranking and tie-breaking, within a bound on its work; `relaxed_states`
# solves its continuous relaxation on fractional amounts directly, for compositions beyond that bound.


class TooComplex(Exception):
    """The exact guess would take more steps than allowed."""


@functools.lru_cache(maxsize=1)
def icsd_occurrence() -> dict[tuple[str, int], int]:
    """(element, oxidation state) -> how often the ion occurs in the ICSD (pymatgen's icsd_bv.yaml, the
    table `Composition.oxi_state_guesses` ranks by); ions absent count 0."""
    from pathlib import Path

    import yaml
    from pymatgen.core import Species, composition

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader reads it in milliseconds
    data = yaml.load(Path(composition.__file__).with_name("icsd_bv.yaml").read_text(), Loader=loader)
    out: dict[tuple[str, int], int] = {}
    for name, count in data["occurrence"].items():
        species = Species.from_str(name)
        out[(species.symbol, species.oxi_state)] = count  # a float state equals and hashes as the int one
    return out


@functools.lru_cache(maxsize=None)
def guess_states(symbol: str) -> tuple[int, ...]:
    """The states `Composition.oxi_state_guesses` tries for an element: the ICSD's, else the common ones
    (in pymatgen's order, which decides ties)."""
    el = Element(symbol)
    return tuple(el.icsd_oxidation_states or el.common_oxidation_states)


def _site_work(n: int, states: tuple[int, ...]) -> int:
    span = max(states) - min(states) if states else 0
    return n * len(states) * (len(states) + 1) // 2 * (n * span + 1)


@functools.lru_cache(maxsize=4096)
def _site_sums(states: tuple[int, ...], counts: tuple[int, ...], n: int) -> tuple[tuple[int, int], ...]:
    """(total charge, best ICSD count) of n sites each in one of `states`, in the order the totals first appear
    among `itertools.combinations_with_replacement(states, n)`: pymatgen's per-element options, without
    enumerating the multisets. A multiset's first element is state i, then come the multisets of the rest
    from i on; so the totals appear in that order, layer by layer over the number of sites."""
    k = len(states)
    layer: list[tuple[list[int], dict[int, int]]] = [([0], {0: 0}) for _ in range(k)]
    for _ in range(n):
        new: list[tuple[list[int], dict[int, int]]] = [([], {}) for _ in range(k)]
        for start in range(k - 1, -1, -1):
            order, best = new[start]
            for i in range(start, k):
                q, p = states[i], counts[i]
                rest_order, rest_best = layer[i]
                for s in rest_order:
                    t, score = q + s, p + rest_best[s]
                    old = best.get(t)
                    if old is None:
                        best[t] = score
                        order.append(t)
                    elif score > old:
                        best[t] = score
        layer = new
    order, best = layer[0]
    return tuple((t, best[t]) for t in order)


def probable_states(
    amounts: Sequence[tuple[str, int]], override: dict[str, tuple[int, ...]], max_work: int
) -> tuple[float, ...] | None:
    """The mean oxidation state per element of pymatgen's most probable guess
    (``Composition(formula).oxi_state_guesses(oxi_states_override=override)[0]``) for whole-number amounts
    given in the formula's element order; None where no assignment is neutral. Raises `TooComplex` where the
    programme would take more than about `max_work` steps."""
    if len(amounts) == 1:
        return (0.0,)
    table = icsd_occurrence()
    groups = []
    for symbol, n in amounts:
        states = tuple(override.get(symbol) or guess_states(symbol))
        if not states:
            return None
        groups.append((states, tuple(table.get((symbol, q), 0) for q in states), n))
    work = sum(_site_work(n, states) for states, _, n in groups)
    reach = 1
    for states, _, n in groups:  # partial charges times options, an upper bound on the global programme
        width = n * (max(states) - min(states)) + 1
        work += reach * width
        reach += width - 1
    if work > max_work:
        raise TooComplex(f"about {work} steps")
    options = []
    for states, counts, n in groups:
        # key (-score, indices in pymatgen's product order): the highest score, then pymatgen's first
        options.append([(t, (-score, (index,))) for index, (t, score) in enumerate(_site_sums(states, counts, n))])
    totals = neutral_totals(options, add=lambda key, cost: (key[0] + cost[0], key[1] + cost[1]))
    if totals is None:
        return None
    return tuple(total / float(n) for total, (_, n) in zip(totals, amounts))


def _upper_hull(points: list[tuple[int, int]]) -> list[tuple[int, int]]:
    hull: list[tuple[int, int]] = []
    for q, p in sorted(points):
        while len(hull) >= 2 and (hull[-1][1] - hull[-2][1]) * (q - hull[-2][0]) <= (p - hull[-2][1]) * (
            hull[-1][0] - hull[-2][0]
        ):
            hull.pop()
        hull.append((q, p))
    return hull


def relaxed_states(amounts: Sequence[tuple[str, Fraction]], override: dict[str, tuple[int, ...]]):
    """Mean oxidation states (Fractions) of the continuous relaxation of `probable_states` on fractional
    amounts: each element's share of sites in each state may be any fraction, and the ICSD score is the same
    sum. That is the guess of a formula scaled to ever more sites, found without scaling: each element's
    best score is concave in its charge (the upper hull of its (state, count) points), so starting every
    element at its most frequent state and moving, cheapest score per unit charge first, along the hulls
    until the charge is zero is optimal. None where no assignment is neutral. Work: a sort of at most
    (elements x states) segments."""
    if len(amounts) == 1:
        return (Fraction(0),)
    table = icsd_occurrence()
    hulls, at = [], []
    for symbol, _ in amounts:
        states = tuple(override.get(symbol) or guess_states(symbol))
        if not states:
            return None
        hull = _upper_hull([(q, table.get((symbol, q), 0)) for q in set(states)])
        hulls.append(hull)
        at.append(max(range(len(hull)), key=lambda j: (hull[j][1], -j)))
    charges = [n * hull[j][0] for (_, n), hull, j in zip(amounts, hulls, at)]
    excess = sum(charges)
    if excess:
        up = excess < 0  # too negative: states must rise
        moves = []
        for e, ((_, n), hull, j) in enumerate(zip(amounts, hulls, at)):
            steps = range(j, len(hull) - 1) if up else range(j, 0, -1)
            for a in steps:
                b = a + 1 if up else a - 1
                per_charge = Fraction(hull[b][1] - hull[a][1], abs(hull[b][0] - hull[a][0]))
                moves.append((-per_charge, e, abs(a - j), n * abs(hull[b][0] - hull[a][0])))
        need = abs(excess)
        for _, e, _, room in sorted(moves):
            step = min(need, room)
            charges[e] += step if up else -step
            need -= step
            if not need:
                break
        if need:
            return None
    return tuple(c / n for c, (_, n) in zip(charges, amounts))
