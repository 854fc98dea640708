"""End to end: `mi screen` on the demo config, `mi validate`, `mi info`, in-process through main(argv)."""

import csv
import json
from pathlib import Path

import pytest
import yaml

from mi.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "demo.yaml"

# Theoretical capacities the issue states (n F / 3.6 M, one Li per formula unit extracted).
EXPECTED_CAPACITY = {"LiFePO4": 169.9, "LiCoO2": 273.8, "LiMn2O4": 148.2}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    code = main(["screen", str(DEMO), "--out", str(out), "--no-progress"])
    return code, out


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_demo_screen_writes_every_output(demo_run):
    code, out = demo_run
    assert code == 0
    for name in ("ranked.csv", "ranked.json", "failures.csv", "config.yaml", "manifest.json"):
        assert (out / name).is_file(), name
    ranked = read_csv(out / "ranked.csv")
    header = list(ranked[0].keys())
    assert header[:4] == ["rank", "id", "formula", "source"]
    assert header[-2:] == ["score", "pareto_rank"]
    for target in ("formation_energy_eV_atom", "e_hull_eV_atom"):  # builtin:mp_stability's targets
        assert target in header and f"{target}_std" in header and f"{target}_in_domain" in header
    for column in ("density_g_cm3", "capacity_mAh_g", "cost_usd_kg"):
        assert column in header
    assert [int(r["rank"]) for r in ranked] == list(range(1, len(ranked) + 1))
    assert json.loads((out / "ranked.json").read_text())[0]["id"] == ranked[0]["id"]
    cifs = sorted((out / "top").glob("*.cif"))
    assert cifs, "top-k CIFs"
    structured = [r for r in ranked[:10] if r["density_g_cm3"] not in ("", "nan")]
    assert len(cifs) == len(structured)


def test_demo_failures_name_both_broken_files(demo_run):
    _, out = demo_run
    failures = read_csv(out / "failures.csv")
    files = {Path(f["file"]).name: f for f in failures}
    assert "broken_empty.cif" in files and files["broken_empty.cif"]["reason"] == "empty file"
    assert "broken_overlap.vasp" in files and "overlapping atoms" in files["broken_overlap.vasp"]["reason"]


def test_demo_capacities_match_textbook_values(demo_run):
    _, out = demo_run
    by_formula = {r["formula"]: r for r in read_csv(out / "ranked.csv") if r["source"].endswith((".cif", ".vasp"))}
    for formula, expected in EXPECTED_CAPACITY.items():
        assert abs(float(by_formula[formula]["capacity_mAh_g"]) - expected) <= 0.5, formula


def test_demo_manifest_and_config(demo_run):
    _, out = demo_run
    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["read"] > 10 and counts["failed"] >= 2 and counts["ranked"] > 0
    assert manifest["config_hash"].startswith("sha256:")
    assert manifest["checkpoint_hash"].startswith("sha256:")
    assert len(manifest["input_hashes"]) == counts["files"]
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["name"] == "demo"
    assert all(Path(s).is_absolute() for s in config["candidates"]["sources"])


def test_set_override_changes_the_run(tmp_path):
    out = tmp_path / "run"
    code = main(["screen", str(DEMO), "--out", str(out), "--no-progress", "--set", "ranking.top_k=3"])
    assert code == 0
    assert len(list((out / "top").glob("*.cif"))) <= 3
    assert yaml.safe_load((out / "config.yaml").read_text())["ranking"]["top_k"] == 3


def test_strict_exits_non_zero_on_the_broken_demo_files(tmp_path, capsys):
    code = main(["screen", str(DEMO), "--out", str(tmp_path / "run"), "--no-progress", "--strict"])
    assert code != 0
    assert "broken_" in capsys.readouterr().err


def test_validate_misspelt_key_exits_non_zero_with_key_path(tmp_path, capsys):
    data = yaml.safe_load(DEMO.read_text())
    data["ranking"]["objectives"][1]["directon"] = data["ranking"]["objectives"][1].pop("direction")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "ranking.objectives[1].directon: unknown key" in err and str(bad) in err
    assert main(["validate", str(DEMO)]) == 0


def test_unknown_feature_set_is_refused_by_validate_and_screen_with_file_and_key_path(tmp_path, capsys):
    # config does not know the stages' names (it is the ground layer): the stage checks them
    data = yaml.safe_load(DEMO.read_text())
    data["features"] = {"sets": ["composition", "composition_v9"]}
    data["candidates"]["sources"] = [str((DEMO.parent / s).resolve()) for s in data["candidates"]["sources"]]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: features.sets[1]: unknown feature set 'composition_v9'" in err
    assert main(["screen", str(bad), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert "features.sets[1]: unknown feature set" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before the run folder is made
    recipe = {"name": "r", "checkpoint": "m.pt", "train": {"dataset": {"kind": "table", "path": "t.csv",
              "targets": {"y": "y"}}, "model": {"kind": "mlp", "feature_sets": ["nope"]}}}
    train_cfg = tmp_path / "train.yaml"
    train_cfg.write_text(yaml.safe_dump(recipe))
    assert main(["validate", str(train_cfg)]) == 2
    assert f"{train_cfg}: train.model.feature_sets[0]: unknown feature set 'nope'" in capsys.readouterr().err


def test_info_prints_the_builtin_card(capsys):
    assert main(["info", "builtin:formation_enthalpy", "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["targets"][0]["name"] == "formation_enthalpy_eV_atom"
    assert main(["info", "builtin:formation_enthalpy"]) == 0
    text = capsys.readouterr().out
    assert "formation_enthalpy_eV_atom [eV/atom]" in text and "pymatgen_exp_formation_enthalpy" in text
    assert main(["info", "/nonexistent/model.pt"]) == 1
    assert "not found" in capsys.readouterr().err
