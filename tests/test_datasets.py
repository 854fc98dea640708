"""Dataset readers: CSV, JSON, extended XYZ, ASE db, OBELiX, Materials Project and Matbench conversions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from mi.config import DatasetConfig
from mi.errors import ConfigError, InputError
from mi.models.datasets import (
    OBELIX_TARGET,
    dataset_hash,
    load_dataset,
    load_materials_project,
    load_obelix,
    matbench_frame_to_dataset,
    mp_docs_to_dataset,
    obelix_conductivity,
    read_table,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="module")
def nacl() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_csv_with_formulas_and_missing_values(tmp_path):
    (tmp_path / "t.csv").write_text("id,formula,gap\na,LiF,13.6\nb,NaCl,\nc,Li#O,1.0\n")
    dataset = read_table(tmp_path / "t.csv", {"band_gap": "gap"}, {"band_gap": "eV"})
    assert list(dataset.frame.index) == ["a", "b", "c"] and dataset.units == {"band_gap": "eV"}
    assert dataset.frame.loc["a", "band_gap"] == 13.6 and math.isnan(dataset.frame.loc["b", "band_gap"])
    assert dataset.structures is None
    candidates, failures = dataset.candidates()
    assert [c.id for c in candidates] == ["a", "b"] and failures[0].id == "c"  # not a formula
    with pytest.raises(InputError, match="missing column"):
        read_table(tmp_path / "t.csv", {"band_gap": "bandgap"})


def test_csv_with_structure_files(tmp_path, li2s, nacl):
    li2s.to(filename=str(tmp_path / "li2s.cif"))
    nacl.to(filename=str(tmp_path / "nacl.cif"))
    (tmp_path / "t.csv").write_text("cif,y\nli2s.cif,1\nnacl.cif,2\nmissing.cif,3\n")
    dataset = read_table(tmp_path / "t.csv", {"y": "y"}, structure_column="cif")
    assert len(dataset) == 2 and dataset.structures[0].composition.reduced_formula == "Li2S"
    assert len(dataset.failures) == 1 and dataset.failures[0].record == "2"


def test_json_records_with_structures_and_units(tmp_path, licoo2):
    records = [
        {"id": "lco", "structure": licoo2.as_dict(), "e": -1.5},
        {"id": "broken", "structure": {"not": "a structure"}, "e": 0.0},
    ]
    (tmp_path / "t.json").write_text(json.dumps({"data": records, "units": {"e_form": "eV/atom"}}))
    dataset = read_table(tmp_path / "t.json", {"e_form": "e"}, structure_column="structure")
    assert list(dataset.frame.index) == ["lco"] and dataset.units == {"e_form": "eV/atom"}
    assert dataset.structures[0] == licoo2 and dataset.frame.loc["lco", "formula"] == licoo2.composition.formula
    assert dataset.failures[0].id == "broken"


def test_extended_xyz_frames(tmp_path, li2s, nacl):
    from ase import Atoms
    from ase.io import write
    from pymatgen.io.ase import AseAtomsAdaptor

    frames = []
    for structure, energy in ((li2s, -2.0), (nacl, -1.0)):
        atoms = AseAtomsAdaptor.get_atoms(structure)
        atoms.info["e_form"] = energy
        frames.append(atoms)
    molecule = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    molecule.info["e_form"] = 0.0
    frames.append(molecule)
    write(str(tmp_path / "t.extxyz"), frames, format="extxyz")
    dataset = read_table(tmp_path / "t.extxyz", {"e": "e_form"})
    assert dataset.frame["e"].tolist() == [-2.0, -1.0]
    assert [s.composition.reduced_formula for s in dataset.structures] == ["Li2S", "NaCl"]
    assert "not a periodic crystal" in dataset.failures[0].reason


def test_ase_database_rows(tmp_path, li2s, nacl):
    import ase.db
    from pymatgen.io.ase import AseAtomsAdaptor

    with ase.db.connect(str(tmp_path / "t.db")) as db:
        db.write(AseAtomsAdaptor.get_atoms(li2s), gap=3.4, name="li2s")
        db.write(AseAtomsAdaptor.get_atoms(nacl), name="nacl")
    dataset = read_table(tmp_path / "t.db", {"gap": "gap"})
    assert list(dataset.frame.index) == ["li2s", "nacl"]
    assert dataset.frame.loc["li2s", "gap"] == 3.4 and math.isnan(dataset.frame.loc["nacl", "gap"])
    assert dataset.structures[1].composition.reduced_formula == "NaCl"


def _mini_obelix(folder, li2s):
    header = "ID,Reduced Composition,Z,True Composition,Ionic conductivity (S cm-1),Space group\n"
    rows = [
        "aaa,Li2S,4,Li8.0S4.0,1.0E-3,Fm-3m\n",
        "bbb,Li7La3Zr2O12,8,Li56La24Zr16O96,<1E-10,Ia-3d\n",
        "ccc,Li3PS4,4,Li12P4S16,<1E-8,Pnma\n",
        "ddd,LiCl,4,Li4Cl4,not measured,Fm-3m\n",
    ]
    (folder / "train.csv").write_text(header + "".join(rows))
    (folder / "train_cifs").mkdir()
    li2s.to(filename=str(folder / "train_cifs" / "aaa.cif"))
    (folder / "train_cifs" / "ccc.cif").write_text("data_broken\n_cell_length_a 1\n")


def test_obelix_reader_and_censored_values(tmp_path, li2s):
    assert obelix_conductivity("<1E-10") == -15 and obelix_conductivity("<1E-8") == -15
    assert obelix_conductivity("1e-3") == pytest.approx(-3) and math.isnan(obelix_conductivity("n/a"))
    _mini_obelix(tmp_path, li2s)
    dataset = load_obelix(tmp_path)
    assert list(dataset.frame.index) == ["aaa", "bbb", "ccc", "ddd"]
    values = dataset.frame[OBELIX_TARGET].tolist()
    assert values[:3] == [pytest.approx(-3.0), -15.0, -15.0] and math.isnan(values[3])
    assert dataset.structures[0].composition.reduced_formula == "Li2S"
    assert dataset.structures[1] is None and dataset.structures[2] is None  # no CIF / unreadable CIF
    assert [f.id for f in dataset.failures] == ["ccc"]
    assert dataset.units == {OBELIX_TARGET: "log10(S/cm)"} and "Therrien" in dataset.info["attribution"]
    same = load_dataset(DatasetConfig(kind="obelix", path=str(tmp_path)), tmp_path)
    assert dataset_hash(same) == dataset_hash(dataset)


@pytest.mark.shared
@pytest.mark.slow
def test_the_shared_obelix_training_split():
    dataset = load_obelix(SHARED / "datasets" / "obelix")
    assert len(dataset) == 478
    y = dataset.frame[OBELIX_TARGET]
    assert y.notna().all() and (y == -15).sum() > 10 and y.max() < 0
    n_structures = sum(s is not None for s in dataset.structures)
    assert 240 <= n_structures <= 254  # every CIF in train_cifs/ that pymatgen reads
    candidates, failures = dataset.candidates()
    assert len(candidates) == 478 and not failures


def test_materials_project_documents(licoo2):
    docs = [
        {"material_id": "mp-22526", "formula_pretty": "LiCoO2", "structure": licoo2.as_dict(),
         "formation_energy_per_atom": -1.78, "energy_above_hull": 0.0},
        {"material_id": "mp-1", "formula_pretty": "Cs", "structure": None,
         "formation_energy_per_atom": 0.0, "energy_above_hull": None},
        {"material_id": "mp-bad", "formula_pretty": None, "structure": None},
    ]
    dataset = mp_docs_to_dataset(docs, {"e_form": "formation_energy_per_atom", "e_hull": "energy_above_hull"})
    assert list(dataset.frame.index) == ["mp-22526", "mp-1"] and dataset.failures[0].id == "mp-bad"
    assert dataset.units == {"e_form": "eV/atom", "e_hull": "eV/atom"}
    assert dataset.frame.loc["mp-22526", "e_form"] == -1.78 and math.isnan(dataset.frame.loc["mp-1", "e_hull"])
    assert dataset.structures[0] == licoo2 and dataset.structures[1] is None
    assert "Materials Project" in dataset.info["source"]


def test_materials_project_needs_the_client_and_a_key(monkeypatch):
    monkeypatch.delenv("MP_API_KEY", raising=False)
    cfg = DatasetConfig(kind="materials_project", targets={"e": "formation_energy_per_atom"})
    with pytest.raises(ConfigError, match="mp-api|MP_API_KEY"):
        load_materials_project(cfg)


def test_matbench_frames(nacl):
    compositions = pd.DataFrame({"composition": ["LiF", "NaCl"], "gap expt": [13.6, 8.5]})
    dataset = matbench_frame_to_dataset(compositions, "matbench_expt_gap", units={"gap expt": "eV"})
    assert dataset.targets == ["gap expt"] and dataset.structures is None and dataset.units == {"gap expt": "eV"}
    structures = pd.DataFrame({"structure": [nacl], "e_form": [-2.1]})
    dataset = matbench_frame_to_dataset(structures, "matbench_mp_e_form", {"e_form_eV_atom": "e_form"})
    assert dataset.frame["e_form_eV_atom"].tolist() == [-2.1] and dataset.structures[0] == nacl


def test_dataset_config_checks_what_each_kind_needs():
    with pytest.raises(ValueError, match="needs 'path'"):
        DatasetConfig(kind="table", targets={"a": "b"})
    with pytest.raises(ValueError, match="needs 'name'"):
        DatasetConfig(kind="matbench")
    assert DatasetConfig(kind="table", path="x.csv", targets={"a": "b"}, limit=5).limit == 5


def test_limit_and_hash(tmp_path):
    (tmp_path / "t.csv").write_text("formula,y\n" + "".join(f"Li{i}O,{i}\n" for i in range(1, 8)))
    cfg = DatasetConfig(kind="table", path="t.csv", targets={"y": "y"}, limit=3)
    dataset = load_dataset(cfg, tmp_path / "t.csv")
    assert len(dataset) == 3 and dataset.frame["y"].tolist() == [1.0, 2.0, 3.0]
    assert dataset_hash(dataset) != dataset_hash(dataset.subset(np.arange(2)))


def test_sodium_nitride_is_a_formula_not_a_missing_value(tmp_path):
    (tmp_path / "t.csv").write_text("formula,target\nNaN,0.3\nLiF,nan\n")
    dataset = read_table(tmp_path / "t.csv", {"e_hull_eV_atom": "target"})
    candidates, failures = dataset.candidates()
    assert failures == []
    assert [c.formula for c in candidates] == ["NaN", "LiF"]
    assert math.isnan(dataset.frame["e_hull_eV_atom"].iloc[1])


def test_training_tables_go_through_the_screens_reader_checks(tmp_path, li2s, nacl, monkeypatch):
    """Byte-order marks, encodings and the largest cell are those of `mi.candidates.readers`."""
    import mi.models.datasets as datasets
    from ase.io import write
    from pymatgen.io.ase import AseAtomsAdaptor

    bom = tmp_path / "excel.csv"  # Excel's "CSV UTF-8" starts with a byte-order mark
    bom.write_bytes(b"\xef\xbb\xbfid,formula,e\nx1,LiF,-3.2\n")
    assert read_table(bom, {"e": "e"}).frame["e"].tolist() == [-3.2]
    utf16 = tmp_path / "utf16.json"
    utf16.write_bytes(json.dumps([{"id": "x1", "formula": "NaCl", "e": -2.1}]).encode("utf-16"))
    assert read_table(utf16, {"e": "e"}).frame["e"].tolist() == [-2.1]
    latin = tmp_path / "latin1.csv"
    latin.write_bytes("id,formula,e,note\nx1,LiF,-3.2,caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin1\.csv: not UTF-8 text \(byte 0xE9"):
        read_table(latin, {"e": "e"})
    frames = [AseAtomsAdaptor.get_atoms(s) for s in (li2s, nacl.make_supercell(2, in_place=False))]
    for atoms, e in zip(frames, (-2.0, -1.0)):
        atoms.info["e_form"] = e
    write(str(tmp_path / "big.extxyz"), frames, format="extxyz")
    monkeypatch.setattr(datasets, "MAX_ATOMS", 12)
    dataset = read_table(tmp_path / "big.extxyz", {"e": "e_form"})
    assert dataset.frame["e"].tolist() == [-2.0]
    assert f"{len(frames[1])} sites is more than candidates.max_atoms=12" in dataset.failures[0].reason
