"""Build the demo candidate set shipped with `mi` (datasets/demo/).

Every structure is generated here from crystallographic data (space group, lattice parameters, the
asymmetric unit, a citation) with `Structure.from_spacegroup`, checked, and written in a mix of file
formats so that every structure reader of the toolkit gets exercised:

    structures/<id>.cif       most entries (pymatgen CifWriter, P1 setting)
    structures/LiCoO2.vasp    VASP POSCAR
    structures/Li2S.json      pymatgen JSON (Structure.as_dict())
    structures/Li3N.extxyz    extended XYZ (ase)
    structures/broken_*.      two deliberately broken inputs (see README.md)
    formulas.csv              composition-only candidates (id,formula,note)

Checks per structure (the build fails and writes nothing if any check fails):
  * reduced formula and atoms per cell (Z formula units) as expected;
  * space-group number found by SpacegroupAnalyzer(symprec=0.1) as expected;
  * no two sites closer than MIN_DISTANCE;
  * density within the entry's tolerance of the reference density;
  * first-shell bond lengths (e.g. P-O, Fe-O) inside chemically sensible windows;
  * the written file reads back to the same composition, cell and space group.

Output is deterministic: same bytes on every run (no timestamps; floats rounded before formatting).

Run:  python datasets/demo/build_demo.py            (writes next to this script)
      python datasets/demo/build_demo.py --check    (rebuild into a temp dir, compare with committed)
"""

from __future__ import annotations

import argparse
import csv
import filecmp
import io
import json
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pymatgen.core import Composition, Lattice, Structure
from pymatgen.io.cif import CifWriter
from pymatgen.io.vasp import Poscar
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from mi.candidates.generate.crystal import (  # shared with the prototype library
    Bond,
    check_bonds,
    cubic_cell,
    hexagonal_cell,
    orthorhombic_cell,
)

HERE = Path(__file__).resolve().parent
STRUCTURES_DIR = "structures"
FORMULAS_CSV = "formulas.csv"
MIN_DISTANCE = 1.4  # Angstrom; no two sites of a good structure may be closer
SYMPREC = 0.1
DECIMALS = 10  # lattice and coordinates are rounded to this many decimals before writing


class DemoBuildError(RuntimeError):
    """One or more demo structures failed their checks."""


@dataclass(frozen=True)
class Entry:
    id: str
    formula: str  # expected reduced formula
    spacegroup: str  # Hermann-Mauguin symbol as pymatgen takes it (settings: see comments per entry)
    sg_number: int
    lattice: tuple[float, float, float, float, float, float]  # a, b, c (A), alpha, beta, gamma (deg)
    species: tuple[str, ...]  # asymmetric unit
    coords: tuple[tuple[float, float, float], ...]  # fractional, one per species entry
    z: int  # formula units in the conventional cell
    ref_density: float  # g/cm^3
    density_source: str  # "handbook" (measured, as usually quoted) or "X-ray" (Z*M/(N_A*V) of the cited cell)
    density_tol: float  # relative
    bonds: tuple[Bond, ...]
    fmt: str  # cif | vasp | json | extxyz
    citation: str
    doi: str  # "" where not known with confidence
    positions: str  # provenance of the numbers: "as published" or a note on what is approximate
    note: str = ""

    @property
    def filename(self) -> str:
        return f"{self.id}.{self.fmt}"




ENTRIES: tuple[Entry, ...] = (
    Entry(
        id="LiFePO4",
        formula="LiFePO4",
        spacegroup="Pnma",
        sg_number=62,
        lattice=orthorhombic_cell(10.3377, 6.0112, 4.6950),
        species=("Li", "Fe", "P", "O", "O", "O"),
        coords=(
            (0.0, 0.0, 0.0),  # Li 4a
            (0.28222, 0.25, 0.97472),  # Fe 4c
            (0.09486, 0.25, 0.41820),  # P 4c
            (0.09678, 0.25, 0.74279),  # O1 4c
            (0.45710, 0.25, 0.20602),  # O2 4c
            (0.16558, 0.04646, 0.28467),  # O3 8d
        ),
        z=4,
        ref_density=3.60,
        density_source="handbook",
        density_tol=0.02,
        bonds=(Bond("P", "O", 4, 1.50, 1.58), Bond("Fe", "O", 6, 2.00, 2.30), Bond("Li", "O", 6, 2.05, 2.25)),
        fmt="cif",
        citation=(
            "V. A. Streltsov, E. L. Belokoneva, V. G. Tsirelson, N. K. Hansen, Acta Cryst. B49 (1993) 147-153 "
            "(triphylite LiFePO4, single-crystal X-ray)"
        ),
        doi="10.1107/S0108768192009236",
        positions="as published (Streltsov et al. 1993)",
    ),
    Entry(
        id="LiMnPO4",
        formula="LiMnPO4",
        spacegroup="Pnma",
        sg_number=62,
        lattice=orthorhombic_cell(10.446, 6.103, 4.744),
        species=("Li", "Mn", "P", "O", "O", "O"),
        coords=(
            (0.0, 0.0, 0.0),
            (0.2822, 0.25, 0.9720),
            (0.0921, 0.25, 0.4089),
            (0.0968, 0.25, 0.7340),
            (0.4573, 0.25, 0.2053),
            (0.1623, 0.0469, 0.2768),
        ),
        z=4,
        ref_density=3.44,
        density_source="X-ray",
        density_tol=0.02,
        bonds=(Bond("P", "O", 4, 1.50, 1.58), Bond("Mn", "O", 6, 2.05, 2.35), Bond("Li", "O", 6, 2.05, 2.30)),
        fmt="cif",
        citation="S. Geller, J. L. Durand, Acta Cryst. 13 (1960) 325-331 (refinement of the structure of LiMnPO4)",
        doi="",
        positions=(
            "approximate: olivine positions close to the published refinement, entered from memory; "
            "checked only through bond lengths (P-O 1.51-1.57, Mn-O 2.12-2.28 A)"
        ),
    ),
    Entry(
        id="LiCoO2",
        formula="LiCoO2",
        spacegroup="R-3m",  # hexagonal axes
        sg_number=166,
        lattice=hexagonal_cell(2.816, 14.054),
        species=("Li", "Co", "O"),
        coords=((0.0, 0.0, 0.0), (0.0, 0.0, 0.5), (0.0, 0.0, 0.2396)),  # Li 3a, Co 3b, O 6c
        z=3,
        ref_density=5.05,
        density_source="X-ray",
        density_tol=0.02,
        bonds=(Bond("Co", "O", 6, 1.88, 1.96), Bond("Li", "O", 6, 2.05, 2.15)),
        fmt="vasp",
        citation=(
            "H. J. Orman, P. J. Wiseman, Acta Cryst. C40 (1984) 12-14 "
            "(CoLiO2, powder neutron diffraction; values rounded)"
        ),
        doi="",
        positions="as published to the precision given (z(O) = 0.2396 with Li at the origin)",
    ),
    Entry(
        id="LiNiO2",
        formula="LiNiO2",
        spacegroup="R-3m",
        sg_number=166,
        lattice=hexagonal_cell(2.878, 14.19),
        species=("Li", "Ni", "O"),
        coords=((0.0, 0.0, 0.0), (0.0, 0.0, 0.5), (0.0, 0.0, 0.2415)),
        z=3,
        ref_density=4.78,
        density_source="X-ray",
        density_tol=0.02,
        bonds=(Bond("Ni", "O", 6, 1.92, 2.02), Bond("Li", "O", 6, 2.05, 2.18)),
        fmt="cif",
        citation=(
            "A. Hirano, R. Kanno, Y. Kawamoto, Y. Takeda, K. Yamaura, M. Takano, K. Ohyama, M. Ohashi, "
            "Y. Yamaguchi, Solid State Ionics 78 (1995) 123-131"
        ),
        doi="",
        positions="approximate: z(O) = 0.2415 (typical of refinements, Ni-O 1.97 A); cell rounded",
        note="ideal ordered LiNiO2; real samples carry 1-2 % Ni on the Li site, not represented",
    ),
    Entry(
        id="LiMn2O4",
        formula="LiMn2O4",
        # pymatgen's "Fd-3m" is ORIGIN CHOICE 1 (origin at -43m): Li 8a (0,0,0), Mn 16d (5/8,5/8,5/8),
        # O 32e (u,u,u) with u = 0.3881 (= 0.2631 + 1/8 in origin choice 2). Origin-choice-2 coordinates fed
        # to this symbol give Li16Mn8O32, which the checks reject.
        spacegroup="Fd-3m",
        sg_number=227,
        lattice=cubic_cell(8.245),
        species=("Li", "Mn", "O"),
        coords=((0.0, 0.0, 0.0), (0.625, 0.625, 0.625), (0.3881, 0.3881, 0.3881)),
        z=8,
        ref_density=4.28,
        density_source="X-ray",
        density_tol=0.02,
        bonds=(Bond("Mn", "O", 6, 1.90, 2.00), Bond("Li", "O", 4, 1.92, 2.02)),
        fmt="cif",
        citation="M. M. Thackeray, W. I. F. David, P. G. Bruce, J. B. Goodenough, Mater. Res. Bull. 18 (1983) 461-472",
        doi="10.1016/0025-5408(83)90138-1",
        positions="approximate: u(O) = 0.2631 (origin choice 2) is a typical refined value, not checked against the paper",
        note="cubic spinel; conventional cell Li8Mn16O32",
    ),
    Entry(
        id="LiTiS2",
        formula="LiTiS2",
        spacegroup="P-3m1",
        sg_number=164,
        lattice=hexagonal_cell(3.455, 6.19),
        species=("Ti", "Li", "S"),
        coords=((0.0, 0.0, 0.0), (0.0, 0.0, 0.5), (1.0 / 3.0, 2.0 / 3.0, 0.245)),  # Ti 1a, Li 1b, S 2d
        z=1,
        ref_density=3.09,
        density_source="X-ray",
        density_tol=0.02,
        bonds=(Bond("Ti", "S", 6, 2.42, 2.56), Bond("Li", "S", 6, 2.48, 2.65)),
        fmt="cif",
        citation=(
            "J. R. Dahn, W. R. McKinnon, R. R. Haering, W. J. L. Buyers, B. M. Powell, "
            "Can. J. Phys. 58 (1980) 207-213 (LixTiS2 by neutron diffraction; x = 1 cell, rounded)"
        ),
        doi="",
        positions="approximate: z(S) = 0.245 chosen (not recalled exactly); gives Ti-S 2.51, Li-S 2.54 A",
    ),
    Entry(
        id="TiS2",
        formula="TiS2",
        spacegroup="P-3m1",
        sg_number=164,
        lattice=hexagonal_cell(3.4073, 5.6953),
        species=("Ti", "S"),
        coords=((0.0, 0.0, 0.0), (1.0 / 3.0, 2.0 / 3.0, 0.25)),  # Ti 1a, S 2d
        z=1,
        ref_density=3.22,
        density_source="handbook",
        density_tol=0.02,
        bonds=(Bond("Ti", "S", 6, 2.38, 2.48),),
        fmt="cif",
        citation=(
            "R. R. Chianelli, J. C. Scanlon, A. H. Thompson, Mater. Res. Bull. 10 (1975) 1379-1382 "
            "(structure refinement of stoichiometric TiS2)"
        ),
        doi="",
        positions="approximate: z(S) = 0.25 (refined values are within about 0.001 of it); gives Ti-S 2.43 A",
        note="delithiated host of LiTiS2",
    ),
    Entry(
        id="Li2S",
        formula="Li2S",
        spacegroup="Fm-3m",
        sg_number=225,
        lattice=cubic_cell(5.708),
        species=("Li", "S"),
        coords=((0.25, 0.25, 0.25), (0.0, 0.0, 0.0)),  # antifluorite: Li 8c, S 4a
        z=4,
        ref_density=1.66,
        density_source="handbook",
        density_tol=0.03,
        bonds=(Bond("Li", "S", 4, 2.40, 2.55),),
        fmt="json",
        citation=(
            "E. Zintl, A. Harder, B. Dauth, Z. Elektrochem. Angew. Phys. Chem. 40 (1934) 588-593 "
            "(antifluorite Li2O, Li2S)"
        ),
        doi="",
        positions="fixed by symmetry (antifluorite)",
    ),
    Entry(
        id="Li2O",
        formula="Li2O",
        spacegroup="Fm-3m",
        sg_number=225,
        lattice=cubic_cell(4.619),
        species=("Li", "O"),
        coords=((0.25, 0.25, 0.25), (0.0, 0.0, 0.0)),
        z=4,
        ref_density=2.013,
        density_source="handbook",
        density_tol=0.02,
        bonds=(Bond("Li", "O", 4, 1.95, 2.05),),
        fmt="cif",
        citation=(
            "E. Zintl, A. Harder, B. Dauth, Z. Elektrochem. Angew. Phys. Chem. 40 (1934) 588-593 "
            "(antifluorite Li2O; room-temperature a = 4.61-4.62 A in later work)"
        ),
        doi="",
        positions="fixed by symmetry (antifluorite)",
    ),
    Entry(
        id="Li3N",
        formula="Li3N",
        spacegroup="P6/mmm",
        sg_number=191,
        lattice=hexagonal_cell(3.648, 3.875),
        species=("N", "Li", "Li"),
        coords=((0.0, 0.0, 0.0), (0.0, 0.0, 0.5), (1.0 / 3.0, 2.0 / 3.0, 0.0)),  # N 1a, Li1 1b, Li2 2c
        z=1,
        ref_density=1.27,
        density_source="handbook",
        density_tol=0.03,
        bonds=(Bond("N", "Li", 8, 1.90, 2.15),),
        fmt="extxyz",
        citation="A. Rabenau, H. Schulz, J. Less-Common Met. 50 (1976) 155-159 (alpha-Li3N)",
        doi="",
        positions="fixed by symmetry",
    ),
    Entry(
        id="Na2S",
        formula="Na2S",
        spacegroup="Fm-3m",
        sg_number=225,
        lattice=cubic_cell(6.539),
        species=("Na", "S"),
        coords=((0.25, 0.25, 0.25), (0.0, 0.0, 0.0)),  # antifluorite: Na 8c, S 4a
        z=4,
        ref_density=1.856,
        density_source="handbook",
        density_tol=0.02,
        bonds=(Bond("Na", "S", 4, 2.75, 2.90),),
        fmt="cif",
        citation=(
            "E. Zintl, A. Harder, B. Dauth, Z. Elektrochem. Angew. Phys. Chem. 40 (1934) 588-593 "
            "(antifluorite Na2S)"
        ),
        doi="",
        positions="fixed by symmetry (antifluorite)",
        note="discharge product of Na-S cells",
    ),
    Entry(
        id="Li3PS4_gamma",
        formula="Li3PS4",
        spacegroup="Pmn2_1",
        sg_number=31,
        lattice=orthorhombic_cell(7.70829, 6.53521, 6.1365),
        species=("P", "S", "S", "S", "Li", "Li"),
        coords=(
            (0.0, 0.8191, 0.0),  # P 2a
            (0.0, 0.8030, 0.3365),  # S1 2a
            (0.0, 0.1142, 0.8861),  # S2 2a
            (0.2195, 0.6696, 0.8891),  # S3 4b
            (0.2439, 0.3176, 0.0),  # Li1 4b
            (0.0, 0.1650, 0.4915),  # Li2 2a
        ),
        z=2,
        ref_density=1.93,
        density_source="X-ray",
        density_tol=0.02,
        bonds=(Bond("P", "S", 4, 2.00, 2.10), Bond("Li", "S", 4, 2.30, 2.60)),
        fmt="cif",
        citation=(
            "K. Homma, M. Yonemura, T. Kobayashi, M. Nagao, M. Hirayama, R. Kanno, "
            "Solid State Ionics 182 (2011) 53-58 (crystal structure and phase transitions of Li3PS4)"
        ),
        doi="10.1016/j.ssi.2010.10.001",
        positions=(
            "approximate, entered from memory and NOT verified against the paper: P-S 2.05-2.07 A, "
            "Li-S 2.35-2.55 A (one Li-S, 2.35 A, is short); wurtzite-type ordering, every S bonded to 1 P + 3 Li"
        ),
        note="low-temperature gamma polymorph (ordered); the fast-conducting beta phase is partly disordered",
    ),
)


# --------------------------------------------------------------------------------------------------------
# composition-only candidates

FORMULAS: tuple[tuple[str, str, str], ...] = (
    ("NMC811", "LiNi0.8Mn0.1Co0.1O2", "layered oxide cathode NMC811"),
    ("NMC111", "Li3NiMnCoO6", "layered oxide cathode NMC111 (LiNi1/3Mn1/3Co1/3O2 written with integer subscripts)"),
    ("LNMO", "LiNi0.5Mn1.5O4", "high-voltage spinel cathode"),
    ("LiCoPO4", "LiCoPO4", "olivine cathode"),
    ("Na2FePO4F", "Na2FePO4F", "sodium fluorophosphate cathode"),
    ("NVP", "Na3V2P3O12", "NASICON cathode Na3V2(PO4)3"),
    ("LLZO", "Li7La3Zr2O12", "garnet oxide solid electrolyte"),
    ("LGPS", "Li10GeP2S12", "sulfide superionic solid electrolyte"),
    ("Li6PS5Cl", "Li6PS5Cl", "argyrodite sulfide solid electrolyte"),
)


# --------------------------------------------------------------------------------------------------------
# deliberately broken inputs

BROKEN_EMPTY = "broken_empty.cif"
BROKEN_OVERLAP = "broken_overlap.vasp"
BROKEN_OVERLAP_DISTANCE = 0.1  # Angstrom, between the two O atoms
BROKEN_OVERLAP_POSCAR = """\
broken_overlap: DELIBERATELY BROKEN demo input, two O atoms 0.1 A apart (see datasets/demo/README.md)
1.0
   4.0000000000   0.0000000000   0.0000000000
   0.0000000000   4.0000000000   0.0000000000
   0.0000000000   0.0000000000   4.0000000000
Li Fe O
1 1 2
direct
   0.0000000000   0.0000000000   0.0000000000 Li
   0.5000000000   0.5000000000   0.5000000000 Fe
   0.5000000000   0.5000000000   0.0000000000 O
   0.5000000000   0.5000000000   0.0250000000 O
"""


# --------------------------------------------------------------------------------------------------------
# build and check


@dataclass
class Result:
    entry: Entry
    structure: Structure
    formula: str
    sg_number: int
    sg_symbol: str
    n_sites: int
    density: float
    min_distance: float
    bond_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _clean(x: np.ndarray, decimals: int = DECIMALS) -> np.ndarray:
    return np.round(np.asarray(x, dtype=float), decimals) + 0.0  # + 0.0 turns -0.0 into 0.0


def make_structure(entry: Entry) -> Structure:
    """The conventional cell of `entry`, sorted by electronegativity, with rounded lattice and coordinates."""
    raw = Structure.from_spacegroup(
        entry.spacegroup, Lattice.from_parameters(*entry.lattice), list(entry.species), [list(c) for c in entry.coords]
    )
    raw = raw.get_sorted_structure()
    frac = _clean(np.mod(_clean(raw.frac_coords), 1.0))
    return Structure(Lattice(_clean(raw.lattice.matrix)), [site.specie for site in raw], frac)


def check_structure(entry: Entry, structure: Structure) -> Result:
    comp = structure.composition
    sga = SpacegroupAnalyzer(structure, symprec=SYMPREC)
    dm = structure.distance_matrix + np.eye(len(structure)) * 1e6
    res = Result(
        entry=entry,
        structure=structure,
        formula=comp.reduced_formula,
        sg_number=sga.get_space_group_number(),
        sg_symbol=sga.get_space_group_symbol(),
        n_sites=len(structure),
        density=float(structure.density),
        min_distance=float(dm.min()),
    )
    p = res.problems
    if not structure.is_ordered:
        p.append("structure has partial occupancies")
    if res.formula != entry.formula:
        p.append(f"reduced formula {res.formula}, expected {entry.formula}")
    expected_n = entry.z * Composition(entry.formula).num_atoms
    if abs(res.n_sites - expected_n) > 1e-6:
        p.append(f"{res.n_sites} sites, expected Z={entry.z} x {entry.formula} = {expected_n:g}")
    if res.sg_number != entry.sg_number:
        p.append(f"space group {res.sg_symbol} ({res.sg_number}), expected {entry.sg_number}")
    if res.min_distance < MIN_DISTANCE:
        p.append(f"two sites {res.min_distance:.3f} A apart (< {MIN_DISTANCE} A)")
    rel = abs(res.density - entry.ref_density) / entry.ref_density
    if rel > entry.density_tol:
        p.append(f"density {res.density:.3f} g/cm3 vs reference {entry.ref_density} ({rel:.1%} > {entry.density_tol:.0%})")
    ranges, bond_problems = check_bonds(structure, entry.bonds)
    res.bond_ranges.update(ranges)
    p.extend(bond_problems)
    return res


def check_entry(entry: Entry) -> Result:
    return check_structure(entry, make_structure(entry))


# --------------------------------------------------------------------------------------------------------
# writers and readers


def _round_floats(obj):
    if isinstance(obj, float):
        return round(obj, DECIMALS) + 0.0
    if isinstance(obj, dict):
        return {k: _round_floats(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_round_floats(v) for v in obj]
    return obj


def render(entry: Entry, structure: Structure) -> str:
    """The file text of `structure` in the entry's format."""
    if entry.fmt == "cif":
        return str(CifWriter(structure))
    if entry.fmt == "vasp":
        comment = f"{entry.id} {entry.spacegroup} mi demo set (datasets/demo/build_demo.py)"
        return Poscar(structure, comment=comment).get_str(significant_figures=DECIMALS)
    if entry.fmt == "json":
        return json.dumps(_round_floats(structure.as_dict()), indent=1, sort_keys=True) + "\n"
    if entry.fmt == "extxyz":
        import ase.io
        from pymatgen.io.ase import AseAtomsAdaptor

        atoms = AseAtomsAdaptor.get_atoms(structure)
        atoms.set_cell(_clean(atoms.cell.array))
        atoms.set_positions(_clean(atoms.positions, 8))  # extxyz prints 8 decimals; no "-0.00000000"
        buf = io.StringIO()
        ase.io.write(buf, atoms, format="extxyz")
        return buf.getvalue()
    raise ValueError(f"unknown format {entry.fmt!r}")


def read_structure(path: Path) -> Structure:
    """Read one demo structure file (CIF, POSCAR .vasp, pymatgen .json, .extxyz) into a pymatgen Structure."""
    path = Path(path)
    if path.suffix == ".extxyz":
        import ase.io
        from pymatgen.io.ase import AseAtomsAdaptor

        return AseAtomsAdaptor.get_structure(ase.io.read(path, format="extxyz"))
    if path.suffix == ".json":
        return Structure.from_dict(json.loads(path.read_text()))
    return Structure.from_file(path)


def _readback_problems(entry: Entry, structure: Structure, path: Path) -> list[str]:
    with warnings.catch_warnings():
        # the CIF parser notes that it snapped e.g. 0.33333333 to 1/3; expected for 8-decimal CIFs
        warnings.filterwarnings("ignore", message="Issues encountered while parsing CIF", category=UserWarning)
        back = read_structure(path)
    p = []
    if back.composition != structure.composition:
        p.append(f"{path.name} reads back as {back.composition}, wrote {structure.composition}")
    if not np.allclose(back.lattice.abc + back.lattice.angles, structure.lattice.abc + structure.lattice.angles, atol=1e-5):
        p.append(f"{path.name} reads back with a different cell")
    sg = SpacegroupAnalyzer(back, symprec=SYMPREC).get_space_group_number()
    if sg != entry.sg_number:
        p.append(f"{path.name} reads back as space group {sg}, expected {entry.sg_number}")
    return p


def formulas_csv_text() -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "formula", "note"])
    for row in FORMULAS:
        w.writerow(row)
    return buf.getvalue()


def _check_formulas() -> list[str]:
    p = []
    ids = [r[0] for r in FORMULAS]
    if len(set(ids)) != len(ids):
        p.append("duplicate ids in FORMULAS")
    clash = set(ids) & {e.id for e in ENTRIES}
    if clash:
        p.append(f"formula ids clash with structure ids: {sorted(clash)}")
    for cid, formula, _ in FORMULAS:
        try:
            comp = Composition(formula)
        except Exception as exc:  # noqa: BLE001 - report any parse failure
            p.append(f"{cid}: formula {formula!r} does not parse: {exc}")
            continue
        if comp.num_atoms <= 0:
            p.append(f"{cid}: empty formula")
    return p


def build(out_dir: Path) -> list[Result]:
    """Build, check and write the demo set under `out_dir`; returns one Result per good structure.

    Raises DemoBuildError (and writes nothing) if any check fails.
    """
    out_dir = Path(out_dir)
    ids = [e.id for e in ENTRIES]
    if len(set(ids)) != len(ids):
        raise DemoBuildError("duplicate entry ids")
    results = [check_entry(e) for e in ENTRIES]
    problems = [f"{r.entry.id}: {msg}" for r in results for msg in r.problems] + _check_formulas()
    if problems:
        raise DemoBuildError("demo structures failed their checks:\n  " + "\n  ".join(problems))

    sdir = out_dir / STRUCTURES_DIR
    sdir.mkdir(parents=True, exist_ok=True)
    for r in results:
        path = sdir / r.entry.filename
        path.write_text(render(r.entry, r.structure), encoding="utf-8", newline="\n")
        problems += [f"{r.entry.id}: {m}" for m in _readback_problems(r.entry, r.structure, path)]
    (sdir / BROKEN_EMPTY).write_bytes(b"")
    (sdir / BROKEN_OVERLAP).write_text(BROKEN_OVERLAP_POSCAR, encoding="utf-8", newline="\n")
    (out_dir / FORMULAS_CSV).write_text(formulas_csv_text(), encoding="utf-8", newline="\n")
    if problems:
        raise DemoBuildError("written files failed to read back:\n  " + "\n  ".join(problems))
    return results


def expected_files() -> list[str]:
    """Paths (relative to the dataset folder) that build() writes."""
    files = [f"{STRUCTURES_DIR}/{e.filename}" for e in ENTRIES]
    files += [f"{STRUCTURES_DIR}/{BROKEN_EMPTY}", f"{STRUCTURES_DIR}/{BROKEN_OVERLAP}", FORMULAS_CSV]
    return sorted(files)


def compare_trees(built: Path, committed: Path) -> list[str]:
    """Differences between the files build() writes under `built` and those under `committed`."""
    diffs = []
    for rel in expected_files():
        a, b = Path(built) / rel, Path(committed) / rel
        if not b.exists():
            diffs.append(f"{rel}: missing from {committed}")
        elif not filecmp.cmp(a, b, shallow=False):
            diffs.append(f"{rel}: differs")
    extra = sorted(
        str(p.relative_to(committed)) for p in (Path(committed) / STRUCTURES_DIR).glob("*") if p.is_file()
    )
    extra = [x for x in extra if x not in expected_files()]
    diffs += [f"{x}: not produced by build()" for x in extra]
    return diffs


def summary_table(results: list[Result]) -> str:
    lines = [
        f"{'id':<16} {'formula':<9} {'sg':>4} {'sites':>5} {'rho':>6} {'ref':>6} {'dev':>6} {'dmin':>5}  bonds (A)",
    ]
    for r in results:
        e = r.entry
        dev = (r.density - e.ref_density) / e.ref_density
        bonds = ", ".join(f"{k} {lo:.3f}-{hi:.3f}" for k, (lo, hi) in r.bond_ranges.items())
        lines.append(
            f"{e.id:<16} {r.formula:<9} {r.sg_number:>4} {r.n_sites:>5} {r.density:>6.3f} {e.ref_density:>6.3f}"
            f" {dev:>+6.1%} {r.min_distance:>5.2f}  {bonds}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE, help="dataset folder to write (default: next to this script)")
    ap.add_argument("--check", action="store_true", help="rebuild into a temporary folder and compare with --out")
    args = ap.parse_args(argv)
    try:
        if args.check:
            with tempfile.TemporaryDirectory() as tmp:
                results = build(Path(tmp))
                diffs = compare_trees(Path(tmp), args.out)
        else:
            results = build(args.out)
            diffs = []
    except DemoBuildError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(summary_table(results))
    if diffs:
        print("committed files differ from a fresh build:\n  " + "\n  ".join(diffs), file=sys.stderr)
        return 1
    print(f"{'checked' if args.check else 'wrote'} {len(results)} structures, 2 broken files, {len(FORMULAS)} formulas")
    return 0


if __name__ == "__main__":
    sys.exit(main())
