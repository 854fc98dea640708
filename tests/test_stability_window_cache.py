"""Stability windows with the per-system phase diagrams and the remembered results are the windows computed
from scratch (one phase diagram of the references and one with the candidate, for every row)."""

from __future__ import annotations

import csv
import json
import math
import random
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Composition, Element

from mi.config import load_config
from mi.properties import derive_properties
from mi.properties.stability import NoWindow, reference_entries, stability_window

ROOT = Path(__file__).resolve().parents[1]
MP_FORMULAS = ROOT.parent / "shared" / "datasets" / "mp_composition" / "mp_e_form_dev.csv"
COLUMNS = ["esw_reduction_V", "esw_oxidation_V", "esw_e_above_ref_hull_eV_atom"]


def _from_scratch(formula: str, enthalpy: float, ion: str = "Li", charge: int = 1):
    """The window as mi computed it before the diagrams were shared: everything built for this row alone."""
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram

    if not math.isfinite(enthalpy):
        return "no formation_enthalpy_eV_atom"
    comp = Composition(formula).element_composition
    if comp[Element(ion)] == 0:
        return "no ion"
    chemsys = {el.symbol for el in comp}
    refs = [e for e in reference_entries() if {el.symbol for el in e.composition} <= chemsys]
    elemental = {e.composition.elements[0].symbol for e in refs if len(e.composition) == 1}
    if chemsys - elemental:
        return "no elemental reference"
    in_compounds = {el.symbol for e in refs if len(e.composition) > 1 for el in e.composition}
    if any(el.symbol != ion and el.symbol not in in_compounds for el in comp):
        return "no reference compound"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        references_only = PhaseDiagram(refs)
        mu0 = {el: references_only.el_refs[el].energy_per_atom for el in references_only.elements}
        energy = enthalpy * comp.num_atoms + sum(n * mu0[el] for el, n in comp.items())
        candidate = PDEntry(comp, energy, name="candidate")
        e_above = float(references_only.get_e_above_hull(candidate, allow_negative=True))
        profile = PhaseDiagram([*refs, candidate]).get_element_profile(Element(ion), comp)
    tolerance = 1e-6 * max(1.0, float(comp[Element(ion)]))
    for i, step in enumerate(profile):
        if abs(step["evolution"]) <= tolerance:
            if i + 1 == len(profile):
                return "no oxidation limit"
            mu_hi, mu_lo = float(step["chempot"]), float(profile[i + 1]["chempot"])
            break
    else:
        return "no voltage without uptake or release"
    mu_ion = mu0[Element(ion)]
    return {
        "esw_reduction_V": max(-(mu_hi - mu_ion) / charge, 0.0) + 0.0,
        "esw_oxidation_V": -(mu_lo - mu_ion) / charge,
        "esw_e_above_ref_hull_eV_atom": e_above,
    }


def _parses(formula: str) -> bool:
    try:
        return Composition(formula).num_atoms > 0
    except ValueError:  # the demo holds deliberately broken rows
        return False


def _inputs() -> list[tuple[str, float]]:
    """Demo formulas and structures at enthalpies below, near and above their reference hulls, plus (with
    ../shared) Materials Project formulas at their MP formation energies."""
    with open(ROOT / "datasets" / "demo" / "formulas.csv", newline="") as handle:
        formulas = [row["formula"] for row in csv.DictReader(handle)]
    formulas += [p.stem.split("_")[0] for p in sorted((ROOT / "datasets" / "demo" / "structures").iterdir())]
    rows = [(f, e) for f in formulas if _parses(f) for e in (-2.2, -1.6, -1.0, -0.4, 0.3)]
    if MP_FORMULAS.is_file():
        with open(MP_FORMULAS, newline="") as handle:
            mp = [(r["formula"], float(r["e_form_per_atom"])) for r in csv.DictReader(handle)]
        mp = [r for r in mp if "Li" in Composition(r[0])]
        rows += random.Random(3).sample(mp, 150)
    return rows + rows[:10] + [("Li2S", math.nan)]  # repeats: remembered, not recomputed


def _windows(rows):
    out = []
    for formula, enthalpy in rows:
        try:
            out.append(stability_window(Composition(formula), enthalpy, "Li", 1))
        except NoWindow as exc:
            out.append(str(exc))
    return out


def test_shared_diagrams_and_remembered_windows_give_the_values_from_scratch():
    rows = _inputs()
    expected = [_from_scratch(f, e) for f, e in rows]
    assert sum(isinstance(x, dict) for x in expected) > 20
    above = [x for x in expected if isinstance(x, dict) and x["esw_e_above_ref_hull_eV_atom"] > 1e-6]
    assert above and len(above) < sum(isinstance(x, dict) for x in expected)  # both diagrams exercised
    for got in (_windows(rows), _windows(rows)):  # the second time from memory
        for (formula, enthalpy), g, e in zip(rows, got, expected):
            if isinstance(e, dict):
                assert g == e, (formula, enthalpy)  # the same floats
            else:
                assert isinstance(g, str), (formula, enthalpy, g)
    returned = stability_window(Composition("Li2S"), -1.6, "Li", 1)
    returned["esw_oxidation_V"] = 99.0  # a caller's edit does not reach the remembered window
    assert stability_window(Composition("Li2S"), -1.6, "Li", 1)["esw_oxidation_V"] != 99.0
    given = stability_window(Composition("Li3PS4"), -1.2, "Li", 1, references=reference_entries())
    assert given == _from_scratch("Li3PS4", -1.2)


def test_the_electrolyte_preset_derives_the_windows_from_scratch():
    cfg = load_config(ROOT / "configs" / "solid_electrolyte.yaml")
    rows = _inputs()
    column = cfg.properties.formation_energy_column
    table = pd.DataFrame(
        {"formula": [f for f, _ in rows], column: [e for _, e in rows]}, index=[f"c{k}" for k in range(len(rows))]
    )
    properties = cfg.properties.model_copy(update={"calculators": ["stability_window"]})
    out, notes = derive_properties(table, properties)
    for (formula, enthalpy), (_, row) in zip(rows, out.iterrows()):
        expected = _from_scratch(formula, enthalpy)
        if isinstance(expected, dict):
            assert [row[c] for c in COLUMNS] == [expected[c] for c in COLUMNS], formula
        else:
            assert np.isnan(row[COLUMNS].to_numpy(dtype=float)).all(), formula
    assert any("stability window is missing" in n for n in notes)


def test_reference_entries_are_corrected_once_then_read_from_the_users_cache(tmp_path, monkeypatch):
    """Correcting the bundled entries costs a process 1.3 s of imports; the cache holds what the diagrams use."""
    from pymatgen.entries import compatibility

    from mi.properties import stability

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(stability, "reference_entries", stability.reference_entries.__wrapped__)  # no lru_cache
    corrected = stability._corrected_entries()
    first = stability.reference_entries()  # corrects them and writes the cache
    cache = stability.reference_cache_file()
    assert cache.is_file() and cache.parent == tmp_path / "mi" / "reference_entries"

    class Refused(compatibility.MaterialsProject2020Compatibility):
        def process_entries(self, *args, **kwargs):
            raise AssertionError("corrected again: the cache was not read")

    monkeypatch.setattr(compatibility, "MaterialsProject2020Compatibility", Refused)
    again = stability.reference_entries()
    for entries in (first, again):
        assert [e.name for e in entries] == [e.entry_id for e in corrected]  # the MP ids
        assert [e.composition for e in entries] == [e.composition for e in corrected]
        assert [e.energy for e in entries] == [e.energy for e in corrected]  # the corrected energies, exactly
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cache.write_text("{truncated", encoding="utf-8")  # a damaged cache: corrected again and rewritten
    rebuilt = stability.reference_entries.__wrapped__()
    assert len(rebuilt) == len(corrected)
    assert len(json.loads(cache.read_text(encoding="utf-8"))["entries"]) == len(corrected)
