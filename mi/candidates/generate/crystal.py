"""Chemistry checks for built crystal structures: first-shell bond lengths and coordination.

Shared by the prototype library (`mi.candidates.generate.prototypes`) and the demo-set builder
(`datasets/demo/build_demo.py`), so that both hold their structures to the same test.
"""

from __future__ import annotations

from dataclasses import dataclass

from pymatgen.core import Structure


@dataclass(frozen=True)
class Bond:
    """Each `center` site must have its `cn` nearest `ligand` neighbours within [lo, hi] Angstrom."""

    center: str
    ligand: str
    cn: int
    lo: float
    hi: float


def first_shell(structure: Structure, index: int, ligand: str, cn: int) -> list[float]:
    """The `cn` shortest distances from site `index` to `ligand` sites (fewer if there are not that many)."""
    d: list[float] = []
    for cutoff in (3.5, 5.0, 7.0):  # widen only when needed: most shells close within 3.5 A
        d = sorted(
            n.nn_distance for n in structure.get_neighbors(structure[index], cutoff) if n.specie.symbol == ligand
        )
        if len(d) >= cn:
            return d[:cn]
    return d


def check_bonds(structure: Structure, bonds: tuple[Bond, ...]) -> tuple[dict[str, tuple[float, float]], list[str]]:
    """Bond-length ranges found per `center-ligand` pair, and a problem line for each bond outside its window."""
    ranges: dict[str, tuple[float, float]] = {}
    problems: list[str] = []
    for bond in bonds:
        dists: list[float] = []
        centers = [i for i, s in enumerate(structure) if s.specie.symbol == bond.center]
        if not centers:
            problems.append(f"no {bond.center} sites for bond check {bond.center}-{bond.ligand}")
            continue
        for i in centers:
            shell = first_shell(structure, i, bond.ligand, bond.cn)
            if len(shell) < bond.cn:
                problems.append(
                    f"{bond.center} site {i} has only {len(shell)} {bond.ligand} neighbours, expected {bond.cn}"
                )
            dists.extend(shell)
        if dists:
            lo, hi = min(dists), max(dists)
            ranges[f"{bond.center}-{bond.ligand}"] = (lo, hi)
            if lo < bond.lo or hi > bond.hi:
                problems.append(f"{bond.center}-{bond.ligand} {lo:.3f}-{hi:.3f} A outside [{bond.lo}, {bond.hi}]")
    return ranges, problems


def hexagonal_cell(a: float, c: float) -> tuple[float, float, float, float, float, float]:
    """(a, b, c, alpha, beta, gamma) of a hexagonal cell."""
    return (a, a, c, 90.0, 90.0, 120.0)


def orthorhombic_cell(a: float, b: float, c: float) -> tuple[float, float, float, float, float, float]:
    return (a, b, c, 90.0, 90.0, 90.0)


def cubic_cell(a: float) -> tuple[float, float, float, float, float, float]:
    return (a, a, a, 90.0, 90.0, 90.0)
