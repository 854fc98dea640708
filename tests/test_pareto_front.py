"""The first Pareto front without ranking the rest: the streamed merge's front, linear in the rows."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mi.ranking.pareto import pareto_front, pareto_ranks


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_the_front_is_pareto_rank_one(seed, k):
    rng = np.random.default_rng(seed)
    n = 1000  # several blocks
    values = rng.integers(0, 8, size=(n, k)).astype(float)  # ties
    values[rng.random((n, k)) < 0.05] = np.nan
    values[:7] = values[7:14]  # duplicate rows share a front
    maximise = list(rng.random(k) < 0.5)
    np.testing.assert_array_equal(pareto_front(values, maximise), pareto_ranks(values, maximise) == 1)


def test_continuous_values_and_an_empty_table():
    values = np.random.default_rng(7).normal(size=(3000, 4))
    np.testing.assert_array_equal(pareto_front(values, [True] * 4), pareto_ranks(values, [True] * 4) == 1)
    assert pareto_front(np.empty((0, 2)), [True, False]).shape == (0,)


def test_half_a_million_rows_in_seconds():
    # pareto_ranks compares every row with every row before it (O(n^2)); the front only with the front
    values = np.random.default_rng(0).normal(size=(500_000, 3))
    start = time.process_time()
    front = pareto_front(values, [True, False, True])
    assert time.process_time() - start < 30
    assert 1 <= front.sum() < 5000
    # spot check: no front row is dominated by a row of a random sample
    sample = values[np.random.default_rng(1).choice(len(values), 2000, replace=False)]
    v = values[front] * np.array([-1, 1, -1])
    s = sample * np.array([-1, 1, -1])
    dominated = ((s[:, None, :] <= v[None, :, :]).all(axis=2) & (s[:, None, :] < v[None, :, :]).any(axis=2)).any(axis=0)
    assert not dominated.any()
