"""Oracle labels and `mi label`: targets, references cache, dataset mi train reads, failures, kill-and-resume."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Composition, Lattice, Structure

from mi.candidates.base import Candidate, structure_hash
from mi.cli import main
from mi.models.datasets import read_table
from mi.oracle.voltage import average_voltage, delithiate, ions_to_remove

pytest.importorskip("chgnet")


def _cand(cid: str, structure: Structure | None, formula: str = "") -> Candidate:
    comp = structure.composition if structure is not None else Composition(formula)
    return Candidate(cid, "test", "", comp, structure, structure_hash(structure) if structure is not None else "x")


def _li() -> Structure:
    return Structure(Lattice.cubic(3.44), ["Li", "Li"], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture(scope="module")
def ref_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("refs")


@pytest.fixture(scope="module")
def labeller(ref_cache):
    from mi.oracle.label import chgnet_labeller

    return chgnet_labeller(max_steps=8, cache_dir=ref_cache)


def test_voltage_helpers(licoo2):
    cell = licoo2.get_primitive_structure()
    assert ions_to_remove(cell, "Li") == 1
    assert delithiate(cell, "Li", 1).composition.reduced_formula == "CoO2"
    li2o = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.61), ["O", "Li"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    assert ions_to_remove(li2o, "Li") == 0  # no redox-active cation: nothing leaves
    # 2 Li leaving a cell 8 eV lower than the host plus 2 Li atoms at -2 eV each: (-(-10 - (-2) - 2*(-2)))/2
    assert average_voltage(-10.0, -2.0, 2, -2.0) == pytest.approx(2.0)


def test_labels_of_small_cells(labeller, licoo2):
    cell = licoo2.get_primitive_structure()
    frame, failures = labeller.label([_cand("li", _li()), _cand("licoo2", cell)])
    assert not failures
    assert list(frame.columns) == labeller.targets
    li, lco = frame.loc["li"], frame.loc["licoo2"]
    # elemental Li against the lowest Li polymorph: about zero, never below it by more than the step cap allows
    assert abs(li.formation_energy_eV_atom) < 0.03 and math.isnan(li.voltage_V)
    assert lco.formation_energy_eV_atom < -1.0  # a stable oxide
    assert lco.e_hull_eV_atom >= 0 and lco.e_hull_eV_atom < 0.2
    assert 2.5 < lco.voltage_V < 5.0  # LiCoO2 -> CoO2 + Li
    assert 3.0 < lco.relaxed_density_g_cm3 < 6.5
    assert labeller.units["voltage_V"] == "V"
    provenance = labeller.provenance()
    assert "MaterialsProject2020Compatibility" in provenance["correction_scheme"]
    assert provenance["settings"]["max_steps"] == 8


def test_references_are_cached(labeller, ref_cache, monkeypatch):
    from mi.oracle.label import chgnet_labeller

    first = labeller.elemental.energies(["Li", "Co", "O"])
    again = chgnet_labeller(max_steps=8, cache_dir=ref_cache)
    monkeypatch.setattr(type(again.elemental), "_compute", lambda self, symbol: pytest.fail("recomputed"))
    assert again.elemental.energies(["Li", "Co", "O"]) == first
    other = chgnet_labeller(max_steps=9, cache_dir=ref_cache)  # other settings, other cache file
    assert other.elemental.path() != again.elemental.path()


def _label_config(tmp_path: Path, chunk_size: int = 2, extra_sources: tuple[str, ...] = ()) -> Path:
    structures = tmp_path / "structures"
    structures.mkdir(exist_ok=True)
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    lico = Structure.from_spacegroup(
        "R-3m", Lattice.hexagonal(2.816, 14.05), ["Li", "Co", "O"], [[0, 0, 0.5], [0, 0, 0], [0, 0, 0.2396]]
    )
    (structures / "a_li.json").write_text(json.dumps(_li().as_dict()))
    (structures / "b_nacl.json").write_text(json.dumps(nacl.get_primitive_structure().as_dict()))
    (structures / "c_licoo2.json").write_text(json.dumps(lico.get_primitive_structure().as_dict()))
    sources = [str(structures), *extra_sources]
    config = tmp_path / "label.yaml"
    config.write_text(
        "name: tiny\n"
        f"candidates: {{sources: {json.dumps(sources)}}}\n"
        "oracle: {max_steps: 5}\n"
        f"labels: {{cache_dir: {tmp_path.parent / 'refs-cli'}}}\n"
        f"output: {{dir: out, chunk_size: {chunk_size}}}\n"
    )
    return config


def test_mi_label_writes_a_dataset_mi_train_reads(tmp_path, capsys):
    formulas = tmp_path / "formulas.csv"
    formulas.write_text("id,formula\nonly_formula,LiFePO4\n")
    config = _label_config(tmp_path, extra_sources=(str(formulas),))
    assert main(["validate", str(config)]) == 0
    assert main(["label", str(config), "--no-progress"]) == 0
    out = tmp_path / "out"
    failures = pd.read_csv(out / "failures.csv")
    assert failures["id"].tolist() == ["only_formula"] and "no structure" in failures["reason"][0]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["labelled"] == 3 and manifest["provenance"]["oracle"] == "chgnet"
    targets = {t: t for t in manifest["targets"]}
    dataset = read_table(out / "labels.json", targets, structure_column="structure")
    assert len(dataset) == 3 and dataset.units["voltage_V"] == "V"
    assert dataset.structures[2].composition.reduced_formula == "LiCoO2"
    assert np.isfinite(dataset.frame["formation_energy_eV_atom"]).all()
    assert np.isfinite(dataset.frame.loc["c_licoo2", "voltage_V"])
    assert np.isnan(dataset.frame.loc["b_nacl", "voltage_V"])


@pytest.mark.slow
def test_killed_label_run_resumes_without_redoing_chunks(tmp_path):
    config = _label_config(tmp_path, chunk_size=1)
    # the uninterrupted run, for comparison
    assert main(["label", str(config), "--no-progress", "--set", "output.dir=whole"]) == 0
    whole = json.loads((tmp_path / "whole" / "labels.json").read_text())

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mi.cli", "label", str(config), "--no-progress"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = tmp_path / "out" / "chunks" / "chunk_00000.json"
    deadline = time.time() + 120
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.exists() and not (tmp_path / "out" / "labels.json").exists()
    stamp = first.stat().st_mtime_ns

    assert main(["label", str(config), "--no-progress", "--resume"]) == 0
    assert first.stat().st_mtime_ns == stamp  # the finished chunk was not redone
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["counts"]["chunks_reused"] >= 1 and manifest["counts"]["labelled"] == 3
    resumed = json.loads((tmp_path / "out" / "labels.json").read_text())
    assert [r["id"] for r in resumed["data"]] == [r["id"] for r in whole["data"]]
    for a, b in zip(resumed["data"], whole["data"]):
        for key in ("formation_energy_eV_atom", "e_hull_eV_atom", "relaxed_density_g_cm3"):
            assert a[key] == pytest.approx(b[key], abs=1e-5)


def test_label_config_errors_name_file_and_key(tmp_path, capsys):
    config = tmp_path / "label.yaml"
    config.write_text("name: x\ncandidates: {sources: [a.cif]}\noracle: {fmx: 0.1}\nlabels: {references: entries}\n")
    assert main(["validate", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{config}: oracle.fmx: unknown key" in err
    assert "labels: Value error, references: entries needs entries_file" in err
