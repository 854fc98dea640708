"""Properties built from table columns that other stages wrote: energy figures, scale-up demand
(`mi.properties.demand`), stability windows, and the words of the CRMA flag.

Each group is a function (table, properties config, element table) -> (new columns indexed like the
table, notes), registered in `DERIVED` under its ``properties.calculators`` name.

Energy ('energy')
-----------------
The average voltage V comes from a column: ``voltage_V`` (with ``voltage_V_std``) when the surrogate
predicts one (``voltage_source: model``), or ``oracle_voltage_V`` (``voltage_source: oracle``), the hook
for the oracle of a later issue: whatever writes that column feeds these figures unchanged. Without a
voltage the figures are NaN with a note, never invented. With Q the capacity (``capacity_mAh_g`` and
``capacity_mAh_cm3``, in the configured capacity mode):

* ``specific_energy_Wh_kg = Q_g V`` (mAh/g x V = Wh/kg), ``energy_density_Wh_L = Q_v V`` (mAh/cm3 x V = Wh/L)
* ``cost_usd_kwh = 1000 cost_usd_kg / specific_energy_Wh_kg``, ``co2_kg_per_kwh`` likewise (and
  ``co2_lower_bound_kg_per_kwh`` from the lower bound) - of the active material only.

Capacity, cost and CO2 are exact given the composition, so the voltage's std is the only uncertainty:
``x_std = x * V_std / V`` for each figure (first order; for the two energies this is exact). Without a
voltage std column the ``_std`` columns are NaN.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from mi.config import PropertiesConfig
from mi.properties.calculators import ION_CHARGE
from mi.properties.columns import float_column as _column
from mi.properties.columns import ids_where as _ids
from mi.properties.demand import demand

VOLTAGE_COLUMNS = {"model": "voltage_V", "oracle": "oracle_voltage_V"}


def energy(table: pd.DataFrame, cfg: PropertiesConfig, element_table: pd.DataFrame | None = None):
    """Specific energy, energy density and per-kWh cost and CO2 from the voltage column (module docstring)."""
    notes: list[str] = []
    vcol = cfg.voltage_column or VOLTAGE_COLUMNS[cfg.voltage_source]
    out = pd.DataFrame(index=table.index)
    if vcol not in table.columns:
        why = (
            "the surrogate predicts no voltage_V (properties.voltage_source: model)"
            if cfg.voltage_source == "model"
            else "no oracle_voltage_V column (the oracle has not run)"
        )
        notes.append(f"specific energy, energy density and per-kWh figures are missing for every candidate: {why}")
    voltage = _column(table, vcol)
    v_std = _column(table, f"{vcol}_std")
    with np.errstate(invalid="ignore"):
        bad = np.isfinite(voltage) & (voltage <= 0)
    if bad.any():
        notes.append(
            f"{vcol} is not positive for {int(bad.sum())} candidates; their energy figures are missing "
            f"({_ids(table, bad)})"
        )
    voltage = np.where(bad, np.nan, voltage)
    if vcol in table.columns and f"{vcol}_std" not in table.columns:
        notes.append(f"no {vcol}_std column: the _std columns of the energy figures are missing")
    relative = v_std / voltage

    def put(name: str, value: np.ndarray, with_std: bool = True) -> None:
        out[name] = value
        if with_std:
            out[f"{name}_std"] = np.abs(value) * relative

    put("specific_energy_Wh_kg", _column(table, "capacity_mAh_g") * voltage)
    put("energy_density_Wh_L", _column(table, "capacity_mAh_cm3") * voltage)
    specific = out["specific_energy_Wh_kg"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        per_kwh = np.where(specific > 0, 1000.0 / specific, np.nan)
    if "cost_usd_kg" in table.columns:
        put("cost_usd_kwh", _column(table, "cost_usd_kg") * per_kwh)
    if "co2_kg_per_kg" in table.columns:
        put("co2_kg_per_kwh", _column(table, "co2_kg_per_kg") * per_kwh)
    if "co2_lower_bound_kg_per_kg" in table.columns:
        put("co2_lower_bound_kg_per_kwh", _column(table, "co2_lower_bound_kg_per_kg") * per_kwh, with_std=False)
    zero = np.isfinite(voltage) & (specific == 0)
    if zero.any():
        notes.append(
            f"specific energy is 0 for {int(zero.sum())} candidates (no capacity); their per-kWh figures are "
            f"missing ({_ids(table, zero)})"
        )
    flag = f"{vcol}_in_domain"
    if flag in table.columns:  # a figure made from an extrapolated voltage is an extrapolation too
        for name in [c for c in out.columns if not c.endswith("_std")]:
            out[f"{name}_in_domain"] = table[flag]
    return out, notes


def stability_window(table: pd.DataFrame, cfg: PropertiesConfig, element_table: pd.DataFrame | None = None):
    """``esw_reduction_V``, ``esw_oxidation_V``, ``esw_e_above_ref_hull_eV_atom`` (`mi.properties.stability`)."""
    from pymatgen.core import Composition

    from mi.properties.stability import NoWindow, stability_window as window

    columns = ["esw_reduction_V", "esw_oxidation_V", "esw_e_above_ref_hull_eV_atom"]
    out = pd.DataFrame(np.nan, index=table.index, columns=columns)
    notes: list[str] = []
    column = cfg.formation_energy_column
    if column not in table.columns:
        notes.append(
            f"stability windows are missing for every candidate: no {column} column (properties.formation_energy_column)"
        )
        return out, notes
    enthalpy = _column(table, column)
    gaps: dict[str, list[bool]] = {}
    for position, (index, formula) in enumerate(table["formula"].items()):
        try:
            values = window(Composition(formula), enthalpy[position], cfg.working_ion, ION_CHARGE[cfg.working_ion])
        except NoWindow as exc:
            gaps.setdefault(str(exc), []).append(position)
            continue
        except Exception as exc:  # a phase-diagram failure leaves this window missing, not the run
            gaps.setdefault(f"{type(exc).__name__}: {exc}", []).append(position)
            continue
        for name in columns:
            out.at[index, name] = values[name]
    for reason, positions in gaps.items():
        mask = np.zeros(len(table), dtype=bool)
        mask[positions] = True
        notes.append(f"stability window is missing for {len(positions)} candidates: {reason} ({_ids(table, mask)})")
    if len(gaps) < len(table) or not len(table):
        notes.append(
            f"stability windows (V vs the working-ion metal) come from grand-potential phase diagrams over the "
            f"423 Materials Project entries bundled with pymatgen and the surrogate's formation energy ({column}); phases "
            "absent from that set can only make a window too wide (mi/properties/stability.py)"
        )
    return out, notes


def crma_concentration(table: pd.DataFrame, cfg: PropertiesConfig, element_table: pd.DataFrame | None = None):
    """``crma_concentration``: what raised ``crma_concentration_flag``, as text ("Co mining Congo (Kinshasa)
    74.2%; Co refining China 70%"; empty when nothing did). Part of the 'supply' group; table-level because
    the per-candidate calculators give numbers only."""
    from mi.properties import supply
    from mi.properties.element_matrix import crma_words, formula_matrix

    if element_table is None:
        from mi.data import load_element_facts

        element_table = load_element_facts()
    s = cfg.supply
    distinct = formula_matrix(table["formula"].astype(str).tolist())  # each distinct formula once
    found = crma_words(distinct.matrix, element_table, s.crma_top_country_pct, s.min_mass_fraction)
    words: list[str] = []  # per distinct formula
    for index, text in enumerate(found):
        if text is None:  # what the matrix cannot describe goes row-wise (which says what is wrong)
            composition = distinct.composition(index)
            findings = supply.crma_findings(composition, element_table, s.crma_top_country_pct, s.min_mass_fraction)
            text = "; ".join(map(str, findings))
        words.append(text)
    out = pd.DataFrame(index=table.index)
    out["crma_concentration"] = [words[i] for i in distinct.inverse.tolist()]
    return out, []


# Run in this order (demand reads energy's specific_energy_Wh_kg).
DERIVED: dict[str, Callable] = {
    "supply": crma_concentration,
    "energy": energy,
    "demand": demand,
    "stability_window": stability_window,
}
