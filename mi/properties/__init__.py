"""Exact properties of each candidate: density, theoretical capacity, raw-material cost.

    frame, failures, notes = compute_properties(candidates, cfg.properties, load_element_facts(path))

Calculators are plain functions in `mi.properties.calculators`, registered by name in `CALCULATORS`
(config name -> output column and function); a new one slots in there.
"""

from mi.properties.calculators import (
    CALCULATORS,
    FARADAY_C_PER_MOL,
    ION_CHARGE,
    capacity_mAh_g,
    cost_usd_kg,
    density_g_cm3,
    missing_prices,
)
from mi.properties.compute import compute_properties

__all__ = [
    "CALCULATORS",
    "FARADAY_C_PER_MOL",
    "ION_CHARGE",
    "capacity_mAh_g",
    "compute_properties",
    "cost_usd_kg",
    "density_g_cm3",
    "missing_prices",
]
