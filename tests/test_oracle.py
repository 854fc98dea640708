"""The CHGNet oracle: right-handed lattices, single points, relaxations, failures isolated, lazy import."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from pymatgen.core import Composition, Lattice, Structure

from mi.candidates.base import Candidate, structure_hash
from mi.errors import ConfigError
from mi.oracle.lattice import right_handed

pytest.importorskip("chgnet")


def _cand(cid: str, structure: Structure | None, formula: str = "") -> Candidate:
    comp = structure.composition if structure is not None else Composition(formula)
    return Candidate(cid, "test", "", comp, structure, structure_hash(structure) if structure is not None else "x")


def _nacl() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).get_primitive_structure()


def _left_handed(s: Structure) -> Structure:
    m = s.lattice.matrix
    swapped = Structure(Lattice(m[[1, 0, 2]]), s.species, s.frac_coords[:, [1, 0, 2]])
    assert np.linalg.det(swapped.lattice.matrix) < 0
    return swapped


@pytest.fixture(scope="module")
def oracle():
    from mi.oracle.chgnet import CHGNetOracle

    return CHGNetOracle(max_steps=15, time_limit_s=60)


def test_right_handed_keeps_the_crystal():
    s = _nacl()
    left = _left_handed(s)
    fixed = right_handed(left)
    assert np.linalg.det(fixed.lattice.matrix) > 0
    assert fixed.volume == pytest.approx(s.volume)
    np.testing.assert_allclose(fixed.cart_coords, left.cart_coords, atol=1e-9)
    assert [str(x) for x in fixed.species] == [str(x) for x in left.species]
    assert right_handed(s) is s  # already right-handed: untouched


def test_left_handed_lattice_relaxes_like_the_right_handed_one(oracle):
    s = _nacl()
    strained = Structure(Lattice(s.lattice.matrix * 1.03), s.species, s.frac_coords)
    results, failures = oracle.relax([_cand("right", strained), _cand("left", _left_handed(strained))])
    assert not failures
    right, left = results
    assert np.linalg.det(left.structure.lattice.matrix) > 0
    assert left.energy_eV_atom == pytest.approx(right.energy_eV_atom, abs=2e-3)
    assert left.structure.volume == pytest.approx(right.structure.volume, rel=5e-3)
    assert left.n_steps > 0


def test_single_points_are_batched_and_match_one_by_one(oracle, licoo2):
    cands = [_cand("nacl", _nacl()), _cand("licoo2", licoo2.get_primitive_structure())]
    batch, failures = oracle.single_point(cands)
    assert not failures and [r.id for r in batch] == ["nacl", "licoo2"]
    alone = [oracle.single_point([c])[0][0].energy_eV_atom for c in cands]
    np.testing.assert_allclose([r.energy_eV_atom for r in batch], alone, atol=1e-5)
    assert all(r.n_steps == 0 for r in batch)


def test_bad_candidates_fail_alone(oracle):
    disordered = Structure(Lattice.cubic(4.0), [{"Na": 0.5, "K": 0.5}, "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    cands = [_cand("formula", None, "LiFePO4"), _cand("good", _nacl()), _cand("disordered", disordered)]
    results, failures = oracle.relax(cands)
    assert [r.id for r in results] == ["good"]
    reasons = {f.id: f.reason for f in failures}
    assert "no structure" in reasons["formula"] and "disordered" in reasons["disordered"]
    assert all(f.stage == "oracle" for f in failures)


def test_time_limit_is_a_failure():
    from mi.oracle.chgnet import CHGNetOracle

    strained = Structure(Lattice.cubic(3.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    results, failures = CHGNetOracle(max_steps=50, time_limit_s=1e-6).relax([_cand("slow", strained)])
    assert not results and "time limit" in failures[0].reason


def test_memory_limit_is_a_failure(monkeypatch):
    import mi.oracle.chgnet as chgnet

    strained = Structure(Lattice.cubic(3.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    readings = iter(range(0, 10**6, 100))  # resident memory climbing 100 MB a step: a runaway
    monkeypatch.setattr(chgnet, "_rss_mb", lambda: float(next(readings)))
    oracle = chgnet.CHGNetOracle(max_steps=50, time_limit_s=None, max_memory_mb=250)
    results, failures = oracle.relax([_cand("grows", strained)])
    assert not results and len(failures) == 1
    assert "memory limit of 250 MB exceeded after 3 relaxation steps" in failures[0].reason


def test_registry():
    from mi.oracle.chgnet import CHGNetOracle
    from mi.oracle.registry import get_oracle, oracle_names, register_oracle

    assert isinstance(get_oracle("chgnet", max_steps=3), CHGNetOracle)
    with pytest.raises(ConfigError, match="unknown oracle 'nope'"):
        get_oracle("nope")
    with pytest.raises(ConfigError, match="chgnet"):
        get_oracle("chgnet", not_a_setting=1)
    register_oracle("mine", lambda **kw: CHGNetOracle(**kw))
    assert "mine" in oracle_names() and get_oracle("mine", fmax=0.2).fmax == 0.2


def test_importing_mi_does_not_import_chgnet():
    code = (
        "import sys, mi, mi.cli, mi.oracle.label, mi.oracle.chgnet, mi.oracle.registry, mi.oracle.run\n"
        "from mi.oracle.label import chgnet_labeller\n"
        "chgnet_labeller(max_steps=1)\n"
        "assert 'chgnet' not in sys.modules, 'chgnet imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
