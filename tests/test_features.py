"""Feature sets: hand-checked values, the frame `featurize` returns, bad candidates isolated, versions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pymatgen.core import Composition, Lattice, Structure

from mi.candidates.base import Candidate, composition_hash, structure_hash
from mi.errors import ConfigError
from mi.features import FEATURE_SETS, feature_columns, featurize
from mi.features.composition import composition_feature_names, composition_features, magpie_table
from mi.features.structure import structure_feature_names, structure_features


def formula_candidate(formula: str, cid: str | None = None) -> Candidate:
    composition = Composition(formula)
    return Candidate(cid or formula, "test.csv", cid or formula, composition, None, composition_hash(composition))


def structure_candidate(structure: Structure, cid: str) -> Candidate:
    return Candidate(cid, f"{cid}.cif", cid, structure.composition, structure, structure_hash(structure))


@pytest.fixture(scope="module")
def rocksalt() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def features_of(formula: str) -> dict[str, float]:
    return dict(zip(composition_feature_names(), composition_features([Composition(formula)])[0]))


def test_lifepo4_by_hand():
    f = features_of("LiFePO4")  # Z: Li 3, Fe 26, P 15, O 8 x4; 7 atoms
    assert f["mean_Number"] == pytest.approx(76 / 7)
    assert f["avg_dev_Number"] == pytest.approx((76 / 7 - 3 + 26 - 76 / 7 + 15 - 76 / 7 + 4 * (76 / 7 - 8)) / 7)
    assert (f["min_Number"], f["max_Number"], f["range_Number"]) == (3, 26, 23)
    assert f["mode_Number"] == 8  # O is the most abundant element
    assert f["mean_Electronegativity"] == pytest.approx((0.98 + 1.83 + 2.19 + 4 * 3.44) / 7)
    assert f["L0_norm"] == 4
    assert f["L2_norm"] == pytest.approx(math.sqrt(1 + 1 + 1 + 16) / 7)
    assert len(f) == 145  # Magpie's attribute count: 132 + 6 + 4 + 3


def test_mode_breaks_ties_to_the_smallest_value():
    f = features_of("NaCl")  # equal amounts: the smaller Z wins
    assert f["mode_Number"] == 11
    assert features_of("Na1Cl1.5")["mode_Number"] == 17


def test_valence_fractions_fe2o3():
    f = features_of("Fe2O3")  # Fe 4s2 3d6, O 2s2 2p4 -> per atom s 2, p 12/5, d 12/5; total 34/5
    assert f["frac_s_valence"] == pytest.approx(2 / 6.8)
    assert f["frac_p_valence"] == pytest.approx(2.4 / 6.8)
    assert f["frac_d_valence"] == pytest.approx(2.4 / 6.8)
    assert f["frac_f_valence"] == 0


def test_ionic_character_by_hand():
    f = features_of("LiF")  # Pauling X: Li 0.98, F 3.98
    ionic = 1 - math.exp(-0.25 * 3.0**2)
    assert f["max_ionic_char"] == pytest.approx(ionic)
    assert f["avg_ionic_char"] == pytest.approx(0.25 * ionic)
    assert f["compound_possible"] == 1.0
    assert features_of("Li")["max_ionic_char"] == 0 and features_of("Li")["compound_possible"] == 1.0
    assert features_of("LiO3")["compound_possible"] == 0.0  # Li+ and O2- cannot balance LiO3


def test_scale_invariant_and_imputed_where_magpie_has_no_value():
    a, b = composition_features([Composition("LiFePO4"), Composition("Li2Fe2P2O8")])
    np.testing.assert_allclose(a, b)
    table = magpie_table()
    column = list(composition_feature_names()).index("max_Electronegativity") // 6
    assert math.isnan(table.raw[18, column])  # Magpie has no electronegativity for Ar ...
    f = features_of("NaClAr")  # ... so, as in matminer, Ar gets the mean over the elements that have one
    assert f["max_Electronegativity"] == pytest.approx(max(3.16, np.nanmean(table.raw[1:, column])))
    assert table.values.shape == (119, 22)


def test_structure_features(rocksalt):
    row = dict(zip(structure_feature_names(), structure_features([rocksalt, None])[0]))
    assert row["density_g_cm3"] == pytest.approx(4 * (22.98977 + 35.453) / 6.02214e23 / (5.64e-8) ** 3, rel=1e-3)
    assert row["volume_per_atom_A3"] == pytest.approx(5.64**3 / 8)
    spheres = 4 * 4 / 3 * math.pi * (1.80**3 + 1.00**3)  # Slater radii: Na 1.80, Cl 1.00
    assert row["packing_fraction"] == pytest.approx(spheres / 5.64**3)
    assert row["cn_mean"] == 6 and row["cn_std"] == 0
    assert row["bond_length_mean_A"] == pytest.approx(5.64 / 2)
    assert row["spacegroup_number"] == 225
    assert np.isnan(structure_features([None])).all()


def test_partial_occupancy_counts_atoms_by_occupancy():
    half = Structure(Lattice.cubic(4.0), [{"Li": 0.5}, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert structure_features([half])[0, 1] == pytest.approx(64 / 1.5)


def test_featurize_frame_and_nan_structure_row(rocksalt):
    candidates = [formula_candidate("LiFePO4", "lfp"), structure_candidate(rocksalt, "nacl")]
    frame, failures = featurize(candidates, ["composition", "structure"])
    assert failures == []
    assert list(frame.index) == ["lfp", "nacl"] and frame.index.name == "id"
    assert list(frame.columns) == feature_columns(["composition", "structure"])
    assert frame.columns[0].startswith("composition.") and "structure.density_g_cm3" in frame.columns
    structure_cols = [f"structure.{n}" for n in structure_feature_names()]
    assert frame.loc["lfp", structure_cols].isna().all()
    assert frame.loc["nacl", structure_cols].notna().all()
    assert frame.loc["lfp", "composition.mean_Number"] == pytest.approx(76 / 7)


def test_bad_candidate_is_isolated():
    bad = formula_candidate("Og2O", "heavy")  # Z = 118: no Magpie data at all
    collapsed = Structure(Lattice([[1, 0, 0], [0, 1, 0], [2, 0, 0]]), ["Li"], [[0, 0, 0]], validate_proximity=False)
    flat = Candidate("flat", "flat.cif", "flat", collapsed.composition, collapsed, "sha256:x")
    good = [formula_candidate("LiCoO2", "lco"), formula_candidate("Li3PS4", "lps")]
    frame, failures = featurize([good[0], bad, flat, good[1]], ["composition", "structure"])
    assert list(frame.index) == ["lco", "lps"]
    assert {f.id for f in failures} == {"heavy", "flat"}
    assert all(f.stage == "features" for f in failures)
    reasons = {f.id: f.reason for f in failures}
    assert "composition" in reasons["heavy"] and "Og" in reasons["heavy"]
    assert "structure" in reasons["flat"] and "volume" in reasons["flat"]


def test_unknown_set_is_a_config_error():
    with pytest.raises(ConfigError, match=r"features\.sets.*'magpie'"):
        featurize([formula_candidate("LiCoO2")], ["composition", "magpie"])


def test_working_ion_set_needs_the_ion():
    with pytest.raises(ConfigError, match="working_ion"):
        featurize([formula_candidate("LiCoO2")], ["working_ion"])
    frame, _ = featurize([formula_candidate("Li2O", "li2o")], ["working_ion"], working_ion="Li")
    assert frame.loc["li2o", "working_ion.site_fraction"] == pytest.approx(2 / 3)
    assert frame.loc["li2o", "working_ion.min_distance_A"] != frame.loc["li2o", "working_ion.min_distance_A"]  # NaN


def test_registry_is_versioned():
    for name, feature_set in FEATURE_SETS.items():
        assert feature_set.name == name and isinstance(feature_set.version, int)
        assert len(feature_set.names()) == len(set(feature_set.names()))
    assert FEATURE_SETS["composition"].version >= 2  # v2 changed what composition computes
    empty, failures = featurize([], ["composition"])
    assert empty.shape == (0, len(composition_feature_names())) and failures == []


def test_element_fractions_by_hand_and_past_lawrencium_isolated():
    candidates = [formula_candidate(f) for f in ("LiFePO4", "Li2O", "RfO2")]
    frame, failures = featurize(candidates, ["element_fraction"])
    assert list(frame.index) == ["LiFePO4", "Li2O"]
    assert frame.loc["LiFePO4", "element_fraction.x_Fe"] == pytest.approx(1 / 7)
    assert frame.loc["Li2O", "element_fraction.x_Li"] == pytest.approx(2 / 3)
    np.testing.assert_allclose(frame.sum(axis=1), 1.0)
    assert frame.shape[1] == 103 and frame.columns[0] == "element_fraction.x_H"
    assert len(failures) == 1 and "Rf" in failures[0].reason
