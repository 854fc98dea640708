"""Structure, working-ion and graph features: by hand, against pymatgen and matminer, on disorder and OBELiX."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.core.bond_valence import calculate_bv_sum

from mi.features import graph_features, load_graphs, save_graphs
from mi.features.structure import (
    StructureAnalysis,
    structure_feature_names,
    structure_row,
    working_ion_feature_names,
    working_ion_row,
)

OBELIX_CIFS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "obelix" / "train_cifs"


def structure_dict(structure: Structure) -> dict[str, float]:
    return dict(zip(structure_feature_names(), structure_row(StructureAnalysis(structure))))


def ion_dict(structure: Structure, ion: str = "Li") -> dict[str, float]:
    return dict(zip(working_ion_feature_names(), working_ion_row(StructureAnalysis(structure), ion)))


@pytest.fixture(scope="module")
def rocksalt() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_antifluorite_li2s_by_hand(li2s):
    a = 5.708
    s = structure_dict(li2s)
    assert s["cn_min"] == 4 and s["cn_max"] == 8  # Li in S4 tetrahedra, S in Li8 cubes
    assert s["cn_mean"] == pytest.approx((8 * 4 + 4 * 8) / 12)
    assert s["bond_length_mean_A"] == pytest.approx(a * math.sqrt(3) / 4)
    assert s["spacegroup_number"] == 225
    w = ion_dict(li2s)
    assert w["site_fraction"] == pytest.approx(2 / 3)
    assert w["min_distance_A"] == pytest.approx(a / 2) and w["mean_nn_distance_A"] == pytest.approx(a / 2)
    assert w["volume_per_anion_A3"] == pytest.approx(a**3 / 4)


@pytest.mark.parametrize("fixture", ["li2s", "licoo2"])
def test_bond_valence_sum_equals_pymatgen(fixture, request):
    structure = request.getfixturevalue(fixture)
    lithium = [k for k, site in enumerate(structure) if site.specie.symbol == "Li"]
    expected = [calculate_bv_sum(structure[k], structure.get_neighbors(structure[k], 4.0)) for k in lithium]
    w = ion_dict(structure)
    assert w["bvs_mean"] == pytest.approx(np.mean(expected), rel=1e-10)
    assert w["bvs_deviation"] == pytest.approx(np.mean(np.abs(np.array(expected) - 1)), rel=1e-10)


def test_anions_from_oxidation_states_match_the_element_rule(li2s):
    decorated = li2s.copy()
    decorated.add_oxidation_state_by_element({"Li": 1, "S": -2})
    assert ion_dict(decorated)["volume_per_anion_A3"] == pytest.approx(ion_dict(li2s)["volume_per_anion_A3"])
    li3p = Structure(
        Lattice.cubic(5.0), ["Li", "Li", "Li", "P"], [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0.5, 0.5, 0.5]]
    )
    assert ion_dict(li3p)["volume_per_anion_A3"] == pytest.approx(125.0)  # P: the most electronegative element


def test_no_working_ion_gives_nan_not_failure(rocksalt):
    w = ion_dict(rocksalt, "Li")
    assert w["site_fraction"] == 0 and math.isnan(w["min_distance_A"]) and math.isnan(w["bvs_deviation"])
    assert w["volume_per_anion_A3"] == pytest.approx(5.64**3 / 4)
    sodium = ion_dict(rocksalt, "Na")
    assert sodium["min_distance_A"] == pytest.approx(5.64 / math.sqrt(2))


def test_disorder_weights_and_split_sites():
    # Rocksalt LiO with Li on a split site: two half-occupied positions 0.6 A apart around each cation site.
    d = 0.6 / 4.2 / 2
    lattice = Lattice.cubic(4.2)
    split = Structure(lattice, [{"Li": 0.5}, {"Li": 0.5}, "O"], [[d, 0, 0], [-d, 0, 0], [0.5, 0.5, 0.5]])
    w = ion_dict(split)
    # The split partner (0.6 A) is an alternative position, not a neighbour: the nearest Li is the partner's
    # image in the next cell, 4.2 - 0.6 A away.
    assert w["min_distance_A"] == pytest.approx(3.6)
    assert w["site_fraction"] == pytest.approx(1 / 2)
    s = structure_dict(split)
    assert s["volume_per_atom_A3"] == pytest.approx(4.2**3 / 2)
    assert s["bond_length_min_A"] > 1.5
    # A vacancy-diluted site: each neighbour counts with its occupancy.
    ordered = Structure(lattice, ["Li", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    diluted = Structure(lattice, [{"Li": 0.25}, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    cn_ordered = structure_dict(ordered)["cn_max"]
    assert cn_ordered == 8 and structure_dict(diluted)["cn_max"] == 8  # Li sees 8 full O
    assert structure_dict(diluted)["cn_min"] == pytest.approx(8 * 0.25)  # O sees 8 quarter Li


def test_refuses_overlapping_atoms_and_absurd_cells():
    overlap = Structure(Lattice.cubic(4.0), ["Li", "O"], [[0, 0, 0], [0.001, 0, 0]], validate_proximity=False)
    with pytest.raises(ValueError, match="overlap"):
        structure_row(StructureAnalysis(overlap))
    crowded = Structure(
        Lattice.cubic(3.0), ["Li"] * 2000, np.random.default_rng(0).random((2000, 3)), validate_proximity=False
    )
    with pytest.raises(ValueError, match="neighbour list"):
        structure_row(StructureAnalysis(crowded))


def test_equals_matminer_on_ordered_structures(li2s, licoo2, rocksalt):
    pytest.importorskip("matminer", reason="matminer is a test/benchmark-only dependency")
    from matminer.featurizers.site import CoordinationNumber
    from matminer.featurizers.structure import DensityFeatures, SiteStatsFingerprint
    from pymatgen.analysis.local_env import MinimumDistanceNN

    cn = SiteStatsFingerprint(
        CoordinationNumber(MinimumDistanceNN(), use_weights="none"), stats=("mean", "std_dev", "minimum", "maximum")
    )
    for structure in (li2s, licoo2, rocksalt):
        expected = DensityFeatures().featurize(structure) + list(cn.featurize(structure))
        np.testing.assert_allclose(structure_row(StructureAnalysis(structure))[:7], expected, rtol=1e-12)


def test_graph_features(rocksalt, tmp_path):
    g = graph_features(rocksalt, cutoff=3.0, max_neighbors=12, vectors=True)
    n = len(rocksalt)
    assert g["edge_index"].shape == (2, 6 * n) and g["edge_index"].dtype == np.int32
    assert g["distances"].dtype == np.float32
    np.testing.assert_allclose(g["distances"], 2.82, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(g["vectors"], axis=1), g["distances"], rtol=1e-6)
    assert np.all(np.diff(g["edge_index"][0]) >= 0)  # sorted by centre
    assert list(g["atomic_numbers"][:1]) in ([11], [17])
    trimmed = graph_features(rocksalt, cutoff=6.0, max_neighbors=4)
    assert np.bincount(trimmed["edge_index"][0]).tolist() == [4] * n
    assert trimmed["distances"].max() == pytest.approx(2.82, rel=1e-6)  # the nearest ones are kept
    save_graphs(tmp_path / "graphs.npz", {"nacl": g, "nacl-trimmed": trimmed | {"vectors": g["vectors"][:0]}})
    loaded = load_graphs(tmp_path / "graphs.npz")
    assert set(loaded) == {"nacl", "nacl-trimmed"}
    for key, value in g.items():
        np.testing.assert_array_equal(loaded["nacl"][key], value)
    np.testing.assert_array_equal(loaded["nacl-trimmed"]["edge_index"], trimmed["edge_index"])


def _obelix_structures(limit: int) -> list[tuple[str, Structure]]:
    from pymatgen.io.cif import CifParser

    out = []
    for path in sorted(OBELIX_CIFS.glob("*.cif"))[:limit]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out.append((path.name, CifParser(path).parse_structures(primitive=False)[0]))
            except Exception:  # noqa: BLE001 - unreadable CIFs are the reader's business, not this test's
                continue
    return out


@pytest.mark.shared
def test_obelix_structures_are_described():
    structures = _obelix_structures(40)
    assert len(structures) >= 30
    disordered = 0
    for name, structure in structures:
        analysis = StructureAnalysis(structure)
        s = dict(zip(structure_feature_names(), structure_row(analysis)))
        w = dict(zip(working_ion_feature_names(), working_ion_row(analysis, "Li")))
        disordered += not structure.is_ordered
        assert 0 < s["packing_fraction"] < 1.5 and s["cn_mean"] > 0, name
        assert 0.9 < s["bond_length_min_A"] < s["bond_length_max_A"] < 4.0, name
        if w["site_fraction"] > 0:
            # No two lithium ions closer than in any real solid: split sites are not counted as pairs.
            assert 1.4 < w["min_distance_A"] <= w["mean_nn_distance_A"], name
            assert 0 <= w["bvs_deviation"] < 1.5, name
    assert disordered >= 10
