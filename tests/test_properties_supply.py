"""Supply risk, FEOC and CRMA flags, CO2 and circularity, checked against hand arithmetic."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pandas as pd
import pytest
from pymatgen.core import Composition

from mi.candidates.base import Candidate
from mi.config import PropertiesConfig, SupplyConfig
from mi.data import build_element_facts, load_element_facts
from mi.properties import compute_properties, derive_properties, supply

# Atomic masses (g/mol) as pymatgen carries them.
LI, CO, O, FE, P, NI, MN = 6.941, 58.933195, 15.9994, 55.845, 30.973762, 58.6934, 54.938045
M_LCO = LI + CO + 2 * O  # 97.873 g/mol
W_LI, W_CO, W_O = LI / M_LCO, CO / M_LCO, 2 * O / M_LCO  # 0.0709, 0.6021, 0.3269

# A small element table whose numbers are easy to follow by hand (O has no CO2 factor and no shares).
TABLE = """element,price_usd_per_kg,top_mine_country,top_mine_share_pct,china_refining_share_pct,eu_crm_2023,us_critical_2022,co2_kg_per_kg,hhi_production,hhi_reserve
Li,10,Australia,30,70,strategic,yes,7,2900,4200
Co,40,Congo,74,,strategic,yes,8,3100,2700
O,2,,,,no,no,,500,500
Fe,0.1,,,,no,no,1.5,2400,1400
P,0.5,China,44,,critical,no,,2000,5100
"""


@pytest.fixture
def table(tmp_path: Path) -> pd.DataFrame:
    path = tmp_path / "facts.csv"
    path.write_text(TABLE, encoding="utf-8")
    return load_element_facts(path)


def candidate(cid: str, formula: str) -> Candidate:
    return Candidate(id=cid, source="test", record="0", composition=Composition(formula), structure=None, content_hash="x")


ALL = PropertiesConfig(calculators=["supply", "co2", "circularity"])


def test_mass_fractions_by_hand():
    w = supply.mass_fractions(Composition("LiCoO2"))
    assert w == pytest.approx({"Li": W_LI, "Co": W_CO, "O": W_O}, rel=1e-9)
    assert sum(w.values()) == pytest.approx(1.0)


def test_hhi_is_mass_weighted(table):
    # pymatgen's HHIModel definition: sum of w_e * HHI_e
    lco = Composition("LiCoO2")
    assert supply.weighted(lco, table, "hhi_production") == pytest.approx(W_LI * 2900 + W_CO * 3100 + W_O * 500)
    assert supply.weighted(lco, table, "hhi_reserve") == pytest.approx(W_LI * 4200 + W_CO * 2700 + W_O * 500)


def test_supply_risk_by_hand(table):
    # C_Li = max(2900, 30^2, 70^2) = 4900 (China refining); C_Co = max(3100, 74^2) = 5476 (Congo mining); C_O = 500
    by_hand = (W_LI * 4900 + W_CO * 5476 + W_O * 500) / 10000  # 0.3817
    assert supply.supply_risk(Composition("LiCoO2"), table) == pytest.approx(by_hand, rel=1e-9)
    assert 0 < by_hand < 1


def test_supply_risk_without_an_hhi_is_nan(table):
    assert math.isnan(supply.supply_risk(Composition("LiCl"), table))  # Cl is not in the table


def test_feoc_and_crma_flags_by_hand(table):
    lco = Composition("LiCoO2")
    assert supply.feoc_elements(lco, table, 50, 0.01) == ["Li"]  # 7.1 wt% Li, 70% refined in China
    assert supply.feoc_elements(lco, table, 50, 0.10) == []  # Li is below 10 wt%
    assert supply.feoc_elements(lco, table, 70, 0.01) == []  # 70 does not exceed 70
    assert supply.crma_elements(lco, table, 65, 0.01) == ["Co", "Li"]  # Co mined 74% in Congo, Li refined 70% in China
    assert supply.crma_elements(lco, table, 72, 0.01) == ["Co"]
    assert supply.crma_elements(Composition("LiFePO4"), table, 72, 0.01) == []  # P 44%, Fe and O unknown


def test_crma_flag_raised_by_refining_alone(table):
    # Li: top mining country 30% (below 65%), China refining 70% (above): the refining stage alone raises it
    findings = supply.crma_findings(Composition("LiFePO4"), table, 65, 0.01)
    assert [str(f) for f in findings] == ["Li refining China 70%"]
    assert (findings[0].stage, findings[0].country, findings[0].share_pct) == ("refining", "China", 70.0)
    assert supply.crma_elements(Composition("LiFePO4"), table, 65, 0.01) == ["Li"]
    cfg = PropertiesConfig(calculators=["supply"])
    frame, _, _ = compute_properties([candidate("lfp", "LiFePO4")], cfg, table)
    assert frame.loc["lfp", "crma_concentration_flag"]
    # the same table without the refining share: no flag (mining 30%, P 44%)
    no_refining = table.assign(china_refining_share_pct=math.nan)
    assert supply.crma_findings(Composition("LiFePO4"), no_refining, 65, 0.01) == []
    frame, _, _ = compute_properties([candidate("lfp", "LiFePO4")], cfg, no_refining)
    assert not frame.loc["lfp", "crma_concentration_flag"]


def test_crma_findings_name_both_stages_and_the_country(table):
    both = table.copy()
    both.loc["Co", "china_refining_share_pct"] = 80.0
    findings = supply.crma_findings(Composition("LiCoO2"), both, 65, 0.01)
    assert [str(f) for f in findings] == ["Co mining Congo 74%", "Co refining China 80%", "Li refining China 70%"]
    text, _ = derive_properties(pd.DataFrame({"id": ["lco"], "formula": ["LiCoO2"]}), PropertiesConfig(calculators=["supply"]), both)
    assert text.loc[0, "crma_concentration"] == "Co mining Congo 74%; Co refining China 80%; Li refining China 70%"


def test_eu_crm_mass_fraction_by_hand(table):
    assert supply.eu_crm_mass_fraction(Composition("LiCoO2"), table) == pytest.approx(W_LI + W_CO)
    assert supply.eu_crm_elements(Composition("LiFePO4"), table) == ["Li", "P"]
    assert math.isnan(supply.eu_crm_mass_fraction(Composition("LiCl"), table))  # Cl's status unknown


def test_co2_is_missing_when_a_factor_is_missing_and_the_lower_bound_is_not(table):
    lco = Composition("LiCoO2")
    assert math.isnan(supply.co2_kg_per_kg(lco, table))  # O has no factor: unknown, not zero
    assert supply.co2_lower_bound_kg_per_kg(lco, table) == pytest.approx(W_LI * 7 + W_CO * 8)
    assert supply.co2_kg_per_kg(Composition("LiFe"), table) == pytest.approx((LI * 7 + FE * 1.5) / (LI + FE))


def test_recoverable_value_at_the_2031_targets(table):
    # Co 95%, Li 80% (Regulation (EU) 2023/1542 Annex XII C); O has no target
    by_hand = W_CO * 0.95 * 40 + W_LI * 0.80 * 10
    assert supply.recoverable_value_usd_kg(Composition("LiCoO2"), table) == pytest.approx(by_hand)
    assert supply.recoverable_value_usd_kg(Composition("FePO4"), table) == 0.0  # nothing the regulation targets


def test_recycled_content_at_the_2031_minimums():
    # Co 16%, Li 6%, Ni 6% of the element must be recycled (Art. 8)
    m = LI + 0.5 * NI + 1.5 * MN + 4 * O
    lnmo = Composition("LiNi0.5Mn1.5O4")
    assert supply.recycled_content_2031_kg_per_kg(lnmo) == pytest.approx(0.06 * LI / m + 0.06 * 0.5 * NI / m)
    rows = supply.recycled_content_2031(Composition("LiCoO2"))
    assert [(r["element"], r["minimum_pct"]) for r in rows] == [("Co", 16), ("Li", 6)]
    assert rows[0]["recycled_kg_per_kg_material"] == pytest.approx(0.16 * W_CO)


def test_compute_properties_supply_columns_and_notes(table):
    cands = [candidate("lco", "LiCoO2"), candidate("lfp", "LiFePO4"), candidate("licl", "LiCl")]
    frame, failures, notes = compute_properties(cands, ALL, table)
    assert failures == []
    assert list(frame.columns) == [
        "supply_risk", "hhi_production", "hhi_reserve", "feoc_exposed", "crma_concentration_flag",
        "eu_crm_mass_fraction", "co_free", "ni_free", "co2_kg_per_kg", "co2_lower_bound_kg_per_kg",
        "recoverable_value_usd_kg", "recycled_content_2031_kg_per_kg",
    ]
    assert frame["crma_concentration_flag"].tolist() == [True, True, True]  # Co mining 74%, Li refining 70%
    assert frame["feoc_exposed"].tolist() == [True, True, True]
    assert frame["co_free"].tolist() == [False, True, True] and frame["ni_free"].all()
    assert frame["feoc_exposed"].dtype == bool
    assert frame.loc["lco", "supply_risk"] == pytest.approx((W_LI * 4900 + W_CO * 5476 + W_O * 500) / 10000)
    assert math.isnan(frame.loc["licl", "supply_risk"])  # Cl has no HHI in this table
    # Cl has no price but no recovery target either: only Li counts
    assert frame.loc["licl", "recoverable_value_usd_kg"] == pytest.approx(LI / (LI + 35.453) * 0.80 * 10)
    assert (frame[["supply_risk", "co2_kg_per_kg"]].fillna(1) != 0).all().all()  # missing is NaN, never 0
    assert "supply_risk is missing for 1 candidate: no production HHI for Cl (1 candidate) (licl)" in notes
    assert any(n.startswith("co2_kg_per_kg is missing for 3 candidates: no CO2 factor for Cl (1 candidate), O (2") for n in notes)
    assert any(n.startswith("crma_concentration_flag: an element whose top mining country share is unknown") and "Fe (1 candidate)" in n for n in notes)


def test_supply_thresholds_come_from_the_config(table):
    strict = PropertiesConfig(calculators=["supply"], supply=SupplyConfig(min_mass_fraction=0.1))
    frame, _, _ = compute_properties([candidate("lco", "LiCoO2")], strict, table)
    assert not frame.loc["lco", "feoc_exposed"]  # Li at 7.1 wt% no longer counts
    assert frame.loc["lco", "crma_concentration_flag"]  # Co at 60 wt% still does


def test_a_table_without_supply_columns_gives_nan_and_says_so(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text("element,price_usd_per_kg\nLi,10\nCo,40\nO,2\n", encoding="utf-8")
    frame, failures, notes = compute_properties([candidate("lco", "LiCoO2")], ALL, load_element_facts(path))
    assert failures == []
    assert math.isnan(frame.loc["lco", "supply_risk"]) and math.isnan(frame.loc["lco", "co2_kg_per_kg"])
    assert any("the element table has no hhi_production column" in n for n in notes)


# --- the packaged table --------------------------------------------------------------------------------


def test_packaged_hhi_equals_pymatgen_hhi_data():
    table = load_element_facts()
    with open(build_element_facts.default_hhi(), newline="", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f) if r and not r[0].startswith("#")]
    assert len(rows) > 70
    for symbol, production, reserve in rows:
        assert table.loc[symbol, "hhi_production"] == float(production), symbol
        assert table.loc[symbol, "hhi_reserve"] == float(reserve), symbol
        assert "S9" in table.loc[symbol, "source_ids"].split(";")
    assert math.isnan(table.loc["H", "hhi_production"])  # not in S9: unknown, not zero


@pytest.mark.parametrize(
    "formula, crma, co_free",
    [
        ("LiCoO2", ["Co mining Congo (Kinshasa) 74.2%", "Co refining China 70%", "Li refining China 70%"], False),
        (
            "LiNi0.8Mn0.1Co0.1O2",
            ["Co mining Congo (Kinshasa) 74.2%", "Co refining China 70%", "Li refining China 70%",
             "Mn refining China 90%", "Ni mining Indonesia 66.7%"],
            False,
        ),
        ("LiFePO4", ["Li refining China 70%"], True),
    ],
)
def test_known_cathodes_concentration_flags(formula, crma, co_free):
    # element-facts 2026.12.1: Co (70%) and Mn (90%) carry China refining shares, and every Li compound is
    # flagged at refining (China 70% of lithium chemicals); Co is also flagged at mining (Congo 74.2%)
    table = load_element_facts()
    comp = Composition(formula)
    assert [str(f) for f in supply.crma_findings(comp, table, 65, 0.01)] == crma
    assert supply.contains(comp, "Co") is not co_free


def test_packaged_supply_risk_of_licoo2_by_hand():
    # Li: HHI 2900, mine 31.7%, China refining 70% -> 4900; Co: HHI 3100, Congo 74.2% -> 5505.64; O: 500
    by_hand = (W_LI * 4900 + W_CO * 74.2**2 + W_O * 500) / 10000
    assert supply.supply_risk(Composition("LiCoO2"), load_element_facts()) == pytest.approx(by_hand, rel=1e-9)


def test_the_known_materials_benchmark_prints_its_table(capsys, monkeypatch):
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "experiments" / "benchmarks" / "known_materials.py"
    spec = importlib.util.spec_from_file_location("known_materials", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "known_materials", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    assert module.main(["--no-models"]) == 0
    lines = {line.split("|")[1].strip(): line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")}
    assert set(lines) >= {"LiFePO4", "LiCoO2", "NMC811", "LiNi0.5Mn1.5O4", "NaFePO4"}
    assert "| 146.7 | 146.7 |" in lines["LiNi0.5Mn1.5O4"]
    assert "| Co, Li |" in lines["LiCoO2"] and "| Co, Li, Mn |" in lines["NMC811"]  # FEOC
    assert lines["LiFePO4"].split("|")[8].strip() == "Li refining China 70%"  # CRMA at refining only
    assert lines["NaFePO4"].split("|")[8].strip() == "-"
    assert "Co 12.92x, Li 1.88x" in lines["LiCoO2"]  # supply shares at 5.5 TWh (test_demand checks the arithmetic)
