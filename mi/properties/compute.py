"""Run the configured exact calculators over candidates; isolate failures, explain missing values."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence

import pandas as pd

from mi.candidates.base import Candidate, Failure
from mi.config import PropertiesConfig
from mi.errors import InputError
from mi.properties import supply
from mi.properties.calculators import CALCULATORS, Calculator, Context
from mi.properties.derived import DERIVED

STAGE = "properties"
_IDS_SHOWN = 5


def _id_list(ids: list[str]) -> str:
    shown = ", ".join(ids[:_IDS_SHOWN])
    return shown if len(ids) <= _IDS_SHOWN else f"{shown} and {len(ids) - _IDS_SHOWN} more"


def _plural(n: int) -> str:
    return f"{n} candidate" if n == 1 else f"{n} candidates"


def prices_from_table(table: pd.DataFrame) -> dict[str, float]:
    """element symbol -> USD/kg for the elements whose price is known."""
    if "element" in table.columns:
        table = table.set_index("element")
    if "price_usd_per_kg" not in table.columns:
        raise InputError(f"element table ({table.attrs.get('source', 'given')}) has no price_usd_per_kg column")
    prices = pd.to_numeric(table["price_usd_per_kg"], errors="raise")
    return {str(el): float(p) for el, p in prices.items() if math.isfinite(p)}


def _context(
    cfg: PropertiesConfig, calcs: Sequence[Calculator], element_table: pd.DataFrame | None, notes: list[str]
) -> Context:
    prices: dict[str, float] = {}
    facts = None
    if any(calc.needs_prices or calc.needs_facts for calc in calcs):
        if element_table is None:
            from mi.data import load_element_facts

            element_table = load_element_facts()
        source = element_table.attrs.get("source", "the given element table")
        if any(calc.needs_prices for calc in calcs):
            prices = prices_from_table(element_table)
            notes.append(f"cost_usd_kg uses element prices from {source} (bases and years differ; see its notes)")
        if any(calc.needs_facts for calc in calcs):
            facts = element_table
            notes.append(f"supply, CO2 and circularity figures use element facts from {source}")
    return Context(
        working_ion=cfg.working_ion,
        prices=prices,
        facts=facts,
        capacity_mode=cfg.capacity_mode,
        min_mass_fraction=cfg.supply.min_mass_fraction,
        feoc_china_refining_pct=cfg.supply.feoc_china_refining_pct,
        crma_top_country_pct=cfg.supply.crma_top_country_pct,
    )


def element_columns(ctx: Context) -> list[str]:
    return [] if ctx.facts is None else list(ctx.facts.columns)


def configured_calculators(cfg: PropertiesConfig) -> list[Calculator]:
    """The per-candidate calculators of ``cfg.calculators``, in order, each once (derived groups skipped)."""
    calcs: dict[str, Calculator] = {}
    for name in cfg.calculators:
        for calc in CALCULATORS.get(name, ()):
            calcs.setdefault(calc.column, calc)
    return list(calcs.values())


def compute_properties(
    candidates: Sequence[Candidate],
    cfg: PropertiesConfig,
    element_table: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, list[Failure], list[str]]:
    """One row per candidate (indexed by id), one column per calculator of the groups in ``cfg.calculators``.

    A candidate on which a calculator raises becomes a Failure (stage ``properties``) and is left out of
    the frame; the others go on. Values that cannot be known (no structure, no price, no element fact) are
    NaN, never 0, and each kind of gap gets a note; so does each kind of caveat (an unknown share that
    raised no flag). Flags come back as booleans. ``element_table`` is the loaded table
    (`mi.data.load_element_facts`); when None and a calculator needs it, the packaged table is loaded.
    The groups that work on table columns ('energy', 'stability_window') run later, in
    `derive_properties`.
    """
    calcs = configured_calculators(cfg)
    columns = [calc.column for calc in calcs]
    notes: list[str] = []
    ctx = _context(cfg, calcs, element_table, notes)

    ids: list[str] = []
    rows: list[list[float]] = []
    failures: list[Failure] = []
    missing: dict[tuple[str, str], list[str]] = defaultdict(list)
    caveats: dict[tuple[str, str], list[str]] = defaultdict(list)  # (column, fact) -> elements, once per candidate
    gaps: dict[str, list[str]] = defaultdict(list)  # column -> ids missing it for lack of an element fact
    gap_elements: dict[str, list[str]] = defaultdict(list)  # column -> the elements lacking the fact
    no_ion: list[str] = []
    no_headroom: list[str] = []
    for cand in candidates:
        values: list[float] = []
        try:
            for calc in calcs:
                values.append(float(calc.compute(cand, ctx)))
        except Exception as exc:  # one bad candidate must not stop the run
            failures.append(
                Failure(
                    source=cand.source,
                    record=cand.record,
                    stage=STAGE,
                    reason=f"{calc.column}: {type(exc).__name__}: {exc}",
                    id=cand.id,
                )
            )
            continue
        for calc, value in zip(calcs, values):
            if math.isnan(value) and calc.missing_fact is not None and ctx.facts is not None:
                gaps[calc.column].append(cand.id)
                if calc.missing_fact[0] in ctx.facts.columns:
                    lacking = supply.missing_facts(cand.composition, ctx.facts, calc.missing_fact[0])
                    gap_elements[calc.column].extend(lacking)
            elif math.isnan(value):
                missing[(calc.column, calc.why_missing(cand, ctx))].append(cand.id)
            elif calc.caveat is not None and ctx.facts is not None:
                for element in supply.missing_facts(cand.composition, ctx.facts, calc.caveat[0]):
                    caveats[(calc.column, calc.caveat[1])].append(element)
            if calc.column == "capacity_mAh_g" and value == 0.0:
                has_ion = cand.composition.element_composition[cfg.working_ion] > 0
                (no_headroom if has_ion else no_ion).append(cand.id)
        ids.append(cand.id)
        rows.append(values)

    for (column, reason), gap_ids in missing.items():
        notes.append(f"{column} is missing for {_plural(len(gap_ids))}: {reason} ({_id_list(gap_ids)})")
    by_column = {calc.column: calc for calc in calcs}
    for column, gap_ids in gaps.items():
        fact_column, what = by_column[column].missing_fact
        if fact_column not in element_columns(ctx):
            reason = f"the element table has no {fact_column} column"
        else:
            counts = ", ".join(f"{e} ({_plural(n)})" for e, n in sorted(Counter(gap_elements[column]).items()))
            reason = f"no {what} for {counts}"
        notes.append(f"{column} is missing for {_plural(len(gap_ids))}: {reason} ({_id_list(gap_ids)})")
    for (column, what), elements in caveats.items():
        counts = ", ".join(f"{e} ({_plural(n)})" for e, n in sorted(Counter(elements).items()))
        effect = "is left out of the lower bound" if "lower_bound" in column else "raises no flag"
        notes.append(f"{column}: an element whose {what} is unknown {effect}: {counts}")
    if no_ion:
        notes.append(
            f"capacity_mAh_g is 0 for {_plural(len(no_ion))}: no {cfg.working_ion} in the formula ({_id_list(no_ion)})"
        )
    if no_headroom:
        notes.append(
            f"capacity_mAh_g is 0 for {_plural(len(no_headroom))}: no redox-active cation can give up the electrons "
            f"to release {cfg.working_ion} (capacity_mode: redox; see capacity_formula_mAh_g) ({_id_list(no_headroom)})"
        )
    if failures:
        notes.append(f"properties failed for {_plural(len(failures))}; see failures")

    frame = pd.DataFrame(rows, index=pd.Index(ids, name="id", dtype=object), columns=columns, dtype=float)
    for calc in calcs:
        if calc.flag and not frame[calc.column].isna().any():  # astype(bool) would turn NaN into True
            frame[calc.column] = frame[calc.column].astype(bool)
    return frame, failures, notes


def derive_properties(
    table: pd.DataFrame, cfg: PropertiesConfig, element_table: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """Add the columns of the table-level groups in ``cfg.calculators`` ('energy', 'stability_window').

    These read columns other stages wrote (voltage from the surrogate or the oracle, formation enthalpy,
    capacity, cost), so they run on the joined table. Returns the table with the new columns and notes; a
    value that cannot be computed is NaN with a note, and the candidate stays.
    """
    notes: list[str] = []
    for name in dict.fromkeys(cfg.calculators):
        if name in DERIVED:
            new, group_notes = DERIVED[name](table, cfg, element_table)
            table = table.drop(columns=[c for c in new.columns if c in table.columns]).join(new)
            notes.extend(group_notes)
    return table, notes
