"""Ranking: constraints, a weighted score and Pareto fronts over table columns.

Ranking knows columns, not how they were computed: predicted and exact properties look alike here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mi.config import RankingConfig
from mi.ranking.constraints import apply_constraints, describe, numeric_column
from mi.ranking.pareto import crowding_distance, pareto_ranks
from mi.ranking.score import normalise, weighted_score

__all__ = [
    "apply_constraints",
    "crowding_distance",
    "describe",
    "normalise",
    "pareto_ranks",
    "rank",
    "weighted_score",
]


def rank(table: pd.DataFrame, cfg: RankingConfig) -> tuple[pd.DataFrame, dict]:
    """Constrain, score and order candidates.

    `table` needs an ``id`` column. Returns the kept rows with ``score`` (weighted, 1 = best),
    ``pareto_rank`` (1 = front, over the same objectives) and ``rank`` (1..n, first column), sorted by
    score descending, then pareto_rank ascending, then id ascending; and a summary
    ``{"rows_in", "rows_kept", "removed": {constraint: rows removed}}``.
    """
    if "id" not in table.columns:
        raise ValueError("the table to rank needs an 'id' column")
    # Check every objective column before anything else, so the first error is a config error.
    for i, objective in enumerate(cfg.objectives):
        numeric_column(table, objective.column, f"ranking.objectives[{i}].column")
    kept, removed = apply_constraints(table, cfg.constraints)
    out = kept.reset_index(drop=True).drop(columns=["rank", "score", "pareto_rank"], errors="ignore")
    score = weighted_score(out, cfg.objectives)
    values = np.column_stack(
        [numeric_column(out, o.column, f"ranking.objectives[{i}].column") for i, o in enumerate(cfg.objectives)]
    )
    fronts = pareto_ranks(values, [o.direction == "max" for o in cfg.objectives])
    out["score"] = score
    out["pareto_rank"] = fronts
    # Scores rounded to 12 digits for ordering, so summation noise cannot reorder equal scores.
    ids = out["id"].astype(str).to_numpy()
    order = np.lexsort((ids, fronts, -np.round(score, 12)))
    out = out.iloc[order].reset_index(drop=True)
    out.insert(0, "rank", np.arange(1, len(out) + 1, dtype=np.int64))
    summary = {"rows_in": int(len(table)), "rows_kept": int(len(out)), "removed": removed}
    return out, summary
