"""Scale-up demand (mi.properties.demand): tonnes a year at a market scenario against world mine output."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError
from pymatgen.core import Composition, Element

from mi.cli import main
from mi.config import DemandConfig, PropertiesConfig
from mi.data import load_element_facts
from mi.data import build_element_facts as build
from mi.export.passport import build_passport
from mi.properties import demand, derive_properties

F = 96485.33212  # C/mol
ROOT = Path(__file__).resolve().parents[1]
DEMAND = PropertiesConfig(calculators=["capacity", "energy", "demand"])

# Production figures easy to follow; Mn and O have none (unknown).
TABLE = """element,price_usd_per_kg,world_mine_production_t,production_year
Li,10,200000,2023
Co,40,250000,2023
Ni,15,3000000,2023
Mn,1,,
O,2,,
Fe,0.2,,
P,0.1,,
Na,0.5,,
"""


@pytest.fixture
def table(tmp_path: Path) -> pd.DataFrame:
    path = tmp_path / "facts.csv"
    path.write_text(TABLE, encoding="utf-8")
    return load_element_facts(path)


def packaged_with(path: Path, element: str, column: str, value: str) -> Path:
    """A user's table: the packaged CSV with one figure changed."""
    with open(build.DEFAULT_OUT, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        if row["element"] == element:
            row[column] = value
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def mass(symbol: str) -> float:
    return float(Element(symbol).atomic_mass)


def nmc811_by_hand(voltage_V: float, twh: float = 5.5, share: float = 1.0) -> dict[str, float]:
    """Tonnes a year of each element of LiNi0.8Mn0.1Co0.1O2 from first principles."""
    amounts = {"Li": 1.0, "Ni": 0.8, "Mn": 0.1, "Co": 0.1, "O": 2.0}
    molar_mass = sum(n * mass(e) for e, n in amounts.items())  # g/mol
    capacity = F / (3.6 * molar_mass)  # mAh/g, one Li per formula unit
    kwh_per_kg = capacity * voltage_V / 1000.0  # mAh/g x V = Wh/kg
    return {e: n * mass(e) / molar_mass / kwh_per_kg * twh * 1e9 * share / 1000.0 for e, n in amounts.items()}


def frame(formulas: dict[str, str], voltages: dict[str, float], std: float | None = 0.1) -> pd.DataFrame:
    rows = []
    for cid, formula in formulas.items():
        comp = Composition(formula)
        capacity = comp["Li"] * F / (3.6 * float(comp.weight))  # every Li out (these formulas have one)
        rows.append({"id": cid, "formula": formula, "capacity_mAh_g": capacity, "voltage_V": voltages.get(cid, math.nan)})
    out = pd.DataFrame(rows)
    if std is not None:
        out["voltage_V_std"] = std
    return out


def test_nmc811_demand_by_hand(table):
    out, notes = derive_properties(frame({"nmc": "LiNi0.8Mn0.1Co0.1O2"}, {"nmc": 3.8}), DEMAND, table)
    expected = nmc811_by_hand(3.8)
    row = out.iloc[0]
    for element, tonnes in expected.items():
        assert row[f"demand_{element}_t_per_year"] == pytest.approx(tonnes, rel=1e-9), element
    # Li ~ 372 kt a year against 200 kt: 1.86 x; Co 316 kt against 250 kt; Ni 2.53 Mt against 3 Mt
    shares = {"Li": expected["Li"] / 200000, "Co": expected["Co"] / 250000, "Ni": expected["Ni"] / 3000000}
    assert row["max_supply_share"] == pytest.approx(max(shares.values()), rel=1e-9)
    assert row["limiting_element"] == "Li" and shares["Li"] > shares["Co"] > shares["Ni"]
    # first order in the voltage: t ~ 1/V, so the relative std is V_std / V
    assert row["max_supply_share_std"] == pytest.approx(row["max_supply_share"] * 0.1 / 3.8, rel=1e-9)
    assert any("5.5 TWh a year" in n and "lower bound" in n for n in notes)


def test_an_element_the_candidate_lacks_needs_zero_tonnes(table):
    out, _ = derive_properties(frame({"lco": "LiCoO2", "lfp": "LiFePO4"}, {"lco": 3.9, "lfp": 3.4}), DEMAND, table)
    # LiCoO2 needs no iron: 0, not unknown; an element no candidate holds has no column
    assert out.loc[0, "demand_Fe_t_per_year"] == 0.0 and out.loc[1, "demand_Co_t_per_year"] == 0.0
    assert "demand_Ni_t_per_year" not in out.columns


def test_merged_chunks_have_the_demand_columns_of_one_table(table):
    """Chunks write tonnes only for their own elements; the merge's completion makes their concatenation
    the whole table's (values, zeros, column order), and drops a column only a removed row needed."""
    from mi.execution.merge import concat_rows

    formulas = {"lco": "LiCoO2", "lfp": "LiFePO4", "lmo": "LiMn2O4", "nmc": "LiNi0.8Mn0.1Co0.1O2", "nv": "LiNaO"}
    voltages = {"lco": 3.9, "lfp": 3.4, "lmo": 4.0, "nmc": 3.8}  # LiNaO: no voltage, no energy
    data = frame(formulas, voltages)
    whole = demand.complete_merged(derive_properties(data, DEMAND, table)[0])  # one chunk: already complete but Na
    chunks = [derive_properties(data.iloc[rows].reset_index(drop=True), DEMAND, table)[0] for rows in ([4, 1], [2], [0, 3])]
    merged = demand.complete_merged(concat_rows(chunks)).set_index("id").loc[whole["id"]].reset_index()
    assert list(merged.columns) == list(whole.columns)
    pd.testing.assert_frame_equal(merged, whole, check_dtype=False)
    assert merged.loc[1, "demand_Co_t_per_year"] == 0.0 and merged.loc[0, "demand_Fe_t_per_year"] == 0.0
    assert math.isnan(merged.loc[4, "demand_Co_t_per_year"])  # no energy: unknown, not 0
    # a constraint removes LiMn2O4 in its chunk: Mn is needed by NMC811 still; remove both and Mn goes
    kept = concat_rows([c[~c["id"].isin(["lmo", "nmc"])] for c in chunks])
    assert "demand_Mn_t_per_year" in kept.columns and "demand_Mn_t_per_year" not in demand.complete_merged(kept).columns
    assert "demand_Na_t_per_year" not in demand.complete_merged(kept).columns  # only LiNaO holds Na: no energy


def test_kg_per_kwh_and_the_scenario(table):
    comp = Composition("LiCoO2")
    w_co = mass("Co") / (mass("Li") + mass("Co") + 2 * mass("O"))
    assert demand.kg_per_kwh(comp, 1000.0)["Co"] == pytest.approx(w_co, rel=1e-12)  # 1 kWh per kg
    small = DemandConfig(twh_per_year=2.0, share=0.25)
    # 0.5 TWh a year at 1 kg/kWh is 0.5e9 kg = 500,000 t
    assert demand.tonnes_per_year(1.0, small) == pytest.approx(500000.0)
    cfg = PropertiesConfig(calculators=["capacity", "energy", "demand"], demand=small)
    out, notes = derive_properties(frame({"nmc": "LiNi0.8Mn0.1Co0.1O2"}, {"nmc": 3.8}), cfg, table)
    assert out.loc[0, "demand_Co_t_per_year"] == pytest.approx(nmc811_by_hand(3.8, 2.0, 0.25)["Co"], rel=1e-9)
    assert any("25% of 2 TWh a year" in n for n in notes)


def test_without_a_voltage_the_columns_stay_empty_with_a_note(table):
    data = frame({"lco": "LiCoO2", "nmc": "LiNi0.8Mn0.1Co0.1O2"}, {"nmc": 3.8})
    out, notes = derive_properties(data, DEMAND, table)
    lco = out.set_index("id").loc["lco"]
    assert math.isnan(lco["demand_Co_t_per_year"]) and math.isnan(lco["max_supply_share"])
    assert lco["limiting_element"] is None or pd.isna(lco["limiting_element"])
    assert "demand figures are missing for 1 candidate: no specific energy (lco)" in notes
    # no voltage column at all
    out, notes = derive_properties(data.drop(columns=["voltage_V", "voltage_V_std"]), DEMAND, table)
    assert out["max_supply_share"].isna().all()
    assert any(n.startswith("demand figures are missing for every candidate") for n in notes)


def test_missing_production_leaves_the_column_empty_and_names_the_element(table):
    data = frame({"lco": "LiCoO2", "nfp": "NaFePO4"}, {"lco": 3.9, "nfp": 2.9})
    data.loc[1, "capacity_mAh_g"] = F / (3.6 * float(Composition("NaFePO4").weight))  # one Na out
    no_co = table.assign(world_mine_production_t=table["world_mine_production_t"].where(table.index != "Co"))
    out, notes = derive_properties(data, DEMAND, no_co)
    out = out.set_index("id")
    # Co's tonnes are known; its share is not, so the limit is taken over Li alone, and the notes say why
    assert out.loc["lco", "demand_Co_t_per_year"] > 0
    assert out.loc["lco", "limiting_element"] == "Li"
    assert out.loc["lco", "max_supply_share"] == pytest.approx(out.loc["lco", "demand_Li_t_per_year"] / 200000)
    # no element of NaFePO4 has a production figure: the column is empty, never 0
    assert math.isnan(out.loc["nfp", "max_supply_share"]) and pd.isna(out.loc["nfp", "limiting_element"])
    gaps = next(n for n in notes if n.startswith("max_supply_share leaves out elements"))
    assert "Co (1 candidate)" in gaps and "Na (1 candidate)" in gaps and "O (2 candidates)" in gaps
    assert any(n.startswith("max_supply_share is missing for 1 candidate") and "(nfp)" in n for n in notes)


def test_a_user_table_overrides_a_production_figure(tmp_path):
    packaged = load_element_facts()
    doubled = str(2 * packaged.loc["Co", "world_mine_production_t"])  # Co output doubled
    path = packaged_with(tmp_path / "mine.csv", "Co", "world_mine_production_t", doubled)
    data = frame({"lco": "LiCoO2"}, {"lco": 3.9})
    before, _ = derive_properties(data, DEMAND, packaged)
    after, notes = derive_properties(data, DEMAND, load_element_facts(path))
    assert after.loc[0, "demand_Co_t_per_year"] == pytest.approx(before.loc[0, "demand_Co_t_per_year"])
    assert after.loc[0, "max_supply_share"] == pytest.approx(before.loc[0, "max_supply_share"] / 2)
    assert any(str(path) in n for n in notes)


def test_packaged_licoo2_needs_thirteen_times_the_worlds_cobalt():
    # 3.9 V, 273.8 mAh/g: 1068 Wh/kg; Co 60.2 wt% -> 0.564 kg/kWh -> 3.10 Mt a year against 240 kt (IEA 2023)
    molar_mass = mass("Li") + mass("Co") + 2 * mass("O")
    energy_Wh_kg = F / (3.6 * molar_mass) * 3.9
    tonnes = mass("Co") / molar_mass / (energy_Wh_kg / 1000) * 5.5e9 / 1000
    demands = demand.element_demand(Composition("LiCoO2"), energy_Wh_kg, load_element_facts(), DemandConfig())
    share, element = demand.limiting(demands)
    assert element == "Co" and share == pytest.approx(tonnes / 240000, rel=1e-9)
    assert 12 < share < 14
    sentence = demand.need_sentence(share, "Co", "2023", DemandConfig())
    assert sentence == f"at 5.5 TWh a year this chemistry needs {share:.3g} x the world's 2023 cobalt output"


def test_passport_carries_the_demand(table):
    energy_Wh_kg = 1000.0
    row = {"id": "lco", "formula": "LiCoO2", "rank": 1, "specific_energy_Wh_kg": energy_Wh_kg}
    record = build_passport(row, table, DEMAND)["scale_up_demand"]
    molar_mass = mass("Li") + mass("Co") + 2 * mass("O")
    co_tonnes = mass("Co") / molar_mass * 5.5e9 / 1000  # 1 kWh per kg
    by_element = {e["element"]: e for e in record["elements"]}
    assert by_element["Co"]["t_per_year"] == pytest.approx(co_tonnes)
    assert by_element["Co"]["supply_share"] == pytest.approx(co_tonnes / 250000)
    assert by_element["O"]["supply_share"] is None  # unknown, not zero
    assert record["limiting_element"] == "Co" and record["elements_without_production"] == ["O"]
    assert "cobalt output" in record["statement"]
    json.dumps(record, allow_nan=False)
    empty = build_passport({"id": "x", "formula": "LiCoO2"}, table, DEMAND)["scale_up_demand"]
    assert empty["elements"] == [] and empty["max_supply_share"] is None and "no specific energy" in empty["missing"]


def test_demand_needs_energy():
    with pytest.raises(ValidationError, match="'demand' needs 'energy'"):
        PropertiesConfig(calculators=["capacity", "demand"])
    with pytest.raises(ValidationError):
        DemandConfig(share=1.5)
    # listed before 'energy', it still runs after it
    cfg = PropertiesConfig(calculators=["capacity", "demand", "energy"])
    out, _ = derive_properties(frame({"lco": "LiCoO2"}, {"lco": 3.9}), cfg, load_element_facts())
    assert out.loc[0, "max_supply_share"] > 0


def test_cathode_screen_writes_demand_with_a_user_table(tmp_path):
    user = packaged_with(tmp_path / "facts.csv", "Li", "world_mine_production_t", "1000000")  # the user's Li figure
    out = tmp_path / "run"
    code = main(["screen", str(ROOT / "configs" / "cathode.yaml"), "--out", str(out), "--no-progress",
                 "--set", f"properties.element_table={user}"])
    assert code == 0
    ranked = pd.read_csv(out / "ranked.csv").set_index("id")
    assert {"demand_Li_t_per_year", "demand_Co_t_per_year", "max_supply_share", "limiting_element",
            "crma_concentration"} <= set(ranked.columns)
    lco = ranked.loc["LiCoO2"]
    assert lco["max_supply_share"] == pytest.approx(lco["demand_Co_t_per_year"] / 240000, rel=1e-9)
    lfp = ranked.loc["LiFePO4"]
    assert lfp["max_supply_share"] == pytest.approx(lfp["demand_Li_t_per_year"] / 1e6, rel=1e-9)  # the user's Li
    assert "Li refining China 70%" in lfp["crma_concentration"]
    page = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="demand"' in page and "this chemistry needs" in page and 'alt="supply share per element"' in page
    top = ranked.sort_values("rank").index[0]
    record = json.loads((out / "passport" / f"{top}.json").read_text())
    assert record["scale_up_demand"]["max_supply_share"] == pytest.approx(ranked.loc[top, "max_supply_share"])


def test_the_chunks_demand_is_each_candidates_element_demand(table):
    """The columns computed for the whole table at once (mass fractions x 1/energy) are each row's
    `element_demand` and `limiting`: real formulas, repeated ones, elements without a production figure
    (Mn, O, Fe, P) or absent from the table (S, Ge), and energies that are missing, zero or negative."""
    from mi.properties.demand import column, element_demand, limiting

    formulas = ["LiNi0.8Mn0.1Co0.1O2", "LiFePO4", "LiCoO2", "Li2MnO3", "NaFePO4", "LiCoO2", "GeS2", "Li3PS4",
                "LiNiO2", "MnO2", "Li2O"]
    energies = [720.0, 540.0, 0.0, -5.0, 300.0, 650.0, 400.0, math.nan, 800.0, 250.0, 1e-300]
    rows = pd.DataFrame({"id": [f"c{k}" for k in range(len(formulas))], "formula": formulas,
                         "specific_energy_Wh_kg": energies, "specific_energy_Wh_kg_std": 10.0})
    out, notes = demand.demand(rows, DEMAND, table)
    scenario = DEMAND.demand
    for k, (formula, energy) in enumerate(zip(formulas, energies)):
        row = out.iloc[k]
        if not energy > 0:
            assert math.isnan(row["max_supply_share"]) and row["limiting_element"] is None
            assert all(math.isnan(row[c]) for c in out.columns if c.startswith("demand_"))
            continue
        demands = element_demand(Composition(formula), energy, table, scenario)
        for d in demands:
            assert row[column(d.element)] == pytest.approx(d.t_per_year, rel=1e-12), (formula, d.element)
        assert sum(row[c] > 0 for c in out.columns if c.startswith("demand_")) == len(demands)
        share, element = limiting(demands)
        assert row["limiting_element"] == element, formula
        assert (math.isnan(share) and math.isnan(row["max_supply_share"])) or row["max_supply_share"] == pytest.approx(share, rel=1e-12)
    assert out.loc[9, "limiting_element"] is None  # MnO2: no production figure for Mn or O
    assert any("Mn (" in n and "O (" in n for n in notes)
