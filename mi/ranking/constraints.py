"""Hard limits on columns: rows outside any [min, max] are dropped before scoring."""

from __future__ import annotations

from collections.abc import Sequence

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
    return text + (" (missing kept)" if constraint.keep_missing else "")


def apply_constraints(
    table: pd.DataFrame, constraints: Sequence[Constraint]
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Keep the rows within every constraint's bounds (inclusive).

    A missing value (NaN) fails a constraint unless the constraint has ``keep_missing``. Constraints are
    applied in order; each one's count is the rows it removed from those the earlier ones kept, so the
    counts add up to the rows removed. Every column is checked before any row is dropped.
    """
    columns = [
        numeric_column(table, c.column, f"ranking.constraints[{i}].column") for i, c in enumerate(constraints)
    ]
    keep = np.ones(len(table), dtype=bool)
    removed: dict[str, int] = {}
    for constraint, values in zip(constraints, columns):
        with np.errstate(invalid="ignore"):
            ok = np.ones(len(table), dtype=bool)
            if constraint.min is not None:
                ok &= values >= constraint.min
            if constraint.max is not None:
                ok &= values <= constraint.max
        if constraint.keep_missing:
            ok |= np.isnan(values)
        key = describe(constraint)
        removed[key] = removed.get(key, 0) + int(np.count_nonzero(keep & ~ok))
        keep &= ok
    return table.loc[keep], removed
