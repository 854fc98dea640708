"""Run the configured exact calculators over candidates; isolate failures, explain missing values."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import pandas as pd

from mi.candidates.base import Candidate, Failure
from mi.config import PropertiesConfig
from mi.errors import InputError
from mi.properties.calculators import CALCULATORS, Context

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


def compute_properties(
    candidates: Sequence[Candidate],
    cfg: PropertiesConfig,
    element_table: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, list[Failure], list[str]]:
    """One row per candidate (indexed by id), one column per calculator in ``cfg.calculators``.

    A candidate on which a calculator raises becomes a Failure (stage ``properties``) and is left out of
    the frame; the others go on. Values that cannot be known (no structure, no price) are NaN, never 0,
    and each kind of gap gets a note. ``element_table`` is the loaded table (`mi.data.load_element_facts`);
    when None and a calculator needs prices, the packaged table is loaded.
    """
    calcs = [CALCULATORS[name] for name in dict.fromkeys(cfg.calculators)]
    columns = [calc.column for calc in calcs]
    notes: list[str] = []

    prices: dict[str, float] = {}
    if any(calc.needs_prices for calc in calcs):
        if element_table is None:
            from mi.data import load_element_facts

            element_table = load_element_facts()
        prices = prices_from_table(element_table)
        source = element_table.attrs.get("source", "the given element table")
        notes.append(f"cost_usd_kg uses element prices from {source} (bases and years differ; see its notes)")
    ctx = Context(working_ion=cfg.working_ion, prices=prices)

    ids: list[str] = []
    rows: list[list[float]] = []
    failures: list[Failure] = []
    missing: dict[tuple[str, str], list[str]] = defaultdict(list)
    no_ion: list[str] = []
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
            if math.isnan(value):
                missing[(calc.column, calc.why_missing(cand, ctx))].append(cand.id)
            elif calc.column == "capacity_mAh_g" and value == 0.0:
                no_ion.append(cand.id)
        ids.append(cand.id)
        rows.append(values)

    for (column, reason), gap_ids in missing.items():
        notes.append(f"{column} is missing for {_plural(len(gap_ids))}: {reason} ({_id_list(gap_ids)})")
    if no_ion:
        notes.append(
            f"capacity_mAh_g is 0 for {_plural(len(no_ion))}: no {cfg.working_ion} in the formula ({_id_list(no_ion)})"
        )
    if failures:
        notes.append(f"properties failed for {_plural(len(failures))}; see failures")

    frame = pd.DataFrame(rows, index=pd.Index(ids, name="id", dtype=object), columns=columns, dtype=float)
    return frame, failures, notes
