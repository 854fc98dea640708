"""Energy figures from a voltage column, and electrochemical stability windows from phase diagrams."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Composition

from mi.config import PropertiesConfig
from mi.properties import derive_properties
from mi.properties.stability import NoWindow, reference_entries, stability_window

ENERGY = PropertiesConfig(calculators=["capacity", "cost", "co2", "energy"])


def _table(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base = {"id": [f"c{i}" for i in range(n)], "formula": ["LiFePO4"] * n}
    return pd.DataFrame({**base, **columns}).set_index("id", drop=False)


# --- energy ----------------------------------------------------------------------------------------------


def test_energy_figures_and_their_std_by_hand():
    table = _table(
        capacity_mAh_g=[170.0], capacity_mAh_cm3=[600.0], cost_usd_kg=[2.0], co2_kg_per_kg=[5.0],
        co2_lower_bound_kg_per_kg=[4.0], voltage_V=[3.4], voltage_V_std=[0.1],
    )
    out, notes = derive_properties(table, ENERGY)
    row = out.iloc[0]
    assert row["specific_energy_Wh_kg"] == pytest.approx(170 * 3.4)  # 578 Wh/kg
    assert row["specific_energy_Wh_kg_std"] == pytest.approx(170 * 0.1)  # 17 Wh/kg
    assert row["energy_density_Wh_L"] == pytest.approx(600 * 3.4)  # 2040 Wh/L
    assert row["energy_density_Wh_L_std"] == pytest.approx(600 * 0.1)
    assert row["cost_usd_kwh"] == pytest.approx(2.0 / 0.578)  # 3.46 USD/kWh of active material
    assert row["cost_usd_kwh_std"] == pytest.approx(2.0 / 0.578 * 0.1 / 3.4)  # first order
    assert row["co2_kg_per_kwh"] == pytest.approx(5.0 / 0.578)
    assert row["co2_lower_bound_kg_per_kwh"] == pytest.approx(4.0 / 0.578)
    assert notes == []


def test_no_voltage_means_missing_energy_never_invented():
    table = _table(capacity_mAh_g=[170.0], capacity_mAh_cm3=[600.0], cost_usd_kg=[2.0])
    out, notes = derive_properties(table, ENERGY)
    for column in ("specific_energy_Wh_kg", "energy_density_Wh_L", "cost_usd_kwh", "specific_energy_Wh_kg_std"):
        assert out[column].isna().all(), column
    assert any("missing for every candidate: the surrogate predicts no voltage_V" in n for n in notes)


def test_oracle_voltage_is_a_column_hook():
    table = _table(capacity_mAh_g=[100.0], capacity_mAh_cm3=[np.nan], voltage_V=[9.0], oracle_voltage_V=[4.0])
    out, notes = derive_properties(table, PropertiesConfig(calculators=["capacity", "energy"], voltage_source="oracle"))
    assert out["specific_energy_Wh_kg"].iloc[0] == pytest.approx(400.0)  # the oracle's 4.0 V, not the model's
    assert math.isnan(out["energy_density_Wh_L"].iloc[0])  # no structure, no volumetric capacity
    assert math.isnan(out["specific_energy_Wh_kg_std"].iloc[0])
    assert any("no oracle_voltage_V_std column" in n for n in notes)
    assert "cost_usd_kwh" not in out.columns  # 'cost' was not configured


def test_non_positive_voltage_is_missing_with_a_note():
    table = _table(capacity_mAh_g=[100.0, 100.0], capacity_mAh_cm3=[1.0, 1.0], voltage_V=[-0.5, 3.0], voltage_V_std=[0.1, 0.1])
    out, notes = derive_properties(table, PropertiesConfig(calculators=["capacity", "energy"]))
    assert math.isnan(out["specific_energy_Wh_kg"].iloc[0]) and out["specific_energy_Wh_kg"].iloc[1] == 300.0
    assert any("voltage_V is not positive for 1 candidates" in n and "c0" in n for n in notes)


def test_energy_needs_capacity_in_the_config():
    with pytest.raises(ValueError, match="'energy' needs 'capacity'"):
        PropertiesConfig(calculators=["energy"])


# --- stability window ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def li2s_formation_energy() -> float:
    """The bundled (MP2020-corrected) Li2S entry's formation energy, eV/atom."""
    from pymatgen.analysis.phase_diagram import PhaseDiagram

    refs = [e for e in reference_entries() if {el.symbol for el in e.composition} <= {"Li", "S"}]
    diagram = PhaseDiagram(refs)
    li2s = min((e for e in refs if e.composition.reduced_formula == "Li2S"), key=lambda e: e.energy_per_atom)
    return diagram.get_form_energy_per_atom(li2s)


def test_li2s_window_by_hand():
    # Below the bundled Li2S entry, the candidate is the Li2S phase: stable against Li metal (0 V), and
    # oxidised by Li2S -> S + 2 Li+ + 2 e- at V = -dG_f(Li2S) / 2 = -(3 atoms x dH) / 2 = 2.4 V for dH = -1.6.
    got = stability_window(Composition("Li2S"), -1.6, "Li", 1)
    assert got["esw_reduction_V"] == 0.0
    assert got["esw_oxidation_V"] == pytest.approx(3 * 1.6 / 2, abs=1e-6)
    assert got["esw_e_above_ref_hull_eV_atom"] < 0


def test_a_metastable_candidate_gets_the_window_of_its_composition(li2s_formation_energy):
    # Above the bundled Li2S, the composition is that entry: V_ox = -3 E_f / 2, and e_above = dH - E_f.
    got = stability_window(Composition("Li2S"), -1.0, "Li", 1)
    assert got["esw_oxidation_V"] == pytest.approx(-3 * li2s_formation_energy / 2, abs=1e-6)
    assert got["esw_e_above_ref_hull_eV_atom"] == pytest.approx(-1.0 - li2s_formation_energy, abs=1e-9)


@pytest.mark.parametrize(
    "formula, enthalpy, reason",
    [
        ("Li7La3Zr2O12", -3.0, "no reference compound containing La, Zr"),
        ("Na2S", -1.3, "no Li in the formula"),
        ("Li2S", math.nan, "no formation_enthalpy_eV_atom"),
    ],
)
def test_no_window_without_references(formula, enthalpy, reason):
    with pytest.raises(NoWindow, match=reason):
        stability_window(Composition(formula), enthalpy, "Li", 1)


def test_derive_stability_windows_isolates_gaps():
    table = pd.DataFrame(
        {
            "id": ["li2s", "llzo", "li3ps4"],
            "formula": ["Li2S", "Li7La3Zr2O12", "Li3PS4"],
            "formation_enthalpy_eV_atom": [-1.6, -3.0, -1.0],
        }
    ).set_index("id", drop=False)
    out, notes = derive_properties(table, PropertiesConfig(calculators=["stability_window"]))
    assert out.loc["li2s", "esw_oxidation_V"] == pytest.approx(2.4, abs=1e-6)
    assert out.loc[["llzo"], ["esw_reduction_V", "esw_oxidation_V"]].isna().all().all()
    assert 0 < out.loc["li3ps4", "esw_reduction_V"] < out.loc["li3ps4", "esw_oxidation_V"]
    assert any("stability window is missing for 1 candidates: no reference compound containing La, Zr" in n for n in notes)
    assert any("bundled with pymatgen" in n for n in notes)
