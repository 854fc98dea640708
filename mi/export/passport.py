"""Passport-style records of the top candidates: ``passport/<id>.json`` in the run directory.

A record follows the data clusters of the EU battery passport (Regulation (EU) 2023/1542, Annex XIII;
Battery Pass content guidance) as far as they make sense for a screened material: identity, materials
and composition (critical raw materials), supply chain (concentration flags), carbon footprint,
circularity (recycled-content minimums and recovery targets for 2031) and performance, plus the scale-up
demand at the configured market scenario (`mi.properties.demand`). It is a screening record of a candidate
*material*, not a regulatory passport of a battery.

Element-level facts come from the element table the run used; whole-material figures from the ranked
row when the run computed them, from `mi.properties.supply` otherwise. Unknown facts are null, with the
elements that lack them listed, never zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from pymatgen.core import Composition

import mi
from mi.candidates.base import Failure
from mi.config import PropertiesConfig
from mi.files import atomic_write_json, to_jsonable
from mi.export.rundir import PASSPORT_DIR, safe_file_stem, top_ranked
from mi.properties import demand, supply

PASSPORT_VERSION = 1
SUPPLY_FACTS = ("top_mine_share_pct", "china_refining_share_pct", "hhi_production")  # gaps listed per record
REGULATION = "Regulation (EU) 2023/1542 (Art. 8 recycled content, Annex XII part C recovery, Annex XIII passport)"

# Element-table columns shown per element, in this order.
ELEMENT_COLUMNS = (
    "price_usd_per_kg",
    "top_mine_country",
    "top_mine_share_pct",
    "china_refining_share_pct",
    "world_mine_production_t",
    "hhi_production",
    "hhi_reserve",
    "eu_crm_2023",
    "us_critical_2022",
    "co2_kg_per_kg",
)
PERFORMANCE_COLUMNS = (
    "capacity_mAh_g",
    "capacity_mAh_cm3",
    "capacity_formula_mAh_g",
    "capacity_redox_mAh_g",
    "density_g_cm3",
    "voltage_V",
    "voltage_V_std",
    "oracle_voltage_V",
    "specific_energy_Wh_kg",
    "specific_energy_Wh_kg_std",
    "energy_density_Wh_L",
    "energy_density_Wh_L_std",
    "formation_enthalpy_eV_atom",
    "formation_enthalpy_eV_atom_std",
    "e_hull_eV_atom",
    "e_hull_eV_atom_std",
    "log10_conductivity_S_cm",
    "log10_conductivity_S_cm_std",
    "esw_reduction_V",
    "esw_oxidation_V",
)


def _value(row: Mapping[str, Any], column: str) -> Any:
    value = row.get(column)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def _row_or(row: Mapping[str, Any], column: str, compute) -> Any:
    """The run's value of `column` if it has one, else computed here (NaN -> None)."""
    if column in row:
        return _value(row, column)
    value = compute()
    return None if isinstance(value, float) and math.isnan(value) else value


def demand_record(
    row: Mapping[str, Any], comp: Composition, table: pd.DataFrame, cfg: PropertiesConfig
) -> dict[str, Any]:
    """Tonnes a year of each element at the scenario and its share of world mine output, from the row's
    specific energy (`mi.properties.demand`); empty, with the reason, when the row has none."""
    scenario = cfg.demand
    energy = _value(row, "specific_energy_Wh_kg")
    record: dict[str, Any] = {
        "scenario": {"twh_per_year": scenario.twh_per_year, "share": scenario.share},
        "specific_energy_Wh_kg": energy,
        "basis": "theoretical specific energy of the active material (capacity x voltage), every releasable "
        "working ion: a lower bound on the tonnes a real cell needs; supply share against world mine "
        "production of the element table",
    }
    if energy is None or not energy > 0:
        return {**record, "elements": [], "max_supply_share": None, "limiting_element": None, "statement": None,
                "missing": "no specific energy (no voltage, or no capacity)"}
    demands = demand.element_demand(comp, float(energy), table, scenario)
    share, element = demand.limiting(demands)
    year = next((d.production_year for d in demands if d.element == element), None)
    return {
        **record,
        "elements": demand.records(demands),
        "max_supply_share": None if element is None else share,
        "max_supply_share_std": _value(row, "max_supply_share_std"),
        "limiting_element": element,
        "statement": None if element is None else demand.need_sentence(share, element, year, scenario),
        "elements_without_production": sorted(d.element for d in demands if math.isnan(d.supply_share)),
    }


def passport_file_name(cid: str, taken: set[str]) -> str:
    """``<id>.json`` with the id made safe for file names; ``<id>_2.json`` ... if two ids end up alike."""
    stem = safe_file_stem(cid)
    name, n = f"{stem}.json", 1
    while name in taken:
        n += 1
        name = f"{stem}_{n}.json"
    taken.add(name)
    return name


def build_passport(
    row: Mapping[str, Any], table: pd.DataFrame, cfg: PropertiesConfig, *, run: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The passport record of one ranked row (needs ``id`` and ``formula``) as plain JSON types."""
    comp = Composition(str(row["formula"]))
    w = supply.mass_fractions(comp)
    s = cfg.supply
    elements = []
    for element in sorted(w, key=lambda e: -w[e]):
        facts = {c: supply.fact(table, element, c) for c in ELEMENT_COLUMNS}
        elements.append({"element": element, "mass_fraction": w[element], **facts})
    unknown = {c: supply.missing_facts(comp, table, c) for c in ELEMENT_COLUMNS}
    feoc = supply.feoc_elements(comp, table, s.feoc_china_refining_pct, s.min_mass_fraction)
    crma_findings = supply.crma_findings(comp, table, s.crma_top_country_pct, s.min_mass_fraction)
    crma = sorted({f.element for f in crma_findings})
    crm = supply.eu_crm_elements(comp, table)
    co2 = _row_or(row, "co2_kg_per_kg", lambda: supply.co2_kg_per_kg(comp, table))
    co2_low = _row_or(row, "co2_lower_bound_kg_per_kg", lambda: supply.co2_lower_bound_kg_per_kg(comp, table))
    record = {
        "passport_version": PASSPORT_VERSION,
        "scope": "screening record of a candidate material (not a regulatory battery passport)",
        "identity": {
            "id": str(row["id"]),
            "formula": comp.reduced_formula,
            "source": row.get("source"),
            "rank": _value(row, "rank"),
            "score": _value(row, "score"),
            "ucb_score": _value(row, "ucb_score"),
            "pareto_rank": _value(row, "pareto_rank"),
            "working_ion": cfg.working_ion,
        },
        "materials_and_composition": {
            "elements": elements,
            "critical_raw_materials_eu_2023": crm,
            "eu_crm_mass_fraction": _row_or(
                row, "eu_crm_mass_fraction", lambda: supply.eu_crm_mass_fraction(comp, table)
            ),
            "critical_raw_materials_us_2022": sorted(
                e for e in w if supply.fact(table, e, "us_critical_2022") == "yes"
            ),
            "cobalt_free": "Co" not in w,
            "nickel_free": "Ni" not in w,
        },
        "supply_chain": {
            "supply_risk": _row_or(row, "supply_risk", lambda: supply.supply_risk(comp, table)),
            "hhi_production": _row_or(row, "hhi_production", lambda: supply.weighted(comp, table, "hhi_production")),
            "hhi_reserve": _row_or(row, "hhi_reserve", lambda: supply.weighted(comp, table, "hhi_reserve")),
            "feoc_exposed": bool(feoc),
            "feoc_elements": feoc,
            "feoc_rule": f"an element with mass fraction >= {s.min_mass_fraction:g} and China refining share "
            f"> {s.feoc_china_refining_pct:g}%",
            "crma_concentration_flag": bool(crma),
            "crma_concentration_elements": crma,
            "crma_concentration": [str(f) for f in crma_findings],
            "crma_findings": [
                {"element": f.element, "stage": f.stage, "country": f.country, "share_pct": f.share_pct}
                for f in crma_findings
            ],
            "crma_rule": f"an element with mass fraction >= {s.min_mass_fraction:g} whose top mining country, or "
            f"China at refining, holds > {s.crma_top_country_pct:g}%",
            "unknown": {k: v for k, v in unknown.items() if v and k in SUPPLY_FACTS},
        },
        "carbon_footprint": {
            "co2_kg_per_kg": co2,
            "co2_lower_bound_kg_per_kg": co2_low,
            "elements_without_co2_factor": unknown["co2_kg_per_kg"],
            "co2_kg_per_kwh": _value(row, "co2_kg_per_kwh"),
            "basis": "cradle-to-gate GWP100 of the elements, mass-weighted; not a product carbon footprint",
        },
        "circularity": {
            "recycled_content_2031": supply.recycled_content_2031(comp),
            "recycled_content_2031_kg_per_kg": supply.recycled_content_2031_kg_per_kg(comp),
            "recovery_targets_2031": supply.recovery_2031(comp, table),
            "recoverable_value_usd_kg": _row_or(
                row, "recoverable_value_usd_kg", lambda: supply.recoverable_value_usd_kg(comp, table)
            ),
            "note": "recycled-content minimums apply to industrial (> 2 kWh), SLI and EV batteries from 2031",
        },
        "cost": {
            "cost_usd_kg": _value(row, "cost_usd_kg"),
            "cost_usd_kwh": _value(row, "cost_usd_kwh"),
            "cost_usd_kwh_std": _value(row, "cost_usd_kwh_std"),
        },
        "scale_up_demand": demand_record(row, comp, table, cfg),
        "performance": {c: _value(row, c) for c in PERFORMANCE_COLUMNS if c in row},
        "provenance": {
            "mi_version": mi.__version__,
            "element_table": table.attrs.get("source"),
            "element_table_version": table.attrs.get("version"),
            "regulation": REGULATION,
            "capacity_mode": cfg.capacity_mode,
            **dict(run or {}),
        },
    }
    return to_jsonable(record)


def write_passports(
    run_dir: str | Path,
    ranked: pd.DataFrame,
    top_k: int,
    cfg: PropertiesConfig,
    table: pd.DataFrame,
    run: Mapping[str, Any] | None = None,
) -> tuple[dict[str, dict], list[Path], list[Failure]]:
    """``passport/<id>.json`` for the first `top_k` ranked rows.

    Returns {id: record}, the paths written, and a Failure (stage ``export``) for each row whose record
    could not be built; the other rows still get theirs.
    """
    folder = Path(run_dir) / PASSPORT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    records: dict[str, dict] = {}
    paths: list[Path] = []
    failures: list[Failure] = []
    taken: set[str] = set()
    for row in top_ranked(ranked, top_k).to_dict("records"):
        cid = str(row["id"])
        try:
            record = build_passport(row, table, cfg, run=run)
        except Exception as exc:  # one bad record must not lose the others
            reason = f"passport not written: {type(exc).__name__}: {exc}"
            source = str(row.get("source", ""))
            failures.append(Failure(source=source, record="", stage="export", reason=reason, id=cid))
            continue
        paths.append(atomic_write_json(folder / passport_file_name(cid, taken), record))
        records[cid] = record
    return records, paths, failures
