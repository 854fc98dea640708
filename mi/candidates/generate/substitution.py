"""Substitution into a prototype: per-site allowed species, data-mined substitutions, mixed occupancy.

One `PrototypeJob` becomes a lazy stream of `Generated` structures. Per combination of site species the
stream checks, before any structure is built:
  * charge balance over common oxidation states (mixed valence allowed, as in LiMn2O4);
  * the ionic-radius tolerance: every substituent's Shannon radius (at the site's coordination, in the
    oxidation state closest to the site's published one) within `radius_tolerance` of the original's;
then scales the cell with the ionic volume (sum of r^3 over the sites) of the new ions.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from pymatgen.core import Composition, Lattice, Structure

from mi.candidates.generate import enumeration
from mi.candidates.generate.chemistry import charge_balanced, site_radius
from mi.candidates.generate.prototypes import Prototype, Site, get, ordered
from mi.config import GenerateFilters, MixConfig, PrototypeJob

Species = str | dict[str, float]  # an element, or a virtual mixture {element: fraction}


@dataclass
class Generated:
    """One generated candidate (a structure, or a composition for composition-only screens)."""

    id: str
    family: str
    composition: Composition
    structure: Structure | None
    meta: dict = field(default_factory=dict)
    # Arrangements enumerated for one mixture are distinct by construction (one supercell per orbit of the
    # parent's rotations, one arrangement per orbit of the supercell's symmetry): the deduplicator need not
    # compare candidates that share this key.
    group: str | None = None


@dataclass
class FamilyStats:
    considered: int = 0  # site-species combinations looked at
    rejected_charge: int = 0
    rejected_radius: int = 0
    rejected_other: int = 0
    generated: int = 0  # structures built (before deduplication)
    duplicates: int = 0
    kept: int = 0
    reasons: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "reasons"}
        out["top_rejection_reasons"] = dict(self.reasons.most_common(5))
        return out


@functools.lru_cache(maxsize=1)
def _probability_model():
    from pymatgen.analysis.structure_prediction.substitution_probability import SubstitutionProbability

    return SubstitutionProbability()


@functools.lru_cache(maxsize=None)
def probable_substituents(element: str, oxi: float, threshold: float, max_species: int) -> tuple[str, ...]:
    """Elements pymatgen's data-mined model ranks likely to replace element^oxi (conditional p >= threshold).

    Fractional mean states (Mn3.5+) ask for both neighbouring integer states. Elements, most probable first.
    """
    from pymatgen.core import Species as PmgSpecies

    model = _probability_model()
    best: dict[str, float] = {}
    for q in sorted({math.floor(oxi), math.ceil(oxi)}):
        try:
            fixed = PmgSpecies(element, int(q))
            if fixed not in model.species:
                continue
        except ValueError:
            continue
        for sp in model.species:
            p = model.cond_prob(sp, fixed)
            if p >= threshold and p > best.get(sp.symbol, 0.0):
                best[sp.symbol] = p
    ranked = sorted(best, key=lambda e: (-best[e], e))
    return tuple(ranked[:max_species])


@dataclass(frozen=True)
class _Template:
    """A cell to fill: lattice, fractional coordinates and the label of every site."""

    lattice: np.ndarray
    frac: np.ndarray
    labels: tuple[str, ...]
    hnf: tuple[tuple[int, ...], ...] | None = None

    def label_counts(self) -> Counter:
        return Counter(self.labels)


def _base(job: PrototypeJob) -> tuple[Prototype, _Template]:
    proto = get(job.prototype)
    s = _base_structure(proto.id, job.cell)
    return proto, _Template(s.lattice.matrix.copy(), s.frac_coords.copy(), tuple(s.site_properties["label"]))


@functools.lru_cache(maxsize=None)
def _base_structure(prototype_id: str, cell: str) -> Structure:
    s = ordered(prototype_id)
    if cell == "primitive":
        s = s.get_primitive_structure(use_site_props=True)
    return s


@functools.lru_cache(maxsize=None)
def _supercell(prototype_id: str, cell: str, hnf: tuple[tuple[int, ...], ...]) -> _Template:
    s = _base_structure(prototype_id, cell).copy()
    s.make_supercell(np.array(hnf))
    s = s.get_reduced_structure("LLL")
    return _Template(s.lattice.matrix.copy(), s.frac_coords.copy(), tuple(s.site_properties["label"]), hnf)


@functools.lru_cache(maxsize=None)
def _distinct_supercells(prototype_id: str, cell: str, det: int) -> list[np.ndarray]:
    """Supercells of index `det`, one per orbit of the prototype's rotations (no repeated orderings)."""
    rotations = enumeration.parent_rotations(_base_structure(prototype_id, cell))
    return enumeration.distinct_supercells(det, rotations)


@functools.lru_cache(maxsize=None)
def _permutations(prototype_id: str, cell: str, hnf: tuple[tuple[int, ...], ...], mixed: tuple[str, ...]) -> tuple:
    t = _supercell(prototype_id, cell, hnf)
    s = Structure(Lattice(t.lattice), ["H"] * len(t.labels), t.frac, site_properties={"label": list(t.labels)})
    indices = [i for i, lb in enumerate(t.labels) if lb in mixed]
    return indices, enumeration.site_permutations(s, indices)


def _site_options(job: PrototypeJob, proto: Prototype) -> tuple[list[tuple[str, tuple[str, ...], tuple[str, ...]]], dict]:
    """Varying keys as (key, labels, allowed elements), and the labels each mix spec covers."""
    labels = [s.label for s in proto.sites if s.keep != 0]
    by_element: dict[str, list[str]] = {}
    for s in proto.sites:
        if s.keep != 0:
            by_element.setdefault(s.species, []).append(s.label)

    def covered(key: str) -> list[str]:
        return [key] if key in labels else [lb for lb in by_element.get(key, []) if lb not in job.sites]

    mixes = {i: tuple(covered(m.site)) for i, m in enumerate(job.mix)}
    mixed = {lb for lbs in mixes.values() for lb in lbs}
    keys: list[tuple[str, tuple[str, ...], list[str]]] = []
    assigned: set[str] = set(mixed)
    for key, allowed in job.sites.items():
        lbs = tuple(lb for lb in covered(key) if lb not in assigned)
        if lbs:
            keys.append((key, lbs, list(dict.fromkeys(allowed))))
            assigned.update(lbs)
    prob = job.substitution_probability
    if prob is not None:
        targets = prob.sites or [s.label for s in proto.sites if s.role != "anion" and s.keep != 0]
        for target in targets:
            for lb in covered(target):
                site = proto.site(lb)
                extra = probable_substituents(site.species, site.oxi, prob.threshold, prob.max_species)
                for entry in keys:
                    if lb in entry[1]:
                        entry[2].extend(e for e in extra if e not in entry[2])
                        break
                else:
                    if lb not in assigned:
                        keys.append((lb, (lb,), [site.species, *(e for e in extra if e != site.species)]))
                        assigned.add(lb)
    return [(k, lbs, tuple(opts)) for k, lbs, opts in keys], mixes


def _mix_options(mix: MixConfig, n_sites: int) -> list[tuple[tuple[str, ...], tuple[Fraction, ...]]]:
    """(species, ratio) pairs one mix spec asks for: its fractions, or every ratio its cells can hold."""
    if mix.fractions:
        species = tuple(mix.species)
        return [(species, tuple(Fraction(f).limit_denominator(1000) for f in row)) for row in mix.fractions]
    subsets = itertools.combinations(mix.species, mix.choose) if mix.choose else [tuple(mix.species)]
    return [
        (tuple(subset), ratio)
        for subset in subsets
        for ratio, _ in enumeration.ratios_for(n_sites, len(subset), mix.max_sites)
    ]


def _digest(*parts) -> str:
    return hashlib.blake2b(repr(parts).encode(), digest_size=5).hexdigest()


def substitute(job: PrototypeJob, filters: GenerateFilters, stats: FamilyStats) -> Iterator[Generated]:
    """Every candidate one job makes, lazily, in a deterministic order."""
    proto, base = _base(job)
    family = job.name or proto.id
    sites = {s.label: s for s in proto.sites}
    keys, mixes = _site_options(job, proto)
    prim_counts = base.label_counts()
    enum_mixes = [(i, m) for i, m in enumerate(job.mix) if m.mode == "enumerate"]
    virt_mixes = [(i, m) for i, m in enumerate(job.mix) if m.mode == "virtual"]
    option_lists = {i: _mix_options(m, sum(prim_counts[lb] for lb in mixes[i])) for i, m in enumerate(job.mix)}
    arrangement_cache: dict = {}

    for combo in itertools.product(*(opts for _, _, opts in keys)):
        element_of = {lb: sites[lb].species for lb in prim_counts}
        for (_, lbs, _), el in zip(keys, combo):
            for lb in lbs:
                element_of[lb] = el
        for ratio_combo in itertools.product(*(option_lists[i] for i, _ in enumerate(job.mix))):
            stats.considered += 1
            species_of = {i: opt[0] for i, opt in enumerate(ratio_combo)}
            ratio_of = {i: opt[1] for i, opt in enumerate(ratio_combo)}
            mixture: dict[str, dict[str, Fraction]] = {}
            for i, _ in enumerate(job.mix):
                for lb in mixes[i]:
                    mixture[lb] = dict(zip(species_of[i], ratio_of[i]))
            problem = _check(proto, sites, prim_counts, element_of, mixture, filters)
            if problem is not None:
                kind, reason = problem
                setattr(stats, kind, getattr(stats, kind) + 1)
                stats.reasons[reason] += 1
                continue
            scale = _volume_scale(sites, prim_counts, element_of, mixture) if filters.rescale_volume else 1.0
            site_record = {lb: _species_at(lb, element_of, mixture) for lb in prim_counts}
            if virt_mixes:
                # a virtual mixture is a composition-level candidate: the formula of the mixed cell, no structure
                species = [_species_at(lb, element_of, mixture) for lb in base.labels]
                composition = Composition()
                for sp in species:
                    composition += Composition(sp) if isinstance(sp, dict) else Composition({sp: 1})
                stats.generated += 1
                meta = {"family": family, "prototype": proto.id, "sites": site_record, "virtual": True}
                cid = f"{family}:{composition.reduced_formula}:{_digest(proto.id, job.cell, (combo, ratio_combo))}"
                yield Generated(cid, family, composition, None, meta)
                continue
            if not enum_mixes:
                species = [_species_at(lb, element_of, mixture) for lb in base.labels]
                yield _make(family, proto, job, base, species, scale, site_record, (combo, ratio_combo), stats)
                continue
            # ordered arrangements of the enumerated mixes, in the smallest supercells that hold the ratios
            key = tuple(ratio_of[i] for i, _ in enum_mixes)
            if key not in arrangement_cache:
                arrangement_cache[key] = list(_arrangements(job, proto, prim_counts, mixes, enum_mixes, ratio_of))
            names = [species_of[i] for i, _ in enum_mixes]
            if not arrangement_cache[key]:
                stats.rejected_other += 1
                stats.reasons["ratio needs a supercell larger than max_sites"] += 1
                continue
            for hnf, positions, arrangement in arrangement_cache[key]:
                t = _supercell(proto.id, job.cell, hnf)
                species: list[Species] = [element_of[lb] for lb in t.labels]
                for pos, (block, s) in zip(positions, arrangement):
                    species[pos] = names[block][s]
                g = _make(family, proto, job, t, species, scale, site_record, (combo, ratio_combo, hnf, arrangement), stats)
                g.group = _digest(family, proto.id, job.cell, combo, ratio_combo)
                yield g


def _species_at(label: str, element_of: dict[str, str], mixture: dict[str, dict[str, Fraction]]) -> Species:
    if label in mixture:
        return {e: float(f) for e, f in mixture[label].items()}
    return element_of[label]


def _arrangements(
    job: PrototypeJob,
    proto: Prototype,
    prim_counts: Counter,
    mixes: dict[int, tuple[str, ...]],
    enum_mixes: list[tuple[int, MixConfig]],
    ratio_of: dict[int, tuple[Fraction, ...]],
) -> Iterator[tuple[tuple[tuple[int, ...], ...], list[int], list[tuple[int, int]]]]:
    """(hnf, site positions, (mix block, species index) per position): the distinct arrangements of one ratio set."""
    n_sites = {i: sum(prim_counts[lb] for lb in mixes[i]) for i, _ in enum_mixes}
    k = 1
    for i, m in enum_mixes:
        ki = enumeration.smallest_multiplier(n_sites[i], ratio_of[i], m.max_sites)
        if ki is None:
            return
        k = math.lcm(k, ki)
    if any(n_sites[i] * k > m.max_sites for i, m in enum_mixes):
        return
    limit = min(m.max_arrangements for _, m in enum_mixes)
    mixed_labels = tuple(sorted({lb for i, _ in enum_mixes for lb in mixes[i]}))
    produced = 0
    for hnf in _distinct_supercells(proto.id, job.cell, k):
        hnf_key = tuple(tuple(int(x) for x in row) for row in hnf)
        indices, perms = _permutations(proto.id, job.cell, hnf_key, mixed_labels)
        t = _supercell(proto.id, job.cell, hnf_key)
        # positions grouped per mix, so that each block only takes its own species
        blocks = [[p for p, idx in enumerate(indices) if t.labels[idx] in mixes[i]] for i, _ in enum_mixes]
        order = [p for block in blocks for p in block]
        perms_in_order = _reorder(perms, order)
        counts = [[int(r * len(block)) for r in ratio_of[i]] for (i, _), block in zip(enum_mixes, blocks)]
        which = [b for b, block in enumerate(blocks) for _ in block]
        for arrangement in _block_arrangements(counts, perms_in_order, limit - produced):
            yield hnf_key, [indices[p] for p in order], list(zip(which, arrangement))
            produced += 1
            if produced >= limit:
                return


def _reorder(perms: np.ndarray, order: list[int]) -> np.ndarray:
    """Permutations re-expressed on positions listed in `order`."""
    where = np.empty(len(order), dtype=int)
    where[order] = np.arange(len(order))
    return where[perms[:, order]]


def _block_arrangements(counts: list[list[int]], perms: np.ndarray, limit: int) -> Iterator[tuple[int, ...]]:
    """Canonical arrangements of several blocks (each with its own species counts), concatenated."""
    offsets = np.cumsum([0, *(len(c) for c in counts)])[:-1]
    per_block = [list(enumeration._multiset_permutations(c)) for c in counts]
    inverse = np.argsort(perms, axis=1)
    produced = 0
    for parts in itertools.product(*per_block):
        a = np.concatenate([np.asarray(p) + off for p, off in zip(parts, offsets)])
        diff = a[inverse] - a
        first = np.argmax(diff != 0, axis=1)
        if (diff[np.arange(len(diff)), first] < 0).any():
            continue
        yield tuple(int(x) for x in np.concatenate([np.asarray(p) for p in parts]))
        produced += 1
        if produced >= limit:
            return


def _check(
    proto: Prototype,
    sites: dict[str, Site],
    counts: Counter,
    element_of: dict[str, str],
    mixture: dict[str, dict[str, Fraction]],
    filters: GenerateFilters,
) -> tuple[str, str] | None:
    """None if the combination passes the filters, else (stats field, reason)."""
    if filters.charge_balance:
        denominator = math.lcm(1, *(f.denominator for mix in mixture.values() for f in mix.values()))
        groups: Counter = Counter()
        for lb, n in counts.items():
            role = sites[lb].role
            if lb in mixture:
                for e, f in mixture[lb].items():
                    groups[(e, role)] += int(n * f * denominator)
            else:
                groups[(element_of[lb], role)] += n * denominator
        if not charge_balanced(tuple(sorted((e, role, n) for (e, role), n in groups.items()))):
            return "rejected_charge", "not charge balanced"
    if filters.radius_tolerance is not None:
        for lb in counts:
            site = sites[lb]
            new = list(mixture[lb]) if lb in mixture else [element_of[lb]]
            r0 = site_radius(site.species, float(site.oxi), site.cn, site.role, site.species)
            for e in new:
                if e == site.species:
                    continue
                r = site_radius(e, float(site.oxi), site.cn, site.role, site.species)
                if r is None or r0 is None:
                    return "rejected_radius", f"no ionic radius for {e} on {lb}"
                if abs(r - r0) / r0 > filters.radius_tolerance:
                    return "rejected_radius", f"radius of {e} on {site.species} site"
    return None


def _volume_scale(
    sites: dict[str, Site], counts: Counter, element_of: dict[str, str], mixture: dict[str, dict[str, Fraction]]
) -> float:
    """Linear scale factor: cube root of the ratio of summed ionic volumes (r^3), new over published."""
    new = old = 0.0
    for lb, n in counts.items():
        site = sites[lb]
        r0 = site_radius(site.species, float(site.oxi), site.cn, site.role, site.species)
        if r0 is None:
            continue
        parts = mixture[lb].items() if lb in mixture else [(element_of[lb], Fraction(1))]
        r3 = 0.0
        for e, f in parts:
            r = site_radius(e, float(site.oxi), site.cn, site.role, site.species)
            r3 += float(f) * (r if r is not None else r0) ** 3
        new += n * r3
        old += n * r0**3
    return (new / old) ** (1.0 / 3.0) if old > 0 else 1.0


def _make(
    family: str,
    proto: Prototype,
    job: PrototypeJob,
    template: _Template,
    species: list[Species],
    scale: float,
    site_record: dict,
    key: tuple,
    stats: FamilyStats,
) -> Generated:
    structure = Structure(Lattice(template.lattice * scale), species, template.frac)
    composition = structure.composition
    formula = composition.reduced_formula
    cid = f"{family}:{formula}:{_digest(proto.id, job.cell, key)}"
    meta = {
        "family": family,
        "prototype": proto.id,
        "sites": site_record,
        "volume_scale": round(scale**3, 4),
    }
    if template.hnf is not None:
        meta["supercell"] = [list(r) for r in template.hnf]
    stats.generated += 1
    return Generated(cid, family, composition, structure, meta)
