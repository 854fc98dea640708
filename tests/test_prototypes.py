"""The prototype library: every entry reproduces its published cell and space group and is chemically sane."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from mi.candidates.generate import prototypes as lib

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "datasets" / "demo" / "structures"
OBELIX = ROOT.parent / "shared" / "datasets" / "obelix" / "train_cifs"
IDS = [p.id for p in lib.PROTOTYPES]


@pytest.fixture(scope="module", params=lib.PROTOTYPES, ids=IDS)
def proto(request):
    return request.param


def test_parent_has_the_published_space_group_and_cell(proto):
    parent = lib.build(proto)
    assert SpacegroupAnalyzer(parent, symprec=lib.SYMPREC).get_space_group_number() == proto.sg_number
    assert np.allclose(parent.lattice.abc + parent.lattice.angles, proto.lattice, atol=1e-3)


def test_ordered_structure_keeps_the_published_cell(proto):
    s = lib.ordered(proto.id)
    assert s.is_ordered
    supercell = np.array(proto.supercell) if proto.supercell is not None else np.eye(3)
    expected = Lattice(supercell @ Lattice.from_parameters(*proto.lattice).matrix)
    assert np.allclose(s.lattice.abc + s.lattice.angles, expected.abc + expected.angles, atol=1e-3)
    if not proto.is_approximant:  # an ordered published structure is its own prototype: same space group
        assert SpacegroupAnalyzer(s, symprec=lib.SYMPREC).get_space_group_number() == proto.sg_number


def test_ordered_structure_passes_the_chemistry_checks(proto):
    result = lib.check(proto)
    assert result.problems == []
    assert result.bond_ranges, "every prototype checks at least one bond"


def test_approximant_has_the_published_formula_and_sits_on_published_positions(proto):
    s = lib.ordered(proto.id)
    parent = lib.build(proto)
    if proto.supercell is not None:
        parent.make_supercell(proto.supercell)
    assert parent.composition.reduced_composition.almost_equals(s.composition.reduced_composition, rtol=1e-6)
    d = s.lattice.get_all_distances(s.frac_coords, parent.frac_coords)
    assert d.min(axis=1).max() < 1e-3, "every ordered site is one of the parent's positions"


def test_sites_carry_labels_roles_and_published_oxidation_states(proto):
    s = lib.ordered(proto.id)
    labels = set(s.site_properties["label"])
    assert labels == {site.label for site in proto.sites if site.keep != 0}
    assert set(s.site_properties["role"]) <= set(lib.ROLES)
    assert {"working_ion", "anion"} <= set(s.site_properties["role"])
    assert abs(sum(s.site_properties["oxi"])) < 1e-6, "the published oxidation states are neutral"
    assert proto.citation and proto.source and proto.confidence in ("high", "medium", "low")


def test_labels_are_unique_and_never_shadow_another_element():
    for p in lib.PROTOTYPES:
        labels = [s.label for s in p.sites]
        assert len(labels) == len(set(labels)), p.id
        elements = {s.species for s in p.sites}
        for s in p.sites:
            # a label that is also an element symbol must mean that element's only site
            if s.label in elements:
                assert s.label == s.species and sum(x.species == s.species for x in p.sites) == 1, (p.id, s.label)
        assert "/" not in p.id and " " not in p.id  # ids become file names


@pytest.mark.parametrize(
    "prototype_id, demo_file",
    [("olivine_LiFePO4", "LiFePO4.cif"), ("layered_O3_LiCoO2", "LiCoO2.vasp"), ("spinel_LiMn2O4", "LiMn2O4.cif")],
)
def test_shared_families_agree_with_the_demo_set(prototype_id, demo_file):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        demo = Structure.from_file(DEMO / demo_file)
    assert StructureMatcher(scale=False).fit(lib.ordered(prototype_id), demo)


def test_checks_catch_a_wrong_origin_choice():
    spinel = lib.get("spinel_LiMn2O4")
    # origin-choice-2 coordinates under pymatgen's origin-choice-1 symbol put Li and Mn on the wrong sites
    wrong_sites = tuple(
        dataclasses.replace(s, coords={"A": (0.125,) * 3, "M": (0.5,) * 3, "O": (0.2631,) * 3}[s.label])
        for s in spinel.sites
    )
    wrong = dataclasses.replace(spinel, id="spinel_wrong_origin", sites=wrong_sites)
    lib.BY_ID[wrong.id] = wrong
    try:
        problems = lib.check(wrong).problems
    finally:
        del lib.BY_ID[wrong.id]
        lib.ordered.cache_clear()
    assert any("formula" in p for p in problems)


def test_unknown_prototype_names_the_known_ones():
    with pytest.raises(KeyError, match="olivine_LiFePO4"):
        lib.get("perovskite_nope")


def test_what_is_missing_is_written_down():
    assert lib.NOT_INCLUDED
    assert "Li3MX6 halides (Li3YCl6, Li3InCl6)" in lib.NOT_INCLUDED
    # what is in the library is not also listed as missing
    families = " ".join(p.family for p in lib.PROTOTYPES)
    assert "O3 NaMO2" in families and "LGPS" in families and "Li2MSiO4" in families
    assert not any(key.startswith(("O3 NaMO2", "LGPS Li10GeP2S12,")) for key in lib.NOT_INCLUDED)


APPROXIMANTS = [p for p in lib.PROTOTYPES if p.is_approximant]


@pytest.mark.parametrize("proto", APPROXIMANTS, ids=[p.id for p in APPROXIMANTS])
def test_approximant_symmetry_is_a_subgroup_of_the_parents(proto):
    # every symmetry operation of the ordered structure maps the published (disordered) parent onto itself
    s = lib.ordered(proto.id)
    parent = lib.build(proto)
    if proto.supercell is not None:
        parent.make_supercell(proto.supercell)
    assert np.allclose(parent.lattice.matrix, s.lattice.matrix, atol=1e-6)
    ops = SpacegroupAnalyzer(s, symprec=lib.SYMPREC).get_symmetry_operations(cartesian=False)
    species = [site.species for site in parent]
    for op in ops:
        moved = op.operate_multi(parent.frac_coords)
        d = parent.lattice.get_all_distances(moved, parent.frac_coords)
        image = d.argmin(axis=1)
        assert d.min(axis=1).max() < 0.05
        assert all(species[i] == species[j] for i, j in enumerate(image))
    assert len(ops) <= len(SpacegroupAnalyzer(parent, symprec=lib.SYMPREC).get_symmetry_operations())


def test_lgps_approximant_keeps_li_apart_and_the_published_li_count():
    s = lib.ordered("lgps_Li10GeP2S12")
    assert s.composition.reduced_formula == "Li10Ge(PS6)2" and len(s) == 50  # Z = 2
    li = [i for i, site in enumerate(s) if site.specie.symbol == "Li"]
    d = s.distance_matrix[np.ix_(li, li)] + np.eye(len(li)) * 1e3
    assert d.min() > 2.4  # the record's split pairs (0.42 and 1.36 A) keep one member each
    per_label = {lb: s.site_properties["label"].count(lb) for lb in ("A1", "A2", "A3", "A4")}
    assert per_label == {"A1": 8, "A2": 4, "A3": 4, "A4": 4}
    # published occupancies x multiplicities: 16 x 0.5, 8 x 0.54, 8 x 0.62, 4 x 0.68 = 20.0 Li per cell
    assert sum(o.occupancy * len(lib._orbit(lib.get("lgps_Li10GeP2S12"), o)) for o in lib.get("lgps_Li10GeP2S12").sites
               if o.species == "Li") == pytest.approx(20.0, abs=0.01)


def test_native_o3_nafeo2_keeps_the_wider_sodium_slab():
    na = lib.ordered("layered_O3_NaFeO2")
    li = lib.ordered("layered_O3_LiCoO2")
    ratio = lambda s: s.lattice.c / s.lattice.a  # noqa: E731
    assert ratio(na) > ratio(li) + 0.2  # 5.32 vs 4.99: Na substituted into LiCoO2 would keep 4.99


# --- against published records in ../shared (skipped where it is absent) ------------------------------------


def _majority(s: Structure, drop: tuple[str, ...]) -> Structure:
    """Each site as its majority species, without the elements in `drop` (e.g. a split or disordered Li)."""
    majority = [max(site.species.items(), key=lambda kv: kv[1])[0].symbol for site in s]
    keep = [i for i, el in enumerate(majority) if el not in drop]
    return Structure(s.lattice, [majority[i] for i in keep], s.frac_coords[keep])


def _obelix(record: str, drop: tuple[str, ...] = ()) -> Structure:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _majority(Structure.from_file(OBELIX / f"{record}.cif"), drop)


@pytest.mark.shared
@pytest.mark.parametrize(
    "prototype_id, record, drop",
    [
        ("garnet_Li7La3Zr2O12", "wyu", ()),  # ordered as published: the whole structure
        ("tavorite_LiVPO4F", "2t8", ("Li",)),  # Li is split: compare the framework
        ("argyrodite_Li6PS5Cl", "122", ("Li",)),
        ("lgps_Li10GeP2S12", "mtn", ("Li",)),  # Li disordered over four orbits: compare the framework
        ("betaII_Li3VO4", "h6c", ()),  # ordered as published
    ],
)
def test_transcribed_prototypes_match_their_records(prototype_id, record, drop):
    ours = _majority(lib.build(lib.get(prototype_id)), drop)
    assert StructureMatcher(scale=True).fit(ours, _obelix(record, drop))
