"""Substitution into a prototype: per-site allowed species, data-mined substitutions, mixed occupancy.

One `PrototypeJob` becomes a lazy stream of `Generated` structures. Per combination of site species the
stream checks, before any structure is built:
  * charge balance over common oxidation states (mixed valence allowed, as in LiMn2O4), which also fixes
    the state of every element (`chemistry.balanced_states`: of the neutral assignments, the one nearest the
    published states; Sb5+ beside Al3+ on NASICON's Zr4+ site, Fe2+ in tavorite LiFeSO4F);
  * the ionic-radius tolerance: every substituent's Shannon radius (at the site's coordination, in that
    state) within `radius_tolerance` of the original's;
then scales the cell by the change in first-shell bond lengths (`volume_rule="bond_length"`, the default):
for every cation-anion bond of the ordered prototype, the ratio of Shannon radius sums new over published,
(r_cation' + r_anion') / (r_cation + r_anion), each radius at its site's coordination (a virtual or enumerated
mixture: the fraction-weighted radius), each ion in its assigned state (the host too: V2+ in LiVSO4F made
from LiVPO4F); the linear scale is the mean ratio over the bonds. Cell edges follow
bond lengths, so this tracks published volumes better than the older rule kept as `volume_rule="ionic_volume"`
(the cube root of the summed ionic volumes, r^3 over the sites, new over published), in which the large anions
dominate: experiments/benchmarks/cell_volume.py compares both, and pymatgen's RLSVolumePredictor, with
published volumes.
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
from typing import Literal

import numpy as np
from pymatgen.core import Composition, Lattice, Structure

from mi.candidates.generate import enumeration
from mi.candidates.generate.chemistry import balanced_states, site_radius, state_radius
from mi.candidates.generate.prototypes import Prototype, Site, get, ordered
from mi.config import GenerateFilters, MixConfig, PrototypeJob

Species = str | dict[str, float]  # an element, or a virtual mixture {element: fraction}
States = dict[tuple[str, str], float]  # (element, role of its sites) -> (mean) oxidation state in the cell
VolumeRule = Literal["bond_length", "ionic_volume"]
VOLUME_RULES: tuple[str, ...] = ("bond_length", "ionic_volume")
# A cation-anion pair this much longer than the sum of its Shannon radii still counts as a first-shell bond,
# beyond the cation's published coordination: the 12 Li around Cl in Li3OCl (2.76 A, 1.15 x the sum) are
# bonds although Li's own coordination is two O. Long contacts (Li-S 3.20 A in LGPS, 1.32 x) are not.
BOND_TOLERANCE = 1.2


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


def substitute(
    job: PrototypeJob, filters: GenerateFilters, stats: FamilyStats, volume_rule: VolumeRule = "bond_length"
) -> Iterator[Generated]:
    """Every candidate one job makes, lazily, in a deterministic order.

    `volume_rule` is how the cell is rescaled where `filters.rescale_volume` is on (see the module docstring).
    """
    if volume_rule not in VOLUME_RULES:
        raise ValueError(f"volume_rule: {volume_rule!r} is not one of {', '.join(VOLUME_RULES)}")
    proto, base = _base(job)
    family = job.name or proto.id
    sites = {s.label: s for s in proto.sites}
    keys, mixes = _site_options(job, proto)
    prim_counts = base.label_counts()
    enum_mixes = [(i, m) for i, m in enumerate(job.mix) if m.mode == "enumerate"]
    virt_mixes = [(i, m) for i, m in enumerate(job.mix) if m.mode == "virtual"]
    option_lists = {i: _mix_options(m, sum(prim_counts[lb] for lb in mixes[i])) for i, m in enumerate(job.mix)}
    arrangement_cache: dict = {}
    needs_states = filters.charge_balance or filters.radius_tolerance is not None or filters.rescale_volume

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
            states = _states(sites, prim_counts, element_of, mixture) if needs_states else None
            problem = _check(sites, prim_counts, element_of, mixture, states, filters)
            if problem is not None:
                kind, reason = problem
                setattr(stats, kind, getattr(stats, kind) + 1)
                stats.reasons[reason] += 1
                continue
            if not filters.rescale_volume:
                scale = 1.0
            elif volume_rule == "bond_length":
                scale = _bond_length_scale(proto.id, sites, element_of, mixture, states)
            else:
                scale = _ionic_volume_scale(sites, prim_counts, element_of, mixture, states)
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


def _states(
    sites: dict[str, Site], counts: Counter, element_of: dict[str, str], mixture: dict[str, dict[str, Fraction]]
) -> States | None:
    """The oxidation state of every (element, role) in the cell being built, or None if it cannot be neutral.

    Counts are the sites of a cell that holds the mixtures' fractions (the primitive cell's, times the common
    denominator of the fractions), so a fractional mean state needs a cell big enough to hold it. Each group
    carries the published sites it fills, which rank the neutral assignments (`balanced_states`).
    """
    denominator = math.lcm(1, *(f.denominator for mix in mixture.values() for f in mix.values()))
    groups: dict[tuple[str, str], dict[tuple[str, float, int], int]] = {}
    for lb, n in counts.items():
        site = sites[lb]
        if lb in mixture:
            parts = [(e, n * f.numerator * (denominator // f.denominator)) for e, f in mixture[lb].items()]
        else:
            parts = [(element_of[lb], n * denominator)]
        published = (site.species, float(site.oxi), site.cn)
        for e, m in parts:
            if m:
                filled = groups.setdefault((e, site.role), {})
                filled[published] = filled.get(published, 0) + m
    key = tuple(
        (e, role, sum(filled.values()), tuple((*published, m) for published, m in sorted(filled.items())))
        for (e, role), filled in sorted(groups.items())
    )
    means = balanced_states(key)
    return None if means is None else {(e, role): q for (e, role, _, _), q in zip(key, means)}


def _check(
    sites: dict[str, Site],
    counts: Counter,
    element_of: dict[str, str],
    mixture: dict[str, dict[str, Fraction]],
    states: States | None,
    filters: GenerateFilters,
) -> tuple[str, str] | None:
    """None if the combination passes the filters, else (stats field, reason)."""
    if filters.charge_balance and states is None:
        return "rejected_charge", "not charge balanced"
    if filters.radius_tolerance is not None:
        for lb in counts:
            site = sites[lb]
            new = list(mixture[lb]) if lb in mixture else [element_of[lb]]
            r0 = _published_radius(site)
            for e in new:
                if e == site.species:  # the filter judges substituents; a host in another state is not one
                    continue
                r = _ion_radius(site, e, states)
                if r is None or r0 is None:
                    return "rejected_radius", f"no ionic radius for {e} on {lb}"
                if abs(r - r0) / r0 > filters.radius_tolerance:
                    return "rejected_radius", f"radius of {e} on {site.species} site"
    return None


def _published_radius(site: Site) -> float | None:
    return site_radius(site.species, float(site.oxi), site.cn, site.role, site.species)


def _ion_radius(site: Site, element: str, states: States | None) -> float | None:
    """Radius of `element` on `site` in its assigned state; the published ion's own radius where the element
    keeps the site's published state. Without a neutral assignment (charge balance off and none exists), the
    state nearest the site's published one (`site_radius`)."""
    oxi = None if states is None else states.get((element, site.role))
    if oxi is None:
        return site_radius(element, float(site.oxi), site.cn, site.role, site.species)
    if element == site.species and math.isclose(oxi, site.oxi, abs_tol=1e-9):
        return _published_radius(site)
    return state_radius(element, oxi, site.cn, site.role)


def _radius_on(
    site: Site,
    r0: float,
    element_of: dict[str, str],
    mixture: dict[str, dict[str, Fraction]],
    states: States | None,
    power: int = 1,
) -> float:
    """Mean of r**power over what fills `site` (one element, or a mixture by fraction), each in its assigned
    state; an ion without a Shannon radius counts with the published ion's, `r0`."""
    parts = mixture[site.label].items() if site.label in mixture else [(element_of[site.label], Fraction(1))]
    total = 0.0
    for e, f in parts:
        r = _ion_radius(site, e, states)
        total += float(f) * (r if r is not None else r0) ** power
    return total


def _ionic_volume_scale(
    sites: dict[str, Site],
    counts: Counter,
    element_of: dict[str, str],
    mixture: dict[str, dict[str, Fraction]],
    states: States | None,
) -> float:
    """Linear scale factor: cube root of the ratio of summed ionic volumes (r^3), new over published."""
    new = old = 0.0
    for lb, n in counts.items():
        r0 = _published_radius(sites[lb])
        if r0 is None:
            continue
        new += n * _radius_on(sites[lb], r0, element_of, mixture, states, power=3)
        old += n * r0**3
    return (new / old) ** (1.0 / 3.0) if old > 0 else 1.0


@dataclass(frozen=True)
class FirstShell:
    """The cation-anion bonds of a prototype's ordered structure, counted per pair of site labels."""

    labels: tuple[str, ...]  # the labels that take part in a bond
    cation: np.ndarray  # per label pair: index into `labels`
    anion: np.ndarray
    count: np.ndarray  # bonds of that pair in the ordered structure
    published: np.ndarray  # per label: Shannon radius of the published ion at the site


@functools.lru_cache(maxsize=None)
def first_shell(prototype_id: str) -> FirstShell:
    """First-shell bonds of a prototype (once per prototype: candidates only look them up).

    A bond joins a cation to one of its `cn` nearest anions (the published coordination; ties within 0.01 A
    kept), or to any anion closer than `BOND_TOLERANCE` times the sum of their published Shannon radii.
    Sites whose published ion has no Shannon radius take no part (their bonds count as unchanged).
    """
    proto = get(prototype_id)
    s = ordered(prototype_id)
    sites = {site.label: site for site in proto.sites}
    labels = s.site_properties["label"]
    radius = {lb: _published_radius(sites[lb]) for lb in set(labels)}
    is_anion = np.array([sites[lb].role == "anion" for lb in labels])
    known = np.array([radius[lb] is not None for lb in labels])
    r = np.array([radius[lb] or 0.0 for lb in labels])
    for cutoff in (4.0, 6.0, 9.0):  # wide enough for every cation's published coordination
        centre, neighbour, _, distance = s.get_neighbor_list(cutoff)
        keep = ~is_anion[centre] & is_anion[neighbour] & known[centre] & known[neighbour]
        centre, neighbour, distance = centre[keep], neighbour[keep], distance[keep]
        bond = distance <= BOND_TOLERANCE * (r[centre] + r[neighbour])
        short = False
        for i in np.flatnonzero(~is_anion & known):
            mine = np.flatnonzero(centre == i)
            cn = sites[labels[i]].cn
            if len(mine) < cn:
                short = True
                break
            nearest = np.sort(distance[mine])[cn - 1]
            bond[mine[distance[mine] <= nearest + 0.01]] = True
        if not short:
            break
    else:
        raise ValueError(f"{prototype_id}: a cation has fewer anions than its coordination within {cutoff} A")
    pairs = Counter((labels[i], labels[j]) for i, j in zip(centre[bond], neighbour[bond]))
    names = tuple(sorted({lb for pair in pairs for lb in pair}))
    index = {lb: k for k, lb in enumerate(names)}
    keys = sorted(pairs)
    return FirstShell(
        labels=names,
        cation=np.array([index[c] for c, _ in keys], dtype=int),
        anion=np.array([index[a] for _, a in keys], dtype=int),
        count=np.array([pairs[k] for k in keys], dtype=float),
        published=np.array([radius[lb] for lb in names], dtype=float),
    )


def _bond_length_scale(
    prototype_id: str,
    sites: dict[str, Site],
    element_of: dict[str, str],
    mixture: dict[str, dict[str, Fraction]],
    states: States | None,
) -> float:
    """Linear scale factor: mean over the prototype's first-shell bonds of the Shannon radius sum, new over
    published."""
    shell = first_shell(prototype_id)
    if not len(shell.count):
        return 1.0
    new = np.array(
        [
            _radius_on(sites[lb], r0, element_of, mixture, states)
            for lb, r0 in zip(shell.labels, shell.published.tolist())
        ]
    )
    ratio = (new[shell.cation] + new[shell.anion]) / (shell.published[shell.cation] + shell.published[shell.anion])
    return float(shell.count @ ratio / shell.count.sum())


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
