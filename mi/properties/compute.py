"""Run the configured exact calculators over candidates; isolate failures, explain missing values."""

from __future__ import annotations

import math
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
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
from mi.properties.element_matrix import VECTORISED, amount_of, element_matrix
from mi.properties.element_matrix import lacking as element_lacking
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


def _first_seen(events: list[tuple[int, int, object]]) -> list:
    """The keys of (row, calculator, key) events in the order a row-major, calculator-by-calculator walk
    meets them first (the notes' order)."""
    first: dict = {}
    for row, k, key in events:
        if key not in first or (row, k) < first[key]:
            first[key] = (row, k)
    return sorted(first, key=first.get)


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
    n = len(candidates)

    # The figures of the whole chunk at once where they are arrays (`mi.properties.element_matrix`, the same
    # floats): values (rows x calculators) and the cells left to the row-wise calculators, which are the
    # rows the matrix cannot describe (they report what is wrong) and the rows a figure leaves (a redox
    # capacity that needs oxidation states).
    values = np.full((n, len(calcs)), np.nan)
    row_wise = np.ones((n, len(calcs)), dtype=bool)
    matrix = element_matrix([c.composition for c in candidates]) if candidates else None
    if matrix is not None:
        for k, calc in enumerate(calcs):
            if calc.column in VECTORISED:
                got = VECTORISED[calc.column](matrix, ctx)
                vector, left = got if isinstance(got, tuple) else (got, None)
                values[:, k] = vector
                row_wise[:, k] = ~matrix.ok if left is None else ~matrix.ok | left
    if any(calc.needs_structure for calc in calcs):
        no_structure = np.array([c.structure is None for c in candidates], dtype=bool)
        for k, calc in enumerate(calcs):
            if calc.needs_structure:
                values[no_structure, k] = np.nan
                row_wise[no_structure, k] = False

    failed = np.zeros(n, dtype=bool)
    failures: list[Failure] = []
    with _deadline(timeout_s) as deadline:
        for row in np.flatnonzero(row_wise.any(axis=1)).tolist():
            cand = candidates[row]
            todo = np.flatnonzero(row_wise[row]).tolist()
            calc = calcs[todo[0]]
            reason = ""
            try:
                deadline.start()
                for k in todo:
                    calc = calcs[k]
                    values[row, k] = float(calc.compute(cand, ctx))
                deadline.stop()
            except _Timeout:
                reason = f"{calc.column}: timed out after {timeout_s:g} s (features.timeout_s)"
            except Exception as exc:  # one bad candidate must not stop the run
                deadline.stop()
                reason = f"{calc.column}: {type(exc).__name__}: {exc}"
            if reason:
                failed[row] = True
                failures.append(Failure(source=cand.source, record=cand.record, stage=STAGE, reason=reason, id=cand.id))

    kept = np.flatnonzero(~failed)
    values = values[kept]
    ids = [candidates[row].id for row in kept.tolist()]
    _notes_on_gaps(notes, calcs, values, [candidates[row] for row in kept.tolist()], kept, matrix, ctx, cfg, failures)

    frame = pd.DataFrame(values, index=pd.Index(ids, name="id", dtype=object), columns=columns, dtype=float)
    for calc in calcs:
        if calc.flag and not frame[calc.column].isna().any():  # astype(bool) would turn NaN into True
            frame[calc.column] = frame[calc.column].astype(bool)
    return frame, failures, notes


def _notes_on_gaps(notes, calcs, values, kept, rows, matrix, ctx, cfg, failures) -> None:
    """Why values are missing or caveated, for the run's notes: `values` (kept rows x calculators) of the
    candidates `kept`, rows `rows` of the chunk (and of `matrix`). Each kind of gap lists its candidates
    in row order; kinds come in the order a row-by-row walk meets them."""
    missing: dict[tuple[str, str], list[str]] = defaultdict(list)
    caveats: dict[tuple[str, str], Counter] = defaultdict(Counter)  # (column, fact) -> elements, once per candidate
    gaps: dict[str, list[str]] = {}  # column -> ids missing it for lack of an element fact
    gap_elements: dict[str, Counter] = defaultdict(Counter)  # column -> the elements lacking the fact
    no_ion: list[str] = []
    no_headroom: list[str] = []
    in_matrix = matrix.ok[rows] if len(rows) else np.zeros(0, dtype=bool)

    def lacking(column: str, where: np.ndarray) -> tuple[Counter, int | None]:
        """The elements without a value in `column` (`supply.missing_facts`) of the kept candidates at
        `where` (a mask), counted once per candidate, and the first candidate with one."""
        counts: Counter = Counter()
        mask = element_lacking(matrix, ctx.facts, column)[rows] & (where & in_matrix)[:, None] if len(rows) else None
        first = [int(np.argmax(mask.any(axis=1)))] if mask is not None and mask.any() else []
        if first:
            found = np.bincount(matrix.index[rows][mask], minlength=len(matrix.elements) + 1)
            counts.update({matrix.elements[j]: int(found[j]) for j in np.flatnonzero(found[:-1]).tolist()})
        for position in np.flatnonzero(where & ~in_matrix).tolist():  # row by row: they say what is wrong
            elements = supply.missing_facts(kept[position].composition, ctx.facts, column)
            counts.update(elements)
            first += [position] if elements else []
        return counts, min(first, default=None)

    nan = np.isnan(values)
    events: list[tuple[int, int, object]] = []  # (position, calculator, key) of each list a gap starts
    gap_events: list[tuple[int, int, object]] = []
    caveat_events: list[tuple[int, int, object]] = []
    for k, calc in enumerate(calcs):
        gap_rows = np.flatnonzero(nan[:, k]).tolist()
        if calc.missing_fact is not None and ctx.facts is not None:
            if gap_rows:
                gaps[calc.column] = [kept[position].id for position in gap_rows]
                gap_events.append((gap_rows[0], k, calc.column))
                if calc.missing_fact[0] in ctx.facts.columns:
                    gap_elements[calc.column].update(lacking(calc.missing_fact[0], nan[:, k])[0])
        else:
            for position in gap_rows:
                key = (calc.column, calc.why_missing(kept[position], ctx))
                if key not in missing:
                    events.append((position, k, key))
                missing[key].append(kept[position].id)
        if calc.caveat is not None and ctx.facts is not None:
            column, what = calc.caveat
            counts, first = lacking(column, ~nan[:, k])
            if first is not None:
                caveat_events.append((first, k, (calc.column, what)))
                caveats[(calc.column, what)].update(counts)
        if calc.column == "capacity_mAh_g":
            zero = np.flatnonzero(values[:, k] == 0.0).tolist()
            ion = amount_of(matrix, cfg.working_ion) if zero else None
            for position in zero:
                row = int(rows[position])
                if matrix.ok[row]:
                    has_ion = ion[row] > 0
                else:
                    has_ion = kept[position].composition.element_composition[cfg.working_ion] > 0
                (no_headroom if has_ion else no_ion).append(kept[position].id)

    for column, reason in _first_seen(events):
        gap_ids = missing[(column, reason)]
        notes.append(f"{column} is missing for {_plural(len(gap_ids))}: {reason} ({_id_list(gap_ids)})")
    by_column = {calc.column: calc for calc in calcs}
    for column in _first_seen(gap_events):
        gap_ids = gaps[column]
        fact_column, what = by_column[column].missing_fact
        if fact_column not in element_columns(ctx):
            reason = f"the element table has no {fact_column} column"
        else:
            counts = ", ".join(f"{e} ({_plural(n)})" for e, n in sorted(gap_elements[column].items()))
            reason = f"no {what} for {counts}"
        notes.append(f"{column} is missing for {_plural(len(gap_ids))}: {reason} ({_id_list(gap_ids)})")
    for column, what in _first_seen(caveat_events):
        counts = ", ".join(f"{e} ({_plural(n)})" for e, n in sorted(caveats[(column, what)].items()))
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
