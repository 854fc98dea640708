"""Small helpers the property stages share: a column as floats, and the wording of notes about candidates.

The lowest module of `mi.properties` (it imports none of them), so that compute, derived and demand can all
use it without importing one another.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

IDS_SHOWN = 5


def float_column(table: pd.DataFrame, name: str) -> np.ndarray:
    """`table[name]` as floats (unparseable values NaN), all NaN where the table has no such column."""
    if name not in table.columns:
        return np.full(len(table), np.nan)
    return pd.to_numeric(table[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def id_list(ids: list[str]) -> str:
    """The first few ids, and how many more."""
    shown = ", ".join(ids[:IDS_SHOWN])
    return shown if len(ids) <= IDS_SHOWN else f"{shown} and {len(ids) - IDS_SHOWN} more"


def ids_where(table: pd.DataFrame, mask: np.ndarray) -> str:
    """`id_list` of the rows of `table` under `mask` (its ``id`` column, else its index)."""
    ids = [str(i) for i in table.loc[mask, "id"]] if "id" in table.columns else [str(i) for i in table.index[mask]]
    return id_list(ids)


def plural(n: int) -> str:
    return f"{n} candidate" if n == 1 else f"{n} candidates"


__all__ = ["IDS_SHOWN", "float_column", "id_list", "ids_where", "plural"]
