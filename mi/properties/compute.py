"""Run the configured exact calculators over candidates; isolate failures, explain missing values."""

from __future__ import annotations

import math
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import pandas as pd

from mi.candidates.base import Candidate, Failure
from mi.config import PropertiesConfig
from mi.errors import InputError
from mi.features.engine import _Timeout
from mi.properties import supply
from mi.properties.calculators import Calculator, Context
from mi.properties.columns import id_list as _id_list
from mi.properties.columns import plural as _plural
from mi.properties.derived import DERIVED
from mi.properties.element_matrix import VECTORISED, element_matrix
from mi.properties.element_matrix import missing_facts as matrix_missing_facts
from mi.properties.groups import calculator_groups

STAGE = "properties"


class _Deadline:
    """A per-candidate time limit (`features.timeout_s`, the features' limit) without a timer per candidate:
    a SIGALRM tick every quarter of the limit stops the candidate that has run past it. Like the features'
    in-process limit it interrupts Python code only, in the main thread only (elsewhere: no limit)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = 0.0
        self.active = False

    def start(self) -> None:
        self.started = time.monotonic()
        self.active = True

    def stop(self) -> None:
        self.active = False

    def _alarm(self, signum, frame) -> None:
        if self.active and time.monotonic() - self.started >= self.seconds:
            self.active = False
            raise _Timeout()


@contextmanager
def _deadline(seconds: float | None) -> Iterator[_Deadline]:
    guard = _Deadline(seconds or math.inf)
    usable = seconds is not None and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield guard
        return
    previous = signal.signal(signal.SIGALRM, guard._alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds / 4, seconds / 4)
    try:
        yield guard
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


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
        for calc in calculator_groups().get(name, ()):
            calcs.setdefault(calc.column, calc)
    return list(calcs.values())


def _tally(cand, calcs, values, ctx, cfg, gaps, gap_elements, missing, caveats, no_ion, no_headroom, lacking) -> None:
    """Record why a candidate's values are missing or caveated, for the run's notes. ``lacking(column)``
    names the candidate's elements without that fact (`supply.missing_facts`)."""
    for calc, value in zip(calcs, values):
        if math.isnan(value) and calc.missing_fact is not None and ctx.facts is not None:
            gaps[calc.column].append(cand.id)
            if calc.missing_fact[0] in ctx.facts.columns:
                gap_elements[calc.column].extend(lacking(calc.missing_fact[0]))
        elif math.isnan(value):
            missing[(calc.column, calc.why_missing(cand, ctx))].append(cand.id)
        elif calc.caveat is not None and ctx.facts is not None:
            for element in lacking(calc.caveat[0]):
                caveats[(calc.column, calc.caveat[1])].append(element)
        if calc.column == "capacity_mAh_g" and value == 0.0:
            has_ion = cand.composition.element_composition[cfg.working_ion] > 0
            (no_headroom if has_ion else no_ion).append(cand.id)


def compute_properties(
    candidates: Sequence[Candidate],
    cfg: PropertiesConfig,
    element_table: pd.DataFrame | None = None,
    *,
    timeout_s: float | None = None,
) -> tuple[pd.DataFrame, list[Failure], list[str]]:
    """One row per candidate (indexed by id), one column per calculator of the groups in ``cfg.calculators``.

    A candidate on which a calculator raises becomes a Failure (stage ``properties``) and is left out of
    the frame; the others go on. Values that cannot be known (no structure, no price, no element fact) are
    NaN, never 0, and each kind of gap gets a note; so does each kind of caveat (an unknown share that
    raised no flag). Flags come back as booleans. ``element_table`` is the loaded table
    (`mi.data.load_element_facts`); when None and a calculator needs it, the packaged table is loaded.
    The groups that work on table columns ('energy', 'stability_window') run later, in
    `derive_properties`. ``timeout_s`` bounds each candidate's calculators (the screen passes
    ``features.timeout_s``); a candidate past it becomes a Failure like one that raises.
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
    # The element-table figures of the whole chunk at once (`mi.properties.element_matrix`, the same
    # floats); a row the matrix cannot describe goes through the calculators, which report it.
    matrix = element_matrix([c.composition for c in candidates]) if candidates else None
    vectors = {
        calc.column: VECTORISED[calc.column](matrix, ctx) for calc in calcs if calc.column in VECTORISED and matrix
    }
    lacking_by_column: dict[str, dict[int, list[str]]] = {}

    def lacking(row: int, cand: Candidate) -> Callable[[str], Sequence[str]]:
        def of(column: str) -> Sequence[str]:
            if not matrix.ok[row]:
                return supply.missing_facts(cand.composition, ctx.facts, column)
            if column not in lacking_by_column:
                lacking_by_column[column] = matrix_missing_facts(matrix, ctx.facts, column)
            return lacking_by_column[column].get(row, ())

        return of

    with _deadline(timeout_s) as deadline:
        for row, cand in enumerate(candidates):
            values: list[float] = []
            reason = ""
            calc = calcs[0] if calcs else None
            vectorised = bool(matrix.ok[row])
            try:
                deadline.start()
                for calc in calcs:
                    if vectorised and calc.column in vectors:
                        values.append(float(vectors[calc.column][row]))
                    else:
                        values.append(float(calc.compute(cand, ctx)))
                deadline.stop()
            except _Timeout:
                reason = f"{calc.column if calc else STAGE}: timed out after {timeout_s:g} s (features.timeout_s)"
            except Exception as exc:  # one bad candidate must not stop the run
                deadline.stop()
                reason = f"{calc.column}: {type(exc).__name__}: {exc}"
            if reason:
                failures.append(Failure(source=cand.source, record=cand.record, stage=STAGE, reason=reason, id=cand.id))
                continue
            _tally(cand, calcs, values, ctx, cfg, gaps, gap_elements, missing, caveats, no_ion, no_headroom, lacking(row, cand))
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
    """Add the columns of the table-level groups in ``cfg.calculators`` ('energy', 'demand',
    'stability_window', and the text of the 'supply' group), in `DERIVED`'s order (demand needs energy).

    These read columns other stages wrote (voltage from the surrogate or the oracle, formation enthalpy,
    capacity, cost), so they run on the joined table. Returns the table with the new columns and notes; a
    value that cannot be computed is NaN with a note, and the candidate stays.
    """
    notes: list[str] = []
    for name in DERIVED:
        if name in cfg.calculators:
            new, group_notes = DERIVED[name](table, cfg, element_table)
            table = table.drop(columns=[c for c in new.columns if c in table.columns]).join(new)
            notes.extend(group_notes)
    return table, notes
