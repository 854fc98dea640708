"""Enumeration: ordered arrangements of mixed sites in small supercells, and compositions in a chemical space.

Arrangements: every supercell of the primitive cell up to a size (Hermite normal forms), and in each the
arrangements of the species over the mixed sites that are lexicographically smallest among their images
under the supercell's symmetry operations, so each symmetry orbit is produced once per supercell (the same
ordering in two different supercells is left to the deduplicator).

Compositions: the SMACT approach, with pymatgen's element data: one oxidation state per element, charge
neutrality, and every cation less electronegative than every anion.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from fractions import Fraction

import numpy as np
from pymatgen.core import Composition, Structure

from mi.candidates.generate.chemistry import electronegativity_ordered, oxidation_states

# Stand-in elements that give each site label its own species for the symmetry analysis.
_TAGS = ("H", "Li", "Be", "B", "C", "N", "O", "F", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "K", "Ca", "Sc", "Ti", "V")


def hnf_matrices(det: int) -> Iterator[np.ndarray]:
    """Every sublattice of index `det`, once: lower-triangular Hermite normal forms.

    Rows are the supercell vectors in units of the parent's (pymatgen's `make_supercell` convention), so the
    form is [[a,0,0],[b,c,0],[d,e,f]] with a*c*f = det, 0 <= b < a, 0 <= d < a, 0 <= e < c.
    """
    for a in range(1, det + 1):
        if det % a:
            continue
        for c in range(1, det // a + 1):
            if (det // a) % c:
                continue
            f = det // (a * c)
            for b in range(a):
                for d in range(a):
                    for e in range(c):
                        yield np.array([[a, 0, 0], [b, c, 0], [d, e, f]])


def hermite_normal_form(m: np.ndarray) -> np.ndarray:
    """The row-style lower-triangular HNF of an integer basis (rows), as `hnf_matrices` writes them."""
    h = [list(map(int, row)) for row in np.asarray(m)]
    for col, upto in ((2, 3), (1, 2)):  # gather each column's gcd in its diagonal row by row operations
        while True:
            rows = [r for r in range(upto) if h[r][col] != 0]
            if len(rows) <= 1:
                break
            pivot = min(rows, key=lambda r: abs(h[r][col]))
            for r in rows:
                if r != pivot:
                    q = h[r][col] // h[pivot][col]
                    h[r] = [x - q * y for x, y in zip(h[r], h[pivot])]
        rows = [r for r in range(upto) if h[r][col] != 0]
        if not rows:
            raise ValueError("singular basis")
        h[rows[0]], h[upto - 1] = h[upto - 1], h[rows[0]]
        if h[upto - 1][col] < 0:
            h[upto - 1] = [-x for x in h[upto - 1]]
    if h[0][0] < 0:
        h[0] = [-x for x in h[0]]
    a, c = h[0][0], h[1][1]
    h[1] = [x - (h[1][0] // a) * y for x, y in zip(h[1], h[0])]
    h[2] = [x - (h[2][1] // c) * y for x, y in zip(h[2], h[1])]
    h[2] = [x - (h[2][0] // a) * y for x, y in zip(h[2], h[0])]
    return np.array(h)


def distinct_supercells(det: int, rotations: list[np.ndarray]) -> list[np.ndarray]:
    """HNFs of index `det`, one per orbit under the parent's rotations (fractional, acting on columns).

    A rotation R maps the supercell rows H to H R^T; two supercells related so give the same orderings.
    """
    keep = []
    for h in hnf_matrices(det):
        key = tuple(h.ravel())
        images = (tuple(hermite_normal_form(h @ r.T).ravel()) for r in rotations)
        if all(key <= img for img in images):
            keep.append(h)
    return keep


def parent_rotations(structure: Structure, symprec: float = 1e-3) -> list[np.ndarray]:
    """The distinct rotation parts (fractional) of the symmetry of `structure`, sites told apart by label."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    ops = SpacegroupAnalyzer(_label_structure(structure), symprec=symprec).get_symmetry_operations(cartesian=False)
    unique = {tuple(np.round(op.rotation_matrix).astype(int).ravel()) for op in ops}
    return [np.array(u).reshape(3, 3) for u in sorted(unique)]


def ratios_for(n_sites: int, n_species: int, max_sites: int) -> list[tuple[tuple[Fraction, ...], int]]:
    """Every ratio of `n_species` species (all present) that `n_sites * k <= max_sites` sites can hold.

    Returns (ratio, smallest k) pairs in a stable order.
    """
    seen: dict[tuple[Fraction, ...], int] = {}
    k = 1
    while n_sites * k <= max_sites:
        total = n_sites * k
        for counts in _compositions(total, n_species):
            ratio = tuple(Fraction(c, total) for c in counts)
            seen.setdefault(ratio, k)
        k += 1
    return sorted(seen.items(), key=lambda kv: (kv[1], kv[0]))


def _compositions(total: int, parts: int) -> Iterator[tuple[int, ...]]:
    """Positive integer tuples of length `parts` summing to `total`."""
    for cut in itertools.combinations(range(1, total), parts - 1):
        bounds = (0, *cut, total)
        yield tuple(bounds[i + 1] - bounds[i] for i in range(parts))


def smallest_multiplier(n_sites: int, ratio: tuple[Fraction, ...], max_sites: int) -> int | None:
    """The smallest k with n_sites * k * r integer for every r, if n_sites * k <= max_sites."""
    denominator = math.lcm(*(r.denominator for r in ratio))
    k = denominator // math.gcd(denominator, n_sites)
    return k if n_sites * k <= max_sites else None


def _label_structure(structure: Structure) -> Structure:
    labels = sorted(set(structure.site_properties["label"]))
    if len(labels) > len(_TAGS):
        raise ValueError("too many site labels for the symmetry analysis")
    tag = {label: _TAGS[i] for i, label in enumerate(labels)}
    return Structure(structure.lattice, [tag[lb] for lb in structure.site_properties["label"]], structure.frac_coords)


def site_permutations(structure: Structure, indices: list[int], symprec: float = 1e-3) -> np.ndarray:
    """How the symmetry operations of `structure` (sites told apart by label) permute the sites `indices`.

    Row i maps position j to position perm[i, j] (positions within `indices`); row 0 is the identity.
    """
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    tagged = _label_structure(structure)
    ops = SpacegroupAnalyzer(tagged, symprec=symprec).get_symmetry_operations(cartesian=False)
    frac = np.mod(structure.frac_coords[indices], 1.0)
    perms = [np.arange(len(indices))]
    for op in ops:
        image = np.mod(op.operate_multi(frac), 1.0)
        delta = image[:, None, :] - frac[None, :, :]
        delta -= np.round(delta)
        dist = np.linalg.norm(delta @ structure.lattice.matrix, axis=2)
        perm = np.argmin(dist, axis=1)
        if dist[np.arange(len(perm)), perm].max() > 0.05 or len(set(perm.tolist())) != len(perm):
            continue  # not a permutation of these sites (numerical trouble): skip the operation
        perms.append(perm)
    return np.unique(np.array(perms), axis=0)


def _multiset_permutations(counts: list[int]) -> Iterator[tuple[int, ...]]:
    """Every sequence with counts[s] copies of s, in lexicographic order."""
    n = sum(counts)
    seq: list[int] = []
    left = list(counts)

    def rec() -> Iterator[tuple[int, ...]]:
        if len(seq) == n:
            yield tuple(seq)
            return
        for s in range(len(left)):
            if left[s]:
                left[s] -= 1
                seq.append(s)
                yield from rec()
                seq.pop()
                left[s] += 1

    yield from rec()


def distinct_arrangements(counts: list[int], perms: np.ndarray, limit: int) -> Iterator[tuple[int, ...]]:
    """Arrangements (species index per mixed site) that are the smallest of their symmetry orbit.

    Lexicographically smallest representatives come out in order, at most `limit` of them.
    """
    produced = 0
    inverse = np.argsort(perms, axis=1)  # image[j] = arrangement[inverse[j]]
    for arrangement in _multiset_permutations(counts):
        a = np.asarray(arrangement)
        images = a[inverse]
        # the arrangement is canonical when no image is lexicographically smaller
        diff = images - a
        first = np.argmax(diff != 0, axis=1)
        smaller = diff[np.arange(len(diff)), first] < 0
        if smaller.any():
            continue
        yield arrangement
        produced += 1
        if produced >= limit:
            return


# --- compositions -------------------------------------------------------------------------------------


def enumerate_compositions(
    elements: list[str],
    *,
    require: list[str] = (),  # type: ignore[assignment]
    max_elements: int = 4,
    max_stoichiometry: int = 8,
    max_atoms: int = 30,
    electronegativity_order: bool = True,
    stats: dict | None = None,
) -> Iterator[tuple[Composition, dict[str, int]]]:
    """Neutral compositions of 2..max_elements of `elements`, each once (first oxidation-state solution)."""
    stats = stats if stats is not None else {}
    seen: set[str] = set()
    ordered = sorted(set(elements), key=lambda e: (e not in require, elements.index(e)))
    for k in range(max(2, len(set(require))), max_elements + 1):
        for subset in itertools.combinations(ordered, k):
            if not set(require) <= set(subset):
                continue
            options = [
                [(q, False) for q in oxidation_states(e, "redox")] + [(q, True) for q in oxidation_states(e, "anion")]
                for e in subset
            ]
            grid = np.array(list(itertools.product(range(1, max_stoichiometry + 1), repeat=k)))
            grid = grid[grid.sum(axis=1) <= max_atoms]
            grid = grid[np.gcd.reduce(grid, axis=1) == 1]
            solution: dict[int, tuple] = {}  # grid row -> the first oxidation states that make it neutral
            for choice in itertools.product(*options):
                charges = np.array([q for q, _ in choice])
                if (charges > 0).all() or (charges < 0).all():
                    continue
                cations = [e for e, (q, _) in zip(subset, choice) if q > 0]
                anions = [e for e, (q, _) in zip(subset, choice) if q < 0]
                if electronegativity_order and not electronegativity_ordered(cations, anions):
                    stats["rejected_electronegativity"] = stats.get("rejected_electronegativity", 0) + 1
                    continue
                for row in np.flatnonzero(grid @ charges == 0):
                    solution.setdefault(int(row), choice)
            stats["examined"] = stats.get("examined", 0) + len(grid)
            stats["rejected_charge"] = stats.get("rejected_charge", 0) + len(grid) - len(solution)
            for row in sorted(solution):
                comp = Composition(dict(zip(subset, (int(x) for x in grid[row]))))
                formula = comp.reduced_formula
                if formula in seen:
                    stats["duplicates"] = stats.get("duplicates", 0) + 1
                    continue
                seen.add(formula)
                yield comp, {e: int(q) for e, (q, _) in zip(subset, solution[row])}
