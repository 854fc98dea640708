"""Chemistry for generation: oxidation states, charge balance, Shannon radii, electronegativity.

Everything comes from pymatgen's element data (no other dependency) and is cached: a generation run asks the
same few questions millions of times.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable

from pymatgen.core.periodic_table import Element

ROMAN = {1: "I", 2: "II", 3: "III", 4: "IV", 5: "V", 6: "VI", 7: "VII", 8: "VIII", 9: "IX", 10: "X", 11: "XI", 12: "XII"}


@functools.lru_cache(maxsize=None)
def oxidation_states(symbol: str, role: str) -> tuple[int, ...]:
    """States an element may take on a site of a given role (`prototypes.ROLES`).

    anion: the common negative states (no S-1 persulfides and the like). redox: the common positive states
    together with those seen in the ICSD (V3+, Ni3+, Ti3+ are only in the latter). working_ion and
    framework: the common positive states (so P stays 3+/5+ on a phosphate site, not the ICSD's P4+),
    falling back to the ICSD's where an element has no common positive state.
    """
    el = Element(symbol)
    if role == "anion":
        return tuple(sorted({q for q in el.common_oxidation_states if q < 0}))
    common = {q for q in el.common_oxidation_states if q > 0}
    icsd = {q for q in el.icsd_oxidation_states if q > 0}
    if role == "redox":
        return tuple(sorted(common | icsd))
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


@functools.lru_cache(maxsize=200_000)
def charge_balanced(groups: tuple[tuple[str, str, int], ...]) -> bool:
    """Can the cell be neutral? `groups` holds (element, role of its site, number of sites).

    Redox sites may mix valences (Mn3+/Mn4+ in LiMn2O4); the sites of one element in any other role share
    one state (no P3+/P5+ mixes on a phosphate site). Counts are the sites of the cell being built, so a
    fractional mean state needs a cell big enough to hold it.
    """
    totals = {0}
    for symbol, role, n in groups:
        states = oxidation_states(symbol, role)
        if not states:
            return False
        totals = {t + g for t in totals for g in _group_totals(states, n, role == "redox")}
    return 0 in totals


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
