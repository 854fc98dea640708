"""The prototype library: structure families of battery materials, built from published crystallography.

Every prototype is a table of crystallographic facts (space group, lattice parameters, the asymmetric unit,
occupancies, a citation) plus, per site, a label, the role it plays (working ion, redox metal, framework
cation, anion), the oxidation state in the published compound and the coordination number. `build()` turns
the table into the published (possibly disordered) parent structure with `Structure.from_spacegroup`, and
`ordered()` into the ordered structure that substitution starts from.

Where the published structure is disordered (partial occupancies), the ordered structure is a documented
*approximant*: each partially occupied orbit keeps `keep` of its positions, chosen deterministically to
spread like ions as far apart as possible (greedy farthest-point selection, a cheap stand-in for the lowest
electrostatic energy), so that the formula is the published one. The approximant's space group is a
subgroup of the published one; both are printed by ``python -m mi.candidates.generate.prototypes``.

Provenance is stated per entry (`source`, `confidence`):
  high    positions as published (or fixed by symmetry), cell as published;
  medium  positions as published in a related record or from memory, verified by bond-length checks;
  low     positions transferred from an isotypic compound or partly chosen to give sensible bonds.
Positions marked "transcribed from OBELiX record <id>" were copied from the CIF of that record in the OBELiX
dataset (Therrien et al., 2025, CC BY 4.0), which reproduces the cited publication; DOIs are given only where
known with confidence. Positions marked "refined with CHGNet" are the free coordinates of the published space
group's Wyckoff sites, relaxed by CHGNet 0.3.0 at the fixed published cell and symmetrised back onto the
asymmetric unit by `experiments/prototypes/refine.py`, then typed in here as plain numbers (confidence low:
a model's positions, not a refinement against diffraction data). Every entry passes `check()`: formula, space
group of the parent, no two sites closer than 1.4 A (1.5 A between cations), and first-shell bond lengths in
chemical windows.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pymatgen.core import Composition, Lattice, Structure

from mi.candidates.generate.crystal import Bond, check_bonds, cubic_cell, hexagonal_cell, orthorhombic_cell

Role = Literal["working_ion", "redox", "framework", "anion"]
ROLES: tuple[str, ...] = ("working_ion", "redox", "framework", "anion")
SYMPREC = 0.1
MIN_DISTANCE_A = 1.4


@dataclass(frozen=True)
class Site:
    """One orbit of the asymmetric unit.

    Two `Site`s with the same coordinates share the position (a mixed site such as Ge/P in LGPS): the parent
    carries both species with their occupancies, the approximant splits the positions by `keep`.
    """

    label: str  # what configs call it, e.g. "M" or "O1"; unique within a prototype
    species: str  # element in the published compound
    coords: tuple[float, float, float]  # fractional, in the setting of `Prototype.spacegroup`
    role: Role
    oxi: float  # oxidation state in the published compound (mean for mixed valence)
    cn: int  # coordination number (for the Shannon radius of a substituent)
    occupancy: float = 1.0  # as published
    keep: int | None = None  # approximant: positions of this orbit kept per approximant cell (None: all)


@dataclass(frozen=True)
class Prototype:
    id: str
    family: str
    formula: str  # reduced formula of the ordered structure
    spacegroup: str  # Hermann-Mauguin symbol as pymatgen takes it
    sg_number: int  # of the published (parent) structure
    lattice: tuple[float, float, float, float, float, float]  # a, b, c (A), alpha, beta, gamma (deg)
    sites: tuple[Site, ...]
    bonds: tuple[Bond, ...]
    citation: str
    doi: str  # "" where not known with confidence
    source: str  # where the numbers come from
    confidence: Literal["high", "medium", "low"]
    note: str = ""
    supercell: tuple[tuple[int, int, int], ...] | None = None  # approximant cell, in parent lattice vectors
    min_cation_distance_A: float = 1.5

    @property
    def working_ion(self) -> str | None:
        ions = {s.species for s in self.sites if s.role == "working_ion"}
        return ions.pop() if len(ions) == 1 else None

    @property
    def is_approximant(self) -> bool:
        return self.supercell is not None or any(s.occupancy < 1.0 for s in self.sites)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(s.label for s in self.sites)

    def site(self, label: str) -> Site:
        for s in self.sites:
            if s.label == label:
                return s
        raise KeyError(f"{self.id}: no site labelled {label!r} (labels: {', '.join(self.labels)})")




def _tet(a: float, c: float) -> tuple[float, float, float, float, float, float]:
    return (a, a, c, 90.0, 90.0, 90.0)


OBELIX = "OBELiX (Therrien et al., 2025, CC BY 4.0)"

PROTOTYPES: tuple[Prototype, ...] = (
    Prototype(
        id="olivine_LiFePO4",
        family="olivine LiMPO4",
        formula="LiFePO4",
        spacegroup="Pnma",
        sg_number=62,
        lattice=orthorhombic_cell(10.3377, 6.0112, 4.6950),
        sites=(
            Site("A", "Li", (0.0, 0.0, 0.0), "working_ion", 1, 6),  # 4a
            Site("M", "Fe", (0.28222, 0.25, 0.97472), "redox", 2, 6),  # 4c
            Site("X", "P", (0.09486, 0.25, 0.41820), "framework", 5, 4),  # 4c
            Site("O1", "O", (0.09678, 0.25, 0.74279), "anion", -2, 4),
            Site("O2", "O", (0.45710, 0.25, 0.20602), "anion", -2, 4),
            Site("O3", "O", (0.16558, 0.04646, 0.28467), "anion", -2, 4),  # 8d
        ),
        bonds=(Bond("P", "O", 4, 1.50, 1.58), Bond("Fe", "O", 6, 2.00, 2.30), Bond("Li", "O", 6, 2.05, 2.25)),
        citation="V. A. Streltsov, E. L. Belokoneva, V. G. Tsirelson, N. K. Hansen, Acta Cryst. B49 (1993) 147-153",
        doi="10.1107/S0108768192009236",
        source="as published (same numbers as datasets/demo LiFePO4)",
        confidence="high",
    ),
    Prototype(
        id="layered_O3_LiCoO2",
        family="layered O3 LiMO2",
        formula="LiCoO2",
        spacegroup="R-3m",  # hexagonal axes
        sg_number=166,
        lattice=hexagonal_cell(2.816, 14.054),
        sites=(
            Site("A", "Li", (0.0, 0.0, 0.0), "working_ion", 1, 6),  # 3a
            Site("M", "Co", (0.0, 0.0, 0.5), "redox", 3, 6),  # 3b
            Site("O", "O", (0.0, 0.0, 0.2396), "anion", -2, 6),  # 6c
        ),
        bonds=(Bond("Co", "O", 6, 1.88, 1.96), Bond("Li", "O", 6, 2.05, 2.15)),
        citation="H. J. Orman, P. J. Wiseman, Acta Cryst. C40 (1984) 12-14",
        doi="",
        source="as published to the precision given (same numbers as datasets/demo LiCoO2)",
        confidence="high",
    ),
    Prototype(
        id="spinel_LiMn2O4",
        family="spinel LiM2O4",
        formula="LiMn2O4",
        # pymatgen's Fd-3m is origin choice 1: Li 8a (0,0,0), Mn 16d (5/8,5/8,5/8), O 32e (u,u,u).
        spacegroup="Fd-3m",
        sg_number=227,
        lattice=cubic_cell(8.245),
        sites=(
            Site("A", "Li", (0.0, 0.0, 0.0), "working_ion", 1, 4),
            Site("M", "Mn", (0.625, 0.625, 0.625), "redox", 3.5, 6),  # Mn3+/Mn4+ 1:1
            Site("O", "O", (0.3881, 0.3881, 0.3881), "anion", -2, 4),
        ),
        bonds=(Bond("Mn", "O", 6, 1.90, 2.00), Bond("Li", "O", 4, 1.92, 2.02)),
        citation="M. M. Thackeray, W. I. F. David, P. G. Bruce, J. B. Goodenough, Mater. Res. Bull. 18 (1983) 461-472",
        doi="10.1016/0025-5408(83)90138-1",
        source="cell as published; u(O) = 0.2631 (origin choice 2) a typical refined value, not checked against the paper",
        confidence="medium",
    ),
    Prototype(
        id="tavorite_LiVPO4F",
        family="tavorite LiMPO4F / LiMSO4F",
        formula="LiVPO4F",
        spacegroup="P-1",
        sg_number=2,
        lattice=(5.1744, 5.3115, 7.2617, 107.547, 107.934, 98.444),
        sites=(
            # Li is split over two sites 0.7 A apart (0.5 each); the approximant fills the first.
            Site("A", "Li", (0.25, 0.625, 0.301), "working_ion", 1, 5, occupancy=0.5, keep=2),
            Site("A'", "Li", (0.266, 0.612, 0.211), "working_ion", 1, 5, occupancy=0.5, keep=0),
            Site("M1", "V", (0.0, 0.0, 0.0), "redox", 3, 6),  # 1a
            Site("M2", "V", (0.0, 0.0, 0.5), "redox", 3, 6),  # 1b
            Site("X", "P", (0.3283, 0.6495, 0.7532), "framework", 5, 4),
            Site("O1", "O", (0.1055, 0.6655, 0.8534), "anion", -2, 4),
            Site("O2", "O", (0.2645, 0.7985, 0.5978), "anion", -2, 4),
            Site("O3", "O", (0.3175, 0.3613, 0.6406), "anion", -2, 4),
            Site("O4", "O", (0.3678, 0.2407, 0.0966), "anion", -2, 4),
            Site("F", "F", (0.1159, 0.9201, 0.2554), "anion", -1, 3),
        ),
        bonds=(
            Bond("P", "O", 4, 1.48, 1.60),
            Bond("V", "O", 4, 1.85, 2.15),
            Bond("V", "F", 2, 1.85, 2.10),
            Bond("Li", "O", 3, 1.85, 2.40),
        ),
        citation="LiVPO4F (tavorite), Solid State Ionics (2013); authors not recorded here",
        doi="10.1016/j.ssi.2013.04.002",
        source="transcribed from OBELiX record 2t8 (" + OBELIX + ")",
        confidence="medium",
        note="ordered approximant: Li on the first of its two half-occupied split sites; LiMSO4F by substituting "
        "X=S with a divalent M",
    ),
    Prototype(
        id="nasicon_NaZr2P3O12",
        family="NASICON AM2(PO4)3",
        formula="NaZr2(PO4)3",
        spacegroup="R-3c",  # hexagonal axes
        sg_number=167,
        lattice=hexagonal_cell(8.815, 22.746),
        sites=(
            Site("A", "Na", (0.0, 0.0, 0.0), "working_ion", 1, 6),  # 6b (M1)
            Site("M", "Zr", (0.0, 0.0, 0.1456), "redox", 4, 6),  # 12c
            Site("X", "P", (0.2895, 0.0, 0.25), "framework", 5, 4),  # 18e
            Site("O1", "O", (0.1719, -0.0268, 0.1921), "anion", -2, 4),  # 36f
            Site("O2", "O", (0.1905, 0.1684, 0.0877), "anion", -2, 4),  # 36f
        ),
        bonds=(Bond("P", "O", 4, 1.48, 1.65), Bond("Zr", "O", 6, 1.95, 2.15), Bond("Na", "O", 6, 2.40, 2.65)),
        citation="H. Hagman, P. Kierkegaard, Acta Chem. Scand. 22 (1968) 1822-1832 (NaM2(PO4)3, M = Ge, Ti, Zr)",
        doi="",
        source="cell and positions from memory; P-O comes out 1.56-1.62 A, 0.05-0.1 A longer than in refined "
        "NASICONs, so the O positions are approximate",
        confidence="low",
        note="A on the 6b (M1) site only; Na3V2(PO4)3, with Na also on the 18e (M2) site, is nasicon_Na3V2P3O12. "
        "The two OBELiX NASICON records at hand (LiZr2(PO4)3, LiTi2(PO4)3) give P-O 1.63-1.71 A and were not used",
    ),
    Prototype(
        id="garnet_Li7La3Zr2O12",
        family="garnet Li7La3Zr2O12",
        formula="Li7La3Zr2O12",
        spacegroup="I4_1/acd",
        sg_number=142,
        lattice=_tet(13.134, 12.663),
        sites=(
            Site("A1", "Li", (0.0806, 0.1643, 0.4291), "working_ion", 1, 6),  # 32g octahedral
            Site("A2", "Li", (0.1797, 0.3203, 0.5), "working_ion", 1, 6),  # 16f octahedral
            Site("A3", "Li", (0.0, 0.0, 0.0), "working_ion", 1, 4),  # 8a tetrahedral
            Site("La1", "La", (0.127, 0.25, 0.875), "framework", 3, 8),  # 16e
            Site("La2", "La", (0.0, 0.0, 0.25), "framework", 3, 8),  # 8b
            Site("M", "Zr", (0.0, 0.25, 0.125), "framework", 4, 6),  # 16c
            Site("O1", "O", (0.0338, 0.1952, 0.2774), "anion", -2, 4),
            Site("O2", "O", (0.0541, 0.1029, 0.5912), "anion", -2, 4),
            Site("O3", "O", (0.1496, 0.2224, 0.0714), "anion", -2, 4),
        ),
        bonds=(Bond("Zr", "O", 6, 2.00, 2.20), Bond("La", "O", 8, 2.40, 2.75), Bond("Li", "O", 4, 1.80, 2.50)),
        citation="J. Awaka, N. Kijima, H. Hayakawa, J. Akimoto, J. Solid State Chem. 182 (2009) 2046-2052",
        doi="10.1016/j.jssc.2009.05.020",
        source="cell as published (a 13.134, c 12.663 A); positions transcribed from OBELiX record wyu ("
        + OBELIX
        + "), whose own cell (13.128, 12.672 A) differs by < 0.1 %",
        confidence="medium",
        note="the tetragonal polymorph is the ordered form of LLZO (cubic Ia-3d LLZO has Li disordered); "
        "it is the garnet prototype here",
    ),
    Prototype(
        id="argyrodite_Li6PS5Cl",
        family="argyrodite Li6PS5X",
        formula="Li6PS5Cl",
        spacegroup="F-43m",
        sg_number=216,
        lattice=cubic_cell(9.898),
        sites=(
            Site("A", "Li", (0.02043, 0.18509, 0.81491), "working_ion", 1, 3, occupancy=0.5, keep=24),  # 48h
            Site("X", "P", (0.0, 0.0, 0.5), "framework", 5, 4),  # 4b
            Site("S1", "S", (0.11777, 0.38223, 0.11777), "anion", -2, 4),  # 16e, PS4 tetrahedra
            Site("S2", "S", (0.0, 0.0, 0.0), "anion", -2, 6),  # 4a (published: S 0.615 / Cl 0.385)
            Site("Hal", "Cl", (0.25, 0.25, 0.75), "anion", -1, 6),  # 4c (published: Cl 0.615 / S 0.385)
        ),
        bonds=(Bond("P", "S", 4, 1.98, 2.12), Bond("Li", "S", 2, 2.25, 2.70)),
        citation="M. A. Kraft et al., J. Am. Chem. Soc. 139 (2017) 10909-10918 (Li6PS5X, X = Cl, Br, I)",
        doi="10.1021/jacs.7b06327",
        source="transcribed from OBELiX record 122 (" + OBELIX + ")",
        confidence="medium",
        note="ordered approximant: S2- on 4a and Cl- on 4c fully (published 62:38 anion site mixing), and 24 of "
        "the 48 half-occupied Li 48h positions",
        min_cation_distance_A=1.5,
    ),
    Prototype(
        id="antiperovskite_Li3OCl",
        family="anti-perovskite Li3OX",
        formula="Li3ClO",
        spacegroup="Pm-3m",
        sg_number=221,
        lattice=cubic_cell(3.91),
        sites=(
            Site("A", "Li", (0.0, 0.5, 0.5), "working_ion", 1, 2),  # 3c
            Site("O", "O", (0.5, 0.5, 0.5), "anion", -2, 6),  # 1b
            Site("Hal", "Cl", (0.0, 0.0, 0.0), "anion", -1, 12),  # 1a
        ),
        bonds=(Bond("O", "Li", 6, 1.90, 2.00), Bond("Cl", "Li", 12, 2.70, 2.85)),
        citation="Y. Zhao, L. L. Daemen, J. Am. Chem. Soc. 134 (2012) 15042-15047",
        doi="10.1021/ja305709z",
        source="positions fixed by symmetry; a = 3.91 A as reported (rounded)",
        confidence="high",
    ),
    Prototype(
        id="layered_P2_NaxMO2",
        family="layered P2 NaxMO2",
        formula="Na2Mn3O6",
        spacegroup="P6_3/mmc",
        sg_number=194,
        lattice=hexagonal_cell(2.885, 11.155),
        sites=(
            Site("M", "Mn", (0.0, 0.0, 0.0), "redox", 10.0 / 3.0, 6),  # 2a; published Ni1/3Mn2/3: see note
            Site("O", "O", (1.0 / 3.0, 2.0 / 3.0, 0.0926), "anion", -2, 6),  # 4f
            Site("A", "Na", (2.0 / 3.0, 1.0 / 3.0, 0.25), "working_ion", 1, 6, occupancy=2.0 / 3.0, keep=4),  # 2d
        ),
        bonds=(Bond("Mn", "O", 6, 1.90, 2.05), Bond("Na", "O", 6, 2.30, 2.55)),
        citation="Z. Lu, J. R. Dahn, J. Electrochem. Soc. 148 (2001) A1225-A1229 (P2-Na2/3[Ni1/3Mn2/3]O2)",
        doi="",
        source="cell from memory (a 2.885, c 11.155 A, rounded); M 2a and Na 2d fixed by symmetry; z(O) = 0.0926 "
        "chosen to give M-O 1.96 A (the Ni2+/Mn4+ 1:2 mean), not the refined value",
        confidence="low",
        note="ordered approximant in a sqrt3 x sqrt3 cell: Na on 4 of the 6 edge-sharing (2d) prisms, the "
        "face-sharing 2b prisms empty. M is one site holding Mn(3.33+) on average; Na2/3[Ni1/3Mn2/3]O2 itself "
        "comes from mixing M with Ni and Mn (fractions 1/3, 2/3)",
        supercell=((2, 1, 0), (-1, 1, 0), (0, 0, 1)),
    ),
    Prototype(
        id="layered_O3_NaFeO2",
        family="layered O3 NaMO2",
        formula="NaFeO2",
        spacegroup="R-3m",  # hexagonal axes; the alpha-NaFeO2 type that names the O3 family
        sg_number=166,
        lattice=hexagonal_cell(3.025, 16.09),
        sites=(
            Site("A", "Na", (0.0, 0.0, 0.0), "working_ion", 1, 6),  # 3a
            Site("M", "Fe", (0.0, 0.0, 0.5), "redox", 3, 6),  # 3b
            Site("O", "O", (0.0, 0.0, 0.232), "anion", -2, 6),  # 6c
        ),
        bonds=(Bond("Fe", "O", 6, 1.98, 2.10), Bond("Na", "O", 6, 2.30, 2.50)),
        citation="alpha-NaFeO2 (R-3m), e.g. Y. Takeda, K. Nakahara, M. Nishijima, N. Imanishi, O. Yamamoto, "
        "M. Takano, R. Kanno, Mater. Res. Bull. 29 (1994) 659-666",
        doi="",
        source="cell from memory (a 3.025, c 16.09 A, rounded); Na 3a and Fe 3b fixed by symmetry; z(O) = 0.232 "
        "chosen to give Fe-O 2.04 A (Shannon Fe3+(HS) + O2-), not the refined value",
        confidence="low",
        note="built natively (not Na substituted into LiCoO2): the O3 Na slab keeps its own c/a (5.32 vs 4.99)",
    ),
    Prototype(
        id="betaII_Li3VO4",
        family="Li2MSiO4 (beta_II-Li3PO4 type, Pmn21)",
        formula="Li3VO4",
        spacegroup="Pmn2_1",
        sg_number=31,
        lattice=orthorhombic_cell(6.3259, 5.4460, 4.9469),
        sites=(
            Site("A", "Li", (0.24111, 0.32920, 0.98402), "working_ion", 1, 4),  # 4b
            # 2a Li: the site Fe2+/Mn2+/Co2+ takes in Pmn21 Li2MSiO4 (Li2FeSiO4 = Li2[Fe]SiO4 on this frame)
            Site("M", "Li", (0.0, 0.17149, 0.47798), "redox", 1, 4),  # 2a
            Site("X", "V", (0.0, 0.82531, 0.98746), "framework", 5, 4),  # 2a
            Site("O1", "O", (0.23480, 0.69793, 0.90889), "anion", -2, 4),  # 4b
            Site("O2", "O", (0.0, 0.13087, 0.89801), "anion", -2, 4),  # 2a
            Site("O3", "O", (0.0, 0.83241, 0.35677), "anion", -2, 4),  # 2a
        ),
        bonds=(Bond("V", "O", 4, 1.65, 1.85), Bond("Li", "O", 4, 1.85, 2.20)),
        citation="beta-Li3VO4 (Pmn21), Chem. Mater. (2018); authors not recorded here. Pmn21 Li2FeSiO4 on this "
        "frame: A. Nyten, S. Kamali, L. Haggstrom, T. Gustafsson, J. O. Thomas, J. Mater. Chem. 16 (2006) 2266",
        doi="10.1021/acs.chemmater.8b01504",
        source="transcribed from OBELiX record h6c (" + OBELIX + "); Li2FeSiO4's own positions are not in the library",
        confidence="medium",
        note="the beta_II-Li3PO4 frame of Pmn21 Li2MSiO4: Li2MSiO4 comes from substituting M (2a Li) with a "
        "divalent metal and X (V) with Si or Ge; the cell is rescaled isotropically, so a/b/c ratios stay Li3VO4's",
    ),
    Prototype(
        id="lgps_Li10GeP2S12",
        family="LGPS-type Li10MP2S12",
        formula="Li10GeP2S12",
        spacegroup="P4_2/nmc",  # origin choice 1 (pymatgen's), as in the record
        sg_number=137,
        lattice=_tet(8.71121, 12.6078),
        sites=(
            Site("X1", "P", (0.0, 0.0, 0.0), "framework", 5, 4),  # 2a
            Site("M", "Ge", (0.0, 0.5, 0.3079), "framework", 4, 4, occupancy=0.5, keep=2),  # 4d, Ge/P 1:1
            Site("X2", "P", (0.0, 0.5, 0.3079), "framework", 5, 4, occupancy=0.5, keep=2),
            Site("S1", "S", (0.0, 0.187, 0.0908), "anion", -2, 4),  # 8g
            Site("S2", "S", (0.0, 0.2943, 0.4032), "anion", -2, 4),  # 8g
            Site("S3", "S", (0.0, 0.304, 0.7062), "anion", -2, 4),  # 8g
            Site("A4", "Li", (0.0, 0.0, 0.251), "working_ion", 1, 4, occupancy=0.68, keep=4),  # 4c (filled)
            Site("A3", "Li", (0.246, 0.246, 0.5), "working_ion", 1, 4, occupancy=0.62, keep=4),  # 8f
            Site("A2", "Li", (0.0, 0.476, 0.555), "working_ion", 1, 6, occupancy=0.54, keep=4),  # 8g, split 4d
            Site("A1", "Li", (0.237, 0.252, 0.8031), "working_ion", 1, 4, occupancy=0.5, keep=8),  # 16h, pairs
        ),
        bonds=(
            Bond("P", "S", 4, 1.95, 2.20),  # 2a P-S 1.99 A; P on 4d sits on the Ge/P mean position (2.14-2.16)
            Bond("Ge", "S", 4, 2.05, 2.25),
            Bond("Li", "S", 4, 2.30, 2.85),
        ),
        citation="LGPS type: N. Kamaya et al., Nat. Mater. 10 (2011) 682-686. Numbers: Li10GeP2S12 end member "
        "of Li10Ge(1-x)SnxP2S12, Chem. Mater. (2018); authors not recorded here",
        doi="10.1021/acs.chemmater.8b00266",
        source="transcribed from OBELiX record mtn (" + OBELIX + "); the OBELiX record of Kamaya's own refinement "
        "(1hh) carries no CIF, and record j8q gives P-S 2.18 A (refined: 1.99-2.05 A), so it was not used",
        confidence="medium",
        note="ordered approximant: Li 20 per cell (published 19.9) as 4c full (published 0.68), 4 of 8 on 8f "
        "(0.62), one of each split 8g pair about 4d (0.54) and one of each 16h pair 1.36 A apart (0.5); Ge and P "
        "1:1 on 4d, the two Ge as far apart as the cell allows. Symmetry drops to a subgroup of P4_2/nmc",
    ),
    Prototype(
        id="halide_Li3ErI6",
        family="Li3MX6 halides (ccp, monoclinic)",
        formula="Li3ErI6",
        spacegroup="C2/c",
        sg_number=15,
        lattice=(7.413, 12.838, 14.2, 90.0, 100.01, 90.0),
        sites=(
            # Er/Li antisite disorder on the metal layer (4d and 8f): the approximant keeps the majority
            Site("M", "Er", (0.25, 0.25, 0.5), "framework", 3, 6, occupancy=0.68, keep=4),  # 4d
            Site("A4", "Li", (0.25, 0.25, 0.5), "working_ion", 1, 6, occupancy=0.32, keep=0),
            Site("A1", "Li", (0.25, 0.0782, 0.0), "working_ion", 1, 6, occupancy=0.84, keep=8),  # 8f
            Site("M'", "Er", (0.25, 0.0782, 0.0), "framework", 3, 6, occupancy=0.16, keep=0),
            # Li layer: two 4e orbits, 0.8 and 0.2 occupied; the approximant fills the first
            Site("A2", "Li", (0.0, 0.275, 0.75), "working_ion", 1, 6, occupancy=0.8, keep=4),  # 4e
            Site("A3", "Li", (0.0, 0.4218, 0.25), "working_ion", 1, 6, occupancy=0.2, keep=0),  # 4e
            Site("X1", "I", (0.109, 0.0988, 0.617), "anion", -1, 4),  # 8f
            Site("X2", "I", (0.114, 0.419, 0.627), "anion", -1, 4),  # 8f
            Site("X3", "I", (0.116, 0.247, 0.123), "anion", -1, 4),  # 8f
        ),
        bonds=(Bond("Er", "I", 6, 2.80, 3.20), Bond("Li", "I", 6, 2.70, 3.25)),
        citation="Li3ErI6 (C2/c), ACS Appl. Energy Mater. (2020); authors not recorded here",
        doi="10.1021/acsaem.0c00147",
        source="transcribed from OBELiX record 9wf (" + OBELIX + "), cell and positions as in its CIF",
        confidence="medium",
        note="ordered approximant: Er on 4d and Li on 8f fully (published Er/Li 0.68/0.32 and 0.16/0.84), Li on "
        "the 0.8-occupied 4e orbit, the 0.2-occupied one empty; C2/c kept. Cubic close-packed I (ABC stacking, "
        "as in Li3InCl6, not the hcp Li3YCl6 type). Li3MX6 chlorides and bromides come from substituting X (all "
        "three I sites: element key I) and M (Y, In, Sc, lanthanides) with the cell rescaled isotropically. "
        "CHGNet 0.3.0 at the fixed cell moves these positions by 0.17 A RMS (largest: Li 8f and I X1, 0.23 A)",
    ),
    Prototype(
        id="beta_Li3PS4",
        family="beta-Li3PS4 (Pnma)",
        formula="Li3PS4",
        spacegroup="Pnma",
        sg_number=62,
        lattice=orthorhombic_cell(12.819, 8.2195, 6.1236),
        sites=(
            Site("A1", "Li", (0.1629, 0.5349, 0.8969), "working_ion", 1, 4),  # 8d
            Site("A2", "Li", (0.0, 0.0, 0.5), "working_ion", 1, 6, occupancy=0.7, keep=4),  # 4b (4 + 2 at 3.13 A)
            Site("A3", "Li", (0.0664, 0.75, 0.3370), "working_ion", 1, 4, occupancy=0.3, keep=0),  # 4c
            Site("X", "P", (0.0903, 0.25, 0.1630), "framework", 5, 4),  # 4c
            Site("S1", "S", (0.1558, 0.0381, 0.2789), "anion", -2, 4),  # 8d
            Site("S2", "S", (0.0619, 0.75, 0.7190), "anion", -2, 4),  # 4c
            Site("S3", "S", (0.0950, 0.25, 0.8304), "anion", -2, 4),  # 4c
        ),
        bonds=(Bond("P", "S", 4, 1.98, 2.12), Bond("Li", "S", 4, 2.25, 2.70)),
        citation="beta-Li3PS4: K. Homma, M. Yonemura, T. Kobayashi, M. Nagao, M. Hirayama, R. Kanno, Solid State "
        "Ionics 182 (2011) 53-58 (cell, Wyckoff sites and occupancies, via OBELiX record nhq, whose own reference "
        "is nanoporous beta-Li3PS4, J. Am. Chem. Soc. 135 (2013) 975, doi 10.1021/ja3110895)",
        doi="10.1016/j.ssi.2010.10.001",  # as datasets/demo cites Homma et al.
        source="space group, Wyckoff sites, occupancies and cell (12.819, 8.2195, 6.1236 A) from the CIF of OBELiX "
        "record nhq (" + OBELIX + "); free positions refined with CHGNet: experiments/prototypes/refine.py "
        "beta_Li3PS4 (CHGNet 0.3.0, FIRE to 0.02 eV/A at the fixed cell, started from the record's positions, "
        "which give P-S 1.91-2.25 A and a 1.49 A Li-S contact; the 4c Li from a second run with 4c filled "
        "instead of 4b), symmetrised onto Pnma",
        confidence="low",
        note="ordered approximant: Li on 8d and 4b fully (published 4b 0.7, 4c 0.3), 4c empty; Pnma kept. The "
        "refined frame matches the record's (StructureMatcher) with P and S moved 0.05-0.19 A; the 4c Li moved "
        "1.54 A from the record's position (which sat 1.49 A from S) and ends 2.44 A from the 4b Li, so the two "
        "partial sites are not filled side by side. CHGNet puts the 4c-filled ordering 1.3 meV/atom below the "
        "4b-filled one (published: 4b majority). The cell is the record's (Homma's), not the room-temperature "
        "cell of the record's own paper (13.066, 8.015, 6.101 A in its table row)",
    ),
    Prototype(
        id="nasicon_Na3V2P3O12",
        family="NASICON Na3M2(PO4)3",
        formula="Na3V2(PO4)3",
        spacegroup="R-3c",  # hexagonal axes
        sg_number=167,
        lattice=hexagonal_cell(8.7288, 21.8042),
        sites=(
            Site("A1", "Na", (0.0, 0.0, 0.0), "working_ion", 1, 6),  # 6b (M1)
            Site("A2", "Na", (0.6398, 0.0, 0.25), "working_ion", 1, 8, occupancy=2.0 / 3.0, keep=12),  # 18e (M2)
            Site("M", "V", (0.0, 0.0, 0.1456), "redox", 3, 6),  # 12c
            Site("X", "P", (0.2944, 0.0, 0.25), "framework", 5, 4),  # 18e
            Site("O1", "O", (0.1887, -0.0161, 0.1917), "anion", -2, 4),  # 36f
            Site("O2", "O", (0.1861, 0.1672, 0.0842), "anion", -2, 4),  # 36f
        ),
        bonds=(Bond("P", "O", 4, 1.50, 1.58), Bond("V", "O", 6, 1.95, 2.10), Bond("Na", "O", 6, 2.30, 2.70)),
        citation="rhombohedral Na3V2(PO4)3 (R-3c), e.g. Z. Jian, L. Zhao, H. Pan, Y.-S. Hu, H. Li, W. Chen, L. Chen, "
        "Electrochem. Commun. 14 (2012) 86-89; NASICON frame: H. Hagman, P. Kierkegaard, Acta Chem. Scand. 22 "
        "(1968) 1822",
        doi="",
        source="space group and Wyckoff sites of the NASICON frame (Na1 6b, Na2 18e (x, 0, 1/4) at 2/3, V 12c, P "
        "18e, O 2 x 36f); cell a 8.7288, c 21.8042 A as recalled for rhombohedral Na3V2(PO4)3, not checked against "
        "a paper; free positions refined with CHGNet: experiments/prototypes/refine.py nasicon_Na3V2P3O12 (CHGNet "
        "0.3.0, FIRE to 0.02 eV/A at the fixed cell, in the 12-of-18 Na2 approximant below, started from "
        "nasicon_NaZr2P3O12's positions with x(Na2) = 0.64), symmetrised onto R-3c by averaging each orbit",
        confidence="low",
        note="ordered approximant: Na1 (6b) full and 12 of the 18 Na2 (18e) positions, spread by the "
        "farthest-point rule (Cc, 120 atoms); occupancies idealised to the formula (refinements report Na1 below "
        "1 and Na2 above 2/3). The symmetrised R-3c frame lies 0.10 A RMS and 9.8 meV/atom (CHGNet) above the "
        "relaxed Cc approximant (CHGNet forces on it up to 1.8 eV/A, on P and V): it is the average structure, "
        "not a minimum of any one Na ordering, so relax substituted candidates before trusting energies. A Na-ordered "
        "monoclinic form exists below ambient temperature and is not in the library. NaM2(PO4)3 (6b only) is "
        "nasicon_NaZr2P3O12",
    ),
)

BY_ID: dict[str, Prototype] = {p.id: p for p in PROTOTYPES}

# What the library does not carry, and why (printed with the table, kept in the docs).
NOT_INCLUDED: dict[str, str] = {
    "Li3YCl6 and Li3InCl6 own structures": "no CIF at hand (the OBELiX chloride of this kind, n7a "
    "Li2.5Y0.5Zr0.5Cl6, has none) and no positions known with confidence. Li3MX6 chlorides and bromides come "
    "from substituting halide_Li3ErI6 (C2/c, ccp anions like C2/m Li3InCl6); the hcp P-3m1 Li3YCl6 frame is not "
    "in the library",
    "Na-ordered monoclinic Na3V2(PO4)3": "nasicon_Na3V2P3O12 is the rhombohedral average structure with a "
    "farthest-point Na2 ordering, not the published low-temperature ordering",
    "gamma-Li3PS4 (Pmn21)": "OBELiX record joc gives P-S 1.94-2.10 A and S occupancies 0.97-0.99; not transcribed "
    "(datasets/demo carries a gamma-Li3PS4 with unverified positions). beta-Li3PS4 is beta_Li3PS4",
    "Li2FeSiO4 own positions": "not known with confidence; Pmn21 Li2MSiO4 comes from substituting betaII_Li3VO4 "
    "(a transfer of its positions into Nyten's Li2FeSiO4 cell gave Si-O up to 1.85 A, so that was not done)",
    "LGPS from Kamaya's refinement": "its OBELiX record (1hh) has no CIF; lgps_Li10GeP2S12 uses record mtn "
    "(same structure, cell within 0.2 %)",
    "cubic garnet (Ia-3d)": "Li is disordered over 24d/96h; the ordered tetragonal garnet stands in",
}


def get(prototype_id: str) -> Prototype:
    try:
        return BY_ID[prototype_id]
    except KeyError:
        raise KeyError(f"unknown prototype {prototype_id!r}; known: {', '.join(BY_ID)}") from None


def check_jobs(cfg) -> None:
    """Refuse a config (any kind) whose prototype jobs name an unknown prototype or site, with the file and
    key path of each: `mi validate`, `mi generate` and a screen call it before they start, and `generate`
    for a generator given by itself (config, the ground layer, cannot know the library)."""
    from mi.config import PrototypeJob, invalid_config, sections

    problems = []
    for path, job in sections(cfg):
        if not isinstance(job, PrototypeJob):
            continue
        where = f"{path}." if path else ""
        proto = BY_ID.get(job.prototype)
        if proto is None:
            problems.append((f"{where}prototype", f"unknown prototype {job.prototype!r}; known: {', '.join(BY_ID)}"))
            continue
        keys = {s.label for s in proto.sites} | {s.species for s in proto.sites}
        named = [("sites", k) for k in job.sites] + [(f"mix[{i}].site", m.site) for i, m in enumerate(job.mix)]
        if job.substitution_probability and job.substitution_probability.sites:
            named += [("substitution_probability.sites", k) for k in job.substitution_probability.sites]
        problems += [
            (f"{where}{field}", f"{key!r} is not a site of {job.prototype} (labels: {', '.join(s.label for s in proto.sites)})")
            for field, key in named
            if key not in keys
        ]
    if problems:
        raise invalid_config(cfg, problems)


# --- building ------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _space_group(symbol: str):
    from pymatgen.symmetry.groups import SpaceGroup

    return SpaceGroup(symbol)  # slow to make (about 0.2 s): one per symbol


def _orbit(proto: Prototype, site: Site) -> np.ndarray:
    """Fractional coordinates of every position of one orbit in the conventional cell.

    The same as `Structure.from_spacegroup` does per site (`SpaceGroup.get_orbit`), with the group cached.
    """
    sg = _space_group(proto.spacegroup)
    if not sg.is_compatible(Lattice.from_parameters(*proto.lattice)):
        raise ValueError(f"{proto.id}: the cell {proto.lattice} does not fit space group {proto.spacegroup}")
    orbit = sg.get_orbit(np.array(site.coords, dtype=float), tol=1e-5)
    return np.mod(np.round(np.array(orbit), 10), 1.0)


def build(proto: Prototype) -> Structure:
    """The published (parent) structure: conventional cell, partial occupancies as published.

    Every site carries the site properties ``label`` (of its first species, for mixed sites: labels joined by
    '/') and ``role``.
    """
    lattice = Lattice.from_parameters(*proto.lattice)
    positions: dict[tuple, dict] = {}
    for site in proto.sites:
        for frac in _orbit(proto, site):
            key = tuple(np.round(frac, 6) % 1.0)
            entry = positions.setdefault(key, {"frac": frac, "species": {}, "labels": [], "role": site.role})
            entry["species"][site.species] = entry["species"].get(site.species, 0.0) + site.occupancy
            entry["labels"].append(site.label)
    species = [e["species"] for e in positions.values()]
    frac = [e["frac"] for e in positions.values()]
    props = {
        "label": ["/".join(e["labels"]) for e in positions.values()],
        "role": [e["role"] for e in positions.values()],
    }
    return Structure(lattice, species, frac, site_properties=props)


def _spread(lattice: Lattice, candidates: np.ndarray, placed: np.ndarray, n: int) -> list[int]:
    """Indices of `n` candidates picked one at a time, each as far as possible from all picked and placed.

    Ties go to the lowest index (candidates are sorted), so the choice is deterministic.
    """
    chosen: list[int] = []
    if n <= 0:
        return chosen
    refs = placed.reshape(-1, 3)
    if len(refs):
        dmin = lattice.get_all_distances(candidates, refs).min(axis=1)
    else:
        dmin = np.full(len(candidates), np.inf)
        chosen.append(0)
        dmin = np.minimum(dmin, lattice.get_all_distances(candidates, candidates[:1])[:, 0])
        dmin[0] = -1.0
    while len(chosen) < n:
        best = int(np.argmax(np.round(dmin, 6)))
        if dmin[best] < 0:
            raise ValueError("not enough positions to choose from")
        chosen.append(best)
        dmin = np.minimum(dmin, lattice.get_all_distances(candidates, candidates[best : best + 1])[:, 0])
        dmin[chosen] = -1.0
    return chosen


def _sorted_positions(frac: np.ndarray) -> np.ndarray:
    frac = np.mod(np.round(frac, 8), 1.0) + 0.0
    order = np.lexsort((frac[:, 2], frac[:, 1], frac[:, 0]))
    return frac[order]


@functools.lru_cache(maxsize=None)
def ordered(prototype_id: str) -> Structure:
    """The ordered structure substitution starts from: the parent itself, or its approximant.

    Site properties: ``label`` (the `Site.label`), ``role``, ``oxi`` (published oxidation state) and ``cn``.
    The returned structure is shared: copy it before changing it.
    """
    return approximant(get(prototype_id))


def approximant(proto: Prototype) -> Structure:
    """`ordered` for any `Prototype`, also one not in the library (a trial entry being refined). Not cached."""
    prototype_id = proto.id
    lattice = Lattice.from_parameters(*proto.lattice)
    sc = np.array(proto.supercell if proto.supercell is not None else np.eye(3, dtype=int))
    inv = np.linalg.inv(sc)
    # lattice positions of the approximant cell that map the parent cell onto it
    n_cells = round(abs(np.linalg.det(sc)))
    rng = range(-3, 4)
    shifts = np.array([[i, j, k] for i in rng for j in rng for k in rng], dtype=float)
    sc_lattice = Lattice(sc @ lattice.matrix)

    def expand(frac: np.ndarray) -> np.ndarray:
        pts = (frac[:, None, :] + shifts[None, :, :]).reshape(-1, 3) @ inv
        pts = pts[np.all((pts > -1e-8) & (pts < 1 - 1e-8), axis=1)]
        pts = _sorted_positions(pts)
        # remove duplicates produced by points on the boundary
        keep = np.ones(len(pts), dtype=bool)
        d = sc_lattice.get_all_distances(pts, pts)
        for i in range(len(pts)):
            if keep[i]:
                keep[(d[i] < 1e-4) & (np.arange(len(pts)) > i)] = False
        out = pts[keep]
        if len(out) != len(frac) * n_cells:
            raise ValueError(f"{prototype_id}: supercell expansion gave {len(out)} of {len(frac) * n_cells} positions")
        return out

    species: list[str] = []
    coords: list[np.ndarray] = []
    props: dict[str, list] = {"label": [], "role": [], "oxi": [], "cn": []}
    taken: dict[tuple, bool] = {}

    def add(site: Site, frac: np.ndarray) -> None:
        for f in frac:
            species.append(site.species)
            coords.append(f)
            props["label"].append(site.label)
            props["role"].append(site.role)
            props["oxi"].append(site.oxi)
            props["cn"].append(site.cn)
            taken[tuple(np.round(f, 5))] = True

    for site in proto.sites:  # full orbits first: the partial ones are spread around them
        if site.keep is None:
            if site.occupancy < 1.0:
                raise ValueError(f"{prototype_id}: site {site.label} is partially occupied but has no 'keep'")
            add(site, expand(_orbit(proto, site)))
    for site in proto.sites:
        if site.keep is None:
            continue
        cand = expand(_orbit(proto, site))
        cand = np.array([f for f in cand if tuple(np.round(f, 5)) not in taken]).reshape(-1, 3)
        same = np.array([c for c, sp in zip(coords, species) if sp == site.species]).reshape(-1, 3)
        picked = _spread(sc_lattice, cand, same, site.keep)
        add(site, cand[sorted(picked)])
    return Structure(sc_lattice, species, np.array(coords), site_properties=props)


# --- checks --------------------------------------------------------------------------------------------


@dataclass
class CheckResult:
    prototype: Prototype
    parent_sg: int
    ordered_sg: int
    ordered_sg_symbol: str
    formula: str
    n_sites: int
    min_distance: float
    bond_ranges: dict[str, tuple[float, float]]
    problems: list[str]


def check(proto: Prototype) -> CheckResult:
    """Build parent and ordered structure and check them against the published facts and chemistry."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    problems: list[str] = []
    parent = build(proto)
    parent_sg = SpacegroupAnalyzer(parent, symprec=SYMPREC).get_space_group_number()
    if parent_sg != proto.sg_number:
        problems.append(f"parent space group {parent_sg}, published {proto.sg_number}")
    abc = parent.lattice.abc + parent.lattice.angles
    if not np.allclose(abc, proto.lattice, atol=1e-3):
        problems.append(f"parent cell {np.round(abc, 4).tolist()} differs from the published {proto.lattice}")
    s = ordered(proto.id) if BY_ID.get(proto.id) is proto else approximant(proto)  # a trial entry: uncached
    sga = SpacegroupAnalyzer(s, symprec=SYMPREC)
    formula = s.composition.reduced_formula
    if Composition(formula) != Composition(proto.formula):
        problems.append(f"ordered formula {formula}, expected {proto.formula}")
    parent_formula = Composition({sp: amt for sp, amt in parent.composition.items()}).reduced_composition
    if not proto.is_approximant and parent_formula != s.composition.reduced_composition:
        problems.append("ordered structure differs from the parent in composition")
    charge = sum(site.properties["oxi"] for site in s)
    if abs(charge) > 1e-6:
        problems.append(f"published oxidation states sum to {charge:+.3g} per cell")
    dm = s.distance_matrix + np.eye(len(s)) * 1e6
    dmin = float(dm.min())
    if dmin < MIN_DISTANCE_A:
        problems.append(f"two sites {dmin:.3f} A apart (< {MIN_DISTANCE_A} A)")
    cations = [i for i, site in enumerate(s) if site.properties["role"] != "anion"]
    dc = dm[np.ix_(cations, cations)].min() if cations else np.inf
    if dc < proto.min_cation_distance_A:
        problems.append(f"two cations {dc:.3f} A apart (< {proto.min_cation_distance_A} A)")
    ranges, bond_problems = check_bonds(s, proto.bonds)
    problems += bond_problems
    return CheckResult(
        proto, parent_sg, sga.get_space_group_number(), sga.get_space_group_symbol(), formula, len(s), dmin, ranges, problems
    )


def table() -> str:
    """The library as a text table: id, parent and ordered space group, cell, bonds, confidence."""
    lines = [f"{'id':<24} {'sg':>4} {'ord':>4} {'sites':>5} {'a':>8} {'b':>8} {'c':>8}  {'conf':<6} bonds (A)"]
    for p in PROTOTYPES:
        r = check(p)
        bonds = ", ".join(f"{k} {lo:.2f}-{hi:.2f}" for k, (lo, hi) in r.bond_ranges.items())
        a, b, c = p.lattice[:3]
        lines.append(
            f"{p.id:<24} {r.parent_sg:>4} {r.ordered_sg:>4} {r.n_sites:>5} {a:>8.4f} {b:>8.4f} {c:>8.4f}  "
            f"{p.confidence:<6} {bonds}" + ("" if not r.problems else "  PROBLEMS: " + "; ".join(r.problems))
        )
    lines.append("not included: " + "; ".join(f"{k} ({v})" for k, v in NOT_INCLUDED.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the library with its checks; exit 1 if any prototype fails them."""
    del argv
    text = table()
    print(text)
    return 1 if "PROBLEMS" in text else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
