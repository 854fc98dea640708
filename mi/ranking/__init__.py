"""Ranking: constraints, a weighted score and Pareto fronts over table columns.

Ranking knows columns, not how they were computed: predicted and exact properties look alike here.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from mi.config import Objective, RankingConfig
from mi.errors import ConfigError
from mi.ranking.acquisition import acquisition_values, expected_improvement, score_std, select_batch
from mi.ranking.constraints import (
    active_constraints,
    apply_constraints,
    describe,
    numeric_column,
    probability_within,
    split_by_constraints,
)
from mi.ranking.pareto import crowding_distance, pareto_ranks
from mi.ranking.stats import RANKING_COLUMNS, Scorer, normalise, ranked_order, ucb_score, weighted_score

__all__ = [
    "RANKING_COLUMNS",
    "acquisition_values",
    "active_constraints",
    "apply_constraints",
    "split_by_constraints",
    "crowding_distance",
    "describe",
    "expected_improvement",
    "normalise",
    "pareto_ranks",
    "probability_within",
    "rank",
    "usable_objectives",
    "score_std",
    "select_batch",
    "ucb_score",
    "weighted_score",
]

def usable_objectives(table: pd.DataFrame, cfg: RankingConfig) -> tuple[list[Objective], list[str]]:
    """The objectives to score `table` by, and notes on what was skipped.

    Optional constraints and objectives (``required: false``) on columns the table lacks are skipped with a
    note; every objective column is checked before anything else, so the first error is a config error.
    Only the table's columns are read: an empty frame with the right columns will do.
    """
    _, skipped = active_constraints(table, cfg.constraints)
    objectives = []
    for o in cfg.objectives:
        if not o.required and o.column not in table.columns:
            skipped.append(f"objective {o.direction} {o.column} skipped: no such column (required: false)")
        else:
            objectives.append(o)
    if not objectives:
        raise ConfigError("ranking.objectives: every objective was skipped (their columns are absent)")
    for i, objective in enumerate(cfg.objectives):
        if objective in objectives:
            numeric_column(table, objective.column, f"ranking.objectives[{i}].column")
    return objectives, skipped


def rank(table: pd.DataFrame, cfg: RankingConfig) -> tuple[pd.DataFrame, dict]:
    """Constrain, score and order candidates.

    `table` needs an ``id`` column. Returns the kept rows with ``score`` (weighted, 1 = best),
    ``ucb_score`` (only with ``ucb_kappa``), ``pareto_rank`` (1 = front, over the same objectives),
    ``crowding_distance`` (NSGA-II, within the row's front; inf at a front's extremes) and ``rank``
    (1..n, first column), sorted by ``sort_by`` (score or ucb_score) descending, then pareto_rank
    ascending, then id ascending; and a summary ``{"rows_in", "rows_kept", "removed": {constraint: rows
    removed}, "skipped": [notes], "objectives": [columns used]}``. Optional constraints and objectives
    (``required: false``) on columns the table lacks are skipped with a note in ``skipped``.
    """
    if "id" not in table.columns:
        raise ValueError("the table to rank needs an 'id' column")
    rows_in = len(table)
    objectives, skipped = usable_objectives(table, cfg)
    kept, removed = apply_constraints(table, cfg.constraints)  # a new frame, even when every row is kept
    # Few copies of the table at once: a merge ranks up to execution.max_rows_in_memory wide rows, and hands
    # over its table (this reference is then the last). Columns added below go to `out` only.
    del table
    stale = [c for c in RANKING_COLUMNS if c in kept.columns]
    out = kept.drop(columns=stale) if stale else kept.copy(deep=False)
    del kept
    out.index = pd.RangeIndex(len(out))
    # the statistics of this table, as the streamed merge gathers them shard by shard (`mi.ranking.stats`)
    scorer, notes = Scorer.of(out, objectives, kappa=cfg.ucb_kappa, out_of_domain=cfg.out_of_domain)
    skipped += notes
    columns = scorer.columns(out)
    values = scorer.matrix(columns)
    fronts = pareto_ranks(values, scorer.maximise)
    with warnings.catch_warnings():  # a merged table comes in many blocks: adding five columns is still cheap
        warnings.simplefilter("ignore", pd.errors.PerformanceWarning)
        out["score"] = scorer.score(columns)
        if cfg.ucb_kappa is not None:
            out["ucb_score"] = scorer.ucb(columns)
        out["pareto_rank"] = fronts
        out["crowding_distance"] = crowding_distance(values, fronts)
        order = ranked_order(out[cfg.sort_by].to_numpy(dtype=float), fronts, out["id"].astype(str).to_numpy())
        out = out.iloc[order]
        out.index = pd.RangeIndex(len(out))
        out.insert(0, "rank", np.arange(1, len(out) + 1, dtype=np.int64))
    summary = {
        "rows_in": int(rows_in),
        "rows_kept": int(len(out)),
        "removed": removed,
        "skipped": skipped,
        "objectives": [o.column for o in scorer.objectives],
    }
    return out, summary
