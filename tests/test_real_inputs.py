"""Files as VASP, ASE, journals and databases write them go through `mi screen` (issue 14): selective
dynamics and velocities, VASP 4 POSCARs, compressed files, oxidation-state labels and odd formulas; and the
read summary counts what was seen, read and refused."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
from pymatgen.core import Composition, Structure
from pymatgen.io.cif import CifWriter
from pymatgen.io.vasp import Poscar

from mi.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent))
from malformed import potcar_text, vasp4_poscar  # noqa: E402
from quick_screen import GOOD, write_config  # noqa: E402


def _good(name: str) -> Structure:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Structure.from_file(str(GOOD / name))


def _screen(tmp_path: Path, name: str, sources: list[Path], *, extra: str = "", code: int = 0) -> Path:
    out = tmp_path / f"{name}-run"
    config = write_config(tmp_path / f"{name}.yaml", sources, extra=extra)
    assert main(["screen", str(config), "--out", str(out), "--no-progress"]) == code
    return out


def _failures(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "failures.csv", dtype=str).fillna("")


def test_selective_dynamics_poscar_screens_and_ranks_with_its_flags(tmp_path):
    """Was: TypeError (ndarray not JSON serializable) in the chunk, no ranked.csv, three good candidates lost."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    s = _good("LiCoO2.vasp")
    flags = [[True, True, False]] * (len(s) - 1) + [[False, False, False]]
    velocities = [[0.001 * i, 0.0, -0.002] for i in range(len(s))]
    (folder / "LiCoO2_relax.vasp").write_text(Poscar(s, selective_dynamics=flags).get_str())
    (folder / "CONTCAR").write_text(Poscar(s, selective_dynamics=flags, velocities=velocities).get_str())
    for name in ("Li2O.cif", "LiFePO4.cif", "LiMn2O4.cif"):
        (folder / name).write_bytes((GOOD / name).read_bytes())
    run = _screen(tmp_path, "seldyn", [folder])
    ranked = pd.read_csv(run / "ranked.csv")
    assert {"LiCoO2_relax", "inputs/CONTCAR", "Li2O", "LiFePO4", "LiMn2O4"} == set(ranked["id"])
    assert _failures(run).empty
    # the flags travel with the structure (shards keep it for the top CIFs) as plain JSON
    shards = pd.concat(pd.read_parquet(p) for p in sorted((run / "shards").glob("chunk-*.parquet")))
    sites = json.loads(shards.set_index("id").loc["inputs/CONTCAR", "_structure_json"])["sites"]
    assert [site["properties"]["selective_dynamics"] for site in sites] == flags
    assert sites[1]["properties"]["velocities"] == pytest.approx([0.001, 0.0, -0.002])
    assert len(list((run / "top").glob("*.cif"))) == 5


def test_vasp4_poscar_takes_species_from_potcar_or_config_and_is_never_guessed(tmp_path):
    """Was: a VASP 4 POSCAR read as H, He, Li and ranked, with no warning."""
    s = _good("LiCoO2.vasp")
    vasp4 = vasp4_poscar(s)  # counts 3 3 6 and nothing naming the species
    bare, with_potcar, configured = tmp_path / "bare", tmp_path / "potcar", tmp_path / "configured"
    for folder in (bare, with_potcar, configured):
        folder.mkdir()
        (folder / "POSCAR").write_text(vasp4)
    (with_potcar / "POTCAR").write_text(potcar_text(Poscar(s).site_symbols))
    (configured / "README.txt").write_text("relaxation of LiCoO2\n")
    (bare / "Li2O.cif").write_bytes((GOOD / "Li2O.cif").read_bytes())

    species = "  species: {'configured/*': [Li, Co, O]}\n"
    run = _screen(tmp_path, "vasp4", [bare, with_potcar, configured], extra=species)
    ranked = pd.read_csv(run / "ranked.csv").set_index("id")
    assert ranked.loc["potcar/POSCAR", "formula"] == "LiCoO2"
    assert ranked.loc["configured/POSCAR", "formula"] == "LiCoO2"
    assert "bare/POSCAR" not in ranked.index and not ranked["formula"].str.contains("He").any()
    failure = _failures(run).set_index("id").loc["bare/POSCAR"]
    assert failure["file"].endswith("bare/POSCAR") and failure["stage"] == "candidates"
    assert "VASP 4" in failure["reason"] and "not guessed" in failure["reason"]

    # the read summary: seen, read, refused by reason, and the README that is no candidate file
    manifest = json.loads((run / "manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["files_seen"] == 6 and counts["files_read"] == 3 and counts["files_skipped_not_candidates"] == 2
    assert counts["files_refused"] == {"VASP N POSCAR": 1}
    assert any("not candidate files" in n and "README.txt" in n for n in manifest["notes"])


def test_compressed_files_of_every_format_are_read(tmp_path):
    """Was: .cif.gz files in a source folder skipped without a failure row or a note."""
    folder = tmp_path / "packed"
    folder.mkdir()
    li2o = (GOOD / "Li2O.cif").read_bytes()
    (folder / "Li2O.cif.gz").write_bytes(gzip.compress(li2o))
    (folder / "LiCoO2.vasp.bz2").write_bytes(bz2.compress((GOOD / "LiCoO2.vasp").read_bytes()))
    (folder / "Li3N.extxyz.xz").write_bytes(lzma.compress((GOOD / "Li3N.extxyz").read_bytes()))
    (folder / "Li2S.json.gz").write_bytes(gzip.compress((GOOD / "Li2S.json").read_bytes()))
    (folder / "formulas.csv.gz").write_bytes(gzip.compress(b"id,formula\nLFP,LiFePO4\n"))
    jsonl = json.dumps({"id": "LMO", "structure": _good("LiMn2O4.cif").as_dict()}) + "\n"
    (folder / "more.jsonl.xz").write_bytes(lzma.compress(jsonl.encode()))
    (folder / "damaged.cif.gz").write_bytes(gzip.compress(li2o)[:200])
    run = _screen(tmp_path, "packed", [folder])
    ranked, removed = pd.read_csv(run / "ranked.csv"), pd.read_csv(run / "removed.csv")
    assert set(ranked["id"]) | set(removed["id"]) == {"Li2O", "LiCoO2", "Li3N", "Li2S", "LFP", "LMO"}
    assert len(ranked) >= 4
    failures = _failures(run)
    assert list(failures["id"]) == ["damaged"]  # the only failure: nothing skipped in silence
    assert "compressed data is damaged or truncated" in failures["reason"][0]


def test_oxidation_labels_hydrates_subscripts_and_full_width_formulas_screen(tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    s = _good("LiFePO4.cif")
    s.add_oxidation_state_by_guess()
    (folder / "LiFePO4_ox.cif").write_text(str(CifWriter(s)))  # _atom_site_type_symbol Fe2+, P5+, O2-
    (folder / "formulas.csv").write_text(
        "id,formula\nblue_vitriol,CuSO4·5H2O\nsub,Li₂O\nwide,ＬｉＦｅＰＯ４\nbad,CuSO4·xH2O\n",
        encoding="utf-8",
    )
    (folder / "windows.cif").write_bytes((GOOD / "LiMnPO4.cif").read_bytes().replace(b"\n", b"\r\n"))
    run = _screen(tmp_path, "odd", [folder])
    rows = pd.concat([pd.read_csv(run / f) for f in ("ranked.csv", "removed.csv")])
    formulas = dict(zip(rows["id"], rows["formula"]))
    assert formulas["LiFePO4_ox"] == "LiFePO4" and formulas["windows"] == "LiMnPO4"
    assert formulas["sub"] == "Li2O" and formulas["wide"] == "LiFePO4"
    assert formulas["blue_vitriol"] == Composition("CuSO4(H2O)5").reduced_formula
    assert "cannot parse formula" in _failures(run).set_index("id").loc["bad", "reason"]


def test_candidates_species_must_be_element_symbols(tmp_path):
    from mi.config import load_config
    from mi.errors import ConfigError

    config = write_config(tmp_path / "species.yaml", [GOOD], extra="  species: {'relax/*': [Li, Xx, O]}\n")
    with pytest.raises(ConfigError, match=r"candidates\.species.*Xx"):
        load_config(config)
