"""The vectorised element-table calculators give the row-wise calculators' floats, gaps and notes."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Composition, DummySpecies, Species

from mi.candidates.base import Candidate
from mi.config import PropertiesConfig
from mi.data import load_element_facts
from mi.properties import compute, compute_properties
from mi.properties.element_matrix import VECTORISED, element_matrix

ROOT = Path(__file__).resolve().parents[1]
MP_FORMULAS = ROOT.parent / "shared" / "datasets" / "mp_composition" / "mp_e_form_dev.csv"
GROUPS = ["density", "capacity", "cost", "supply", "co2", "circularity"]


def _candidates(formulas) -> list[Candidate]:
    out = []
    for k, formula in enumerate(formulas):
        comp = formula if isinstance(formula, Composition) else Composition(formula)
        out.append(Candidate(id=f"c{k}", source="t", record=str(k), composition=comp, structure=None, content_hash=str(k)))
    return out


def _both(cands, cfg, table, monkeypatch):
    fast = compute_properties(cands, cfg, table)
    with monkeypatch.context() as patch:
        patch.setattr(compute, "VECTORISED", {})
        slow = compute_properties(cands, cfg, table)
    return fast, slow


def _assert_identical(fast, slow):
    (f_frame, f_fail, f_notes), (s_frame, s_fail, s_notes) = fast, slow
    assert list(f_frame.columns) == list(s_frame.columns)
    assert list(f_frame.index) == list(s_frame.index)
    for column in f_frame.columns:
        a, b = f_frame[column].to_numpy(), s_frame[column].to_numpy()
        assert f_frame[column].dtype == s_frame[column].dtype, column
        if a.dtype == bool:
            assert (a == b).all(), column
        else:
            assert np.array_equal(a, b, equal_nan=True), column  # the same floats, bit for bit
    assert [(f.id, f.reason) for f in f_fail] == [(f.id, f.reason) for f in s_fail]
    assert f_notes == s_notes


ODD = [
    "LiNi0.8Mn0.1Co0.1O2", "LiFePO4", "Li2S", "NaCl", "LiCoO2", "Li3PS4", "LiPF6", "He", "XeF2", "Pu2O3", "Tc2O7",
    "LiN3", "Co", "Ni3Sn", "Pb0.5Co0.5O", "Li6PS5Cl", "Nd2Fe14B", "LiTi2(PO4)3",
    Composition({Species("Fe", 2): 1, Species("O", -2): 1}), Composition({Species("Li", 1): 1, DummySpecies("X"): 1}),
]


def test_the_packaged_table_on_real_and_odd_compositions(monkeypatch):
    cands = _candidates(ODD)
    fast, slow = _both(cands, PropertiesConfig(calculators=GROUPS), None, monkeypatch)
    assert len(fast[0]) >= len(ODD) - 1 and len(fast[1]) == 1  # the placeholder: a failure either way
    assert fast[0]["co2_kg_per_kg"].isna().any() or fast[0]["supply_risk"].isna().any()  # gaps exercised
    _assert_identical(fast, slow)


def test_a_user_table_with_gaps(tmp_path, monkeypatch):
    path = tmp_path / "facts.csv"
    path.write_text(
        "element,price_usd_per_kg,hhi_production,top_mine_share_pct,china_refining_share_pct,co2_kg_per_kg\n"
        "Li,10,3000,70,,5\nO,0.2,500,,,\nFe,0.1,2000,30,60,1.5\nP,2,,,,\nCo,30,5000,72,80,\nMn,2,,,,3\n",
        encoding="utf-8",
    )
    table = load_element_facts(path)
    cfg = PropertiesConfig(calculators=GROUPS, supply={"min_mass_fraction": 0.05})
    cands = _candidates(["LiFePO4", "LiCoO2", "LiMn2O4", "Li2O", "FeO", "LiNiO2", "CoO"])
    fast, slow = _both(cands, cfg, table, monkeypatch)
    assert fast[2] and any("missing" in n for n in fast[2])
    _assert_identical(fast, slow)


def _row_by_row(cands, cfg, table) -> dict[str, list[float]]:
    """Every calculator on every candidate, one call each (the calculators' own values)."""
    calcs = compute.configured_calculators(cfg)
    ctx = compute._context(cfg, calcs, table, [])
    rows = {}
    for cand in cands:
        try:
            rows[cand.id] = [float(calc.compute(cand, ctx)) for calc in calcs]
        except ValueError:  # a placeholder: a failure either way
            continue
    return rows


@pytest.mark.parametrize("mode", ["redox", "formula"])
def test_capacities_on_the_matrix_are_the_calculators(mode, licoo2, li2s, monkeypatch):
    """Capacities from the matrix (0 without the ion or a redox-active cation, the solver for the rest),
    with structures among the formulas: the calculators' floats, and the same notes."""
    from pymatgen.core import Lattice, Structure

    na = Structure(Lattice.cubic(4.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    cands = _candidates(ODD + ["LiMn2O4", "Li2MnO3", "LiVOPO4", "Li4Ti5O12", "Li2O2", "Li3N"])
    for k, structure in enumerate((licoo2, li2s, na)):
        cands.append(Candidate(id=f"s{k}", source="t", record="s", composition=structure.composition,
                               structure=structure, content_hash=f"s{k}"))
    cfg = PropertiesConfig(calculators=GROUPS, capacity_mode=mode)
    fast, slow = _both(cands, cfg, None, monkeypatch)
    _assert_identical(fast, slow)
    frame = fast[0]
    expected = _row_by_row(cands, cfg, load_element_facts())
    assert list(frame.index) == list(expected)
    assert np.array_equal(frame.astype(float).to_numpy(), np.array(list(expected.values())), equal_nan=True)
    assert frame.loc["s0", "density_g_cm3"] == float(licoo2.density) and np.isnan(frame.loc["c1", "density_g_cm3"])
    assert (frame["capacity_mAh_g"] > 0).any() and (frame["capacity_mAh_g"] == 0).any()
    assert frame.loc["c1", "capacity_mAh_g"] > 150  # LiFePO4, solved
    assert any("no Li in the formula" in n for n in fast[2])


def test_every_vectorised_column_is_a_calculator():
    from mi.properties.compute import configured_calculators

    columns = {c.column for c in configured_calculators(PropertiesConfig(calculators=GROUPS))}
    assert set(VECTORISED) <= columns


@pytest.mark.shared
@pytest.mark.skipif(not MP_FORMULAS.is_file(), reason="../shared/datasets/mp_composition is absent")
def test_two_thousand_materials_project_formulas(monkeypatch):
    with open(MP_FORMULAS, newline="") as handle:
        formulas = [row["formula"] for row in csv.DictReader(handle)]
    cands = _candidates(random.Random(4).sample(formulas, 2000))
    fast, slow = _both(cands, PropertiesConfig(calculators=GROUPS), None, monkeypatch)
    assert len(fast[0]) == 2000
    _assert_identical(fast, slow)


def test_density_in_plain_arithmetic_is_pymatgens(licoo2, li2s):
    from pymatgen.core import Lattice, Structure

    from mi.properties import density_g_cm3

    disordered = Structure(Lattice.cubic(4.2), [{"Li": 0.5, "Na": 0.5}, "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    oxidised = licoo2.copy()
    oxidised.add_oxidation_state_by_element({"Li": 1, "Co": 3, "O": -2})
    for structure in (licoo2, li2s, disordered, oxidised):
        cand = Candidate(id="s", source="t", record="0", composition=structure.composition, structure=structure,
                         content_hash="s")
        assert density_g_cm3(cand) == float(structure.density)
        assert density_g_cm3(cand) == float(structure.density)  # asked again: the same value


def _crma_row_wise(formulas, table, cfg):
    from mi.properties import supply

    s = cfg.supply
    return [
        "; ".join(map(str, supply.crma_findings(Composition(f), table, s.crma_top_country_pct, s.min_mass_fraction)))
        for f in formulas
    ]


@pytest.mark.parametrize("top_pct, min_fraction", [(65, 0.01), (40, 0.0), (75, 0.2)])
def test_crma_words_on_the_matrix_are_the_row_wise_words(top_pct, min_fraction, tmp_path):
    from mi.properties.derived import crma_concentration

    formulas = [f for f in ODD if isinstance(f, str)] + ["LiNi0.8Co0.15Al0.05O2", "Li2S", "LiCoO2"]  # repeats too
    if MP_FORMULAS.is_file():
        with open(MP_FORMULAS, newline="") as handle:
            formulas += random.Random(5).sample([row["formula"] for row in csv.DictReader(handle)], 1500)
    cfg = PropertiesConfig(supply={"crma_top_country_pct": top_pct, "min_mass_fraction": min_fraction})
    path = tmp_path / "facts.csv"  # a user table: a country missing, a share missing
    path.write_text(
        "element,price_usd_per_kg,top_mine_share_pct,top_mine_country,china_refining_share_pct\n"
        "Li,10,70,,\nCo,30,72,Congo,80\nNi,15,50,Indonesia,66\nFe,0.1,30,Australia,60\n",
        encoding="utf-8",
    )
    for table in (load_element_facts(), load_element_facts(path)):
        frame = pd.DataFrame({"formula": formulas}, index=[f"c{k}" for k in range(len(formulas))])
        words, notes = crma_concentration(frame, cfg, table)
        expected = _crma_row_wise(formulas, table, cfg)
        assert words["crma_concentration"].tolist() == expected
        assert any(expected) and not all(expected)  # findings and rows without them
    empty, _ = crma_concentration(pd.DataFrame({"formula": []}), cfg, load_element_facts())
    assert empty["crma_concentration"].tolist() == []


def test_plain_formulas_read_as_pymatgen_parses_them():
    """A reduced formula read without pymatgen gives `Composition(formula)`'s symbols, floats and order;
    anything else is left to pymatgen."""
    from mi.properties.element_matrix import _formula_items, _items, formula_matrix

    formulas = ["LiFePO4", "Li0.5CoO2", "LiNi0.8Mn0.1Co0.1O2", "Li3.001Cr0.999Mo3O12", "O2Li", "Fe2.50O", "He",
                "Li6CoCu3(PO4)4", "LiTi2(PO4)3", "Fe(PO3)O0.5(PO3)2", "LiFe(OH)O", "(Li0.1Na0.9)2.5O", "LiFeFe"]
    if MP_FORMULAS.is_file():
        with open(MP_FORMULAS, newline="") as handle:
            formulas += random.Random(6).sample([row["formula"] for row in csv.DictReader(handle)], 2000)
        formulas += [Composition(f).reduced_formula for f in formulas[-2000:]]
    read = [_formula_items(formula) for formula in formulas]
    for formula, items in zip(formulas, read):
        assert items is None or items == _items(Composition(formula)), formula
    assert sum(items is not None for items in read) > 0.99 * len(formulas)
    for other in ["Li(Ti(PO4))3", "Li2 O", "[PO4]Li3", "Li1e-3O", "LiO0", "Li2X", "Uuo", "D2O", "Li0.000000001O"]:
        assert _formula_items(other) is None, other
    distinct = formula_matrix(["LiFePO4", "Li(Ti(PO4))3", "LiFePO4", "D2O"])
    assert distinct.formulas == ["LiFePO4", "Li(Ti(PO4))3", "D2O"] and distinct.inverse.tolist() == [0, 1, 0, 2]
    parsed = element_matrix([Composition(f) for f in distinct.formulas])
    for name in ("ok", "weight", "index", "amount", "fraction", "sorted_index", "sorted_fraction"):
        assert np.array_equal(getattr(distinct.matrix, name), getattr(parsed, name), equal_nan=True), name
