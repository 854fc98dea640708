"""One ranking core (`mi.ranking.stats`): the in-memory ranking, the streamed merge and the acquisition
functions score with the same statistics, normalisation and sort key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mi.config import Objective, RankingConfig
from mi.ranking import rank
from mi.ranking.acquisition import acquisition_values, score_std
from mi.ranking.stats import ObjectiveStats, normalise

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("minmax", "rank", "zscore")


def _table(n: int = 60, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    e = rng.normal(3.5, 0.4, n)
    e[[4, 17]] = np.nan
    return pd.DataFrame({
        "id": [f"c{i:03d}" for i in range(n)],
        "voltage_V": e,
        "voltage_V_std": rng.uniform(0.01, 0.3, n),
        "cost_usd_kg": rng.integers(5, 40, n).astype(float),  # ties
    })


def _objectives(method: str) -> list[Objective]:
    return [
        Objective(column="voltage_V", direction="max", normalise=method),
        Objective(column="cost_usd_kg", direction="min", normalise=method, weight=0.5),
    ]


def test_statistics_merged_part_by_part_equal_those_of_the_whole_column():
    values = _table(500)["voltage_V"].to_numpy()
    for method in METHODS:
        whole = ObjectiveStats.of(values, method)
        parts = ObjectiveStats(method)
        for part in np.array_split(values, 7):
            parts.add(part)
        parts.close()
        finite = values[np.isfinite(values)]
        assert (parts.n, parts.lo, parts.hi) == (whole.n, whole.lo, whole.hi) == (498, finite.min(), finite.max())
        assert parts.mean == pytest.approx(finite.mean(), rel=1e-14)
        # one part is numpy's own mean and population std, to the bit
        assert whole.mean == finite.mean() and np.sqrt(whole.m2 / whole.n) == finite.std()
        assert parts.m2 == pytest.approx(whole.m2, rel=1e-12)
        np.testing.assert_allclose(parts.normalise(values, "max"), whole.normalise(values, "max"), rtol=0, atol=1e-12)


def test_a_column_with_one_distinct_value_scores_half_and_a_missing_value_zero():
    for method in METHODS:
        np.testing.assert_array_equal(normalise(np.array([0.1, 0.1, 0.1, np.nan]), "min", method), [0.5, 0.5, 0.5, 0.0])
        np.testing.assert_array_equal(normalise(np.array([np.nan, np.nan]), "max", method), [0.0, 0.0])


@pytest.mark.parametrize("method", METHODS)
def test_acquisition_scores_use_the_ranking_normalisation(method):
    table = _table()
    objectives = _objectives(method)
    ranked, _ = rank(table, RankingConfig(objectives=objectives, ucb_kappa=1.5))
    by_id = ranked.set_index("id").loc[table["id"]]
    # greedy and UCB acquisition are the ranking's score and UCB score, to the bit
    np.testing.assert_array_equal(acquisition_values(table, objectives, "greedy"), by_id["score"].to_numpy())
    np.testing.assert_array_equal(acquisition_values(table, objectives, "ucb", kappa=1.5), by_id["ucb_score"].to_numpy())
    # EI's score std moves each mean along the same map: at the column's own (distinct) values the
    # continued map is the normalisation itself
    voltage = table["voltage_V"].to_numpy()
    stats = ObjectiveStats.of(voltage, method)
    ok = np.isfinite(voltage)
    np.testing.assert_allclose(stats.extended(voltage[ok], "max"), normalise(voltage, "max", method)[ok], rtol=0, atol=1e-12)
    # a std that keeps every mean between its neighbours' values moves the score by the weight (2/3) times
    # the change of the normalised value
    tiny = table.assign(voltage_V_std=1e-9)
    step = stats.extended(voltage[ok] + 1e-9, "max") - stats.extended(voltage[ok], "max")
    np.testing.assert_allclose(score_std(tiny, objectives)[ok], (2 / 3) * step, rtol=1e-9, atol=1e-18)
    assert (score_std(tiny, objectives)[ok] > 0).sum() >= ok.sum() - 1  # ``rank`` is flat past the largest


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["demo", "cathode", "solid_electrolyte"])
def test_presets_rank_alike_in_memory_and_streamed(tmp_path, preset):
    """The ranked.csv of a preset (in memory) against the streamed merge of the same run's shards: the same
    rows at the same ranks with the same scores, to the bit."""
    from mi.config import load_config
    from mi.execution.merge import merge_shards
    from mi.pipeline import screen

    cfg = load_config(
        ROOT / "configs" / f"{preset}.yaml",
        ["export.report=false", "execution.workers=1", "execution.chunk_size=4", f"features.cache_dir={tmp_path / 'cache'}"],
    )
    result = screen(cfg, out=tmp_path / "run", progress=False)
    ranked = pd.read_csv(result.run_dir / "ranked.csv", float_precision="round_trip")
    shards = sorted((result.run_dir / "shards").glob("*.parquet"))
    assert len(ranked) >= 5 and len(shards) >= 3
    streamed, summary = merge_shards(shards, cfg.ranking, rows=len(ranked), max_rows_in_memory=2)
    assert summary["streamed"]
    want = ranked.set_index("id").loc[streamed["id"]].reset_index()
    assert streamed["rank"].tolist() == want["rank"].tolist()
    assert streamed["rank"].head(cfg.ranking.top_k).tolist() == list(range(1, cfg.ranking.top_k + 1))
    assert streamed["pareto_rank"].tolist() == want["pareto_rank"].tolist()
    np.testing.assert_array_equal(streamed["score"].to_numpy(), want["score"].to_numpy())


def test_rank_leaves_its_table_as_it_was():
    """`rank` works on its own rows (the merge hands its table over to save a copy): the caller's table,
    with a stale ``score`` column or without one, is not changed."""
    for table in (_table(), _table().assign(score=1.0)):
        before = table.copy()
        ranked, _ = rank(table, RankingConfig(objectives=_objectives("minmax"), top_k=5))
        pd.testing.assert_frame_equal(table, before)
        assert list(ranked.columns[:1]) == ["rank"] and ranked["score"].notna().all()
        assert len(ranked) == len(table) and ranked.index.equals(pd.RangeIndex(len(table)))
