"""The ranking core: per-objective statistics, one normalisation, one weighted score, one sort key.

Every ranking of mi goes through here: `mi.ranking.rank` (one table in memory), the streamed merge of a
chunked screen (`mi.execution.merge`, statistics gathered shard by shard) and the acquisition functions of
active learning (`mi.ranking.acquisition`). The two rankings agree by construction, because both score
with the same `ObjectiveStats.normalise` and `Scorer`; only where the statistics come from differs.

The rules, in one place:

* **normalise** to [0, 1], 1 = best for the direction: ``minmax`` (x - min) / (max - min); ``rank`` the
  average rank as a percentile, (r - 1) / (n - 1); ``zscore`` the normal CDF of (x - mean) / std
  (population std). Statistics use the finite values only.
* **a column with fewer than two distinct values** scores 0.5 everywhere; a missing or non-finite value
  scores 0 (the worst), and so does a value outside its model's domain under ``ranking.out_of_domain:
  penalize`` (`mi.ranking.domain.penalized`).
* **an objective without a single value** (energy without a voltage model) is left out of the score and
  the Pareto sort with a note: it cannot order anything, and left in it would shrink every score.
* **weighted score**: the weights divided by their sum; all weights 0 gives 0 for every row.
* **sort key**: the score rounded to 12 digits (so summation noise cannot reorder equal scores), descending,
  then Pareto rank ascending, then id ascending.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mi.config import Objective
from mi.ranking.constraints import numeric_column
from mi.ranking.domain import flag_columns, penalized

RANKING_COLUMNS = ("rank", "score", "ucb_score", "pareto_rank", "crowding_distance")
"""The columns ranking adds (and drops from its input first)."""

SORT_DIGITS = 12


def normal_cdf(z: np.ndarray) -> np.ndarray:
    """The standard normal CDF, elementwise (scipy's `ndtr`; imported here so that loading a config stays
    light)."""
    from scipy.special import ndtr

    return ndtr(np.asarray(z, dtype=float))


@dataclass
class ObjectiveStats:
    """Statistics of one objective's finite values: count, min, max, mean and M2 (sum of squared deviations),
    and for ``rank`` the sorted values. `add` takes them a part at a time (a table at once, or shard by
    shard, combined as in Chan et al.); `close` ends the adding."""

    method: str
    n: int = 0
    lo: float = math.inf
    hi: float = -math.inf
    mean: float = 0.0
    m2: float = 0.0
    sorted: np.ndarray | None = None
    _parts: list[np.ndarray] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.method not in ("minmax", "rank", "zscore"):
            raise ValueError(f"unknown normalisation {self.method!r}")

    @classmethod
    def of(cls, values: np.ndarray, method: str) -> ObjectiveStats:
        """The statistics of one array."""
        stats = cls(method)
        stats.add(values)
        return stats.close()

    def add(self, values: np.ndarray) -> None:
        v = np.asarray(values, dtype=float)
        v = v[np.isfinite(v)]
        if not len(v):
            return
        self.lo, self.hi = min(self.lo, float(v.min())), max(self.hi, float(v.max()))
        n_b, mean_b = len(v), float(v.mean())
        m2_b = float(((v - mean_b) ** 2).sum())
        if self.n == 0:  # the first part as numpy computes it, so that one table gives numpy's mean and std
            self.n, self.mean, self.m2 = n_b, mean_b, m2_b
        else:
            n = self.n + n_b
            delta = mean_b - self.mean
            self.mean += delta * n_b / n
            self.m2 += m2_b + delta * delta * self.n * n_b / n
            self.n = n
        if self.method == "rank":
            self._parts.append(v)

    def close(self) -> ObjectiveStats:
        if self.method == "rank":
            self.sorted = np.sort(np.concatenate(self._parts)) if self._parts else np.empty(0)
            self._parts = []
        return self

    @property
    def constant(self) -> bool:
        """Fewer than two distinct values: every value scores 0.5."""
        return self.hi == self.lo

    def normalise(self, values: np.ndarray, direction: str) -> np.ndarray:
        """`values` on [0, 1], 1 = best for `direction` ("max"/"min"), by these statistics; missing and
        non-finite values give 0."""
        x = np.asarray(values, dtype=float)
        out = np.zeros(len(x), dtype=float)
        ok = np.isfinite(x)
        if self.n == 0 or not ok.any():
            return out
        if self.constant:
            out[ok] = 0.5
            return out
        v = x[ok]
        if self.method == "minmax":
            s = (v - self.lo) / (self.hi - self.lo)
        elif self.method == "rank":
            below = np.searchsorted(self.sorted, v, side="left")
            equal = np.searchsorted(self.sorted, v, side="right") - below
            r = below + (equal + 1) / 2.0  # the average rank of ties (pandas' "average")
            s = (r - 1.0) / (self.n - 1.0)
        else:
            z = (v - self.mean) / math.sqrt(self.m2 / self.n)
            out[ok] = normal_cdf(z if direction == "max" else -z)
            return np.clip(out, 0.0, 1.0)
        out[ok] = s if direction == "max" else 1.0 - s
        return np.clip(out, 0.0, 1.0)

    def extended(self, values: np.ndarray, direction: str) -> np.ndarray:
        """The same map continued to any value and not clipped, for the delta method of
        `mi.ranking.acquisition.score_std` (mean + std may lie outside the values): linear for ``minmax``,
        the normal CDF for ``zscore``, for ``rank`` the percentiles interpolated between the sorted values
        (equal to `normalise` at distinct values)."""
        x = np.asarray(values, dtype=float)
        if self.n < 2 or self.constant:
            return np.full(len(x), 0.5)
        sign = 1.0 if direction == "max" else -1.0
        if self.method == "minmax":
            return 0.5 + sign * ((x - self.lo) / (self.hi - self.lo) - 0.5)
        if self.method == "zscore":
            return normal_cdf(sign * (x - self.mean) / math.sqrt(self.m2 / self.n))
        percentiles = np.linspace(0.0, 1.0, len(self.sorted))
        return 0.5 + sign * (np.interp(x, self.sorted, percentiles) - 0.5)


def combine(normalised: Sequence[np.ndarray], weights: Sequence[float], n: int) -> np.ndarray:
    """The weighted mean of normalised columns, weights divided by their sum; all weights 0 gives 0."""
    w = np.asarray(list(weights), dtype=float)
    score = np.zeros(n, dtype=float)
    total = w.sum()
    if total <= 0:
        return score
    for values, wi in zip(normalised, w / total):
        if wi:
            score += wi * values
    return np.clip(score, 0.0, 1.0)


def sort_key(score: np.ndarray) -> np.ndarray:
    """A score as it orders rows: rounded, so summation noise cannot reorder equal scores."""
    return np.round(np.asarray(score, dtype=float), SORT_DIGITS)


def ranked_order(score: np.ndarray, pareto_rank: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Row order of a ranking: sort key descending, then Pareto rank ascending, then id ascending."""
    return np.lexsort((ids, pareto_rank, -sort_key(score)))


def _column_keys(objectives: Sequence[Objective]) -> list[str]:
    return [f"ranking.objectives[{i}].column" for i in range(len(objectives))]


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


@dataclass
class Columns:
    """One frame's objective values as scoring reads them (out-of-domain values already missing)."""

    values: list[np.ndarray]
    optimistic: list[np.ndarray] | None
    n: int


class Scorer:
    """Scores rows by the objectives of a ranking, on statistics gathered from one table or shard by shard.

    Use: `add` every frame (or shard), `close` (which leaves out objectives without a value and returns the
    notes saying so), then `columns` + `score` / `ucb` / `matrix` on any frame.
    """

    def __init__(self, objectives: Sequence[Objective], *, kappa: float | None = None, out_of_domain: str = "keep"):
        self.objectives = list(objectives)
        self.kappa = kappa
        self.out_of_domain = out_of_domain
        self.stats = [ObjectiveStats(o.normalise) for o in self.objectives]
        self.ucb_stats = [ObjectiveStats(o.normalise) for o in self.objectives] if kappa is not None else None

    @classmethod
    def of(cls, table: pd.DataFrame, objectives: Sequence[Objective], **kwargs) -> tuple[Scorer, list[str]]:
        """A closed scorer with the statistics of `table`, and its notes."""
        scorer = cls(objectives, **kwargs)
        scorer.add(table)
        return scorer, scorer.close()

    @property
    def maximise(self) -> list[bool]:
        return [o.direction == "max" for o in self.objectives]

    def columns(self, frame: pd.DataFrame) -> Columns:
        if all(o.column in frame.columns for o in self.objectives):  # else numeric_column names them all
            # only the columns read here: `penalized` copies what it is given, and a screen's table is wide
            wanted = dict.fromkeys(c for o in self.objectives for c in (o.column, f"{o.column}_std"))
            wanted.update(dict.fromkeys(flag_columns(list(wanted), frame.columns)))
            frame = frame[[c for c in wanted if c in frame.columns]]
        frame = penalized(frame, self.objectives, self.out_of_domain)
        keys = _column_keys(self.objectives)
        values = [numeric_column(frame, o.column, k) for o, k in zip(self.objectives, keys)]
        optimistic = None
        if self.kappa is not None:
            optimistic = [optimistic_values(frame, o, self.kappa, k) for o, k in zip(self.objectives, keys)]
        return Columns(values, optimistic, len(frame))

    def add(self, frame: pd.DataFrame) -> None:
        cols = self.columns(frame)
        for stats, values in zip(self.stats, cols.values):
            stats.add(values)
        for stats, values in zip(self.ucb_stats or [], cols.optimistic or []):
            stats.add(values)

    def close(self) -> list[str]:
        """End the statistics; objectives without a single value are left out (unless all are: then there
        is nothing to order by and every score is 0), with a note each."""
        keep = [i for i, s in enumerate(self.stats) if s.n > 0] or list(range(len(self.objectives)))
        notes = [
            f"objective {o.direction} {o.column} left out: no candidate has a value"
            for i, o in enumerate(self.objectives)
            if i not in keep
        ]
        self.objectives = [self.objectives[i] for i in keep]
        self.stats = [self.stats[i].close() for i in keep]
        if self.ucb_stats is not None:
            self.ucb_stats = [self.ucb_stats[i].close() for i in keep]
        return notes

    def score(self, cols: Columns) -> np.ndarray:
        """The weighted score, 1 = best everywhere."""
        return self._weighted(cols.values, self.stats, cols.n)

    def ucb(self, cols: Columns) -> np.ndarray | None:
        """The weighted score of the optimistic values (None without ``ucb_kappa``)."""
        if self.ucb_stats is None:
            return None
        return self._weighted(cols.optimistic, self.ucb_stats, cols.n)

    def matrix(self, cols: Columns) -> np.ndarray:
        """rows x objectives, for the Pareto sort."""
        return np.column_stack(cols.values).reshape(cols.n, len(self.objectives))

    def _weighted(self, columns: list[np.ndarray], stats: list[ObjectiveStats], n: int) -> np.ndarray:
        normalised = [s.normalise(v, o.direction) if o.weight else None for o, v, s in zip(self.objectives, columns, stats)]
        return combine(normalised, [o.weight for o in self.objectives], n)


# --- the table-level functions ---------------------------------------------------------------------


def normalise(values: np.ndarray, direction: str, method: str) -> np.ndarray:
    """`values` mapped to [0, 1] (1 = best for `direction`) by `method` with their own statistics."""
    return ObjectiveStats.of(values, method).normalise(values, direction)


def weighted_score(table: pd.DataFrame, objectives: Sequence[Objective]) -> np.ndarray:
    """Weighted mean of the normalised objectives, one score in [0, 1] per row (1 = best everywhere), on
    `table`'s own statistics. A column missing from the table is a ConfigError naming
    ``ranking.objectives[i].column``."""
    scorer = Scorer(objectives)
    cols = scorer.columns(table)
    stats = [ObjectiveStats.of(v, o.normalise) for o, v in zip(objectives, cols.values)]
    return scorer._weighted(cols.values, stats, cols.n)


def ucb_score(table: pd.DataFrame, objectives: Sequence[Objective], kappa: float) -> np.ndarray:
    """The weighted score (same weights and normalisations) of the optimistic values: with kappa = 0 it
    equals `weighted_score`; larger kappa favours candidates the surrogate is unsure about."""
    scorer = Scorer(objectives, kappa=kappa)
    cols = scorer.columns(table)
    stats = [ObjectiveStats.of(v, o.normalise) for o, v in zip(objectives, cols.optimistic)]
    return scorer._weighted(cols.optimistic, stats, cols.n)


__all__ = [
    "RANKING_COLUMNS",
    "Columns",
    "ObjectiveStats",
    "Scorer",
    "combine",
    "normal_cdf",
    "normalise",
    "optimistic_values",
    "ranked_order",
    "sort_key",
    "ucb_score",
    "weighted_score",
]
