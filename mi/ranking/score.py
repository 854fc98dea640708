"""Weighted score: every objective normalised to [0, 1] (1 = best), then a weighted mean; and its optimistic
(upper-confidence-bound) twin for exploration."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from mi.config import Objective
from mi.ranking.constraints import numeric_column

_erfc = np.frompyfunc(math.erfc, 1, 1)


def normalise(values: np.ndarray, direction: str, method: str) -> np.ndarray:
    """`values` mapped to [0, 1] with 1 = best for `direction` ("max"/"min").

    - ``minmax``: (x - min) / (max - min), flipped for "min";
    - ``rank``: average rank as a percentile, (r - 1) / (n - 1), flipped for "min";
    - ``zscore``: z = (x - mean) / std (population std), negated for "min", squashed by the normal CDF.

    Statistics use the finite values only. A constant column gives 0.5 everywhere (also n = 1);
    missing and non-finite values give 0 (worst).
    """
    x = np.asarray(values, dtype=float)
    out = np.zeros(len(x), dtype=float)
    ok = np.isfinite(x)
    if not ok.any():
        return out
    v = x[ok]
    if method == "minmax":
        lo, hi = v.min(), v.max()
        if hi == lo:
            out[ok] = 0.5
            return out
        s = (v - lo) / (hi - lo)
        out[ok] = s if direction == "max" else 1.0 - s
    elif method == "rank":
        if len(v) == 1:
            out[ok] = 0.5
            return out
        r = pd.Series(v).rank(method="average").to_numpy()
        s = (r - 1.0) / (len(v) - 1.0)
        out[ok] = s if direction == "max" else 1.0 - s
    elif method == "zscore":
        std = v.std()
        if std == 0:
            out[ok] = 0.5
            return out
        z = (v - v.mean()) / std
        if direction == "min":
            z = -z
        out[ok] = 0.5 * _erfc(-z / math.sqrt(2.0)).astype(float)
    else:
        raise ValueError(f"unknown normalisation {method!r}")
    return np.clip(out, 0.0, 1.0)


def weighted_score(table: pd.DataFrame, objectives: Sequence[Objective]) -> np.ndarray:
    """Weighted mean of the normalised objectives, one score in [0, 1] per row (1 = best everywhere).

    Weights are divided by their sum; if every weight is 0 the score is 0 for every row (ranking then
    falls to the Pareto rank). A column missing from the table is a ConfigError naming
    ``ranking.objectives[i].column``.
    """
    columns = [
        numeric_column(table, o.column, f"ranking.objectives[{i}].column") for i, o in enumerate(objectives)
    ]
    weights = np.array([o.weight for o in objectives], dtype=float)
    score = np.zeros(len(table), dtype=float)
    total = weights.sum()
    if total <= 0:
        return score
    for objective, values, w in zip(objectives, columns, weights / total):
        if w:
            score += w * normalise(values, objective.direction, objective.normalise)
    return np.clip(score, 0.0, 1.0)


def optimistic_values(table: pd.DataFrame, objective: Objective, kappa: float, key: str) -> np.ndarray:
    """mean + kappa * std for a "max" objective, mean - kappa * std for "min", with the std from
    ``<column>_std`` where the table has it; a column without one (an exact property), or a row whose
    std is missing, keeps its mean."""
    values = numeric_column(table, objective.column, key)
    std_column = f"{objective.column}_std"
    if std_column not in table.columns:
        return values
    std = np.nan_to_num(numeric_column(table, std_column, key), nan=0.0)
    return values + kappa * std if objective.direction == "max" else values - kappa * std


def ucb_score(table: pd.DataFrame, objectives: Sequence[Objective], kappa: float) -> np.ndarray:
    """The weighted score (same weights and normalisations) of the optimistic values: with kappa = 0 it
    equals `weighted_score`; larger kappa favours candidates the surrogate is unsure about."""
    optimistic = pd.DataFrame(
        {
            f"objective_{i}": optimistic_values(table, o, kappa, f"ranking.objectives[{i}].column")
            for i, o in enumerate(objectives)
        },
        index=table.index,
    )
    renamed = [o.model_copy(update={"column": f"objective_{i}"}) for i, o in enumerate(objectives)]
    return weighted_score(optimistic, renamed)
