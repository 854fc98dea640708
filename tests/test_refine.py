"""The funnel (`mi.refine`): oracle columns beside the surrogate's, sources, re-ranking, refined labels,
resume after a kill, a failed relaxation that leaves the surrogate's values, the report's funnel section."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from mi.config import load_config
from mi.errors import ConfigError
from mi.oracle.task import TaskSettings, delithiated_pair, time_limit

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "datasets" / "demo" / "structures"


def _config(tmp_path: Path, refine: str, name: str = "funnel") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\n"
        "candidates:\n"
        f"  sources: [{DEMO / 'LiFePO4.cif'}, {DEMO / 'LiCoO2.vasp'}]\n"
        "features: {sets: [composition, structure], cache_dir: null, workers: 0}\n"
        "model: {checkpoint: 'builtin:mp_stability', device: cpu}\n"
        "models: [{checkpoint: 'builtin:oracle_multitask', columns: [voltage_V], device: cpu}]\n"
        "properties: {working_ion: Li, voltage_source: model, voltage_column: voltage_V,\n"
        "             calculators: [density, capacity, cost, energy]}\n"
        "ranking:\n"
        "  constraints: [{column: capacity_mAh_g, min: 100}]\n"
        "  objectives:\n"
        "    - {column: specific_energy_Wh_kg, direction: max}\n"
        "    - {column: e_hull_eV_atom, direction: min}\n"
        "  top_k: 2\n"
        "export: {report: true, top_cif: false}\n"
        "execution: {workers: 1}\n"
        f"refine: {refine}\n"
    )
    return path


# --- without the oracle ---------------------------------------------------------------------------------


def test_refine_config_is_off_by_default_and_strict(tmp_path):
    cfg = load_config(_config(tmp_path, "null"))
    assert cfg.refine is None
    cfg = load_config(_config(tmp_path, "null"), ["refine.top_k=3"])  # --set turns it on
    assert cfg.refine.top_k == 3 and cfg.refine.select == "score"
    with pytest.raises(ConfigError, match="refine.top_kk"):
        load_config(_config(tmp_path, "{top_kk: 3}"))
    with pytest.raises(ConfigError, match="refine.select"):
        load_config(_config(tmp_path, "{select: best}"))


def test_oracle_model_and_references_are_checked_before_the_run(tmp_path, capsys):
    from mi.cli import main
    from mi.pipeline import screen

    # r2SCAN energies cannot share a hull with MP's MP2020-corrected GGA/GGA+U entries
    path = _config(tmp_path, "{top_k: 2, model: r2scan}")
    with pytest.raises(ConfigError, match="refine.references: mp_bundled .* r2SCAN"):
        screen(load_config(path), out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # refused before the run folder is touched
    assert main(["validate", str(path)]) == 2
    assert "r2SCAN" in capsys.readouterr().err
    ok = _config(tmp_path, "{top_k: 2, model: r2scan, references: oracle_elements}", "ok")
    assert main(["validate", str(ok)]) == 0
    with pytest.raises(ConfigError, match="unknown CHGNet model '9.9'.*0.3.0"):
        screen(load_config(_config(tmp_path, "{model: '9.9'}", "bad")), out=tmp_path / "bad", progress=False)
    # a misspelt oracle_std key would leave that column's oracle error at 0 without a word
    typo = _config(tmp_path, "{top_k: 2, oracle_std: {e_hul_eV_atom: 0.03}}", "typo")
    assert main(["validate", str(typo)]) == 2
    assert "refine.oracle_std: 'e_hul_eV_atom' is no column the oracle stands beside" in capsys.readouterr().err


def test_selection_by_score_ucb_or_pareto():
    from mi.config import RefineConfig
    from mi.refine import select

    ranked = pd.DataFrame({"id": list("abcd"), "rank": [1, 2, 3, 4], "score": [0.9, 0.8, 0.7, 0.6],
                           "ucb_score": [0.9, 0.95, 0.7, 0.99], "pareto_rank": [2, 1, 1, 3]})
    assert list(select(ranked, RefineConfig(top_k=2))["id"]) == ["a", "b"]
    assert list(select(ranked, RefineConfig(top_k=2, select="ucb_score"))["id"]) == ["d", "b"]
    assert list(select(ranked, RefineConfig(top_k=3, select="pareto"))["id"]) == ["b", "c", "a"]
    with pytest.raises(ConfigError, match="ucb_kappa"):
        select(ranked.drop(columns="ucb_score"), RefineConfig(select="ucb_score"))


def test_selection_takes_one_ordering_per_composition_unless_told():
    from mi.config import RefineConfig
    from mi.refine import select

    # three orderings of one composition lead the ranking (a composition surrogate scores them alike)
    ranked = pd.DataFrame({"id": ["o1", "o2", "o3", "f", "m"], "rank": [1, 2, 3, 4, 5],
                           "score": [0.9, 0.9, 0.9, 0.8, 0.7],
                           "formula": ["Li4Mn2CoNiO8", "Li2MnCo0.5Ni0.5O4", "Li4Mn2CoNiO8", "LiFePO4", "LiMn2O4"]})
    assert list(select(ranked, RefineConfig(top_k=3))["id"]) == ["o1", "f", "m"]
    assert list(select(ranked, RefineConfig(top_k=3, max_per_formula=2))["id"]) == ["o1", "o2", "f"]
    assert list(select(ranked, RefineConfig(top_k=3, max_per_formula=None))["id"]) == ["o1", "o2", "o3"]
    assert list(select(ranked, RefineConfig(top_k=9))["id"]) == ["o1", "f", "m"]


def test_substitution_sources_and_disagreement(tmp_path):
    from mi.refine import substitute

    cfg = load_config(_config(tmp_path, "{top_k: 2}"))
    table = pd.DataFrame({
        "id": ["a", "b", "c"], "formula": ["LiCoO2", "LiFePO4", "LiNiO2"],
        "capacity_mAh_g": [274.0, 170.0, 275.0], "capacity_mAh_cm3": [1380.0, 610.0, 1300.0],
        "e_hull_eV_atom": [0.04, 0.02, 0.01], "e_hull_eV_atom_std": [0.02, 0.01, 0.01],
        "formation_energy_eV_atom": [-1.7, -2.5, -1.3], "formation_energy_eV_atom_std": [0.02, 0.02, 0.02],
        "voltage_V": [3.7, 3.4, 3.9], "voltage_V_std": [0.1, 0.1, 0.1],
        "specific_energy_Wh_kg": [274.0 * 3.7, 170.0 * 3.4, 275.0 * 3.9], "specific_energy_Wh_kg_std": [27.4, 17, 27.5],
    })
    oracle = pd.DataFrame({"formation_energy_eV_atom": [-1.71, -2.0], "e_hull_with_candidates_eV_atom": [0.0, 0.3],
                           "voltage_V": [3.95, 3.45], "relaxed_density_g_cm3": [5.0, 3.6]},
                          index=pd.Index(["a", "b"], name="id"))
    out = substitute(table, oracle, cfg)
    # ranked columns take the oracle's value where it has one, with std 0; the surrogate's stay beside
    assert out["e_hull_eV_atom"].tolist() == [0.0, 0.3, 0.01]
    assert out["surrogate_e_hull_eV_atom"].tolist() == [0.04, 0.02, 0.01]
    assert out["e_hull_eV_atom_std"].tolist() == [0.0, 0.0, 0.01]
    assert out["oracle_voltage_V"].iloc[:2].tolist() == [3.95, 3.45] and np.isnan(out["oracle_voltage_V"].iloc[2])
    # the energy figures follow the voltage they are made from
    assert out["specific_energy_Wh_kg"].tolist() == pytest.approx([274.0 * 3.95, 170.0 * 3.45, 275.0 * 3.9])
    assert out["specific_energy_Wh_kg_source"].tolist() == ["oracle", "oracle", "surrogate"]
    assert out["surrogate_specific_energy_Wh_kg"].tolist() == pytest.approx([274.0 * 3.7, 170.0 * 3.4, 275.0 * 3.9])
    assert out["e_hull_eV_atom_source"].tolist() == ["oracle", "oracle", "surrogate"]
    assert set(out["capacity_mAh_g_source"]) == {"exact"}
    # b: e_hull 0.3 vs 0.02 +- 0.01, formation -2.0 vs -2.5 +- 0.02 (beyond 3 std); a: voltage 3.95 vs 3.7 +- 0.1
    assert out["oracle_disagrees"].tolist() == [False, True, False]
    assert set(out.loc[1, "oracle_disagrees_on"].split(", ")) == {"e_hull_eV_atom", "formation_energy_eV_atom"}
    assert out["oracle_relaxed_density_g_cm3"].iloc[0] == 5.0


def test_disagreement_counts_the_oracles_own_error(tmp_path):
    from mi.refine import substitute

    # 0.05 +- 0.005 against CHGNet's 0.0: ten surrogate std apart, but within 3 std once the oracle's own
    # 0.03 eV/atom error is counted; a 0.25 eV/atom gap stays a disagreement
    table = pd.DataFrame({"id": ["a", "b"], "formula": ["LiCoO2", "LiFePO4"], "capacity_mAh_g": [274.0, 170.0],
                          "e_hull_eV_atom": [0.05, 0.25], "e_hull_eV_atom_std": [0.005, 0.005]})
    oracle = pd.DataFrame({"e_hull_with_candidates_eV_atom": [0.0, 0.0]}, index=pd.Index(["a", "b"], name="id"))
    default = substitute(table, oracle, load_config(_config(tmp_path, "{top_k: 2}")))
    assert default["oracle_disagrees"].tolist() == [False, True]
    alone = substitute(table, oracle, load_config(_config(tmp_path, "{top_k: 2, oracle_std: {}}", "alone")))
    assert alone["oracle_disagrees"].tolist() == [True, True]


def test_partial_delithiation_repeats_the_cell(licoo2):
    cell = licoo2.get_primitive_structure()  # one Li
    lithiated, host, n = delithiated_pair(cell, "Li", 1.0)
    assert n == 1 and host.composition.reduced_formula == "CoO2" and len(lithiated) == len(cell)
    lithiated, host, n = delithiated_pair(cell, "Li", 0.5)  # Li0.5CoO2 needs two formula units
    assert n == 1 and len(lithiated) == 2 * len(cell)
    assert host.composition.get_el_amt_dict() == {"Li": 1.0, "Co": 2.0, "O": 4.0}
    li2o = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.61), ["O", "Li"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    assert "no Li can leave" in delithiated_pair(li2o, "Li", 1.0)


def test_time_limit_scales_with_cell_and_load():
    s = TaskSettings(time_limit_s=100.0, atoms_per_limit=20, load_factor=1.0)
    assert time_limit(10, s) == 100.0 and time_limit(40, s) == 200.0
    assert time_limit(40, TaskSettings(time_limit_s=100.0, atoms_per_limit=20, load_factor=2.5)) == 500.0
    assert time_limit(40, TaskSettings(time_limit_s=None)) is None


# --- with CHGNet ------------------------------------------------------------------------------------------

REFINE = "{top_k: 2, max_steps: 3, chunk_size: 1, scale_with_load: false, time_limit_s: 600}"


@pytest.mark.slow
def test_refine_two_demo_candidates(tmp_path):
    pytest.importorskip("chgnet")
    from mi.models.datasets import read_table
    from mi.pipeline import screen

    result = screen(load_config(_config(tmp_path, REFINE)), out=tmp_path / "run", progress=False)
    run, ranked = result.run_dir, result.ranked
    refined = pd.read_csv(run / "refined.csv")
    assert sorted(refined["id"]) == ["LiCoO2", "LiFePO4"] and set(refined["status"]) == {"refined"}
    for column in ("oracle_formation_energy_eV_atom", "oracle_e_hull_eV_atom", "oracle_voltage_V",
                   "oracle_relaxed_density_g_cm3"):
        assert np.isfinite(ranked[column]).all(), column
    assert (ranked["e_hull_eV_atom"] == ranked["oracle_e_hull_eV_atom"]).all()
    assert (ranked["e_hull_eV_atom_std"] == 0).all() and set(ranked["e_hull_eV_atom_source"]) == {"oracle"}
    assert set(ranked["voltage_V_source"]) == {"oracle"} and set(ranked["capacity_mAh_g_source"]) == {"exact"}
    assert np.isfinite(ranked["surrogate_voltage_V"]).all()
    assert ranked["specific_energy_Wh_kg"].to_numpy() == pytest.approx(
        (ranked["capacity_mAh_g"] * ranked["oracle_voltage_V"]).to_numpy())
    assert sorted(ranked["surrogate_rank"]) == [1, 2]
    # the labels are a dataset mi train reads
    dataset = read_table(run / "refined_labels.json", {"voltage_V": "voltage_V", "e_hull_eV_atom": "e_hull_eV_atom"},
                         structure_column="structure")
    assert len(dataset.frame) == 2 and np.isfinite(dataset.frame["voltage_V"]).all()
    assert 'id="funnel"' in (run / "report.html").read_text(encoding="utf-8")
    assert any(n.startswith("refine: 2 of 2 selected") for n in result.manifest["notes"])


@pytest.mark.slow
def test_resume_after_a_kill_skips_refined_chunks(tmp_path, monkeypatch):
    pytest.importorskip("chgnet")
    import mi.oracle.task as task
    from mi.pipeline import screen

    real = task.run_task
    calls: list[str] = []

    def killed_at_second(oracle, cand, *args, **kwargs):
        calls.append(cand.id)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the run dies inside the second chunk
        return real(oracle, cand, *args, **kwargs)

    cfg = load_config(_config(tmp_path, REFINE))
    monkeypatch.setattr(task, "run_task", killed_at_second)
    with pytest.raises(KeyboardInterrupt):
        screen(cfg, out=tmp_path / "run", progress=False)
    first = tmp_path / "run" / "refine" / "chunk-000000.json"
    assert first.is_file() and not (tmp_path / "run" / "refine" / "chunk-000001.json").exists()
    saved = first.read_bytes()

    resumed: list[str] = []
    monkeypatch.setattr(task, "run_task", lambda oracle, cand, *a, **k: (resumed.append(cand.id),
                                                                          real(oracle, cand, *a, **k))[1])
    result = screen(cfg, out=tmp_path / "run", progress=False, resume=True)
    assert resumed == [calls[1]]  # only the candidate of the unfinished chunk
    assert first.read_bytes() == saved
    assert result.manifest["status"] == "complete"
    assert set(pd.read_csv(tmp_path / "run" / "refined.csv")["status"]) == {"refined"}


@pytest.mark.slow
def test_failed_relaxation_keeps_the_surrogate_values(tmp_path, monkeypatch):
    pytest.importorskip("chgnet")
    from mi.pipeline import screen

    plain = screen(load_config(_config(tmp_path, "null", "plain")), out=tmp_path / "plain", progress=False).ranked
    cfg = load_config(_config(tmp_path, "{top_k: 2, max_steps: 3, scale_with_load: false, time_limit_s: 1.0e-9}"))
    result = screen(cfg, out=tmp_path / "run", progress=False)
    ranked = result.ranked
    assert set(ranked["e_hull_eV_atom_source"]) == {"surrogate"} and ranked["oracle_e_hull_eV_atom"].isna().all()
    merged = ranked.merge(plain, on="id", suffixes=("", "_plain"))
    assert (merged["e_hull_eV_atom"] == merged["e_hull_eV_atom_plain"]).all()
    assert (merged["rank"] == merged["rank_plain"]).all()
    failures = pd.read_csv(result.run_dir / "failures.csv")
    oracle = failures[failures["stage"] == "oracle"]
    assert sorted(oracle["id"]) == ["LiCoO2", "LiFePO4"]
    assert oracle["reason"].str.contains("time limit").all() and oracle["reason"].str.contains("scaled to").all()
    assert set(pd.read_csv(result.run_dir / "refined.csv")["status"]) == {"failed"}
    assert json.loads((result.run_dir / "refined_labels.json").read_text())["data"] == []

    # --resume runs the candidates that hit their time limit again (a busy machine is no reason to give up)
    import mi.oracle.task as task

    real, again = task.run_task, []
    monkeypatch.setattr(task, "run_task", lambda oracle, cand, *a, **k: (again.append(cand.id),
                                                                        real(oracle, cand, *a, **k))[1])
    resumed = screen(cfg, out=tmp_path / "run", progress=False, resume=True)
    assert sorted(again) == ["LiCoO2", "LiFePO4"]
    assert any("2 candidates that had hit their time limit ran again" in n for n in resumed.manifest["notes"])
    failures = pd.read_csv(resumed.run_dir / "failures.csv")
    assert sorted(failures.loc[failures["stage"] == "oracle", "id"]) == ["LiCoO2", "LiFePO4"]  # not doubled
