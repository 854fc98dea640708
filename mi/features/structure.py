"""Structure descriptors, and the working-ion descriptors solid-electrolyte screens use.

Everything is computed from one neighbour list per structure (pymatgen's ``find_points_in_spheres``, the C
routine behind ``Structure.get_neighbor_list``) and array operations on it.

``structure`` set:

* ``density_g_cm3``, ``volume_per_atom_A3``;
* ``packing_fraction``: sum of 4/3 pi r^3 over atoms / cell volume, r the empirical atomic radius (Slater
  1964, pymatgen ``Element.atomic_radius``), or the calculated one (Clementi 1967) where none exists;
* coordination number (``cn_*``): pymatgen's ``MinimumDistanceNN`` rule, i.e. the neighbours of a site are
  those closer than 1.1 x its nearest-neighbour distance; mean, std, min and max over sites;
* bond length (``bond_length_*_A``): mean, std, min and max over those neighbour pairs;
* ``spacegroup_number``: spglib through pymatgen (symprec 0.1 A) for cells of at most 400 sites; NaN for
  larger cells or where spglib finds no symmetry.

``working_ion`` set (the ion is passed in, e.g. ``properties.working_ion``):

* ``site_fraction``: working-ion atoms / all atoms (from the composition when there is no structure);
* ``min_distance_A`` and ``mean_nn_distance_A``: shortest working-ion--working-ion distance, and the mean
  over working-ion sites of each one's nearest working-ion distance;
* ``volume_per_anion_A3``: cell volume / number of anions. Anions are species with a negative oxidation
  state where the structure carries them; otherwise the chalcogens O, S, Se, Te, the halogens F, Cl, Br, I
  and N; a structure with none of those takes its most electronegative element (P in Li3P);
* ``bvs_mean`` and ``bvs_deviation``: bond-valence sum of the working ion, sum_j exp((R_ij - d_ij) / 0.31)
  over neighbours within 4 A, with R_ij from the Brese & O'Keeffe (1991) element parameters pymatgen ships
  (``pymatgen.core.bond_valence.calculate_bv_sum``: same pairs, same signs); the deviation is
  |BVS - formal valence| (Li, Na, K 1; Mg, Ca, Zn 2; Al 3). No distance scaling (experimental cells).

Disorder (partial occupancies, mixed sites, vacancies) is handled with occupancy weights:

* a site counts as its total occupancy of atoms (volume per atom, site fraction, anions, packing);
* a neighbour contributes its occupancy to a coordination number, a pair of sites weighs the product of
  their occupancies in the bond-length statistics, and site statistics weigh each site by its occupancy
  (min and max are over sites, unweighted); an ordered structure gives plain counts;
* two partially occupied sites closer than 0.75 x the sum of their covalent radii (Magpie CovalentRadius)
  are alternative positions of one atom (split sites: they cannot both be occupied at that distance, and
  refined occupancies often add up to a little over 1), not neighbours; they are left out of
  coordination, bonds, working-ion distances, bond valences and graph edges;
* the working ion's own occupancy weighs its sites in the working-ion statistics; its bond-valence sum is
  that of the ion when present (neighbours weighted by their occupancies).

A structure whose neighbour search would be unreasonably large (a collapsed, flat or absurdly dense
cell), whose atoms overlap (closer than 0.1 A, not split sites), or whose species are not elements is
refused with a ValueError that says why. A candidate without a structure gets NaN for everything it cannot know.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from functools import cached_property, lru_cache

import numpy as np
from pymatgen.core import Composition, Element, Structure

from mi.features.composition import MAGPIE_PROPERTIES, MAX_Z, by_element, magpie_table

STRUCTURE_FEATURES: tuple[str, ...] = (
    "density_g_cm3",
    "volume_per_atom_A3",
    "packing_fraction",
    "cn_mean",
    "cn_std",
    "cn_min",
    "cn_max",
    "bond_length_mean_A",
    "bond_length_std_A",
    "bond_length_min_A",
    "bond_length_max_A",
    "spacegroup_number",
)
WORKING_ION_FEATURES: tuple[str, ...] = (
    "site_fraction",
    "min_distance_A",
    "mean_nn_distance_A",
    "volume_per_anion_A3",
    "bvs_mean",
    "bvs_deviation",
)
FORMAL_VALENCE = {"Li": 1, "Na": 1, "K": 1, "Mg": 2, "Ca": 2, "Zn": 2, "Al": 3}
ANION_ELEMENTS = frozenset({"N", "O", "S", "Se", "Te", "F", "Cl", "Br", "I"})

CN_TOLERANCE = 0.1  # MinimumDistanceNN's default
SEARCH_RADII_A = (4.0, 6.0, 8.0, 10.0)  # widened only while some site's neighbour shell is not yet inside
BVS_RADIUS_A = 4.0  # pymatgen BVAnalyzer's max_radius
SPACEGROUP_MAX_SITES = 400
SYMPREC_A = 0.1
OVERLAP_A = 0.1
MAX_PAIRS = 5_000_000  # ~250 MB of neighbour arrays; far beyond any real cell at these radii
MAX_IMAGE_POINTS = 2_000_000  # sites x periodic images searched; a real cell needs thousands
OCCUPANCY_TOL = 1e-6
# Two partially occupied sites closer than this fraction of their summed covalent radii cannot both hold an
# atom; real bonds are at least ~0.85 of that sum (C=O 1.2 A of 1.39 A, B-O 1.37 A of 1.5 A).
SPLIT_SITE_FACTOR = 0.75


def structure_feature_names() -> list[str]:
    return list(STRUCTURE_FEATURES)


def working_ion_feature_names() -> list[str]:
    return list(WORKING_ION_FEATURES)


@lru_cache(maxsize=1)
def _sphere_radii() -> np.ndarray:
    """Packing radius (A) by Z: empirical atomic radius, calculated where pymatgen has no empirical one."""
    radii = np.full(MAX_Z + 1, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns for every radius it lacks
        for z in range(1, MAX_Z + 1):
            element = Element.from_Z(z)
            for value in (element.atomic_radius, element.atomic_radius_calculated):
                if value is not None and float(value) > 0:
                    radii[z] = float(value)
                    break
    radii.setflags(write=False)
    return radii


@lru_cache(maxsize=1)
def _bond_valence_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(r, c, Pauling X, in pymatgen's electronegative list) by Z; NaN where pymatgen has no BV parameters."""
    from pymatgen.core.bond_valence import BV_PARAMS, ELECTRONEG  # loads YAML: only when first needed

    r = np.full(MAX_Z + 1, np.nan)
    c = np.full(MAX_Z + 1, np.nan)
    x = np.full(MAX_Z + 1, np.nan)
    negative = np.zeros(MAX_Z + 1, dtype=bool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no Pauling X for some elements: NaN
        for element, params in BV_PARAMS.items():
            r[element.Z], c[element.Z] = float(params["r"]), float(params["c"])
        for z in range(1, MAX_Z + 1):
            x[z] = float(Element.from_Z(z).X)
    for element in ELECTRONEG:
        negative[element.Z] = True
    return r, c, x, negative


def neighbor_pairs(lattice: np.ndarray, coords: np.ndarray, centers: np.ndarray, radius: float):
    """(centre index, neighbour index, image, distance) of all points within `radius`, self excluded."""
    from pymatgen.optimization.neighbors import find_points_in_spheres

    i, j, images, d = find_points_in_spheres(
        np.ascontiguousarray(coords, dtype=float),
        np.ascontiguousarray(centers, dtype=float),
        r=float(radius),
        pbc=np.ones(3, dtype=np.int64),
        lattice=np.ascontiguousarray(lattice, dtype=float),
        tol=1e-8,
    )
    keep = ~((i == j) & (d <= 1e-8))
    return i[keep].astype(np.int64), j[keep].astype(np.int64), images[keep], d[keep]


class StructureAnalysis:
    """Per-site arrays of one structure and its neighbour list, computed once and shared by feature sets."""

    def __init__(self, structure: Structure):
        volume = float(structure.volume)
        if not (volume > 0 and math.isfinite(volume)):
            raise ValueError(f"cell volume is {volume:g} A^3; a structure needs a positive volume")
        site_of, z, occupancy, oxidation = [], [], [], []
        for index, site in enumerate(structure):
            for species, occ in site.species.items():
                number = int(getattr(species, "Z", 0))
                if not 1 <= number <= MAX_Z:
                    raise ValueError(f"site #{index}: species {species} is not an element with Z = 1..{MAX_Z}")
                if not float(occ) > 0:
                    raise ValueError(f"site #{index}: occupancy of {species} is {occ}")
                site_of.append(index)
                z.append(number)
                occupancy.append(float(occ))
                oxidation.append(getattr(species, "oxi_state", None))
        if not site_of:
            raise ValueError("the structure has no atoms")
        self.structure = structure
        self.volume = volume
        self.n_sites = len(structure)
        self.species_site = np.asarray(site_of, dtype=np.int64)
        self.species_z = np.asarray(z, dtype=np.int64)
        self.species_occupancy = np.asarray(occupancy)
        self.species_oxidation = oxidation
        self.occupancy = np.bincount(self.species_site, weights=self.species_occupancy, minlength=self.n_sites)
        self.lattice = np.asarray(structure.lattice.matrix, dtype=float)
        self.coords = np.asarray(structure.cart_coords, dtype=float)
        covalent = magpie_table().values[:, MAGPIE_PROPERTIES.index("CovalentRadius")] / 100.0  # pm -> A
        weighted = self.species_occupancy * covalent[self.species_z]
        self.covalent_radius = np.bincount(self.species_site, weights=weighted, minlength=self.n_sites) / self.occupancy
        self.partial = self.occupancy < 1.0 - OCCUPANCY_TOL

    @property
    def n_atoms(self) -> float:
        return float(self.occupancy.sum())

    def check_search_size(self, radius: float, n_points: int | None = None) -> None:
        """Refuse a neighbour search among `n_points` sites (default all) that no real cell needs."""
        n = self.n_sites if n_points is None else n_points
        # The search visits every periodic image within `radius`: a nearly flat cell has millions.
        heights = self.volume / np.linalg.norm(np.cross(self.lattice[[1, 2, 0]], self.lattice[[2, 0, 1]]), axis=1)
        images = float(np.prod(2 * np.ceil(radius / heights) + 1))
        if n * images > MAX_IMAGE_POINTS:
            raise ValueError(
                f"the cell is only {heights.min():.3g} A thick: a {radius:g} A neighbour search would visit "
                f"~{n * images:.3g} periodic images (a collapsed cell)"
            )
        expected = n * (n / self.volume) * 4.0 / 3.0 * math.pi * radius**3
        if expected > MAX_PAIRS:
            raise ValueError(
                f"a {radius:g} A neighbour list of this cell would hold ~{expected:.3g} pairs "
                f"({self.n_sites} sites in {self.volume:.4g} A^3): collapsed or far too large a cell"
            )

    def valid_pairs(self, i: np.ndarray, j: np.ndarray, d: np.ndarray) -> np.ndarray:
        """False for split-site pairs (alternative positions of one atom); raises on overlapping atoms."""
        alternative = (
            self.partial[i]
            & self.partial[j]
            & (d < SPLIT_SITE_FACTOR * (self.covalent_radius[i] + self.covalent_radius[j]))
        )
        overlap = ~alternative & (d < OVERLAP_A)
        if overlap.any():
            k = int(np.flatnonzero(overlap)[0])
            raise ValueError(f"sites #{i[k]} and #{j[k]} overlap ({d[k]:.3f} A apart)")
        return ~alternative

    @cached_property
    def pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """Valid neighbour pairs (i, j, d) out to a radius that holds every site's 1.1 x nearest shell."""
        for radius in SEARCH_RADII_A:
            self.check_search_size(radius)
            i, j, _, d = neighbor_pairs(self.lattice, self.coords, self.coords, radius)
            keep = self.valid_pairs(i, j, d)
            i, j, d = i[keep], j[keep], d[keep]
            nearest = np.full(self.n_sites, np.inf)
            np.minimum.at(nearest, i, d)
            if np.all((1.0 + CN_TOLERANCE) * nearest <= radius):
                break
        return i, j, d, radius

    @cached_property
    def shells(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pairs (i, j, d) with j among i's MinimumDistanceNN neighbours (d < 1.1 x i's nearest distance)."""
        i, j, d, _ = self.pairs
        nearest = np.full(self.n_sites, np.inf)
        np.minimum.at(nearest, i, d)
        inside = d < (1.0 + CN_TOLERANCE) * nearest[i]
        return i[inside], j[inside], d[inside]


def _weighted_stats(values: np.ndarray, weights: np.ndarray) -> list[float]:
    """mean, std (population), min, max; NaN when there are no values."""
    if values.size == 0 or not weights.sum() > 0:
        return [math.nan] * 4
    mean = float(np.sum(weights * values) / np.sum(weights))
    std = math.sqrt(float(np.sum(weights * (values - mean) ** 2) / np.sum(weights)))
    return [mean, std, float(values.min()), float(values.max())]


def _spacegroup_number(structure: Structure) -> float:
    if len(structure) > SPACEGROUP_MAX_SITES:
        return math.nan
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        return float(SpacegroupAnalyzer(structure, symprec=SYMPREC_A).get_space_group_number())
    except Exception:  # noqa: BLE001 - spglib finds no dataset: the space group is unknown, not an error
        return math.nan


def structure_row(analysis: StructureAnalysis) -> np.ndarray:
    """The ``structure`` set of one structure, in the order of `STRUCTURE_FEATURES`."""
    a = analysis
    radii = _sphere_radii()[a.species_z]
    spheres = float(np.sum(a.species_occupancy * 4.0 / 3.0 * math.pi * radii**3))
    i, j, d = a.shells
    cn = np.bincount(i, weights=a.occupancy[j], minlength=a.n_sites)
    row = [float(a.structure.density), a.volume / a.n_atoms, spheres / a.volume]
    row += _weighted_stats(cn, a.occupancy)
    row += _weighted_stats(d, a.occupancy[i] * a.occupancy[j])
    row.append(_spacegroup_number(a.structure))
    return np.asarray(row, dtype=float)


def _element(symbol: str) -> Element:
    try:
        return Element(symbol)
    except ValueError:
        raise ValueError(f"working ion {symbol!r} is not an element") from None


def _anion_count(a: StructureAnalysis) -> float:
    oxidation = a.species_oxidation
    if all(o is not None for o in oxidation):
        negative = np.array([o < 0 for o in oxidation])
        if negative.any():
            return float(a.species_occupancy[negative].sum())
    symbols = magpie_table().symbols
    is_anion = np.array([symbols[z] in ANION_ELEMENTS for z in a.species_z])
    if not is_anion.any():
        x = magpie_table().values[:, MAGPIE_PROPERTIES.index("Electronegativity")]
        is_anion = a.species_z == a.species_z[np.argmax(x[a.species_z])]
    return float(a.species_occupancy[is_anion].sum())


def _ion_distances(a: StructureAnalysis, ion_occupancy: np.ndarray) -> tuple[float, float]:
    """Shortest working-ion pair distance, and the ion-weighted mean of each ion site's nearest one."""
    sites = np.flatnonzero(ion_occupancy > 0)
    coords = a.coords[sites]
    longest_axis = float(np.max(np.linalg.norm(a.lattice, axis=1)))
    # A site's own periodic images lie within the longest cell vector, so the second radius always finds one.
    for radius in (6.0, max(6.0, longest_axis) + 0.01):
        a.check_search_size(radius, len(sites))
        i, j, _, d = neighbor_pairs(a.lattice, coords, coords, radius)
        keep = a.valid_pairs(sites[i], sites[j], d)
        i, d = i[keep], d[keep]
        nearest = np.full(len(sites), np.inf)
        np.minimum.at(nearest, i, d)
        if np.all(np.isfinite(nearest)):
            break
    weights = ion_occupancy[sites]
    found = np.isfinite(nearest)
    if not found.any():
        return math.nan, math.nan
    mean = float(np.sum(weights[found] * nearest[found]) / np.sum(weights[found]))
    return float(nearest[found].min()), mean


def _bond_valence_sums(a: StructureAnalysis, ion_z: int, ion_sites: np.ndarray) -> np.ndarray:
    """Bond-valence sum of the ion on each of `ion_sites` (NaN where a neighbour lacks BV parameters)."""
    r, c, x, negative = _bond_valence_tables()
    i, j, d, _ = a.pairs
    near = (d <= BVS_RADIUS_A) & np.isin(i, ion_sites)
    i, j, d = i[near], j[near], d[near]
    # Expand neighbour sites into their species (CSR by site), each weighted by its occupancy.
    starts = np.searchsorted(a.species_site, np.arange(a.n_sites))
    counts = np.bincount(a.species_site, minlength=a.n_sites)
    repeat = counts[j]
    pair = np.repeat(np.arange(len(j)), repeat)
    species = np.repeat(starts[j], repeat) + (np.arange(repeat.sum()) - np.repeat(np.cumsum(repeat) - repeat, repeat))
    z2 = a.species_z[species]
    bonded = (negative[ion_z] | negative[z2]) & (z2 != ion_z)
    pair, z2 = pair[bonded], z2[bonded]
    occupancy = a.species_occupancy[species[bonded]]
    r1, c1, r2, c2 = r[ion_z], c[ion_z], r[z2], c[z2]
    big_r = r1 + r2 - r1 * r2 * (np.sqrt(c1) - np.sqrt(c2)) ** 2 / (c1 * r1 + c2 * r2)
    sign = np.where(x[ion_z] < x[z2], 1.0, -1.0)
    valence = occupancy * np.exp((big_r - d[pair]) / 0.31) * sign
    out = np.zeros(a.n_sites)
    np.add.at(out, i[pair], valence)
    return out[ion_sites]


def working_ion_row(analysis: StructureAnalysis, working_ion: str) -> np.ndarray:
    """The ``working_ion`` set of one structure, in the order of `WORKING_ION_FEATURES`."""
    a = analysis
    ion_z = _element(working_ion).Z
    ion_occupancy = np.bincount(
        a.species_site, weights=a.species_occupancy * (a.species_z == ion_z), minlength=a.n_sites
    )
    fraction = float(ion_occupancy.sum() / a.n_atoms)
    anions = _anion_count(a)
    per_anion = a.volume / anions if anions > 0 else math.nan
    if not ion_occupancy.any():
        return np.array([fraction, math.nan, math.nan, per_anion, math.nan, math.nan])
    shortest, mean_nearest = _ion_distances(a, ion_occupancy)
    sites = np.flatnonzero(ion_occupancy > 0)
    weights = ion_occupancy[sites]
    bvs = _bond_valence_sums(a, ion_z, sites)
    if np.isnan(bvs).any() or working_ion not in FORMAL_VALENCE:
        bvs_mean = bvs_deviation = math.nan
    else:
        bvs_mean = float(np.sum(weights * bvs) / weights.sum())
        bvs_deviation = float(np.sum(weights * np.abs(bvs - FORMAL_VALENCE[working_ion])) / weights.sum())
    return np.array([fraction, shortest, mean_nearest, per_anion, bvs_mean, bvs_deviation])


def working_ion_fraction(composition: Composition, working_ion: str) -> float:
    """Working-ion atoms / all atoms of a composition (for candidates without a structure)."""
    element = _element(working_ion)
    elements = by_element(composition)
    total = float(elements.num_atoms)
    if not total > 0:
        raise ValueError("the composition has no atoms")
    return float(elements[element]) / total


def structure_features(structures: Sequence[Structure | None]) -> np.ndarray:
    """The ``structure`` set of each structure, shape (n, len(STRUCTURE_FEATURES)); None gives a NaN row."""
    out = np.full((len(structures), len(STRUCTURE_FEATURES)), np.nan)
    for k, structure in enumerate(structures):
        if structure is not None:
            out[k] = structure_row(StructureAnalysis(structure))
    return out


def working_ion_features(
    structures: Sequence[Structure | None], compositions: Sequence[Composition], working_ion: str
) -> np.ndarray:
    """The ``working_ion`` set of each candidate; without a structure, only the site fraction is known."""
    out = np.full((len(structures), len(WORKING_ION_FEATURES)), np.nan)
    for k, (structure, composition) in enumerate(zip(structures, compositions)):
        if structure is not None:
            out[k] = working_ion_row(StructureAnalysis(structure), working_ion)
        else:
            out[k, 0] = working_ion_fraction(composition, working_ion)
    return out
