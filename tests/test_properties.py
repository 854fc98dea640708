"""Exact property calculators, checked against hand arithmetic."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from pymatgen.core import Composition, DummySpecies, Lattice, Structure

from mi.candidates.base import Candidate, Failure
from mi.config import PropertiesConfig
from mi.data import load_element_facts
from mi.properties import capacity_mAh_g, compute_properties, cost_usd_kg, density_g_cm3, redox_capacity_mAh_g

F = 96485.33212  # C/mol
N_A = 6.02214076e23  # 1/mol
# Atomic masses (g/mol), the standard values pymatgen carries.
LI, NA, MG, FE, P, O = 6.941, 22.98976928, 24.305, 55.845, 30.973762, 15.9994
CO, MN, CL, F_ = 58.933195, 54.938045, 35.453, 18.9984032
NI, SI = 58.6934, 28.0855
CAPACITY_COLUMNS = ["capacity_mAh_g", "capacity_mAh_cm3", "capacity_formula_mAh_g", "capacity_redox_mAh_g"]


def candidate(cid: str, composition: Composition | str | None = None, structure: Structure | None = None) -> Candidate:
    comp = structure.composition if composition is None else Composition(composition)
    return Candidate(id=cid, source="test", record="0", composition=comp, structure=structure, content_hash="x")


@pytest.fixture(scope="module")
def nacl() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture
def user_prices(tmp_path: Path) -> pd.DataFrame:
    path = tmp_path / "prices.csv"
    path.write_text("element,price_usd_per_kg\nLi,10\nO,2\nCl,\n", encoding="utf-8")
    return load_element_facts(path)


# --- capacity ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "formula, molar_mass, expected",
    [
        ("LiFePO4", LI + FE + P + 4 * O, 169.9),  # 157.757 g/mol
        ("LiCoO2", LI + CO + 2 * O, 273.8),  # 97.873 g/mol
        ("LiMn2O4", LI + 2 * MN + 4 * O, 148.2),  # 180.815 g/mol
    ],
)
def test_capacity_of_known_cathodes(formula, molar_mass, expected):
    by_hand = 1 * F / (3.6 * molar_mass)  # one Li per formula unit
    got = capacity_mAh_g(Composition(formula), "Li")
    assert got == pytest.approx(by_hand, rel=1e-9)
    assert abs(got - expected) < 0.05


def test_capacity_does_not_depend_on_formula_units():
    assert capacity_mAh_g(Composition("Li4Fe4P4O16")) == pytest.approx(capacity_mAh_g(Composition("LiFePO4")))


def test_capacity_extracts_every_working_ion():
    # Li2MnO3: two Li per formula unit
    assert capacity_mAh_g(Composition("Li2MnO3")) == pytest.approx(2 * F / (3.6 * (2 * LI + MN + 3 * O)))


def test_capacity_of_other_working_ions():
    assert capacity_mAh_g(Composition("NaFePO4"), "Na") == pytest.approx(F / (3.6 * (NA + FE + P + 4 * O)))  # 154.2
    # Mg2+ carries two charges: MgMn2O4 -> 270.5 mAh/g
    assert capacity_mAh_g(Composition("MgMn2O4"), "Mg") == pytest.approx(2 * F / (3.6 * (MG + 2 * MN + 4 * O)))


def test_capacity_without_the_working_ion_is_zero():
    assert capacity_mAh_g(Composition("FePO4"), "Li") == 0.0
    assert capacity_mAh_g(Composition("LiFePO4"), "Na") == 0.0


def test_capacity_ignores_oxidation_states():
    decorated = Composition({"Li+": 1, "Co3+": 1, "O2-": 2})
    assert capacity_mAh_g(decorated) == pytest.approx(F / (3.6 * (LI + CO + 2 * O)))


# --- capacity bounded by redox ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "formula, molar_mass, expected",
    [
        ("LiFePO4", LI + FE + P + 4 * O, 169.9),  # Fe2+ -> Fe3+: one electron, one Li
        ("LiCoO2", LI + CO + 2 * O, 273.8),  # Co3+ -> Co4+
        ("LiMn2O4", LI + 2 * MN + 4 * O, 148.2),  # Mn3.5+ -> Mn4+: 2 x 0.5 electrons
    ],
)
def test_redox_capacity_of_known_cathodes_equals_the_formula_count(formula, molar_mass, expected):
    got = redox_capacity_mAh_g(Composition(formula), "Li")
    assert got == pytest.approx(F / (3.6 * molar_mass), rel=1e-9)
    assert abs(got - expected) < 0.05


def test_lnmo_capacity_follows_ni_not_mn():
    # LiNi0.5Mn1.5O4: Mn is 4+ already; Ni2+ -> Ni4+ gives 0.5 x 2 = 1 electron, so one Li: 146.7 mAh/g
    m = LI + 0.5 * NI + 1.5 * MN + 4 * O  # 182.62 g/mol
    got = redox_capacity_mAh_g(Composition("LiNi0.5Mn1.5O4"), "Li")
    assert got == pytest.approx(F / (3.6 * m), rel=1e-9)
    assert got == pytest.approx(146.7, abs=0.05)


def test_redox_capacity_of_nmc811():
    # Li(Ni0.8Mn0.1Co0.1)O2: Mn4+, Co3+, Ni2.875+; headroom 0.8 x 1.125 + 0.1 = 1.0 electron, one Li
    m = LI + 0.8 * NI + 0.1 * MN + 0.1 * CO + 2 * O
    assert redox_capacity_mAh_g(Composition("LiNi0.8Mn0.1Co0.1O2"), "Li") == pytest.approx(F / (3.6 * m), rel=1e-9)


@pytest.mark.parametrize(
    "formula, ion, electrons, molar_mass",
    [
        ("Li2FeSiO4", "Li", 1, 2 * LI + FE + SI + 4 * O),  # Fe2+ -> Fe3+ frees one of the two Li: 165.6 not 331.3
        ("Li2MnO3", "Li", 0, 2 * LI + MN + 3 * O),  # Mn4+ cannot be oxidised: 0, not 458.9
        ("LiFeO2", "Li", 0, LI + FE + 2 * O),  # Fe3+ is Fe's highest accessible state
        ("MgFeSiO4", "Mg", 1, MG + FE + SI + 4 * O),  # one electron frees half an Mg2+
        ("MgMn2O4", "Mg", 2, MG + 2 * MN + 4 * O),  # two Mn3+ -> Mn4+ free one Mg2+ (270.5, as the formula)
        ("Li2S", "Li", 0, 2 * LI + 32.065),  # anion (S2-/S) redox is not counted
    ],
)
def test_redox_capacity_is_bounded_by_the_electrons_available(formula, ion, electrons, molar_mass):
    got = redox_capacity_mAh_g(Composition(formula), ion)
    assert got == pytest.approx(electrons * F / (3.6 * molar_mass), rel=1e-9, abs=1e-12)
    assert got <= capacity_mAh_g(Composition(formula), ion) + 1e-9


def test_redox_capacity_without_charge_balance_is_nan():
    # LiFeO3 would need Fe5+; there is no charge-balanced assignment within Fe2+/Fe3+
    assert math.isnan(redox_capacity_mAh_g(Composition("LiFeO3"), "Li"))
    assert capacity_mAh_g(Composition("LiFeO3"), "Li") > 0


def test_capacity_mode_chooses_the_capacity_column():
    cands = [candidate("lmo", "Li2MnO3"), candidate("lfp", "LiFePO4")]
    redox, _, notes = compute_properties(cands, PropertiesConfig(calculators=["capacity"], capacity_mode="redox"))
    formula, _, _ = compute_properties(cands, PropertiesConfig(calculators=["capacity"], capacity_mode="formula"))
    assert list(redox.columns) == CAPACITY_COLUMNS
    assert redox.loc["lmo", "capacity_mAh_g"] == 0.0
    assert formula.loc["lmo", "capacity_mAh_g"] == pytest.approx(2 * F / (3.6 * (2 * LI + MN + 3 * O)))
    for frame in (redox, formula):  # both explicit columns whatever the mode; LiFePO4 the same either way
        assert frame.loc["lmo", "capacity_redox_mAh_g"] == 0.0
        assert frame.loc["lmo", "capacity_formula_mAh_g"] == pytest.approx(458.86, abs=0.01)
        assert frame.loc["lfp", "capacity_mAh_g"] == pytest.approx(169.9, abs=0.05)
    assert any("capacity_mAh_g is 0 for 1 candidate: no redox-active cation" in n and "lmo" in n for n in notes)


def test_volumetric_capacity_needs_a_structure(licoo2):
    frame, _, notes = compute_properties(
        [candidate("lco", structure=licoo2), candidate("lfp", "LiFePO4")], PropertiesConfig(calculators=["capacity"])
    )
    volume_cm3 = math.sqrt(3) / 2 * 2.816**2 * 14.05 * 1e-24
    density = 3 * (LI + CO + 2 * O) / (N_A * volume_cm3)
    assert frame.loc["lco", "capacity_mAh_cm3"] == pytest.approx(F / (3.6 * (LI + CO + 2 * O)) * density, rel=1e-6)
    assert math.isnan(frame.loc["lfp", "capacity_mAh_cm3"])
    assert any("capacity_mAh_cm3 is missing for 1 candidate: no structure" in n for n in notes)


# --- density -------------------------------------------------------------------------------------------


def test_density_of_rocksalt(nacl):
    volume_cm3 = 5.64**3 * 1e-24
    by_hand = 4 * (NA + CL) / (N_A * volume_cm3)  # 4 NaCl per cubic cell: 2.164 g/cm3
    assert density_g_cm3(candidate("nacl", structure=nacl)) == pytest.approx(by_hand, rel=1e-6)


def test_density_of_layered_licoo2(licoo2):  # conftest: R-3m, a = 2.816, c = 14.05 A
    volume_cm3 = math.sqrt(3) / 2 * 2.816**2 * 14.05 * 1e-24
    by_hand = 3 * (LI + CO + 2 * O) / (N_A * volume_cm3)  # Z = 3: 5.05 g/cm3
    assert len(licoo2) == 12
    assert density_g_cm3(candidate("lco", structure=licoo2)) == pytest.approx(by_hand, rel=1e-6)


def test_density_of_a_composition_only_candidate_is_nan():
    assert math.isnan(density_g_cm3(candidate("lfp", "LiFePO4")))


# --- cost ----------------------------------------------------------------------------------------------


def test_cost_of_a_binary_from_a_user_table(user_prices):
    m = 2 * LI + O  # Li2O, 29.881 g/mol
    by_hand = (2 * LI / m) * 10 + (O / m) * 2  # 5.7166 USD/kg
    prices = user_prices["price_usd_per_kg"].to_dict()
    assert cost_usd_kg(Composition("Li2O"), prices) == pytest.approx(by_hand, rel=1e-9)


def test_cost_of_a_binary_from_the_packaged_table():
    table = load_element_facts()
    p_li, p_f = table.loc["Li", "price_usd_per_kg"], table.loc["F", "price_usd_per_kg"]
    m = LI + F_  # LiF, 25.939 g/mol
    by_hand = (LI / m) * p_li + (F_ / m) * p_f
    got = cost_usd_kg(Composition("LiF"), table["price_usd_per_kg"].to_dict())
    assert got == pytest.approx(by_hand, rel=1e-9)


def test_cost_with_a_missing_price_is_nan_never_zero(user_prices):
    prices = user_prices["price_usd_per_kg"].to_dict()
    assert math.isnan(cost_usd_kg(Composition("LiCl"), prices))  # Cl is blank
    assert math.isnan(cost_usd_kg(Composition("Li2S"), prices))  # S is not in the table at all


# --- compute_properties ------------------------------------------------------------------------------


def test_compute_properties_frame(licoo2, nacl):
    cands = [candidate("lco", structure=licoo2), candidate("lfp", "LiFePO4"), candidate("nacl", structure=nacl)]
    frame, failures, notes = compute_properties(cands, PropertiesConfig())
    assert failures == []
    assert list(frame.index) == ["lco", "lfp", "nacl"] and frame.index.name == "id"
    assert list(frame.columns) == ["density_g_cm3", *CAPACITY_COLUMNS, "cost_usd_kg"]
    # a structure candidate gets the capacity of its composition (Li3Co3O6 = LiCoO2)
    assert frame.loc["lco", "capacity_mAh_g"] == pytest.approx(F / (3.6 * (LI + CO + 2 * O)))
    assert frame.loc["lfp", "capacity_mAh_g"] == pytest.approx(169.9, abs=0.05)
    assert frame.loc["nacl", "capacity_mAh_g"] == 0.0
    assert math.isnan(frame.loc["lfp", "density_g_cm3"])
    assert frame["cost_usd_kg"].notna().all()
    assert frame["capacity_mAh_g"].equals(frame["capacity_redox_mAh_g"])  # redox is the default mode
    assert any("density_g_cm3 is missing for 1 candidate: no structure" in n and "lfp" in n for n in notes)
    assert any("capacity_mAh_g is 0 for 1 candidate: no Li" in n for n in notes)
    assert any("packaged element-facts" in n for n in notes)


def test_compute_properties_missing_price_gives_nan_and_a_note(user_prices):
    cands = [candidate("a", "Li2O"), candidate("b", "LiCl"), candidate("c", "Li2S"), candidate("d", "LiClO4")]
    frame, failures, notes = compute_properties(cands, PropertiesConfig(calculators=["cost"]), user_prices)
    assert failures == []
    assert frame.loc["a", "cost_usd_kg"] == pytest.approx((2 * LI * 10 + O * 2) / (2 * LI + O))  # 5.7166
    assert frame[["cost_usd_kg"]].loc[["b", "c", "d"]].isna().all().all()
    assert (frame["cost_usd_kg"] != 0).all()
    assert "cost_usd_kg is missing for 2 candidates: no price for Cl in the element table (b, d)" in notes
    assert "cost_usd_kg is missing for 1 candidate: no price for S in the element table (c)" in notes
    assert any(str(user_prices.attrs["source"]) in n for n in notes)


def test_compute_properties_packaged_table_missing_price():
    frame, _, notes = compute_properties([candidate("pm", "Pm2O3")], PropertiesConfig(calculators=["cost"]))
    assert math.isnan(frame.loc["pm", "cost_usd_kg"])
    assert any("no price for Pm" in n for n in notes)


def test_compute_properties_isolates_a_failing_candidate():
    bad_empty = candidate("empty", Composition())
    bad_dummy = candidate("dummy", Composition({DummySpecies("X"): 1, "Li": 1}))
    cands = [candidate("lfp", "LiFePO4"), bad_empty, bad_dummy, candidate("lco", "LiCoO2")]
    frame, failures, notes = compute_properties(cands, PropertiesConfig())
    assert list(frame.index) == ["lfp", "lco"]
    assert [f.id for f in failures] == ["empty", "dummy"]
    assert all(isinstance(f, Failure) and f.stage == "properties" and f.source == "test" for f in failures)
    assert "composition is empty" in failures[0].reason
    assert "placeholder" in failures[1].reason
    assert any("failed for 2 candidates" in n for n in notes)


def test_compute_properties_runs_only_the_configured_calculators():
    cfg = PropertiesConfig(working_ion="Na", calculators=["capacity"])
    frame, failures, notes = compute_properties([candidate("nfp", "NaFePO4")], cfg)
    assert list(frame.columns) == CAPACITY_COLUMNS
    assert frame.loc["nfp", "capacity_mAh_g"] == pytest.approx(F / (3.6 * (NA + FE + P + 4 * O)))
    assert not any("price" in n for n in notes)  # no element table was needed


def test_compute_properties_with_no_candidates():
    frame, failures, notes = compute_properties([], PropertiesConfig())
    assert frame.empty and list(frame.columns) == ["density_g_cm3", *CAPACITY_COLUMNS, "cost_usd_kg"]
    assert failures == []
