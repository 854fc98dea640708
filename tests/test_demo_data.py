"""The demo candidate set (datasets/demo/): rebuilds byte for byte, every good file is what it claims, the
broken files are broken in the way they claim."""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Composition, Structure
from pymatgen.io.vasp import Poscar
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

DEMO = Path(__file__).resolve().parents[1] / "datasets" / "demo"
SCRIPT = DEMO / "build_demo.py"


def _load_build_demo():
    spec = importlib.util.spec_from_file_location("mi_demo_build_demo", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while the class body runs
    spec.loader.exec_module(module)
    return module


bd = _load_build_demo()
ENTRIES = {e.id: e for e in bd.ENTRIES}


def _read(path: Path) -> Structure:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Issues encountered while parsing CIF", category=UserWarning)
        return bd.read_structure(path)


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    results = bd.build(out)
    return out, results


def test_rebuild_equals_committed(rebuilt):
    out, results = rebuilt
    assert [r.entry.id for r in results] == list(ENTRIES)
    built = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert built == bd.expected_files()
    for rel in built:
        assert (DEMO / rel).is_file(), f"{rel} is not committed; run python datasets/demo/build_demo.py"
        assert (out / rel).read_bytes() == (DEMO / rel).read_bytes(), f"{rel} differs from a fresh build"
    committed = sorted(str(p.relative_to(DEMO)) for p in (DEMO / bd.STRUCTURES_DIR).iterdir())
    assert committed == [f for f in built if f.startswith(bd.STRUCTURES_DIR + "/")], "stray files in structures/"


def test_compare_trees_notices_a_changed_file(rebuilt, tmp_path):
    out, _ = rebuilt
    copy = tmp_path / "copy"
    for rel in bd.expected_files():
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        (copy / rel).write_bytes((out / rel).read_bytes())
    assert bd.compare_trees(out, copy) == []
    target = copy / bd.STRUCTURES_DIR / "LiFePO4.cif"
    target.write_text(target.read_text().replace("10.33770000", "10.33780000"))
    assert bd.compare_trees(out, copy) == [f"{bd.STRUCTURES_DIR}/LiFePO4.cif: differs"]


def test_main_check_passes_on_committed_files(capsys):
    assert bd.main(["--check", "--out", str(DEMO)]) == 0


def test_set_size_and_formats():
    assert len(ENTRIES) >= 10
    fmts = {e.id: e.fmt for e in ENTRIES.values()}
    assert fmts["LiCoO2"] == "vasp"
    assert fmts["Li2S"] == "json"
    assert fmts["Li3N"] == "extxyz"
    assert {i for i, f in fmts.items() if f != "cif"} == {"LiCoO2", "Li2S", "Li3N"}
    for e in ENTRIES.values():
        assert e.citation, e.id
        assert len(e.species) == len(e.coords), e.id


@pytest.mark.parametrize("cid", list(ENTRIES))
def test_committed_structure_is_what_it_claims(cid):
    e = ENTRIES[cid]
    path = DEMO / bd.STRUCTURES_DIR / e.filename
    s = _read(path)
    assert s.is_ordered
    assert s.composition.reduced_formula == e.formula
    assert s.composition == Composition(e.formula) * e.z
    assert SpacegroupAnalyzer(s, symprec=0.1).get_space_group_number() == e.sg_number
    dm = s.distance_matrix + np.eye(len(s)) * 1e6
    assert dm.min() >= bd.MIN_DISTANCE
    assert s.density == pytest.approx(e.ref_density, rel=e.density_tol)
    assert np.allclose(s.lattice.abc + s.lattice.angles, e.lattice, atol=1e-6)


def test_files_are_really_in_their_formats():
    sdir = DEMO / bd.STRUCTURES_DIR
    poscar = Poscar.from_file(sdir / "LiCoO2.vasp")
    assert poscar.structure.composition.reduced_formula == "LiCoO2"
    d = json.loads((sdir / "Li2S.json").read_text())
    assert d["@class"] == "Structure"
    assert Structure.from_dict(d).composition.reduced_formula == "Li2S"
    import ase.io

    atoms = ase.io.read(sdir / "Li3N.extxyz", format="extxyz")
    assert atoms.get_chemical_formula() == "Li3N"
    assert atoms.pbc.all()
    for e in ENTRIES.values():
        if e.fmt == "cif":
            text = (sdir / e.filename).read_text()
            assert text.startswith("# generated using pymatgen\ndata_"), e.id


def test_broken_empty_is_empty_and_unreadable():
    path = DEMO / bd.STRUCTURES_DIR / bd.BROKEN_EMPTY
    assert path.stat().st_size == 0
    with pytest.raises(Exception):
        Structure.from_file(path)


def test_broken_overlap_parses_but_has_two_atoms_too_close():
    path = DEMO / bd.STRUCTURES_DIR / bd.BROKEN_OVERLAP
    assert "DELIBERATELY BROKEN" in path.read_text().splitlines()[0]
    s = Structure.from_file(path)
    assert s.composition.reduced_formula == "LiFeO2"
    assert set(s.composition.chemical_system.split("-")) == {"Li", "Fe", "O"}
    dm = s.distance_matrix + np.eye(len(s)) * 1e6
    assert dm.min() == pytest.approx(bd.BROKEN_OVERLAP_DISTANCE, abs=1e-6)
    i, j = np.unravel_index(np.argmin(dm), dm.shape)
    assert s[int(i)].specie.symbol == s[int(j)].specie.symbol == "O"
    # exactly one bad pair: everything else is at a sane distance
    assert np.sort(dm, axis=None)[2] > bd.MIN_DISTANCE


def test_formulas_csv():
    with open(DEMO / bd.FORMULAS_CSV, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and list(rows[0]) == ["id", "formula", "note"]
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids))
    assert not set(ids) & set(ENTRIES)
    for r in rows:
        assert Composition(r["formula"]).num_atoms > 0, r
    by_id = {r["id"]: r["formula"] for r in rows}
    assert Composition(by_id["NMC811"]).almost_equals(Composition({"Li": 1, "Ni": 0.8, "Mn": 0.1, "Co": 0.1, "O": 2}))
    assert Composition(by_id["NVP"]).reduced_formula == Composition("Na3V2(PO4)3").reduced_formula
    nmc111 = Composition({"Li": 1, "Ni": 1 / 3, "Mn": 1 / 3, "Co": 1 / 3, "O": 2})
    assert Composition(by_id["NMC111"]).fractional_composition.almost_equals(nmc111.fractional_composition)


def test_readme_lists_every_file():
    text = (DEMO / "README.md").read_text()
    for e in ENTRIES.values():
        assert f"`{e.filename}`" in text, e.filename
    for name in (bd.BROKEN_EMPTY, bd.BROKEN_OVERLAP, bd.FORMULAS_CSV):
        assert name in text
    assert "python datasets/demo/build_demo.py" in text


# ---- the checks can fail ------------------------------------------------------------------------------


def test_check_rejects_spinel_in_the_wrong_origin_choice():
    spinel = ENTRIES["LiMn2O4"]
    wrong = dataclasses.replace(spinel, coords=((0.125, 0.125, 0.125), (0.5, 0.5, 0.5), (0.2631, 0.2631, 0.2631)))
    res = bd.check_entry(wrong)
    assert not res.ok
    assert res.formula == "Li2MnO4"  # Li16Mn8O32: origin-choice-2 coordinates under pymatgen's origin choice 1
    assert any("reduced formula" in p for p in res.problems)
    assert bd.check_entry(spinel).ok


def test_check_rejects_wrong_formula_space_group_density_and_bonds():
    lfp = ENTRIES["LiFePO4"]
    assert any("reduced formula" in p for p in bd.check_entry(dataclasses.replace(lfp, formula="LiMnPO4")).problems)
    assert any("space group" in p for p in bd.check_entry(dataclasses.replace(lfp, sg_number=14)).problems)
    assert any("density" in p for p in bd.check_entry(dataclasses.replace(lfp, ref_density=3.0)).problems)
    # P moved 0.05 along a: P-O bonds stretch out of their window
    moved = list(lfp.coords)
    moved[2] = (0.14486, 0.25, 0.41820)
    assert any(p.startswith("P-O") for p in bd.check_entry(dataclasses.replace(lfp, coords=tuple(moved))).problems)


def test_check_rejects_overlapping_sites():
    li2o = ENTRIES["Li2O"]
    squashed = dataclasses.replace(li2o, lattice=(2.0, 2.0, 2.0, 90.0, 90.0, 90.0))
    assert any("apart" in p for p in bd.check_entry(squashed).problems)


def test_build_refuses_to_write_when_a_check_fails(tmp_path, monkeypatch):
    bad = dataclasses.replace(ENTRIES["Li2O"], sg_number=1)
    monkeypatch.setattr(bd, "ENTRIES", (bad,))
    with pytest.raises(bd.DemoBuildError):
        bd.build(tmp_path)
    assert not any(tmp_path.iterdir())
