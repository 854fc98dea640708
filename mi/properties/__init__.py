"""Exact properties of each candidate: density, capacity, cost, supply risk, CO2, circularity, energy,
scale-up demand and stability window.

    frame, failures, notes = compute_properties(candidates, cfg.properties, load_element_facts(path))
    table, notes = derive_properties(joined_table, cfg.properties, element_table)

Calculators are plain functions in `mi.properties.calculators`, registered by group in `CALCULATORS`
(config name -> calculators, one output column each); a new group is a module in
`mi.properties.groups`. The groups that need
columns of other stages (voltage, specific energy, formation enthalpy) are in `mi.properties.derived.DERIVED`
('energy', 'demand', 'stability_window'; 'supply' adds its text column ``crma_concentration`` there).
"""

import importlib

# Loaded on first use (PEP 562), so that `mi validate` can check calculator names (`mi.properties.groups`)
# without pandas and pymatgen.
_FROM = {
    **dict.fromkeys(
        ("CALCULATORS", "FARADAY_C_PER_MOL", "ION_CHARGE", "capacity_mAh_g", "cost_usd_kg", "density_g_cm3",
         "missing_prices", "redox_capacity_mAh_g"),
        "mi.properties.calculators",
    ),
    **dict.fromkeys(("compute_properties", "configured_calculators", "derive_properties"), "mi.properties.compute"),
    "DERIVED": "mi.properties.derived",
}


def __getattr__(name: str):
    if name in _FROM:
        return getattr(importlib.import_module(_FROM[name]), name)
    try:
        return importlib.import_module(f"{__name__}.{name}")  # a submodule: mi.properties.supply
    except ModuleNotFoundError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


__all__ = [
    "CALCULATORS",
    "DERIVED",
    "FARADAY_C_PER_MOL",
    "ION_CHARGE",
    "capacity_mAh_g",
    "compute_properties",
    "configured_calculators",
    "cost_usd_kg",
    "density_g_cm3",
    "derive_properties",
    "missing_prices",
    "redox_capacity_mAh_g",
]
