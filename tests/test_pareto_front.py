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


def _ranks_by_chains(values: np.ndarray, maximise) -> np.ndarray:
    """The former `pareto_ranks` (before ENS): each block of rows is compared with every row before it, and
    a row's front is the longest dominating chain ending at it, O(n^2 k). Rows and objectives: at least one."""
    from mi.ranking import pareto

    n = len(values)
    order, v = pareto._visit_order(pareto._checked(values, maximise), maximise)
    ranks = np.zeros(n, dtype=np.int64)
    for start in range(0, n, pareto._BLOCK):
        stop = min(start + pareto._BLOCK, n)
        block = v[start:stop]
        base = np.ones(stop - start, dtype=np.int64)
        if start:
            dom = pareto._dominates(v[:start], block)  # (start, b)
            has = dom.any(axis=0)
            if has.any():
                best = np.where(dom[:, has], ranks[:start, None], 0).max(axis=0)
                base[has] = best + 1
        inner = pareto._dominates(block, block)
        for i in range(stop - start):
            above = inner[:i, i]
            if above.any():
                base[i] = max(base[i], ranks[start : start + i][above].max() + 1)
            ranks[start + i] = base[i]
    out = np.empty(n, dtype=np.int64)
    out[order] = ranks
    return out


@pytest.mark.parametrize("block", [1, 5, 64, 1024])
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_ens_ranks_are_the_longest_chain_ranks(monkeypatch, block, seed, k):
    from mi.ranking import pareto

    rng = np.random.default_rng(seed)
    n = 1500 if block > 1 else 200
    values = rng.integers(0, 6 + 4 * seed, size=(n, k)).astype(float)  # ties
    values[rng.random((n, k)) < 0.05] = np.nan
    values[rng.random((n, k)) < 0.01] = np.inf
    values[:9] = values[9:18]  # duplicate rows share a front
    if seed == 2:
        values[: n // 2] = rng.normal(size=(n // 2, k))  # continuous values too
    maximise = list(rng.random(k) < 0.5)
    monkeypatch.setattr(pareto, "_ENS_BLOCK", block)
    ranks = pareto_ranks(values, maximise)
    np.testing.assert_array_equal(ranks, _ranks_by_chains(values, maximise))
    assert ranks.max() > 1


def test_ens_ranks_on_preset_objectives():
    """The presets' objectives and directions, over values shaped like their columns (rounded, correlated,
    with gaps): the ranks of the ranking core."""
    from pathlib import Path

    from mi.config import load_config
    from mi.ranking import pareto

    configs = Path(__file__).resolve().parents[1] / "configs"
    for name in ("cathode", "solid_electrolyte"):
        cfg = load_config(configs / f"{name}.yaml")
        maximise = [o.direction == "max" for o in cfg.ranking.objectives]
        rng = np.random.default_rng(len(name))
        base = rng.normal(size=(6000, 1))
        values = np.round(0.7 * base + rng.normal(size=(6000, len(maximise))), 1)
        values[rng.random(values.shape) < 0.03] = np.nan
        np.testing.assert_array_equal(pareto_ranks(values, maximise), _ranks_by_chains(values, maximise))


def test_ens_is_not_quadratic_on_many_fronts():
    values = np.random.default_rng(0).normal(size=(100_000, 3))
    start = time.process_time()
    ranks = pareto_ranks(values, [True, False, True])
    assert time.process_time() - start < 30  # every row against every earlier row: over 60 CPU-s
    assert ranks.max() > 50
