"""Hard limits on columns: rows outside any [min, max] are dropped before scoring.

A constraint with ``probability: p`` treats the column as the mean of a normal distribution whose std is
in ``std_column`` (default ``<column>_std``) and keeps a row when P(min <= X <= max) >= p. A constraint
with ``required: false`` on a column the table lacks is skipped (the summary says so).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from mi.config import Constraint
from mi.errors import ConfigError


def numeric_column(table: pd.DataFrame, column: str, key: str) -> np.ndarray:
    """`table[column]` as float64, or a ConfigError naming `key` (missing or non-numeric column)."""
    if column not in table.columns:
        available = ", ".join(map(str, table.columns)) or "(none)"
        raise ConfigError(f"{key}: no column {column!r} in the candidate table; available columns: {available}")
    series = table[column]
    if pd.api.types.is_bool_dtype(series):
        return series.to_numpy(dtype=float)
    try:
        return pd.to_numeric(series, errors="raise").to_numpy(dtype=float, na_value=np.nan)
    except (ValueError, TypeError):
        raise ConfigError(f"{key}: column {column!r} is not numeric") from None


def describe(constraint: Constraint) -> str:
    """``"formation_enthalpy_eV_atom <= 0"``, ``"1 <= x <= 5"``; ``" (missing kept)"`` when NaN passes."""
    col, lo, hi = constraint.column, constraint.min, constraint.max
    if lo is not None and hi is not None:
        text = f"{lo:g} <= {col} <= {hi:g}"
    elif lo is not None:
        text = f"{col} >= {lo:g}"
    else:
        text = f"{col} <= {hi:g}"
    if constraint.probability is not None:
        text = f"P({text}) >= {constraint.probability:g}"
    return text + (" (missing kept)" if constraint.keep_missing else "")


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    """Phi(z); +-inf give 1 and 0, NaN stays NaN (scipy's ndtr, as `mi.ranking.stats.normal_cdf`)."""
    from scipy.special import ndtr

    return ndtr(np.asarray(z, dtype=float))


def probability_within(mean: np.ndarray, std: np.ndarray, lo: float | None, hi: float | None) -> np.ndarray:
    """P(lo <= X <= hi) for X ~ Normal(mean, std); std = 0 is a point mass; NaN mean or std gives NaN."""
    mean = np.asarray(mean, dtype=float)
    std = np.asarray(std, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        upper = np.ones_like(mean) if hi is None else _normal_cdf((hi - mean) / std)
        lower = np.zeros_like(mean) if lo is None else _normal_cdf((lo - mean) / std)
    p = upper - lower
    point = std == 0  # (x - mean) / 0 is +-inf or NaN; decide on the mean itself
    if point.any():
        inside = np.ones_like(mean, dtype=bool)
        if lo is not None:
            inside &= mean >= lo
        if hi is not None:
            inside &= mean <= hi
        p = np.where(point, inside.astype(float), p)
    return np.where(np.isnan(mean) | np.isnan(std) | (std < 0), np.nan, p)


def leading_constraints(constraints: Sequence[Constraint], columns: Iterable[str]) -> int:
    """How many constraints, from the first, read only `columns` (value and std): those can be applied to a
    table that has only these columns and remove the rows, and with them the same rows as on the whole
    table, each by the same first constraint."""
    available = set(columns)
    for n, c in enumerate(constraints):
        if c.column not in available or (c.probability is not None and c.std not in available):
            return n
    return len(constraints)


def active_constraints(table: pd.DataFrame, constraints: Sequence[Constraint]) -> tuple[list[int], list[str]]:
    """Indices of the constraints that apply to `table`, and a note for each optional one skipped because
    its column is absent."""
    active, skipped = [], []
    for i, c in enumerate(constraints):
        if not c.required and c.column not in table.columns:
            skipped.append(f"constraint {describe(c)} skipped: no column {c.column!r} (required: false)")
        else:
            active.append(i)
    return active, skipped


REMOVED_COLUMNS = ("id", "formula", "source", "constraint", "column", "value", "std", "probability")


def removed_csv(rows: pd.DataFrame | list[dict]) -> str:
    """Removed rows (`split_by_constraints`'s frame, or its records) as removed.csv lines without the header:
    one text per chunk, written beside its shard and copied into removed.csv as it is."""
    records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else list(rows)
    if not records:
        return ""
    # through the records, as removed.csv has always been written: the same types, the same text
    frame = pd.DataFrame(records).reindex(columns=list(REMOVED_COLUMNS))
    return frame.to_csv(index=False, header=False, lineterminator="\n")


def apply_constraints(
    table: pd.DataFrame, constraints: Sequence[Constraint]
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Keep the rows within every constraint's bounds (inclusive).

    A missing value (NaN, also a missing std of a probabilistic constraint) fails a constraint unless the
    constraint has ``keep_missing``. Constraints are applied in order; each one's count is the rows it
    removed from those the earlier ones kept, so the counts add up to the rows removed. Every column is
    checked before any row is dropped; optional constraints on absent columns are skipped
    (`active_constraints`). `split_by_constraints` also returns the removed rows.
    """
    kept, removed, _ = split_by_constraints(table, constraints)
    return kept, removed


def split_by_constraints(
    table: pd.DataFrame, constraints: Sequence[Constraint], only: Sequence[int] | None = None
) -> tuple[pd.DataFrame, dict[str, int], pd.DataFrame]:
    """`apply_constraints`, and the removed rows: one per removed row with the first constraint that
    removed it, its column and the row's value there (``std`` and ``probability`` for a probabilistic
    constraint), columns `REMOVED_COLUMNS` (``id``/``formula``/``source`` empty when the table lacks them).
    `only`: apply just these constraints (indices into `constraints`, in order; errors name them so).
    """
    active, _ = active_constraints(table, constraints)
    if only is not None:
        chosen = set(only)
        active = [i for i in active if i in chosen]
    checked = []
    for i in active:
        c = constraints[i]
        values = numeric_column(table, c.column, f"ranking.constraints[{i}].column")
        std = None
        if c.probability is not None:
            key = f"ranking.constraints[{i}].std_column" if c.std_column else f"ranking.constraints[{i}].probability"
            if c.std not in table.columns:
                raise ConfigError(
                    f"{key}: a probabilistic constraint needs the std column {c.std!r}, which the candidate "
                    f"table lacks (is {c.column!r} predicted with uncertainty?)"
                )
            std = numeric_column(table, c.std, key)
        checked.append((c, values, std))
    keep = np.ones(len(table), dtype=bool)
    removed: dict[str, int] = {}
    parts = []
    for constraint, values, std in checked:
        p = None
        with np.errstate(invalid="ignore"):
            if std is not None:
                p = probability_within(values, std, constraint.min, constraint.max)
                ok = p >= constraint.probability
                missing = np.isnan(p)
            else:
                ok = np.ones(len(table), dtype=bool)
                if constraint.min is not None:
                    ok &= values >= constraint.min
                if constraint.max is not None:
                    ok &= values <= constraint.max
                missing = np.isnan(values)
        if constraint.keep_missing:
            ok |= missing
        key = describe(constraint)
        dropped = keep & ~ok
        removed[key] = removed.get(key, 0) + int(np.count_nonzero(dropped))
        if dropped.any():
            rows = table.loc[dropped]
            parts.append(pd.DataFrame({
                **{c: rows[c].astype(str).to_numpy() if c in rows.columns else "" for c in ("id", "formula", "source")},
                "constraint": key,
                "column": constraint.column,
                "value": values[dropped],
                "std": std[dropped] if std is not None else np.nan,
                "probability": p[dropped] if p is not None else np.nan,
            }))
        keep &= ok
    removed_rows = (
        pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(REMOVED_COLUMNS))
    )
    return table.loc[keep], removed, removed_rows
