"""report.html and passport/<id>.json: end to end through `mi screen` on the presets, and unit checks."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest
from pymatgen.core import Composition

from mi.cli import main
from mi.config import PropertiesConfig, load_config
from mi.data import load_element_facts
from mi.export.passport import build_passport, write_passports
from mi.export.report import export_report

ROOT = Path(__file__).resolve().parents[1]
CATHODE = ROOT / "configs" / "cathode.yaml"
ELECTROLYTE = ROOT / "configs" / "solid_electrolyte.yaml"
LI, CO, O, NI, MN = 6.941, 58.933195, 15.9994, 58.6934, 54.938045


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def cathode_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cathode") / "run"
    return main(["screen", str(CATHODE), "--out", str(out), "--no-progress"]), out


@pytest.fixture(scope="module")
def electrolyte_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("electrolyte") / "run"
    return main(["screen", str(ELECTROLYTE), "--out", str(out), "--no-progress"]), out


def _self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    assert "data:image/png;base64," in page
    sources = re.findall(r'src="([^"]+)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in page and "https://" not in page and "<script" not in page


# --- cathode preset ------------------------------------------------------------------------------------


def test_cathode_screen_writes_report_and_passports(cathode_run):
    code, out = cathode_run
    assert code == 0
    cfg = load_config(CATHODE)
    ranked = read_csv(out / "ranked.csv")
    page = (out / "report.html").read_text(encoding="utf-8")
    _self_contained(page)
    for section in ("Pareto front", "Property distributions", f"Top {cfg.ranking.top_k}", "Passports of the top"):
        assert section in page
    passports = sorted((out / "passport").glob("*.json"))
    assert len(passports) == min(cfg.ranking.top_k, len(ranked))
    top_ids = {r["id"] for r in ranked[: cfg.ranking.top_k]}
    assert {p.stem for p in passports} == top_ids
    for cid in top_ids:
        assert f'id="passport-{cid}"' in page and f"passport/{cid}.json" in page
    # the models behind the columns, and nothing the preset ranks by is skipped for a missing column
    assert "The models behind the predicted columns" in page and "builtin:mp_stability" in page
    manifest = json.loads((out / "manifest.json").read_text())
    assert not any("skipped" in n for n in manifest["notes"])
    assert all(r["voltage_V"] not in ("", "nan") and r["e_hull_eV_atom_in_domain"] in ("True", "False") for r in ranked)


def test_cathode_ranked_columns(cathode_run):
    _, out = cathode_run
    ranked = read_csv(out / "ranked.csv")
    header = list(ranked[0])
    for column in (
        "capacity_mAh_g", "capacity_redox_mAh_g", "capacity_formula_mAh_g", "capacity_mAh_cm3", "supply_risk",
        "feoc_exposed", "crma_concentration_flag", "co_free", "ni_free", "co2_kg_per_kg", "co2_lower_bound_kg_per_kg",
        "recoverable_value_usd_kg", "specific_energy_Wh_kg", "cost_usd_kwh", "ucb_score", "crowding_distance",
    ):
        assert column in header, column
    assert header[-2:] == ["score", "pareto_rank"]
    by_id = {r["id"]: r for r in ranked}
    # LNMO follows Ni2+/Ni4+: one Li per formula unit, M = 182.62 g/mol
    lnmo = float(by_id["LNMO"]["capacity_mAh_g"])
    assert lnmo == pytest.approx(96485.33212 / (3.6 * (LI + 0.5 * NI + 1.5 * MN + 4 * O)), rel=1e-6)
    # the default model predicts voltage_V: specific energy is capacity x that voltage where it is positive
    with_energy = [r for r in ranked if r["voltage_V"] and float(r["voltage_V"]) > 0]
    assert with_energy
    for r in with_energy:
        assert float(r["specific_energy_Wh_kg"]) == pytest.approx(float(r["capacity_mAh_g"]) * float(r["voltage_V"]), rel=1e-6)
    assert all(r["specific_energy_Wh_kg"] == "" for r in ranked if r not in with_energy)  # never invented
    # the capacity constraint removed the Na compounds and Li2S, Li2O, ... (no redox-active cation)
    assert not {"Na2FePO4F", "NVP", "Li2S", "LLZO"} & set(by_id)
    manifest = json.loads((out / "manifest.json").read_text())
    assert not any("the surrogate predicts no voltage_V" in n for n in manifest["notes"])


def test_nmc_passport_carries_the_cobalt_concentration_flag(cathode_run):
    _, out = cathode_run
    record = json.loads((out / "passport" / "NMC811.json").read_text())
    supply = record["supply_chain"]
    assert supply["crma_concentration_flag"] and supply["crma_concentration_elements"] == ["Co", "Li", "Mn", "Ni"]
    assert "Co refining China 70%" in supply["crma_concentration"]  # the flag names stage and country
    assert "Co mining Congo (Kinshasa) 74.2%" in supply["crma_concentration"]
    assert supply["feoc_exposed"] and supply["feoc_elements"] == ["Co", "Li", "Mn"]
    assert record["materials_and_composition"]["cobalt_free"] is False
    recycled = {r["element"]: r for r in record["circularity"]["recycled_content_2031"]}
    assert {k: v["minimum_pct"] for k, v in recycled.items()} == {"Co": 16, "Li": 6, "Ni": 6}
    assert record["carbon_footprint"]["co2_kg_per_kg"] is None  # O has no factor: unknown, not zero
    assert record["carbon_footprint"]["elements_without_co2_factor"] == ["O"]


def test_overwriting_the_out_folder_removes_stale_passports(cathode_run, tmp_path):
    _, out = cathode_run
    stale = out / "passport" / "stale.json"
    stale.write_text("{}")
    args = ["screen", str(CATHODE), "--out", str(out), "--no-progress", "--set", "export.report=false"]
    assert main(args) == 1 and stale.exists()  # another run is there: refused, nothing touched
    assert main([*args, "--overwrite"]) == 0
    assert not stale.exists() and not (out / "report.html").exists()


# --- solid-electrolyte preset ---------------------------------------------------------------------------


def test_electrolyte_screen_ranks_by_stability_window(electrolyte_run):
    code, out = electrolyte_run
    assert code == 0
    ranked = read_csv(out / "ranked.csv")
    assert ranked and {"esw_reduction_V", "esw_oxidation_V", "esw_e_above_ref_hull_eV_atom"} <= set(ranked[0])
    ids = {r["id"] for r in ranked}
    assert not {"LiCoO2", "LiFePO4", "NMC811"} & ids  # redox-active cations: not electrolytes
    assert {"Li2S", "Li3PS4_gamma"} <= ids
    li2s = next(r for r in ranked if r["id"] == "Li2S")
    assert float(li2s["esw_reduction_V"]) == 0.0 and 1.5 < float(li2s["esw_oxidation_V"]) < 3.5
    llzo = [r for r in ranked if r["id"] == "LLZO"]
    assert not llzo or llzo[0]["esw_oxidation_V"] == ""  # no La/Zr references: missing, not invented
    manifest = json.loads((out / "manifest.json").read_text())
    # the preset's models predict every column it ranks by: nothing is skipped for a missing column
    assert not any("skipped" in n for n in manifest["notes"])
    assert all(r["log10_conductivity_S_cm"] not in ("", "nan") for r in ranked)
    assert [c["checkpoint"] for c in manifest["checkpoints"]] == [
        "builtin:mp_stability", "builtin:obelix_conductivity", "builtin:obelix_attention"]
    _self_contained((out / "report.html").read_text(encoding="utf-8"))
    assert len(list((out / "passport").glob("*.json"))) == min(5, len(ranked))


# --- units ------------------------------------------------------------------------------------------------


@pytest.fixture
def facts(tmp_path: Path) -> pd.DataFrame:
    path = tmp_path / "facts.csv"
    path.write_text(
        "element,price_usd_per_kg,top_mine_country,top_mine_share_pct,china_refining_share_pct,eu_crm_2023,"
        "us_critical_2022,co2_kg_per_kg,hhi_production,hhi_reserve\n"
        "Li,10,Australia,30,70,strategic,yes,7,2900,4200\n"
        "Co,40,Congo,74,,strategic,yes,8,3100,2700\n"
        "O,2,,,,no,no,,500,500\n",
        encoding="utf-8",
    )
    return load_element_facts(path)


def test_passport_by_hand(facts):
    row = {"id": "lco", "formula": "LiCoO2", "source": "x.cif", "rank": 1, "score": 0.9, "capacity_mAh_g": 273.8}
    record = build_passport(row, facts, PropertiesConfig())
    m = LI + CO + 2 * O
    elements = {e["element"]: e for e in record["materials_and_composition"]["elements"]}
    assert elements["Co"]["mass_fraction"] == pytest.approx(CO / m)
    assert elements["O"]["top_mine_share_pct"] is None  # unknown stays unknown
    assert record["materials_and_composition"]["critical_raw_materials_eu_2023"] == ["Co", "Li"]
    assert record["supply_chain"]["supply_risk"] == pytest.approx((LI * 4900 + CO * 74**2 + 2 * O * 500) / m / 10000)
    assert record["supply_chain"]["unknown"] == {"top_mine_share_pct": ["O"], "china_refining_share_pct": ["Co", "O"]}
    assert record["carbon_footprint"]["co2_lower_bound_kg_per_kg"] == pytest.approx((LI * 7 + CO * 8) / m)
    recovery = {r["element"]: r for r in record["circularity"]["recovery_targets_2031"]}
    assert recovery["Co"]["recoverable_usd_per_kg_material"] == pytest.approx(0.95 * 40 * CO / m)
    assert recovery["Li"]["target_pct"] == 80
    assert record["circularity"]["recycled_content_2031_kg_per_kg"] == pytest.approx((0.16 * CO + 0.06 * LI) / m)
    assert record["performance"] == {"capacity_mAh_g": 273.8}
    json.dumps(record, allow_nan=False)  # plain JSON: no NaN


def test_a_bad_row_fails_alone_and_the_report_is_still_written(tmp_path, facts):
    cfg = load_config(CATHODE)
    ranked = pd.DataFrame(
        {
            "rank": [1, 2], "id": ["bad", "lco"], "formula": ["Xx9", "LiCoO2"], "source": ["a", "b"],
            "capacity_mAh_g": [1.0, 273.8], "cost_usd_kg": [1.0, 29.5], "supply_risk": [0.1, 0.38],
            "specific_energy_Wh_kg": [math.nan, math.nan], "cost_usd_kwh": [math.nan, math.nan],
            "score": [1.0, 0.5], "pareto_rank": [1, 1], "crowding_distance": [math.inf, math.inf],
        }
    )
    summary = {"removed": {}, "skipped": [], "objectives": ["capacity_mAh_g", "cost_usd_kg", "supply_risk"]}
    failures = export_report(
        tmp_path, ranked, cfg, element_table=facts, notes=["a note"], summary=summary, counts={"read": 2}, failures=[]
    )
    assert [f.id for f in failures] == ["bad"] and failures[0].stage == "export"
    assert (tmp_path / "passport" / "lco.json").is_file() and not (tmp_path / "passport" / "bad.json").exists()
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    _self_contained(page)
    assert "a note" in page and "∞" in page


def test_passport_file_names_are_safe_and_unique(tmp_path, facts):
    ranked = pd.DataFrame({"rank": [1, 2], "id": ["a/b", "a:b"], "formula": ["LiCoO2", "Li2O"]})
    records, paths, failures = write_passports(tmp_path, ranked, 5, PropertiesConfig(), facts)
    assert failures == [] and [p.name for p in paths] == ["a_b.json", "a_b_2.json"]
    assert set(records) == {"a/b", "a:b"}
    assert Composition(records["a:b"]["identity"]["formula"]) == Composition("Li2O")


def test_the_pareto_figure_a_worker_process_draws_is_the_one_drawn_here(cathode_run, monkeypatch):
    from concurrent.futures import Future

    from mi.export import report

    _, out = cathode_run
    ranked = pd.read_csv(out / "ranked.csv")
    cfg = load_config(CATHODE, ["execution.workers=2"])
    monkeypatch.setattr(report, "BACKGROUND_MIN_ROWS", 1)  # the preset's 10 rows would be drawn here
    pending = report.start_pareto_figure(ranked, cfg, {})
    here = report.pareto_figure(ranked, report.plotted_objectives(cfg, {}), cfg.ranking.top_k)
    there = pending.result(timeout=300)
    assert there[0] == here[0] and there[1] == here[1]  # the same PNG, the same caption
    pd.testing.assert_frame_equal(there[2], here[2][list(there[2].columns)])  # the legend's rows
    assert "pareto_rank" in there[2].columns and "id" in there[2].columns
    # one core, no report, or a table whose copy would raise the merge's peak: nothing is started
    monkeypatch.setattr(report, "BACKGROUND_MAX_ROWS", len(ranked) - 1)
    assert report.start_pareto_figure(ranked, cfg, {}) is None
    monkeypatch.setattr(report, "BACKGROUND_MAX_ROWS", len(ranked))
    assert report.start_pareto_figure(ranked, load_config(CATHODE, ["execution.workers=1"]), {}) is None
    assert report.start_pareto_figure(ranked, load_config(CATHODE, ["execution.workers=2", "export.report=false"]), {}) is None
    # a worker that died costs the time, not the figure
    lost = Future()
    lost.set_exception(RuntimeError("worker killed"))
    assert report._drawn(lost, lambda: "drawn here") == "drawn here"
    assert report._drawn(None, lambda: "drawn here") == "drawn here"
