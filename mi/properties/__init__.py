"""Exact properties of each candidate: density, capacity, cost, supply risk, CO2, circularity, energy,
scale-up demand and stability window.

    frame, failures, notes = compute_properties(candidates, cfg.properties, load_element_facts(path))
    table, notes = derive_properties(joined_table, cfg.properties, element_table)

Calculators are plain functions in `mi.properties.calculators`, registered by group in `CALCULATORS`
(config name -> calculators, one output column each); a new one slots in there. The groups that need
columns of other stages (voltage, specific energy, formation enthalpy) are in `mi.properties.derived.DERIVED`
('energy', 'demand', 'stability_window'; 'supply' adds its text column ``crma_concentration`` there).
"""

from mi.properties.calculators import (
    CALCULATORS,
    FARADAY_C_PER_MOL,
    ION_CHARGE,
    capacity_mAh_g,
    cost_usd_kg,
    density_g_cm3,
    missing_prices,
    redox_capacity_mAh_g,
)
from mi.properties.compute import compute_properties, configured_calculators, derive_properties
from mi.properties.derived import DERIVED

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
