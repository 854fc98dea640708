"""Acquisition functions for active learning, on the multi-objective score of `mi.ranking.stats`.

Ranking knows columns, not how they were computed: a row's objective columns hold the surrogate's mean for
unlabelled candidates and the label for labelled ones, and ``<column>_std`` holds the surrogate's std
(0 or missing for a label). Every function here is a pure function of such a frame.

* ``greedy``: the weighted score of the means (exploitation);
* ``ucb``: the weighted score of mean + kappa * std (mean - kappa * std for ``min`` objectives);
* ``ei``: expected improvement of the score over the best labelled score, with the score's std from the
  delta method (each objective's std passed through the slope of its normalisation) and a normal
  distribution of the score: EI = (mu - best - xi) Phi(z) + sigma phi(z), z = (mu - best - xi) / sigma;
  sigma = 0 gives max(mu - best - xi, 0);
* ``random``: seeded uniform values (the baseline).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from mi.config import Constraint, Objective
from mi.ranking.constraints import apply_constraints, numeric_column
from mi.ranking.stats import ObjectiveStats, normal_cdf, ucb_score, weighted_score

ACQUISITIONS = ("greedy", "ucb", "ei", "random")


def _pdf(z: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * np.asarray(z, dtype=float) ** 2) / math.sqrt(2.0 * math.pi)


def greedy(table: pd.DataFrame, objectives: Sequence[Objective]) -> np.ndarray:
    """The weighted score of the values as they are (means for predicted rows)."""
    return weighted_score(table, objectives)


def ucb(table: pd.DataFrame, objectives: Sequence[Objective], kappa: float) -> np.ndarray:
    """The weighted score of the optimistic values (mean +- kappa std); kappa = 0 is `greedy`."""
    if kappa < 0:
        raise ValueError(f"kappa must be >= 0, got {kappa}")
    return ucb_score(table, objectives, kappa)


def score_std(table: pd.DataFrame, objectives: Sequence[Objective]) -> np.ndarray:
    """Std of the weighted score by the delta method: for each objective with a ``<column>_std``, its
    weight times the change of its normalised value between mean and mean + std, added in quadrature.
    The normalisation is the score's own (`ObjectiveStats` of the means, continued between the values by
    `ObjectiveStats.extended`). Rows without a std (labels, exact properties) contribute 0."""
    weights = np.array([o.weight for o in objectives], dtype=float)
    total = weights.sum()
    var = np.zeros(len(table), dtype=float)
    if total <= 0:
        return var
    for i, (objective, w) in enumerate(zip(objectives, weights / total)):
        std_column = f"{objective.column}_std"
        if not w or std_column not in table.columns:
            continue
        key = f"ranking.objectives[{i}].column"
        mean = numeric_column(table, objective.column, key)
        std = np.nan_to_num(numeric_column(table, std_column, key), nan=0.0)
        stats = ObjectiveStats.of(mean, objective.normalise)
        ok = np.isfinite(mean)
        delta = np.zeros(len(table))
        delta[ok] = stats.extended(mean[ok] + std[ok], objective.direction) - stats.extended(mean[ok], objective.direction)
        var += (w * delta) ** 2
    return np.sqrt(var)


def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float, xi: float = 0.0) -> np.ndarray:
    """EI of maximising a normal N(mean, std) over `best` + `xi`; >= 0, increasing in mean and in std."""
    mean = np.asarray(mean, dtype=float)
    std = np.asarray(std, dtype=float)
    gain = mean - best - xi
    out = np.maximum(gain, 0.0)
    ok = std > 0
    if ok.any():
        z = gain[ok] / std[ok]
        out[ok] = gain[ok] * normal_cdf(z) + std[ok] * _pdf(z)
    return np.where(np.isnan(mean), 0.0, np.maximum(out, 0.0))


def acquisition_values(
    table: pd.DataFrame,
    objectives: Sequence[Objective],
    kind: str,
    *,
    kappa: float = 1.0,
    xi: float = 0.0,
    labelled: np.ndarray | None = None,
    seed: int | None = None,
) -> np.ndarray:
    """One value per row (higher = label it sooner) for acquisition `kind` (see the module docstring).

    `labelled` marks the rows whose values are labels: EI's incumbent is the best score among them (0
    when none is labelled). Scores are normalised over the whole frame, labelled rows included, so that
    the incumbent and the candidates share one scale.
    """
    if kind == "greedy":
        return greedy(table, objectives)
    if kind == "ucb":
        return ucb(table, objectives, kappa)
    if kind == "ei":
        mu = weighted_score(table, objectives)
        sigma = score_std(table, objectives)
        mask = np.zeros(len(table), dtype=bool) if labelled is None else np.asarray(labelled, dtype=bool)
        best = float(mu[mask].max()) if mask.any() else 0.0
        return expected_improvement(mu, sigma, best, xi)
    if kind == "random":
        return np.random.default_rng(seed).random(len(table))
    raise ValueError(f"unknown acquisition {kind!r}; known: {', '.join(ACQUISITIONS)}")


def feasible(table: pd.DataFrame, constraints: Sequence[Constraint]) -> np.ndarray:
    """Rows within every constraint (probabilistic ones on the predicted mean and std)."""
    if not constraints:
        return np.ones(len(table), dtype=bool)
    kept, _ = apply_constraints(table, constraints)
    return table.index.isin(kept.index)


def select_batch(
    table: pd.DataFrame,
    values: np.ndarray,
    batch_size: int,
    *,
    eligible: np.ndarray | None = None,
    preferred: np.ndarray | None = None,
) -> list[str]:
    """Ids of the `batch_size` eligible rows to label next: `preferred` rows (e.g. feasible) first, each
    group by value descending (NaN last), ties by id; fewer when fewer are eligible."""
    if "id" not in table.columns:
        raise ValueError("the table needs an 'id' column")
    n = len(table)
    eligible = np.ones(n, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    preferred = np.ones(n, dtype=bool) if preferred is None else np.asarray(preferred, dtype=bool)
    values = np.asarray(values, dtype=float)
    key = np.where(np.isnan(values), -np.inf, np.round(values, 12))
    ids = table["id"].astype(str).to_numpy()
    order = np.lexsort((ids, -key, ~preferred))
    return [ids[i] for i in order if eligible[i]][:batch_size]


__all__ = [
    "ACQUISITIONS",
    "acquisition_values",
    "expected_improvement",
    "feasible",
    "greedy",
    "score_std",
    "select_batch",
    "ucb",
]
