"""Candidate generation: substitution, filters, mixing, deduplication, composition enumeration, shards, CLI."""

from __future__ import annotations

import csv
import json
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import yaml
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Composition, Lattice, Species, Structure

from mi.candidates import read_candidates
from mi.candidates.generate import generate, generator_fingerprint, run
from mi.candidates.generate.chemistry import balanced_states, charge_balanced, electronegativity_ordered
from mi.candidates.generate.dedupe import Deduplicator
from mi.candidates.generate.enumeration import enumerate_compositions, hermite_normal_form, hnf_matrices
from mi.candidates.generate.prototypes import PROTOTYPES, ordered
from mi.candidates.generate.substitution import FamilyStats, probable_substituents
from mi.cli import main
from mi.config import CandidatesConfig, GenerateConfig, PrototypeJob, load_generate_config

ROOT = Path(__file__).resolve().parents[1]


def gen(**kw) -> tuple[list, dict]:
    stats: dict[str, FamilyStats] = {}
    return list(generate(GenerateConfig.model_validate(kw), stats)), stats


def f(formula: str) -> str:
    """pymatgen's reduced formula (element order by electronegativity: LiBaPO4 is written BaLiPO4)."""
    return Composition(formula).reduced_formula


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --- chemistry -------------------------------------------------------------------------------------------


def test_charge_balance_over_common_oxidation_states():
    assert charge_balanced((("Li", "working_ion", 1), ("Fe", "redox", 1), ("P", "framework", 1), ("O", "anion", 4)))
    # LiMn2O4 needs Mn3+ and Mn4+ side by side (conventional cell: Li8 Mn16 O32)
    assert charge_balanced((("Li", "working_ion", 8), ("Mn", "redox", 16), ("O", "anion", 32)))
    # Si4+ with Mg2+ is one charge short, and neither has another state
    assert not charge_balanced((("Li", "working_ion", 1), ("Mg", "redox", 1), ("Si", "framework", 1), ("O", "anion", 4)))
    assert charge_balanced((("Li", "working_ion", 1), ("Al", "redox", 1), ("Si", "framework", 1), ("O", "anion", 4)))
    # a phosphate site does not mix P3+ and P5+ (Li4Al4P4O16 would balance with two of each)
    assert not charge_balanced((("Li", "working_ion", 4), ("Al", "redox", 4), ("P", "framework", 4), ("O", "anion", 16)))
    assert not charge_balanced((("Li", "working_ion", 2), ("Fe", "redox", 1)))


def test_balanced_states_are_the_neutral_assignment_nearest_the_published_one():
    # (element, role, sites, published sites it fills: (element, state, coordination, sites))
    zr = (("Zr", 4, 6, 1),)
    nasicon = (("Li", "working_ion", 1, (("Na", 1, 6, 1),)), ("O", "anion", 12, (("O", -2, 4, 12),)),
               ("P", "framework", 3, (("P", 5, 4, 3),)))
    # LiCrSb(PO4)3: Cr3+/Sb5+, not Cr4+ beside a Sb3+/Sb5+ mix (as near the Zr4+ site's state, but mixed),
    # nor Cr5+/Sb3+ (as far from 4+, radii further from Zr4+'s)
    groups = tuple(sorted((*nasicon, ("Cr", "redox", 1, zr), ("Sb", "redox", 1, zr))))
    assert dict(zip((g[0] for g in groups), balanced_states(groups))) == {"Cr": 3, "Li": 1, "O": -2, "P": 5, "Sb": 5}
    # spinel LiMn2O4 keeps its Mn3.5+; LiNi0.5Mn1.5O4 (a quarter of the Mn sites to Ni) is Ni2+/Mn4+
    li, o = ("Li", "working_ion", 2, (("Li", 1, 4, 2),)), ("O", "anion", 8, (("O", -2, 4, 8),))
    assert balanced_states((li, ("Mn", "redox", 4, (("Mn", 3.5, 6, 4),)), o)) == (1, 3.5, -2)
    lnmo = (li, ("Mn", "redox", 3, (("Mn", 3.5, 6, 3),)), ("Ni", "redox", 1, (("Mn", 3.5, 6, 1),)), o)
    assert balanced_states(lnmo) == (1, 4, 2, -2)
    assert balanced_states((("Li", "working_ion", 2, ()), ("Fe", "redox", 1, ()))) is None


def test_electronegativity_order():
    assert electronegativity_ordered(["Li", "Fe"], ["O"])
    assert not electronegativity_ordered(["O"], ["S"])  # O (3.44) is more electronegative than S (2.58)


# --- substitution ------------------------------------------------------------------------------------------


def test_substituted_structures_are_charge_balanced():
    out, stats = gen(
        prototypes=[
            {"prototype": "olivine_LiFePO4", "sites": {"A": ["Li", "Na"], "M": ["Fe", "Mn", "Mg", "Al"], "X": ["P", "Si"]}},
            {"prototype": "tavorite_LiVPO4F", "sites": {"V": ["V", "Fe", "Ti"], "X": ["P", "S"]}},
        ],
        filters={"radius_tolerance": None},
    )
    assert out
    for g in out:
        # pymatgen's own search over ICSD-probable states, independent of ours
        assert g.composition.oxi_state_guesses(), g.composition
    st = stats["olivine_LiFePO4"]
    assert st.considered == st.rejected_charge + st.generated
    formulas = {g.composition.reduced_formula for g in out}
    assert {f(x) for x in ("LiFePO4", "NaMnPO4", "LiMgPO4", "LiAlSiO4", "LiFeSiO4")} <= formulas
    assert {f(x) for x in ("LiMgSiO4", "LiAlPO4", "NaMgSiO4")}.isdisjoint(formulas)  # one charge off
    assert st.rejected_charge == 2 * 2  # (Mg, Si) and (Al, P), each with Li and Na


def test_tavorite_fluorosulfate_comes_from_substitution():
    out, _ = gen(prototypes=[{"prototype": "tavorite_LiVPO4F", "sites": {"V": ["Fe"], "X": ["S"]}}])
    assert [g.composition.reduced_formula for g in out] == ["LiFeSO4F"]


def test_radius_tolerance_rejects_a_misfit_and_can_be_switched_off():
    job = {"prototype": "olivine_LiFePO4", "sites": {"M": ["Fe", "Ba"]}}
    out, stats = gen(prototypes=[job])
    assert [g.composition.reduced_formula for g in out] == ["LiFePO4"]
    assert stats["olivine_LiFePO4"].rejected_radius == 1
    out, _ = gen(prototypes=[job], filters={"radius_tolerance": None})
    assert {g.composition.reduced_formula for g in out} == {f("LiFePO4"), f("LiBaPO4")}


def test_volume_is_rescaled_with_the_bond_lengths():
    out, _ = gen(prototypes=[{"prototype": "layered_O3_LiCoO2", "sites": {"A": ["Li", "Na"]}}])
    by = {g.composition.reduced_formula: g.structure for g in out}
    li, na = by["LiCoO2"], by["NaCoO2"]
    # Shannon radii at the sites' coordination (6): Li+ 0.76, Na+ 1.02, O2- 1.40 A. Per formula unit six A-O
    # and six Co-O bonds; only the A-O ones change, so the linear scale is the mean of their ratio and 1.
    r = {
        "Li": Species("Li", 1).get_shannon_radius("VI"),
        "Na": Species("Na", 1).get_shannon_radius("VI"),
        "O": Species("O", -2).get_shannon_radius("VI"),
    }
    linear = ((r["Na"] + r["O"]) / (r["Li"] + r["O"]) + 1.0) / 2.0
    assert na.volume / li.volume == pytest.approx(linear**3, rel=1e-6)  # 1.19 (published NaCoO2/LiCoO2: ~1.17)
    out, _ = gen(prototypes=[{"prototype": "layered_O3_LiCoO2", "sites": {"A": ["Na"]}}], filters={"rescale_volume": False})
    assert out[0].structure.volume == pytest.approx(li.volume)


def test_bond_rule_changes_only_the_bonds_that_exist():
    def volume_ratio(prototype: str, sites: dict) -> float:
        base, _ = gen(prototypes=[{"prototype": prototype}])
        out, _ = gen(prototypes=[{"prototype": prototype, "sites": sites}], filters={"radius_tolerance": None})
        return out[0].structure.volume / base[0].structure.volume

    r = {  # Shannon radii at the coordination of the prototype's site
        "Li": Species("Li", 1).get_shannon_radius("IV"),  # tavorite Li (CN 5) and Li3OCl Li (CN 2): nearest listed
        "V": Species("V", 3).get_shannon_radius("VI"),
        "P": Species("P", 5).get_shannon_radius("IV"),
        "S": Species("S", 6).get_shannon_radius("IV"),
        "O": Species("O", -2).get_shannon_radius("IV"),
        "F": Species("F", -1).get_shannon_radius("III"),
        "Cl": Species("Cl", -1).get_shannon_radius("VI"),  # only CN 6 is listed
        "Br": Species("Br", -1).get_shannon_radius("VI"),
    }
    # tavorite LiVPO4F, 15 bonds per formula unit: Li 4 O + 1 F, V 4 O + 2 F, P 4 O. F bridges two V and one
    # Li: F -> Cl stretches those three bonds and no other (no P-F bond)
    d = r["Cl"] - r["F"]
    linear = 1 + (d / (r["Li"] + r["F"]) + 2 * d / (r["V"] + r["F"])) / 15
    assert volume_ratio("tavorite_LiVPO4F", {"F": ["Cl"]}) == pytest.approx(linear**3, rel=1e-6)
    # P -> S shortens the four P-O bonds; the charge needs V2+ (S6+), which stretches V's four V-O and two V-F
    dv = Species("V", 2).get_shannon_radius("VI") - r["V"]
    stretch = 4 * dv / (r["V"] + r["O"]) + 2 * dv / (r["V"] + r["F"])
    linear = 1 + (4 * (r["S"] - r["P"]) / (r["P"] + r["O"]) + stretch) / 15
    assert volume_ratio("tavorite_LiVPO4F", {"X": ["S"]}) == pytest.approx(linear**3, rel=1e-6)
    # Li3OCl: Li's own coordination is two O (1.96 A), but the twelve Li around Cl (2.76 A) are bonds too; per
    # formula unit 6 Li-O and 12 Li-Cl, and Cl -> Br stretches the Li-Cl ones
    linear = 1 + 12 * (r["Br"] - r["Cl"]) / (r["Li"] + r["Cl"]) / 18
    assert volume_ratio("antiperovskite_Li3OCl", {"Hal": ["Br"]}) == pytest.approx(linear**3, rel=1e-6)


def _shell_ratio(bonds: list[tuple[int, float, float, float, float]]) -> float:
    """Cube of the bond rule's linear scale: bonds as (count, r_cation', r_anion', r_cation, r_anion)."""
    return (sum(n * (c + a) / (c0 + a0) for n, c, a, c0, a0 in bonds) / sum(n for n, *_ in bonds)) ** 3


def test_fluorosulfate_from_tavorite_is_rescaled_with_fe2():
    # LiFeSO4F needs Fe2+ (S6+, F-), although Fe3+ is the state nearest the V3+ site's: 15 bonds per formula
    # unit, Li 4 O + 1 F (unchanged), M 4 O + 2 F (V3+ -> Fe2+), X 4 O (P5+ -> S6+)
    base, _ = gen(prototypes=[{"prototype": "tavorite_LiVPO4F"}])
    out, _ = gen(prototypes=[{"prototype": "tavorite_LiVPO4F", "sites": {"V": ["Fe"], "X": ["S"]}}])
    assert [g.composition.reduced_formula for g in out] == ["LiFeSO4F"]
    o, fl = Species("O", -2).get_shannon_radius("IV"), Species("F", -1).get_shannon_radius("III")
    v3, fe2 = Species("V", 3).get_shannon_radius("VI"), Species("Fe", 2).get_shannon_radius("VI", "High Spin")
    p5, s6 = Species("P", 5).get_shannon_radius("IV"), Species("S", 6).get_shannon_radius("IV")
    expected = _shell_ratio([(5, 1, 1, 1, 1), (4, fe2, o, v3, o), (2, fe2, fl, v3, fl), (4, s6, o, p5, o)])
    assert out[0].structure.volume / base[0].structure.volume == pytest.approx(expected, rel=1e-6)  # 1.060
    fe3 = Species("Fe", 3).get_shannon_radius("VI", "High Spin")
    as_fe3 = _shell_ratio([(5, 1, 1, 1, 1), (4, fe3, o, v3, o), (2, fe3, fl, v3, fl), (4, s6, o, p5, o)])
    assert abs(expected - as_fe3) > 0.05  # the ratio the Fe3+ radius gave, 0.977


def test_radius_filter_reads_the_states_the_charge_needs():
    from mi.candidates.generate import substitution
    from mi.candidates.generate.prototypes import get

    def job(m: str) -> dict:  # NaMSb(PO4)3: M3+ and Sb5+ half and half on NASICON's Zr4+ site
        mix = {"site": "M", "species": [m, "Sb"], "fractions": [[0.5, 0.5]]}
        return {"prototype": "nasicon_NaZr2P3O12", "mix": [mix]}

    zr = Species("Zr", 4).get_shannon_radius("VI")  # 0.72 A
    sb5, sb3 = Species("Sb", 5).get_shannon_radius("VI"), Species("Sb", 3).get_shannon_radius("VI")
    assert abs(sb5 - zr) / zr > 0.15 > abs(sb3 - zr) / zr  # 17 % and 6 %
    # beside Fe3+ (10 % off) Sb is Sb5+ and misfits at a 15 % tolerance; read as Sb3+ (the state nearest 4+
    # by radius) it passed
    out, stats = gen(prototypes=[job("Fe")], filters={"radius_tolerance": 0.15})
    assert out == [] and dict(stats["nasicon_NaZr2P3O12"].reasons) == {"radius of Sb on Zr site": 1}
    # beside Sb5+ Cr is Cr3+ (15 % off Zr4+), not Cr4+ (24 %): kept at a 20 % tolerance, where it was rejected
    out, _ = gen(prototypes=[job("Cr")], filters={"radius_tolerance": 0.2})
    assert {g.composition.reduced_formula for g in out} == {f("NaCrSb(PO4)3")}
    # beside Al3+ (26 % off, the larger misfit at any tolerance) the filter reads Sb5+ as well
    proto = get("nasicon_NaZr2P3O12")
    sites = {s.label: s for s in proto.sites}
    counts = substitution._base(PrototypeJob.model_validate(job("Al")))[1].label_counts()
    half = {"Al": Fraction(1, 2), "Sb": Fraction(1, 2)}
    states = substitution._states(sites, counts, {lb: sites[lb].species for lb in counts}, {"M": half})
    assert states[("Sb", "redox")] == 5 and states[("Al", "redox")] == 3
    assert substitution._ion_radius(sites["M"], "Sb", states) == pytest.approx(sb5)


@pytest.mark.parametrize("prototype", [p.id for p in PROTOTYPES])
def test_unsubstituted_prototypes_keep_their_states_and_cell(prototype):
    from mi.candidates.generate import substitution
    from mi.candidates.generate.prototypes import get

    out, _ = gen(prototypes=[{"prototype": prototype, "cell": "conventional"}])
    assert len(out) == 1 and out[0].meta["volume_scale"] == 1.0
    assert np.array_equal(out[0].structure.lattice.matrix, ordered(prototype).lattice.matrix)
    sites = {s.label: s for s in get(prototype).sites}
    counts = Counter(ordered(prototype).site_properties["label"])
    states = substitution._states(sites, counts, {lb: sites[lb].species for lb in counts}, {})
    assert {(sites[lb].species, sites[lb].role): sites[lb].oxi for lb in counts} == states


def test_data_mined_substitutions_extend_a_site():
    # Mn2+ and Co2+ replace Fe2+ in countless compounds; Li+ does not
    likely = probable_substituents("Fe", 2, 0.02, 10)
    assert "Mn" in likely and "Co" in likely and "Li" not in likely
    out, _ = gen(prototypes=[{"prototype": "olivine_LiFePO4", "substitution_probability": {"threshold": 0.02, "sites": ["M"]}}])
    assert "LiMnPO4" in {g.composition.reduced_formula for g in out}


def test_element_keys_move_every_site_of_that_element_together():
    out, _ = gen(prototypes=[{"prototype": "olivine_LiFePO4", "sites": {"O": ["O", "S"]}}], filters={"radius_tolerance": None})
    assert {g.composition.reduced_formula for g in out} == {f("LiFePO4"), f("LiFePS4")}


def test_generated_candidates_have_stable_unique_ids_and_provenance():
    cfg = {"prototypes": [{"prototype": "olivine_LiFePO4", "sites": {"M": ["Fe", "Mn", "Co"]}}]}
    a, _ = gen(**cfg)
    b, _ = gen(**cfg)
    assert [g.id for g in a] == [g.id for g in b]
    assert len({g.id for g in a}) == len(a)
    assert a[0].meta["prototype"] == "olivine_LiFePO4" and a[0].meta["sites"]["A"] == "Li"


@pytest.mark.parametrize(
    "job, expected, excluded",
    [
        (
            # Sn4+ (0.55 A at CN 4) is 41 % bigger than Ge4+ (0.39 A): past the default radius tolerance
            {"prototype": "lgps_Li10GeP2S12", "sites": {"M": ["Ge", "Si", "Al"], "S": ["S", "Se"]}},
            {"Li10GeP2S12", "Li10SiP2S12", "Li10GeP2Se12"},
            {"Li10AlP2S12"},  # Al3+ on the Ge4+ site: one charge short per Al
        ),
        (
            {"prototype": "betaII_Li3VO4", "sites": {"M": ["Li", "Fe", "Mn", "Co", "Zn", "Mg"], "X": ["V", "Si", "Ge"]}},
            {"Li3VO4", "Li2FeSiO4", "Li2MnSiO4", "Li2CoSiO4", "Li2ZnGeO4"},
            {"Li2MgVO4", "Li3SiO4", "Li2ZnVO4"},
        ),
        (
            {"prototype": "layered_O3_NaFeO2", "sites": {"A": ["Na", "Li"], "M": ["Fe", "Cr", "Co", "Ni", "Mn", "Ti", "Mg"]}},
            {"NaFeO2", "NaCrO2", "NaCoO2", "NaNiO2", "NaTiO2", "LiFeO2"},
            {"NaMgO2"},
        ),
        (
            # the C2/c Li3ErI6 frame: M3+ from Y to Sc, X through the halides (element key I: all three I sites)
            {"prototype": "halide_Li3ErI6", "sites": {"M": ["Er", "Y", "In", "Sc", "Zr"], "I": ["I", "Br", "Cl"]}},
            {"Li3ErI6", "Li3YCl6", "Li3InCl6", "Li3ScCl6", "Li3YBr6", "Li3ErCl6"},
            {"Li3ZrCl6", "Li3ZrBr6", "Li3ZrI6"},  # Zr4+ on the M3+ site: one charge too many
        ),
        (
            # every S site moves together (element key S); P5+ is small (0.17 A at CN 4), so As5+ and V5+ misfit
            {"prototype": "beta_Li3PS4", "sites": {"X": ["P", "Si", "Ge"], "S": ["S", "Se", "O"]}},
            {"Li3PS4", "Li3PSe4", "Li3PO4"},
            {"Li3SiS4", "Li3GeS4", "Li3SiO4"},  # a tetravalent X leaves the cell one charge short
        ),
        (
            # Na on both NASICON sites moves together (element key Na: 6b and 18e)
            {"prototype": "nasicon_Na3V2P3O12", "sites": {"M": ["V", "Fe", "Ti", "Cr", "Mg"], "Na": ["Na", "Li"]}},
            {"Na3V2(PO4)3", "Na3Fe2(PO4)3", "Na3Ti2(PO4)3", "Na3Cr2(PO4)3", "Li3V2(PO4)3"},
            {"Na3Mg2(PO4)3", "Li3Mg2(PO4)3"},  # Mg2+ on the V3+ site: two charges short per formula
        ),
    ],
    ids=["lgps", "li2msio4", "o3_nafeo2", "li3mx6", "beta_li3ps4", "na3v2p3o12"],
)
def test_substitution_into_the_new_families_is_charge_balanced_and_deduplicated(job, expected, excluded):
    out, stats = gen(prototypes=[job, {**job, "name": "again"}])
    formulas = {g.composition.reduced_formula for g in out}
    assert {f(x) for x in expected} <= formulas
    assert {f(x) for x in excluded}.isdisjoint(formulas)
    for g in out:
        assert g.composition.oxi_state_guesses(max_sites=-50), g.composition  # pymatgen's own check
        assert g.structure.is_ordered
    st = stats[job["prototype"]]
    assert st.rejected_charge >= len(excluded)
    assert st.kept == len(out) and len({g.id for g in out}) == len(out)
    # the same request a second time adds nothing
    assert stats["again"].kept == 0 and stats["again"].duplicates == stats["again"].generated == st.kept


# --- mixing and deduplication ----------------------------------------------------------------------------


def test_hnf_enumeration_counts_sublattices():
    # sublattices of index n of a 3D lattice: 1, 7, 13, 35 (sum of d*sigma(d)... OEIS A001001)
    assert [sum(1 for _ in hnf_matrices(n)) for n in (1, 2, 3, 4)] == [1, 7, 13, 35]
    h = np.array([[2, 0, 0], [1, 1, 0], [1, 0, 2]])
    mixed_basis = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1]]) @ h
    assert (hermite_normal_form(mixed_basis) == hermite_normal_form(h)).all()


def test_binary_orderings_on_a_simple_cubic_site():
    # Cl/Br 1:1 on the anti-perovskite halide site (a simple cubic lattice of Pm-3m) in cells of two:
    # layers along [100], [110] and [111], nothing else
    out, _ = gen(prototypes=[{"prototype": "antiperovskite_Li3OCl", "mix": [{"site": "Hal", "species": ["Cl", "Br"], "fractions": [[0.5, 0.5]], "max_sites": 2}]}])
    assert len(out) == 3
    assert all(g.composition.reduced_formula == f("Li6O2BrCl") for g in out)


def test_enumerated_arrangements_are_distinct_and_have_the_ratio():
    out, stats = gen(
        prototypes=[{"prototype": "layered_O3_LiCoO2", "mix": [{"site": "M", "species": ["Ni", "Mn", "Co"], "max_sites": 4}]}],
        dedupe=False,
    )
    assert len(out) > 10
    assert len(StructureMatcher().group_structures([g.structure for g in out])) == len(out)
    for g in out:
        ratio = g.meta["sites"]["M"]
        amounts = g.composition.get_el_amt_dict()
        n_m = sum(amounts[e] for e in ratio)
        assert all(amounts[e] / n_m == pytest.approx(f) for e, f in ratio.items())


def test_nmc811_needs_ten_sites_and_virtual_gives_a_composition():
    out, _ = gen(prototypes=[{"prototype": "layered_O3_LiCoO2", "mix": [{"site": "M", "species": ["Ni", "Mn", "Co"], "fractions": [[0.8, 0.1, 0.1]], "max_sites": 10, "max_arrangements": 3}]}])
    assert len(out) == 3 and all(len(g.structure) == 40 for g in out)
    out, stats = gen(prototypes=[{"prototype": "layered_O3_LiCoO2", "mix": [{"site": "M", "species": ["Ni", "Mn", "Co"], "fractions": [[0.8, 0.1, 0.1]], "max_sites": 6}]}])
    assert out == [] and stats["layered_O3_LiCoO2"].rejected_other == 1
    out, _ = gen(prototypes=[{"prototype": "layered_O3_LiCoO2", "mix": [{"site": "M", "species": ["Ni", "Mn", "Co"], "fractions": [[0.8, 0.1, 0.1]], "mode": "virtual"}]}])
    assert len(out) == 1 and out[0].structure is None
    assert out[0].composition.almost_equals(Composition("LiNi0.8Mn0.1Co0.1O2"))


def test_duplicates_are_removed():
    job = {"prototype": "layered_O3_LiCoO2", "mix": [{"site": "M", "species": ["Ni", "Co"], "max_sites": 3}]}
    once, _ = gen(prototypes=[job])
    twice, stats = gen(prototypes=[job, {**job, "name": "again"}])
    assert len(twice) == len(once)
    assert stats["again"].duplicates == stats["again"].generated == len(once)
    both, _ = gen(prototypes=[job, {**job, "name": "again"}], dedupe=False)
    assert len(both) == 2 * len(once)


def test_deduplicator_sees_through_supercells_rotations_and_strain(licoo2):
    d = Deduplicator()
    assert d.is_new(licoo2)
    bigger = licoo2.copy()
    bigger.make_supercell([[2, 0, 0], [0, 1, 0], [0, 0, 1]])
    assert not d.is_new(bigger)
    strained = licoo2.copy()
    strained.scale_lattice(licoo2.volume * 1.1)
    assert not d.is_new(strained)
    assert not d.is_new(licoo2.get_primitive_structure())
    other = licoo2.copy()
    other.replace_species({"Co": "Ni"})
    assert d.is_new(other)
    assert d.distinct == 2


def test_max_candidates_stops_the_stream():
    out, _ = gen(prototypes=[{"prototype": "olivine_LiFePO4", "sites": {"M": ["Fe", "Mn", "Co", "Ni"]}}], max_candidates=2)
    assert len(out) == 2


# --- compositions ----------------------------------------------------------------------------------------


def test_composition_enumeration_is_neutral_and_ordered_by_electronegativity():
    found = {c.reduced_formula for c, _ in enumerate_compositions(["Li", "Fe", "P", "O"], require=["Li", "O"], max_stoichiometry=4)}
    assert {"LiFePO4", "Li3PO4", "Li2O", "LiFeO2"} <= found
    assert "LiFeO" not in found and "LiPO" not in found
    ordered = {c.reduced_formula for c, _ in enumerate_compositions(["S", "Se"], max_stoichiometry=3)}
    free = {c.reduced_formula for c, _ in enumerate_compositions(["S", "Se"], max_stoichiometry=3, electronegativity_order=False)}
    assert "SeS2" in ordered  # Se4+ S2-
    assert f("SSe2") not in ordered and f("SSe2") in free  # would need S4+ with Se2-


# --- config errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "generate_section, key_path",
    [
        ({"prototypes": [{"prototype": "olivine_LiFePO4", "sites": {"M": ["Fe", "Xx"]}}]}, "generate.prototypes[0].sites.M[1]"),
        ({"prototypes": [{"prototype": "olivine_LiFePO4", "sitez": {}}]}, "generate.prototypes[0].sitez: unknown key"),
        ({"prototypes": [{"prototype": "perovskite_nope"}]}, "generate.prototypes[0].prototype: unknown prototype"),
        ({"prototypes": [{"prototype": "olivine_LiFePO4", "sites": {"Q": ["Fe"]}}]}, "generate.prototypes[0].sites: 'Q' is not a site"),
        ({"prototypes": [{"prototype": "olivine_LiFePO4", "mix": [{"site": "M", "species": ["Fe", "Mn"], "fractions": [[0.7, 0.7]]}]}]}, "generate.prototypes[0].mix[0]"),
        ({"compositions": [{"name": "x", "elements": ["Li", "O"], "max_elements": 9}]}, "generate.compositions[0].max_elements"),
        ({}, "give at least one entry"),
    ],
)
def test_bad_generator_config_fails_with_the_key_path(tmp_path, capsys, generate_section, key_path):
    path = write_yaml(tmp_path / "bad.yaml", {"name": "bad", "generate": generate_section})
    assert main(["generate", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and key_path in err


def test_every_generate_config_in_configs_is_valid():
    paths = sorted((ROOT / "configs").glob("generate_*.yaml"))
    assert paths
    for path in paths:
        assert load_generate_config(path).generate.prototypes


def test_generator_fingerprint_follows_content_not_form(tmp_path):
    from mi.candidates.generate import generator_fingerprint
    from mi.candidates.generate import prototypes as lib

    a = write_yaml(tmp_path / "a.yaml", SMALL)
    moved = tmp_path / "elsewhere" / "b.yaml"
    moved.parent.mkdir()
    # another name, another output folder, comments and a default spelled out: the same candidates
    text = yaml.safe_dump({**SMALL, "name": "renamed", "output": {"dir": "x"}}, sort_keys=True)
    moved.write_text("# a comment\n" + text.replace("generate:\n", "generate:\n  dedupe: true\n", 1))
    fp = generator_fingerprint(a)
    assert len(fp) == 64 and int(fp, 16) >= 0
    assert generator_fingerprint(moved) == fp
    assert generator_fingerprint(load_generate_config(a)) == fp == generator_fingerprint(load_generate_config(a).generate)
    # what is generated changes: the fingerprint changes
    changed = {**SMALL, "generate": {**SMALL["generate"], "filters": {"radius_tolerance": 0.2}}}
    assert generator_fingerprint(write_yaml(tmp_path / "c.yaml", changed)) != fp
    # a prototype's numbers change: so does the fingerprint of every generator using it
    import dataclasses

    olivine = lib.BY_ID["olivine_LiFePO4"]
    lib.BY_ID["olivine_LiFePO4"] = dataclasses.replace(olivine, lattice=(10.34, *olivine.lattice[1:]))
    try:
        assert generator_fingerprint(a) != fp
    finally:
        lib.BY_ID["olivine_LiFePO4"] = olivine
    assert generator_fingerprint(a) == fp


def test_generator_fingerprint_of_a_bad_file_names_the_key(tmp_path):
    from mi.candidates.generate import generator_fingerprint
    from mi.errors import ConfigError

    bad = write_yaml(tmp_path / "bad.yaml", {"name": "bad", "generate": {"prototypes": [{"prototype": "olivine_LiFePO4", "sitez": {}}]}})
    with pytest.raises(ConfigError, match="sitez"):
        generator_fingerprint(bad)
    with pytest.raises(TypeError):
        generator_fingerprint(42)


# --- shards, readers, CLI ------------------------------------------------------------------------------------


SMALL = {
    "name": "small",
    "generate": {
        "prototypes": [
            {"prototype": "olivine_LiFePO4", "sites": {"A": ["Li", "Na"], "M": ["Fe", "Mn"]}},
            {"prototype": "layered_O3_LiCoO2", "name": "NMC", "mix": [{"site": "M", "species": ["Ni", "Mn", "Co"], "max_sites": 3}]},
            {"prototype": "layered_O3_LiCoO2", "name": "NMC811", "mix": [{"site": "M", "species": ["Ni", "Mn", "Co"], "fractions": [[0.8, 0.1, 0.1]], "mode": "virtual"}]},
        ],
        "compositions": [{"name": "lfpo", "elements": ["Li", "Fe", "P", "O"], "require": ["Li", "P"], "max_elements": 4, "max_stoichiometry": 4}],
    },
    "output": {"dir": "out", "shard_size": 4},
}


def _lines(paths: list[Path]) -> list[dict]:
    return [json.loads(line) for p in paths for line in p.read_text().splitlines()]


def test_mi_generate_writes_shards_and_a_summary(tmp_path, capsys):
    path = write_yaml(tmp_path / "gen.yaml", SMALL)
    assert main(["generate", str(path), "--no-progress"]) == 0
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    shards = sorted((out / "shards").glob("*.jsonl"))
    records = _lines(shards)
    assert len(records) == summary["counts"]["kept"] > 0
    assert all(len(p.read_text().splitlines()) <= 4 for p in shards)
    assert set(summary["families"]) == {"olivine_LiFePO4", "NMC", "NMC811", "compositions:lfpo"}
    assert summary["families"]["olivine_LiFePO4"]["kept"] == 4
    assert yaml.safe_load((out / "config.yaml").read_text())["name"] == "small"
    assert "kept" in capsys.readouterr().out
    # a rerun replaces the shards, it does not add to them
    assert main(["generate", str(path), "--no-progress"]) == 0
    assert len(_lines(sorted((out / "shards").glob("*.jsonl")))) == len(records)


def test_mi_screen_reads_the_shards(tmp_path):
    gen_path = write_yaml(tmp_path / "gen.yaml", SMALL)
    assert main(["generate", str(gen_path), "--no-progress"]) == 0
    screen = {
        "name": "generated",
        "candidates": {"sources": ["out/shards"]},
        "ranking": {"objectives": [{"column": "capacity_mAh_g", "direction": "max"}], "top_k": 3},
        "export": {"out_dir": "runs"},
    }
    screen_path = write_yaml(tmp_path / "screen.yaml", screen)
    run_dir = tmp_path / "run"
    assert main(["screen", str(screen_path), "--out", str(run_dir), "--no-progress"]) == 0
    with open(run_dir / "ranked.csv", newline="") as fh:
        ranked = list(csv.DictReader(fh))
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert len(ranked) + sum(1 for _ in open(run_dir / "failures.csv")) - 1 == summary["counts"]["kept"]
    assert {r["id"].split(":")[0] for r in ranked} >= {"olivine_LiFePO4", "NMC"}


def test_screening_config_takes_a_generator_directly(tmp_path):
    gen_path = write_yaml(tmp_path / "gen.yaml", SMALL)
    inline = CandidatesConfig(generate=SMALL["generate"])
    by_path = CandidatesConfig(generate="gen.yaml")
    a, fa = read_candidates(inline, lambda p: tmp_path / p)
    b, fb = read_candidates(by_path, lambda p: tmp_path / p)
    assert [c.id for c in a] == [c.id for c in b] and not fa and not fb
    assert any(c.structure is None for c in a) and any(c.structure is not None for c in a)
    assert all(c.source.startswith("generate:") and c.content_hash for c in a)
    assert gen_path.is_file()


def test_extxyz_shards_carry_ids_and_read_back(tmp_path):
    cfg = {**SMALL, "output": {"dir": "out", "format": "extxyz", "shard_size": 100}}
    summary = run(load_generate_config(write_yaml(tmp_path / "gen.yaml", cfg)))
    shards = sorted((tmp_path / "out" / "shards").iterdir())
    assert any(p.suffix == ".extxyz" for p in shards) and any(p.suffix == ".jsonl" for p in shards)
    cands, failures = read_candidates(CandidatesConfig(sources=[str(tmp_path / "out" / "shards")]), Path)
    assert not failures and len(cands) == summary["counts"]["kept"]
    assert any(c.id.startswith("NMC:") and c.has_structure for c in cands)


def test_jsonl_reader_reports_bad_lines_and_reads_the_rest(tmp_path, li2s):
    from mi.candidates.generate.shards import structure_record

    good = json.dumps(structure_record("li2s", li2s))
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join([good, "{not json", json.dumps({"id": "x", "lattice": [[1, 0, 0]]}), json.dumps({"id": "f", "formula": "LiFePO4"})]) + "\n")
    cands, failures = read_candidates(CandidatesConfig(sources=[str(path)]), Path)
    assert [c.id for c in cands] == ["li2s", "f"]
    assert [(f.record, f.id) for f in failures] == [("line 2", "mixed:2"), ("line 3", "x")]
    assert cands[0].structure.composition == li2s.composition
    assert np.allclose(cands[0].structure.lattice.matrix, li2s.lattice.matrix)


def test_disordered_virtual_structure_records_round_trip(tmp_path):
    from mi.candidates.generate.shards import record_item, structure_record

    s = Structure(Lattice.cubic(4.0), [{"Ni": 0.8, "Co": 0.2}, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    back = record_item(json.loads(json.dumps(structure_record("v", s))))
    assert back.composition.almost_equals(s.composition)


def test_screen_manifest_records_the_generator_fingerprint(tmp_path):
    gen_path = write_yaml(tmp_path / "gen.yaml", SMALL)
    screen = {
        "name": "generated",
        "candidates": {"generate": "gen.yaml"},
        "ranking": {"objectives": [{"column": "capacity_mAh_g", "direction": "max"}], "top_k": 3},
        "export": {"out_dir": "runs"},
    }
    screen_path = write_yaml(tmp_path / "screen.yaml", screen)

    def fingerprint(run_dir):
        assert main(["screen", str(screen_path), "--out", str(run_dir), "--no-progress"]) == 0
        hashes = json.loads((run_dir / "manifest.json").read_text())["input_hashes"]
        return hashes[f"generate:{gen_path.resolve()}"]

    first = fingerprint(tmp_path / "run1")
    assert first == "sha256:" + generator_fingerprint(gen_path)
    changed = {**SMALL, "generate": {**SMALL["generate"], "dedupe": False}}
    write_yaml(gen_path, changed)
    assert fingerprint(tmp_path / "run2") != first


def test_tetrahedral_framework_sites_keep_their_highest_state():
    # P on the V5+ site of beta_II-Li3VO4 is P5+: Li2AlPO4 would need P3+ (a phosphite), so it is not made
    job = {"prototype": "betaII_Li3VO4", "sites": {"M": ["Li", "Al"], "X": ["V", "P"]}}
    out, _ = gen(prototypes=[job], filters={"radius_tolerance": None})
    assert {g.composition.reduced_formula for g in out} == {f("Li3VO4"), f("Li3PO4")}


def test_copper_on_the_working_ion_site_can_be_monovalent():
    # delafossite-like CuMO2 needs Cu+ beside M3+; pymatgen's common states of Cu hold 2+ only
    out, _ = gen(prototypes=[{"prototype": "layered_O3_LiCoO2", "sites": {"A": ["Cu"], "M": ["Ga", "Al", "Co"]}}])
    assert {g.composition.reduced_formula for g in out} == {f("CuGaO2"), f("CuAlO2"), f("CuCoO2")}
