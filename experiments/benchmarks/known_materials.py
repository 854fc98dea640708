"""Known cathode materials through mi's exact calculators: capacity, cost, supply flags, CO2 and scale-up demand.

    python experiments/benchmarks/known_materials.py            # prints a Markdown table
    python experiments/benchmarks/known_materials.py --csv      # the same as CSV

Everything comes from the compositions, the packaged element table and each material's measured average
voltage (no model, no structure), so the numbers are exact for the table's facts. Capacities: ``formula``
extracts every working ion, ``redox`` only those the redox-active cations can release
(`mi.properties.redox`). CO2 is the mass-weighted cradle-to-gate sum of the element factors; where an
element has no factor (O, P) the full figure is unknown and the table shows the lower bound over the known
factors, ">= x", with the missing elements. The CRMA column names each element, stage and country above 65%.
Demand (`mi.properties.demand`): theoretical specific energy = Q redox x measured voltage; kg of element per
kWh = mass fraction / kWh per kg; the supply share is the tonnes a year at 5.5 TWh a year over the element's
2023 world mine production (IEA; only Li, Co, Ni, Cu have a figure).

Output of the last run (packaged element-facts 2026.12.1; see README.md, "Known materials"):

| material | ion | Q formula mAh/g | Q redox mAh/g | USD/kg | supply risk | FEOC (China refining > 50%) | CRMA (one country > 65%: stage, country) | Co-free | Ni-free | CO2 kg/kg | V measured | Wh/kg | kg Li/kWh | kg Co/kWh | kg Ni/kWh | supply share at 5.5 TWh |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
| LiFePO4 | Li | 169.9 | 169.9 | 1.69 | 0.166 | Li | Li refining China 70% | yes | yes | >= 0.84 (no factor: O, P) | 3.45 | 586 | 0.075 | 0 | 0 | Li 2.13x (no production figure: Fe, O, P) |
| LiMnPO4 | Li | 170.9 | 170.9 | 1.80 | 0.365 | Li, Mn | Li refining China 70%; Mn refining China 90% | yes | yes | >= 0.66 (no factor: O, P) | 4.1 | 701 | 0.063 | 0 | 0 | Li 1.79x (no production figure: Mn, O, P) |
| LiCoO2 | Li | 273.8 | 273.8 | 29.50 | 0.383 | Co, Li | Co mining Congo (Kinshasa) 74.2%; Co refining China 70%; Li refining China 70% | no | yes | >= 5.50 (no factor: O) | 3.9 | 1068 | 0.066 | 0.564 | 0 | Co 12.92x, Li 1.88x (no production figure: O) |
| LiNiO2 | Li | 274.5 | 274.5 | 10.64 | 0.319 | Li | Li refining China 70%; Ni mining Indonesia 66.7% | yes | no | >= 4.41 (no factor: O) | 3.8 | 1043 | 0.068 | 0 | 0.576 | Li 1.93x, Ni 0.92x (no production figure: O) |
| LiMn2O4 | Li | 148.2 | 148.2 | 1.68 | 0.529 | Li, Mn | Li refining China 70%; Mn refining China 90% | yes | yes | >= 0.88 (no factor: O) | 4.1 | 608 | 0.063 | 0 | 0 | Li 1.79x (no production figure: Mn, O) |
| LiNi0.5Mn1.5O4 | Li | 146.7 | 146.7 | 4.01 | 0.473 | Li, Mn | Li refining China 70%; Mn refining China 90%; Ni mining Indonesia 66.7% | yes | no | >= 1.76 (no factor: O) | 4.7 | 690 | 0.055 | 0 | 0.233 | Li 1.56x, Ni 0.37x (no production figure: Mn, O) |
| NMC811 | Li | 275.5 | 275.5 | 11.70 | 0.345 | Co, Li, Mn | Co mining Congo (Kinshasa) 74.2%; Co refining China 70%; Li refining China 70%; Mn refining China 90%; Ni mining Indonesia 66.7% | no | no | >= 4.20 (no factor: O) | 3.8 | 1047 | 0.068 | 0.058 | 0.461 | Li 1.93x, Co 1.33x, Ni 0.73x (no production figure: Mn, O) |
| NaFePO4 | Na | 154.2 | 154.2 | 1.25 | 0.146 | - | - | yes | yes | >= 0.48 (no factor: Na, O, P) | 2.9 | 447 | 0 | 0 | 0 | unknown (no production figure: Fe, Na, O, P) |

Element-facts 2026.12.1 gave Co (70%) and Mn (90%) China refining shares, so LiCoO2, NMC811 and the Mn-rich
cathodes raise the FEOC flag on them, and lithium's 70% China refining share raises the CRMA flag (refining
stage) on every Li compound; NaFePO4's cost fell from 34.20 to 1.25 USD/kg with Na priced as contained in
soda ash instead of sodium metal.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from dataclasses import dataclass

from pymatgen.core import Composition

from mi.config import DemandConfig, SupplyConfig
from mi.data import load_element_facts
from mi.properties import capacity_mAh_g, cost_usd_kg, redox_capacity_mAh_g
from mi.properties import demand, supply


@dataclass(frozen=True)
class Material:
    name: str
    formula: str
    working_ion: str
    voltage_V: float  # measured average voltage vs the working-ion metal (rounded literature value)


# No model predicts these voltages here, so the demand columns take the measured averages, rounded:
# LiFePO4 3.45 V (Padhi et al. 1997), LiMnPO4 4.1 V, LiCoO2 3.9 V (Mizushima et al. 1980), LiNiO2 3.8 V,
# LiMn2O4 4.1 V (the 4 V plateaus, Thackeray et al.), LiNi0.5Mn1.5O4 4.7 V, NMC811 3.8 V,
# olivine NaFePO4 2.9 V vs Na.
MATERIALS = (
    Material("LiFePO4", "LiFePO4", "Li", 3.45),
    Material("LiMnPO4", "LiMnPO4", "Li", 4.1),
    Material("LiCoO2", "LiCoO2", "Li", 3.9),
    Material("LiNiO2", "LiNiO2", "Li", 3.8),
    Material("LiMn2O4", "LiMn2O4", "Li", 4.1),
    Material("LiNi0.5Mn1.5O4", "LiNi0.5Mn1.5O4", "Li", 4.7),
    Material("NMC811", "LiNi0.8Mn0.1Co0.1O2", "Li", 3.8),
    Material("NaFePO4", "NaFePO4", "Na", 2.9),
)
SCENARIO = DemandConfig()  # 5.5 TWh a year, all of it
DEMAND_ELEMENTS = ("Li", "Co", "Ni")

COLUMNS = (
    "material",
    "ion",
    "Q formula mAh/g",
    "Q redox mAh/g",
    "USD/kg",
    "supply risk",
    "FEOC (China refining > 50%)",
    "CRMA (one country > 65%: stage, country)",
    "Co-free",
    "Ni-free",
    "CO2 kg/kg",
    "V measured",
    "Wh/kg",
    *(f"kg {e}/kWh" for e in DEMAND_ELEMENTS),
    f"supply share at {SCENARIO.twh_per_year:g} TWh",
)


def row(material: Material, table, limits: SupplyConfig) -> dict[str, str]:
    comp = Composition(material.formula)
    prices = table["price_usd_per_kg"].dropna().to_dict()
    feoc = supply.feoc_elements(comp, table, limits.feoc_china_refining_pct, limits.min_mass_fraction)
    crma = supply.crma_findings(comp, table, limits.crma_top_country_pct, limits.min_mass_fraction)
    q_redox = redox_capacity_mAh_g(comp, material.working_ion)
    energy_Wh_kg = q_redox * material.voltage_V  # mAh/g x V = Wh/kg
    demands = {d.element: d for d in demand.element_demand(comp, energy_Wh_kg, table, SCENARIO)}
    shares = sorted((d for d in demands.values() if not math.isnan(d.supply_share)), key=lambda d: -d.supply_share)
    unknown = sorted(e for e, d in demands.items() if math.isnan(d.supply_share))
    share_text = ", ".join(f"{d.element} {d.supply_share:.2f}x" for d in shares) or "unknown"
    if unknown:
        share_text += f" (no production figure: {', '.join(unknown)})"
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
        "Q redox mAh/g": f"{q_redox:.1f}",
        "USD/kg": f"{cost_usd_kg(comp, prices):.2f}",
        "supply risk": f"{supply.supply_risk(comp, table):.3f}",
        "FEOC (China refining > 50%)": ", ".join(feoc) or "-",
        "CRMA (one country > 65%: stage, country)": "; ".join(map(str, crma)) or "-",
        "Co-free": "no" if supply.contains(comp, "Co") else "yes",
        "Ni-free": "no" if supply.contains(comp, "Ni") else "yes",
        "CO2 kg/kg": co2_text,
        "V measured": f"{material.voltage_V:g}",
        "Wh/kg": f"{energy_Wh_kg:.0f}",
        **{f"kg {e}/kWh": f"{demands[e].kg_per_kwh:.3f}" if e in demands else "0" for e in DEMAND_ELEMENTS},
        f"supply share at {SCENARIO.twh_per_year:g} TWh": share_text,
    }


# Beside the table's cathodes, two the old default model got wrong (issue 18): LiCoPO4 (4.8 V, Amine et al.
# 2000) and LiTiS2 (2.1 V, Whittingham 1976).
MODEL_MATERIALS = (
    *MATERIALS,
    Material("LiCoPO4", "LiCoPO4", "Li", 4.8),
    Material("LiTiS2", "LiTiS2", "Li", 2.1),
)
MODEL_COLUMNS = (
    "material", "V measured", "V predicted", "in domain (V)", "|error| V", "E_form eV/atom", "in domain (E_form)",
    "e_hull eV/atom", "in domain (e_hull)",
)


def model_rows(preset: str = "cathode.yaml") -> tuple[list[dict[str, str]], float, list[str]]:
    """The preset's surrogates on the known cathodes: voltage, formation energy and e_hull with std and
    in-domain flag; the voltage MAE against the measured averages; the models used."""
    from pathlib import Path

    import pandas as pd

    from mi.candidates.base import Candidate, composition_hash
    from mi.config import load_config
    from mi.models.screen_models import ScreenModels, check_models, model_refs

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / preset)
    models = ScreenModels.load(check_models(model_refs(cfg)))
    candidates = [
        Candidate(m.name, "known", m.name, Composition(m.formula), None, composition_hash(Composition(m.formula)))
        for m in MODEL_MATERIALS
    ]
    predicted = models.predict(None, candidates)

    def cell(name: str, column: str, digits: str) -> tuple[str, str]:
        if column not in predicted.columns or not math.isfinite(predicted.at[name, column]):
            return "-", "-"
        flag = predicted.at[name, f"{column}_in_domain"] if f"{column}_in_domain" in predicted.columns else None
        text = f"{predicted.at[name, column]:{digits}} +- {predicted.at[name, f'{column}_std']:{digits}}"
        return text, "-" if flag is None or pd.isna(flag) else ("yes" if bool(flag) else "NO")

    rows, errors = [], []
    for m in MODEL_MATERIALS:
        voltage, v_in = cell(m.name, "voltage_V", ".2f")
        error = abs(predicted.at[m.name, "voltage_V"] - m.voltage_V) if "voltage_V" in predicted.columns else math.nan
        if math.isfinite(error):
            errors.append((error, v_in != "NO"))
        eform, e_in = cell(m.name, "formation_energy_eV_atom", ".3f")
        hull, h_in = cell(m.name, "e_hull_eV_atom", ".3f")
        rows.append({"material": m.name, "V measured": f"{m.voltage_V:g}", "V predicted": voltage, "in domain (V)": v_in,
                     "|error| V": f"{error:.2f}" if math.isfinite(error) else "-", "E_form eV/atom": eform,
                     "in domain (E_form)": e_in, "e_hull eV/atom": hull, "in domain (e_hull)": h_in})
    used = [f"{r.key}: {r.label} ({', '.join(r.columns or ())})" for r in models.refs]
    inside = [e for e, ok in errors if ok]
    mae = {
        "all": sum(e for e, _ in errors) / len(errors) if errors else math.nan,
        "in domain": sum(inside) / len(inside) if inside else math.nan,
        "n in domain": len(inside),
    }
    return rows, mae, used


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--csv", action="store_true", help="CSV instead of a Markdown table")
    parser.add_argument("--no-models", action="store_true", help="skip the table of the cathode preset's models")
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
    if not args.no_models:
        predicted, mae, used = model_rows()
        print(f"\nThe cathode preset's surrogates (configs/cathode.yaml: {'; '.join(used)}), mean +- std:\n")
        print("| " + " | ".join(MODEL_COLUMNS) + " |")
        print("|" + "---|" * len(MODEL_COLUMNS))
        for r in predicted:
            print("| " + " | ".join(r[c] for c in MODEL_COLUMNS) + " |")
        print(f"\nvoltage MAE against the measured averages: {mae['all']:.2f} V over all {len(predicted)} cathodes, "
              f"{mae['in domain']:.2f} V over the {mae['n in domain']} the voltage model calls in its domain")
    return 0


if __name__ == "__main__":
    sys.exit(main())
