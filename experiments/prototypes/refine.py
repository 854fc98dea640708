"""Refine the free positions of two prototypes with CHGNet at the fixed published cell, then symmetrise.

Used for `beta_Li3PS4` and `nasicon_Na3V2P3O12` in `mi.candidates.generate.prototypes`, whose published
positions are either not at hand or fail the chemistry checks. For each entry the space group, the Wyckoff
sites and the cell are fixed (what is published); only the free coordinates move:

1. the starting asymmetric unit (below, with its source) is built into the library's ordered structure
   (`prototypes.approximant`: the same `keep` approximant the library ships);
2. CHGNet 0.3.0 (`mi.oracle.CHGNetOracle`, the wheel's weights) relaxes the positions with FIRE at the
   fixed cell (``relax_cell=False``) to fmax 0.02 eV/A, torch on one thread, the lattice right-handed;
3. each orbit is symmetrised back onto its representative: for every operation g of the published space
   group and every ordered site j with g(r0) = f_j, the relaxed displacement of j is mapped back by g^-1 and
   all of them are averaged (this also projects onto the site symmetry, so special coordinates stay exact);
4. the symmetrised entry is checked (`prototypes.check`) and its CHGNet single-point energy compared with
   the relaxed one (the cost of restoring the parent symmetry).

A partially occupied orbit that the approximant leaves empty (``keep=0``) is refined in a second run that
fills it instead (`RUNS`): its position comes from that run, everything else from the first.

The numbers printed under "asymmetric unit" are typed into `prototypes.py` by hand (rounded to 4 decimals):
nothing there runs CHGNet. Run with ``.venv/bin/python experiments/prototypes/refine.py [id ...]`` (about
2 minutes on one CPU core for both). ``--validate halide_Li3ErI6`` relaxes a library entry the same way
for comparison only (how far CHGNet would move the transcribed positions).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from pymatgen.core import Composition, Structure  # noqa: E402
from pymatgen.symmetry.groups import SpaceGroup  # noqa: E402

from mi.candidates.generate import prototypes as lib  # noqa: E402
from mi.candidates.generate.crystal import Bond, hexagonal_cell, orthorhombic_cell  # noqa: E402
from mi.candidates.generate.prototypes import Prototype, Site  # noqa: E402

FMAX = 0.02
MAX_STEPS = 3000

# --- starting points -----------------------------------------------------------------------------------

# beta-Li3PS4, Pnma: Wyckoff sites, occupancies, cell and starting positions from the CIF of OBELiX record
# nhq (Therrien et al. 2025, CC BY 4.0), whose cell is Homma et al.'s (Solid State Ionics 182 (2011) 53).
# Its positions give P-S 1.91-2.25 A and put the 4c Li 1.49 A from S: they are a starting point only.
BETA_LI3PS4 = Prototype(
    id="beta_Li3PS4",
    family="beta-Li3PS4",
    formula="Li3PS4",
    spacegroup="Pnma",
    sg_number=62,
    lattice=orthorhombic_cell(12.819, 8.2195, 6.1236),
    sites=(
        Site("A1", "Li", (0.15170452, 0.51362025, 0.93567161), "working_ion", 1, 4),  # 8d
        Site("A2", "Li", (0.0, 0.0, 0.5), "working_ion", 1, 6, occupancy=0.7, keep=4),  # 4b
        Site("A3", "Li", (0.01011298, 0.75, 0.11506327), "working_ion", 1, 4, occupancy=0.3, keep=0),  # 4c
        Site("X", "P", (0.09439794, 0.25, 0.16163378), "framework", 5, 4),  # 4c
        Site("S1", "S", (0.15086564, 0.05444792, 0.28127300), "anion", -2, 4),  # 8d
        Site("S2", "S", (0.07414303, 0.75, 0.73673764), "anion", -2, 4),  # 4c
        Site("S3", "S", (0.10416372, 0.25, 0.83825452), "anion", -2, 4),  # 4c
    ),
    bonds=(Bond("P", "S", 4, 1.98, 2.12), Bond("Li", "S", 4, 2.25, 2.90)),
    citation="start",
    doi="",
    source="OBELiX nhq",
    confidence="low",
)

# Na3V2(PO4)3, R-3c (hexagonal axes): the NASICON frame of the library's nasicon_NaZr2P3O12 (V on the Zr
# 12c site, its z and the P and O positions as there, copied so that the start stays fixed), Na1 on 6b, Na2 on
# 18e (x, 0, 1/4) at x = 0.64 and 2/3 occupancy (the formula), in the rhombohedral Na3V2(PO4)3 cell a 8.7288,
# c 21.8042 A (recalled).
_nzp = {
    "M": (0.0, 0.0, 0.1456),
    "X": (0.2895, 0.0, 0.25),
    "O1": (0.1719, -0.0268, 0.1921),
    "O2": (0.1905, 0.1684, 0.0877),
}
NASICON_NA3V2P3O12 = Prototype(
    id="nasicon_Na3V2P3O12",
    family="NASICON Na3M2(PO4)3",
    formula="Na3V2(PO4)3",
    spacegroup="R-3c",
    sg_number=167,
    lattice=hexagonal_cell(8.7288, 21.8042),
    sites=(
        Site("A1", "Na", (0.0, 0.0, 0.0), "working_ion", 1, 6),  # 6b (M1)
        Site("A2", "Na", (0.64, 0.0, 0.25), "working_ion", 1, 8, occupancy=2.0 / 3.0, keep=12),  # 18e (M2)
        Site("M", "V", _nzp["M"], "redox", 3, 6),  # 12c
        Site("X", "P", _nzp["X"], "framework", 5, 4),  # 18e
        Site("O1", "O", _nzp["O1"], "anion", -2, 4),  # 36f
        Site("O2", "O", _nzp["O2"], "anion", -2, 4),  # 36f
    ),
    bonds=(Bond("P", "O", 4, 1.48, 1.60), Bond("V", "O", 6, 1.90, 2.15), Bond("Na", "O", 6, 2.25, 2.90)),
    citation="start",
    doi="",
    source="nasicon_NaZr2P3O12 frame",
    confidence="low",
)


def with_keep(proto: Prototype, keep: dict[str, int]) -> Prototype:
    """The entry with other orbits filled in its approximant."""
    return dataclasses.replace(
        proto, sites=tuple(dataclasses.replace(s, keep=keep.get(s.label, s.keep)) for s in proto.sites)
    )


# Each run: the entry with its `keep`s as relaxed, and the labels whose refined positions it supplies.
RUNS: dict[str, list[tuple[Prototype, tuple[str, ...]]]] = {
    "beta_Li3PS4": [
        (BETA_LI3PS4, ("A1", "A2", "X", "S1", "S2", "S3")),
        (with_keep(BETA_LI3PS4, {"A2": 0, "A3": 4}), ("A3",)),  # Li on 4c instead of 4b
    ],
    "nasicon_Na3V2P3O12": [(NASICON_NA3V2P3O12, ("A1", "A2", "M", "X", "O1", "O2"))],
}


# --- refinement ----------------------------------------------------------------------------------------


def relax_positions(structure: Structure) -> tuple[Structure, float, int, bool, float]:
    """CHGNet FIRE relaxation of the positions at the fixed cell: (relaxed, eV/atom, steps, converged, s)."""
    from mi.candidates.base import Candidate
    from mi.oracle.chgnet import CHGNetOracle

    if np.linalg.det(structure.lattice.matrix) <= 0:
        raise ValueError("left-handed lattice: the symmetrisation maps fractional coordinates one to one")
    oracle = CHGNetOracle(fmax=FMAX, max_steps=MAX_STEPS, time_limit_s=None, relax_cell=False)
    cand = Candidate("trial", "refine", "trial", structure.composition, structure, "")
    results, failures = oracle.relax([cand])
    if failures:
        raise RuntimeError(f"CHGNet relaxation failed: {failures[0].reason}")
    (result,) = results
    return result.structure, result.energy_eV_atom, result.n_steps, result.converged, result.seconds


def single_point(structure: Structure) -> float:
    from mi.candidates.base import Candidate
    from mi.oracle.chgnet import CHGNetOracle

    cand = Candidate("sp", "refine", "sp", structure.composition, structure, "")
    results, failures = CHGNetOracle().single_point([cand])
    if failures:
        raise RuntimeError(f"CHGNet single point failed: {failures[0].reason}")
    return results[0].energy_eV_atom


def _wrap(d: np.ndarray) -> np.ndarray:
    return d - np.round(d)


def symmetrise(
    proto: Prototype, start: Structure, relaxed: Structure, labels: tuple[str, ...]
) -> tuple[dict[str, tuple[float, float, float]], dict[str, float]]:
    """New representative coordinates per label: relaxed displacements mapped back by every g^-1, averaged.

    Also returns, per label, the RMS deviation (A) of the mapped-back displacements from their mean: how far
    the relaxed approximant departs from the parent's symmetry on that orbit.
    """
    ops = SpaceGroup(proto.spacegroup).symmetry_ops
    matrix = start.lattice.matrix
    out: dict[str, tuple[float, float, float]] = {}
    spread: dict[str, float] = {}
    for site in proto.sites:
        if site.label not in labels:
            continue
        r0 = np.array(site.coords, dtype=float)
        members = [i for i, lb in enumerate(start.site_properties["label"]) if lb == site.label]
        deltas = []
        for op in ops:
            image = op.operate(r0)
            for i in members:
                if np.abs(_wrap(image - start[i].frac_coords)).max() < 1e-4:
                    shift = _wrap(relaxed[i].frac_coords - start[i].frac_coords)
                    deltas.append(np.linalg.solve(op.rotation_matrix, shift))
        if not deltas:
            raise ValueError(f"{proto.id}: no ordered site of {site.label} found")
        mean = np.mean(deltas, axis=0)
        new = np.mod(np.round(np.mod(r0 + mean, 1.0), 6), 1.0) + 0.0  # 1.0 and -0.0 to 0.0
        out[site.label] = tuple(float(x) for x in new)
        spread[site.label] = float(np.sqrt((((np.array(deltas) - mean) @ matrix) ** 2).sum(axis=1).mean()))
    return out, spread


def with_coords(proto: Prototype, coords: dict[str, tuple[float, float, float]]) -> Prototype:
    """The entry with the representatives of the labels in `coords` moved."""
    return dataclasses.replace(
        proto, sites=tuple(dataclasses.replace(s, coords=coords.get(s.label, s.coords)) for s in proto.sites)
    )


def _rms(a: Structure, b: Structure) -> float:
    d = _wrap(b.frac_coords - a.frac_coords) @ a.lattice.matrix
    return float(np.sqrt((d**2).sum(axis=1).mean()))


def refine(prototype_id: str) -> Prototype:
    runs = RUNS[prototype_id]
    base = runs[0][0]
    coords: dict[str, tuple[float, float, float]] = {}
    for proto, labels in runs:
        start = lib.approximant(proto)
        t0 = time.perf_counter()
        relaxed, energy, steps, converged, _ = relax_positions(start)
        assert np.allclose(relaxed.lattice.matrix, start.lattice.matrix, atol=1e-6), "the cell must stay fixed"
        new, spread = symmetrise(proto, start, relaxed, labels)
        coords.update(new)
        print(
            f"{prototype_id} run filling {[s.label for s in proto.sites if s.keep != 0]}: {len(start)} atoms, "
            f"{steps} FIRE steps, converged {converged}, {time.perf_counter() - t0:.0f} s, E {energy:.5f} eV/atom, "
            f"RMS displacement start->relaxed {_rms(start, relaxed):.3f} A"
        )
        symmetrised = lib.approximant(with_coords(proto, new))
        if set(labels) == {s.label for s in proto.sites if s.keep != 0}:
            e_sym = single_point(symmetrised)
            print(
                f"  symmetrised: RMS relaxed->symmetrised {_rms(relaxed, symmetrised):.4f} A, "
                f"E {e_sym:.5f} eV/atom ({1000 * (e_sym - energy):+.2f} meV/atom against relaxed)"
            )
        _print_moves(proto, start, new, spread)
    refined = with_coords(base, coords)
    result = lib.check(refined)
    print(f"  check: parent sg {result.parent_sg}, ordered {result.ordered_sg_symbol} ({result.ordered_sg}), "
          f"formula {result.formula}, min distance {result.min_distance:.3f} A")
    for k, (lo, hi) in result.bond_ranges.items():
        print(f"  {k} {lo:.3f}-{hi:.3f} A")
    print("  problems:", result.problems or "none")
    print("  asymmetric unit (4 decimals):")
    for s in refined.sites:
        print(f"    {s.label:<3} {s.species:<2} ({', '.join(f'{x:.4f}' for x in s.coords)})")
    assert Composition(result.formula) == Composition(base.formula)
    return refined


def _print_moves(proto: Prototype, start, new: dict, spread: dict) -> None:
    """Per refined orbit: start and new asymmetric-unit position, the move in A and the spread over the orbit."""
    for s in proto.sites:
        if s.label in new:
            moved = _wrap(np.array(new[s.label]) - np.array(s.coords)) @ start.lattice.matrix
            print(f"  {s.label:<3} {s.species:<2} {np.round(s.coords, 4).tolist()} -> "
                  f"{np.round(new[s.label], 4).tolist()} (moved {np.linalg.norm(moved):.3f} A; "
                  f"spread over the orbit {spread[s.label]:.3f} A)")


def validate(prototype_id: str) -> None:
    """How far CHGNet would move a library entry's positions at its cell (the entry itself is not changed)."""
    proto = lib.get(prototype_id)
    start = lib.ordered(prototype_id)
    relaxed, energy, steps, converged, seconds = relax_positions(start)
    labels = tuple(s.label for s in proto.sites if s.keep != 0)
    new, spread = symmetrise(proto, start, relaxed, labels)
    print(
        f"{prototype_id} (library entry, not refined): {len(start)} atoms, {steps} FIRE steps, converged "
        f"{converged}, {seconds:.0f} s, RMS displacement {_rms(start, relaxed):.3f} A"
    )
    _print_moves(proto, start, new, spread)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ids", nargs="*", default=list(RUNS), help=f"entries to refine (default: {', '.join(RUNS)})")
    parser.add_argument(
        "--validate", nargs="*", default=(), metavar="ID", help="library entries to relax for comparison only"
    )
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    for prototype_id in args.ids if not args.validate else ():
        refine(prototype_id)
    for prototype_id in args.validate:
        validate(prototype_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
