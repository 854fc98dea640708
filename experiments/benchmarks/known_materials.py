"""Known cathode materials through mi's exact calculators: capacity, cost, supply flags and CO2.

    python experiments/benchmarks/known_materials.py            # prints a Markdown table
    python experiments/benchmarks/known_materials.py --csv      # the same as CSV

Everything comes from the compositions and the packaged element table (no model, no structure), so the
numbers are exact for the table's facts. Capacities: ``formula`` extracts every working ion, ``redox``
only those the redox-active cations can release (`mi.properties.redox`). CO2 is the mass-weighted
cradle-to-gate sum of the element factors; where an element has no factor (O, P) the full figure is
unknown and the table shows the lower bound over the known factors, ">= x", with the missing elements.

Output of the last run (packaged element-facts 2026.11.1; see README.md, "Known materials"):

| material | ion | Q formula mAh/g | Q redox mAh/g | USD/kg | supply risk | FEOC (China refining > 50%) | CRMA (one country > 65%) | Co-free | Ni-free | CO2 kg/kg |
|---|---|---|---|---|---|---|---|---|---|---|
| LiFePO4 | Li | 169.9 | 169.9 | 1.64 | 0.166 | Li | - | yes | yes | >= 0.84 (no factor: O, P) |
| LiMnPO4 | Li | 170.9 | 170.9 | 1.80 | 0.138 | Li | - | yes | yes | >= 0.66 (no factor: O, P) |
| LiCoO2 | Li | 273.8 | 273.8 | 29.50 | 0.383 | Li | Co | no | yes | >= 5.50 (no factor: O) |
| LiNiO2 | Li | 274.5 | 274.5 | 10.64 | 0.319 | Li | Ni | yes | no | >= 4.41 (no factor: O) |
| LiMn2O4 | Li | 148.2 | 148.2 | 1.68 | 0.134 | Li | - | yes | yes | >= 0.88 (no factor: O) |
| LiNi0.5Mn1.5O4 | Li | 146.7 | 146.7 | 4.01 | 0.180 | Li | Ni | yes | no | >= 1.76 (no factor: O) |
| NMC811 | Li | 275.5 | 275.5 | 11.70 | 0.309 | Li | Co, Ni | no | no | >= 4.20 (no factor: O) |
| NaFePO4 | Na | 154.2 | 154.2 | 34.20 | 0.146 | - | - | yes | yes | >= 0.48 (no factor: Na, O, P) |

NaFePO4's cost is dominated by the table's Na price (250 USD/kg, sodium metal, pymatgen 2013 via S8), not
by a sodium salt; the table has no better figure for Na.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from dataclasses import dataclass

from pymatgen.core import Composition

from mi.config import SupplyConfig
from mi.data import load_element_facts
from mi.properties import capacity_mAh_g, cost_usd_kg, redox_capacity_mAh_g
from mi.properties import supply


@dataclass(frozen=True)
class Material:
    name: str
    formula: str
    working_ion: str


MATERIALS = (
    Material("LiFePO4", "LiFePO4", "Li"),
    Material("LiMnPO4", "LiMnPO4", "Li"),
    Material("LiCoO2", "LiCoO2", "Li"),
    Material("LiNiO2", "LiNiO2", "Li"),
    Material("LiMn2O4", "LiMn2O4", "Li"),
    Material("LiNi0.5Mn1.5O4", "LiNi0.5Mn1.5O4", "Li"),
    Material("NMC811", "LiNi0.8Mn0.1Co0.1O2", "Li"),
    Material("NaFePO4", "NaFePO4", "Na"),
)

COLUMNS = (
    "material",
    "ion",
    "Q formula mAh/g",
    "Q redox mAh/g",
    "USD/kg",
    "supply risk",
    "FEOC (China refining > 50%)",
    "CRMA (one country > 65%)",
    "Co-free",
    "Ni-free",
    "CO2 kg/kg",
)


def row(material: Material, table, limits: SupplyConfig) -> dict[str, str]:
    comp = Composition(material.formula)
    prices = table["price_usd_per_kg"].dropna().to_dict()
    feoc = supply.feoc_elements(comp, table, limits.feoc_china_refining_pct, limits.min_mass_fraction)
    crma = supply.crma_elements(comp, table, limits.crma_top_country_pct, limits.min_mass_fraction)
    co2 = supply.co2_kg_per_kg(comp, table)
    if math.isnan(co2):
        low = supply.co2_lower_bound_kg_per_kg(comp, table)
        gaps = ", ".join(supply.missing_facts(comp, table, "co2_kg_per_kg"))
        co2_text = f">= {low:.2f} (no factor: {gaps})"
    else:
        co2_text = f"{co2:.2f}"
    return {
        "material": material.name,
        "ion": material.working_ion,
        "Q formula mAh/g": f"{capacity_mAh_g(comp, material.working_ion):.1f}",
        "Q redox mAh/g": f"{redox_capacity_mAh_g(comp, material.working_ion):.1f}",
        "USD/kg": f"{cost_usd_kg(comp, prices):.2f}",
        "supply risk": f"{supply.supply_risk(comp, table):.3f}",
        "FEOC (China refining > 50%)": ", ".join(feoc) or "-",
        "CRMA (one country > 65%)": ", ".join(crma) or "-",
        "Co-free": "no" if supply.contains(comp, "Co") else "yes",
        "Ni-free": "no" if supply.contains(comp, "Ni") else "yes",
        "CO2 kg/kg": co2_text,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--csv", action="store_true", help="CSV instead of a Markdown table")
    args = parser.parse_args(argv)
    table = load_element_facts()
    rows = [row(m, table, SupplyConfig()) for m in MATERIALS]
    if args.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return 0
    print(f"Known materials ({table.attrs['source']}; capacities exact for the formula)\n")
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for r in rows:
        print("| " + " | ".join(r[c] for c in COLUMNS) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
