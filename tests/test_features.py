"""Feature sets: hand-checked values, NaN for what is unknown, bad candidates isolated."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pymatgen.core import Composition, Lattice, Structure

from mi.candidates.base import Candidate, composition_hash, structure_hash
from mi.errors import ConfigError
from mi.features import FEATURE_SETS, feature_columns, featurize
from mi.features.composition import composition_feature_names, composition_features, element_property_table
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
    assert f["mean_Z"] == pytest.approx(76 / 7)
    assert f["avg_dev_Z"] == pytest.approx((76 / 7 - 3 + 26 - 76 / 7 + 15 - 76 / 7 + 4 * (76 / 7 - 8)) / 7)
    assert (f["min_Z"], f["max_Z"], f["range_Z"]) == (3, 26, 23)
    assert f["mean_electronegativity"] == pytest.approx((0.98 + 1.83 + 2.19 + 4 * 3.44) / 7)
    assert f["L0_norm"] == 4
    assert f["L2_norm"] == pytest.approx(math.sqrt(1 + 1 + 1 + 16) / 7)


def test_valence_fractions_fe2o3():
    f = features_of("Fe2O3")  # Fe 4s2 3d6, O 2s2 2p4 -> per atom s 2, p 12/5, d 12/5; total 34/5
    assert f["frac_s_valence"] == pytest.approx(2 / 6.8)
    assert f["frac_p_valence"] == pytest.approx(2.4 / 6.8)
    assert f["frac_d_valence"] == pytest.approx(2.4 / 6.8)
    assert f["frac_f_valence"] == 0


def test_scale_invariant_and_nan_where_unknown():
    a, b = composition_features([Composition("LiFePO4"), Composition("Li2Fe2P2O8")])
    np.testing.assert_allclose(a, b)
    f = features_of("NaClAr")  # pymatgen has no Pauling electronegativity for Ar
    assert math.isnan(f["mean_electronegativity"]) and math.isnan(f["max_electronegativity"])
    assert f["mean_Z"] == pytest.approx((11 + 17 + 18) / 3)
    assert element_property_table().shape[0] == 104


def test_structure_features(rocksalt):
    density, volume, packing = structure_features([rocksalt, None])[0]
    assert density == pytest.approx(4 * (22.98977 + 35.453) / 6.02214e23 / (5.64e-8) ** 3, rel=1e-3)
    assert volume == pytest.approx(5.64**3 / 8)
    spheres = 4 * 4 / 3 * math.pi * (1.80**3 + 1.00**3)  # Slater radii: Na 1.80, Cl 1.00
    assert packing == pytest.approx(spheres / 5.64**3)
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
    assert frame.loc["lfp", "composition.mean_Z"] == pytest.approx(76 / 7)


def test_bad_candidate_is_isolated():
    bad = formula_candidate("Og2O", "heavy")  # Z = 118: outside the element table
    collapsed = Structure(Lattice([[1, 0, 0], [0, 1, 0], [2, 0, 0]]), ["Li"], [[0, 0, 0]], validate_proximity=False)
    flat = Candidate("flat", "flat.cif", "flat", collapsed.composition, collapsed, "sha256:x")
    good = [formula_candidate("LiCoO2", "lco"), formula_candidate("Li3PS4", "lps")]
    frame, failures = featurize([good[0], bad, flat, good[1]], ["composition", "structure"])
    assert list(frame.index) == ["lco", "lps"]
    assert {f.id for f in failures} == {"heavy", "flat"}
    assert all(f.stage == "features" for f in failures)
    reasons = {f.id: f.reason for f in failures}
    assert "composition" in reasons["heavy"] and "103" in reasons["heavy"]
    assert "structure" in reasons["flat"] and "volume" in reasons["flat"]


def test_unknown_set_is_a_config_error():
    with pytest.raises(ConfigError, match=r"features\.sets.*'magpie'"):
        featurize([formula_candidate("LiCoO2")], ["composition", "magpie"])


def test_registry_is_versioned():
    for name, feature_set in FEATURE_SETS.items():
        assert feature_set.name == name and isinstance(feature_set.version, int)
        assert len(feature_set.names()) == len(set(feature_set.names()))
    empty, failures = featurize([], ["composition"])
    assert empty.shape == (0, len(composition_feature_names())) and failures == []
