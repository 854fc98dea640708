"""What ranking does with a predicted value outside its model's domain (``<column>_in_domain`` false).

``ranking.out_of_domain``:

* ``penalize`` (default): the value scores as the worst of its objective (as a missing value does) in the
  score, the UCB score and the Pareto sort, so neither a wild extrapolation nor a huge std can top a
  ranking; the value itself stays in the table;
* ``drop``: rows with such a value in an objective or constraint column are removed (counted like a
  constraint's removals);
* ``keep``: the flags are reported and ignored.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from mi.config import Objective, RankingConfig

SUFFIX = "_in_domain"
DROP_KEY = "out_of_domain (ranking.out_of_domain: drop)"


def flag_columns(columns: Iterable[str], table_columns: Iterable[str]) -> list[str]:
    """The ``<column>_in_domain`` flags of these columns that the table has."""
    present = set(table_columns)
    return [f"{c}{SUFFIX}" for c in dict.fromkeys(columns) if f"{c}{SUFFIX}" in present]


def out_of_domain(table: pd.DataFrame, column: str) -> np.ndarray:
    """True where `column` has an in-domain flag that is false (a missing flag counts as in domain)."""
    flag = f"{column}{SUFFIX}"
    if flag not in table.columns:
        return np.zeros(len(table), dtype=bool)
    values = table[flag]
    return values.notna().to_numpy() & ~values.fillna(True).astype(bool).to_numpy()


def penalized(table: pd.DataFrame, objectives: Iterable[Objective], policy: str) -> pd.DataFrame:
    """`table` with out-of-domain objective values made missing (scored worst) under ``penalize``."""
    objectives = list(objectives)
    if policy != "penalize" or not flag_columns([o.column for o in objectives], table.columns):
        return table
    out = table.copy()
    for o in objectives:
        mask = out_of_domain(out, o.column)
        if mask.any():
            out[o.column] = pd.to_numeric(out[o.column], errors="coerce").mask(mask)
    return out


def drop_out_of_domain(
    table: pd.DataFrame, cfg: RankingConfig
) -> tuple[pd.DataFrame, dict[str, int], pd.DataFrame]:
    """Under ``drop``: the rows whose objective and constraint columns are all in domain, the count removed,
    and the removed rows as `mi.ranking.constraints.split_by_constraints` lists them (for removed.csv)."""
    from mi.ranking.constraints import REMOVED_COLUMNS

    none = pd.DataFrame(columns=list(REMOVED_COLUMNS))
    if cfg.out_of_domain != "drop":
        return table, {}, none
    columns = [o.column for o in cfg.objectives] + [c.column for c in cfg.constraints]
    mask = np.zeros(len(table), dtype=bool)
    first = np.full(len(table), "", dtype=object)  # the first out-of-domain column of each dropped row
    for column in dict.fromkeys(columns):
        outside = out_of_domain(table, column)
        first[outside & ~mask] = column
        mask |= outside
    if not mask.any():
        return table, {}, none
    rows, columns = table[mask], first[mask]

    def values(suffix: str) -> list[float]:  # each dropped row's value in its own first out-of-domain column
        return [float(pd.to_numeric(rows[c + suffix].iloc[i], errors="coerce")) if c + suffix in rows.columns
                else np.nan for i, c in enumerate(columns)]

    listed = pd.DataFrame({
        **{c: rows[c].astype(str).to_numpy() if c in rows.columns else "" for c in ("id", "formula", "source")},
        "constraint": DROP_KEY,
        "column": columns,
        "value": values(""),
        "std": values("_std"),
        "probability": np.nan,
    })
    return table[~mask], {DROP_KEY: int(mask.sum())}, listed[list(REMOVED_COLUMNS)]


def out_of_domain_summary(table: pd.DataFrame) -> dict[str, list[str]]:
    """``{column: ids of rows out of domain}`` for every flag column of `table` with such rows."""
    out = {}
    for flag in [c for c in table.columns if str(c).endswith(SUFFIX)]:
        column = flag[: -len(SUFFIX)]
        mask = out_of_domain(table, column)
        if mask.any():
            out[column] = [str(i) for i in table.loc[mask, "id"]] if "id" in table.columns else []
    return out


__all__ = ["DROP_KEY", "SUFFIX", "drop_out_of_domain", "flag_columns", "out_of_domain", "out_of_domain_summary", "penalized"]
