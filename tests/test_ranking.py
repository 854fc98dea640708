"""Ranking: constraints, Pareto fronts, normalised scores and deterministic ordering."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mi.config import Constraint, Objective, RankingConfig
from mi.errors import ConfigError
from mi.ranking import apply_constraints, crowding_distance, pareto_ranks, rank, split_by_constraints, weighted_score
from mi.ranking.stats import normalise


# --- Pareto ---------------------------------------------------------------------------------------


def brute_force_fronts(values: np.ndarray, maximise: list[bool]) -> np.ndarray:
    """Textbook non-dominated sorting: peel off the rows no remaining row dominates, O(n^2 k) per front."""
    v = np.where(np.array(maximise), -values, values)
    v = np.where(np.isnan(v), np.inf, v)  # NaN = worst; no test value is +-inf
    n = len(v)
    ranks = np.zeros(n, dtype=int)
    remaining = set(range(n))
    front = 0
    while remaining:
        front += 1
        current = [
            i
            for i in remaining
            if not any(np.all(v[j] <= v[i]) and np.any(v[j] < v[i]) for j in remaining if j != i)
        ]
        for i in current:
            ranks[i] = front
        remaining -= set(current)
    return ranks


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [1, 2, 3])
def test_pareto_matches_brute_force_on_random_data_with_ties_and_nan(seed, k):
    rng = np.random.default_rng(seed)
    n = 300  # > one block of 256, so block-to-block comparisons are exercised
    values = rng.integers(0, 6, size=(n, k)).astype(float)  # few distinct values: many ties
    values[rng.random((n, k)) < 0.05] = np.nan
    values[:5] = values[5:10]  # exact duplicate rows
    maximise = list(rng.random(k) < 0.5)
    np.testing.assert_array_equal(pareto_ranks(values, maximise), brute_force_fronts(values, maximise))


finite_or_nan = st.one_of(st.integers(-3, 3).map(float), st.just(math.nan))


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 4).flatmap(
        lambda k: st.tuples(
            st.lists(st.lists(finite_or_nan, min_size=k, max_size=k), min_size=0, max_size=25),
            st.lists(st.booleans(), min_size=k, max_size=k),
        )
    )
)
def test_pareto_matches_brute_force_hypothesis(data):
    rows, maximise = data
    values = np.array(rows, dtype=float).reshape(len(rows), len(maximise))
    np.testing.assert_array_equal(pareto_ranks(values, maximise), brute_force_fronts(values, maximise))


def test_pareto_small_example_by_hand():
    # maximise both: (3,3) dominates all; (1,2) and (2,1) trade off; (0,0) is last.
    values = np.array([[1, 2], [3, 3], [2, 1], [0, 0], [np.nan, 5]], dtype=float)
    # (nan, 5): NaN is the worst x, but its y of 5 beats everyone, so nothing dominates it.
    assert pareto_ranks(values, [True, True]).tolist() == [2, 1, 2, 3, 1]
    assert pareto_ranks(values[:4], [False, False]).tolist() == [2, 3, 2, 1]


def test_pareto_is_fast_for_ten_thousand_rows():
    values = np.random.default_rng(0).normal(size=(10_000, 3))
    ranks = pareto_ranks(values, [True, False, True])
    assert ranks.min() == 1 and len(ranks) == 10_000


def test_pareto_rejects_mismatched_directions():
    with pytest.raises(ValueError):
        pareto_ranks(np.zeros((3, 2)), [True])


def test_crowding_distance_per_front():
    values = np.array([[0.0, 4.0], [1.0, 2.0], [2.0, 1.0], [4.0, 0.0], [9.0, 9.0]])
    ranks = np.array([1, 1, 1, 1, 2])
    cd = crowding_distance(values, ranks)
    assert np.isinf(cd[[0, 3, 4]]).all()
    # row 1: x neighbours 0 and 2 over range 4 -> 0.5; y neighbours 1 and 4 over range 4 -> 0.75
    assert cd[1] == pytest.approx(0.5 + 0.75)
    assert cd[2] == pytest.approx(0.75 + 0.5)


def brute_force_crowding(values: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Textbook NSGA-II crowding distance (Deb et al. 2002), one row at a time: per objective, sort the
    front, give the two extremes infinity and every other row the gap between its neighbours over the
    front's range."""
    out = np.zeros(len(values))
    for front in set(ranks.tolist()):
        members = [i for i in range(len(values)) if ranks[i] == front]
        if len(members) <= 2:
            for i in members:
                out[i] = math.inf
            continue
        for c in range(values.shape[1]):
            ordered = sorted(members, key=lambda i: values[i, c])
            lo, hi = values[ordered[0], c], values[ordered[-1], c]
            out[ordered[0]] = out[ordered[-1]] = math.inf
            for before, i, after in zip(ordered, ordered[1:], ordered[2:]):
                out[i] += (values[after, c] - values[before, c]) / (hi - lo)
    return out


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [2, 3])
def test_crowding_distance_matches_brute_force_on_random_data(seed, k):
    rng = np.random.default_rng(100 + seed)
    values = rng.normal(size=(120, k))  # continuous: no ties, so the sort order is unambiguous
    maximise = list(rng.random(k) < 0.5)
    ranks = pareto_ranks(values, maximise)
    assert len(set(ranks.tolist())) > 3  # several fronts, some with more than two rows
    np.testing.assert_allclose(crowding_distance(values, ranks), brute_force_crowding(values, ranks))


def test_rank_writes_the_crowding_distance_of_each_front():
    rng = np.random.default_rng(7)
    table = pd.DataFrame({"id": [f"m{i:02d}" for i in range(40)], "a": rng.normal(size=40), "b": rng.normal(size=40)})
    cfg = RankingConfig(objectives=[Objective(column="a", direction="max"), Objective(column="b", direction="min")])
    ranked, _ = rank(table, cfg)
    values = ranked[["a", "b"]].to_numpy()
    expected = brute_force_crowding(values, ranked["pareto_rank"].to_numpy())
    np.testing.assert_allclose(ranked["crowding_distance"].to_numpy(), expected)


# --- constraints ----------------------------------------------------------------------------------


def _table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["a", "b", "c", "d", "e"],
            "formation_enthalpy_eV_atom": [-1.0, 0.0, 0.5, np.nan, -0.2],
            "density": [2.0, 3.0, np.nan, 4.0, 10.0],
        }
    )


def test_constraints_drop_out_of_bounds_and_missing_and_count_each():
    table = _table()
    kept, removed = apply_constraints(
        table,
        [Constraint(column="formation_enthalpy_eV_atom", max=0), Constraint(column="density", min=1, max=5)],
    )
    assert kept["id"].tolist() == ["a", "b"]
    assert removed == {"formation_enthalpy_eV_atom <= 0": 2, "1 <= density <= 5": 1}
    assert sum(removed.values()) == len(table) - len(kept)


def test_removed_rows_name_the_first_constraint_that_dropped_each_and_its_value():
    table = _table()
    table.loc[4, "formation_enthalpy_eV_atom"] = 0.3  # e fails both: the first constraint takes it
    constraints = [Constraint(column="formation_enthalpy_eV_atom", max=0), Constraint(column="density", min=1, max=5)]
    kept, removed, rows = split_by_constraints(table, constraints)
    assert removed == apply_constraints(table, constraints)[1]
    assert kept["id"].tolist() == ["a", "b"]
    assert rows["id"].tolist() == ["c", "d", "e"]
    assert rows["constraint"].tolist() == ["formation_enthalpy_eV_atom <= 0"] * 3
    assert rows["value"].tolist()[0::2] == [0.5, 0.3] and np.isnan(rows["value"][1])  # d: missing
    assert len(rows) == sum(removed.values())
    # a probabilistic constraint also gives the std and the probability that decided
    hull = pd.DataFrame({"id": ["x", "y"], "e_hull_eV_atom": [0.0, 0.2], "e_hull_eV_atom_std": [0.05, 0.05]})
    _, _, rows = split_by_constraints(hull, [Constraint(column="e_hull_eV_atom", max=0.05, probability=0.8)])
    assert rows["id"].tolist() == ["y"] and rows["std"][0] == 0.05 and rows["probability"][0] < 0.01


def test_constraints_keep_missing():
    kept, removed = apply_constraints(
        _table(), [Constraint(column="formation_enthalpy_eV_atom", max=0, keep_missing=True)]
    )
    assert kept["id"].tolist() == ["a", "b", "d", "e"]
    assert list(removed.values()) == [1]


def test_constraints_min_only_and_bounds_are_inclusive():
    kept, removed = apply_constraints(_table(), [Constraint(column="density", min=3)])
    assert kept["id"].tolist() == ["b", "d", "e"]
    assert removed == {"density >= 3": 2}


def test_constraint_on_unknown_column_names_key_and_columns():
    with pytest.raises(ConfigError) as err:
        apply_constraints(_table(), [Constraint(column="density", min=0), Constraint(column="nope", max=1)])
    message = str(err.value)
    assert "ranking.constraints[1].column" in message
    assert "nope" in message and "formation_enthalpy_eV_atom" in message and "density" in message


def test_constraint_on_text_column_is_a_config_error():
    with pytest.raises(ConfigError, match=r"ranking.constraints\[0\].column.*not numeric"):
        apply_constraints(_table(), [Constraint(column="id", min=0)])


# --- scores ---------------------------------------------------------------------------------------


def test_minmax_by_hand():
    x = np.array([1.0, 3.0, 2.0, np.nan])
    np.testing.assert_allclose(normalise(x, "max", "minmax"), [0.0, 1.0, 0.5, 0.0])
    np.testing.assert_allclose(normalise(x, "min", "minmax"), [1.0, 0.0, 0.5, 0.0])
    np.testing.assert_allclose(normalise(np.array([2.0, 2.0, np.nan]), "max", "minmax"), [0.5, 0.5, 0.0])


def test_rank_percentile_by_hand():
    x = np.array([10.0, 30.0, 20.0, 20.0])  # average ranks 1, 4, 2.5, 2.5 -> (r-1)/3
    np.testing.assert_allclose(normalise(x, "max", "rank"), [0.0, 1.0, 0.5, 0.5])
    np.testing.assert_allclose(normalise(x, "min", "rank"), [1.0, 0.0, 0.5, 0.5])


def test_zscore_by_hand():
    x = np.array([1.0, 2.0, 3.0])  # mean 2, population std sqrt(2/3)
    z = (x - 2.0) / math.sqrt(2.0 / 3.0)
    phi = np.array([0.5 * (1 + math.erf(v / math.sqrt(2))) for v in z])
    np.testing.assert_allclose(normalise(x, "max", "zscore"), phi)
    np.testing.assert_allclose(normalise(x, "min", "zscore"), phi[::-1])
    np.testing.assert_allclose(normalise(np.array([4.0, 4.0]), "min", "zscore"), [0.5, 0.5])


def test_weighted_score_by_hand():
    table = pd.DataFrame({"cap": [100.0, 200.0, 300.0, np.nan], "cost": [4.0, 1.0, 2.0, 1.0]})
    objectives = [
        Objective(column="cap", direction="max", weight=3.0),
        Objective(column="cost", direction="min", weight=1.0),
    ]
    cap = np.array([0.0, 0.5, 1.0, 0.0])
    cost = np.array([0.0, 1.0, 2 / 3, 1.0])
    np.testing.assert_allclose(weighted_score(table, objectives), 0.75 * cap + 0.25 * cost)


def test_all_zero_weights_score_zero():
    table = pd.DataFrame({"cap": [1.0, 2.0]})
    score = weighted_score(table, [Objective(column="cap", direction="max", weight=0)])
    assert score.tolist() == [0.0, 0.0]


def test_objective_on_unknown_column_names_key():
    with pytest.raises(ConfigError, match=r"ranking.objectives\[1\].column.*'missing'.*available columns"):
        weighted_score(
            _table(),
            [Objective(column="density", direction="max"), Objective(column="missing", direction="min")],
        )


# --- rank -----------------------------------------------------------------------------------------


def test_rank_orders_by_score_then_pareto_then_id():
    table = pd.DataFrame(
        {
            "id": ["z", "b", "a", "c", "x"],
            "cap": [1.0, 1.0, 1.0, 3.0, 2.0],
            "cost": [1.0, 1.0, 1.0, 1.0, np.nan],
            "h": [0.0, 0.0, 0.0, 0.0, 1.0],
        }
    )
    cfg = RankingConfig(
        constraints=[Constraint(column="h", max=0.5)],
        objectives=[
            Objective(column="cap", direction="max"),
            Objective(column="cost", direction="min", weight=0),
        ],
    )
    ranked, summary = rank(table, cfg)
    assert ranked["id"].tolist() == ["c", "a", "b", "z"]  # equal rows ordered by id
    assert ranked["rank"].tolist() == [1, 2, 3, 4]
    assert list(ranked.columns[:1]) == ["rank"]
    assert ranked["pareto_rank"].tolist() == [1, 2, 2, 2]
    assert summary == {"rows_in": 5, "rows_kept": 4, "removed": {"h <= 0.5": 1}, "skipped": [], "objectives": ["cap", "cost"]}


def test_rank_breaks_equal_scores_by_pareto_rank():
    # Equal weighted scores (0.5 each), but row "b" is dominated by "a" when cost is a 0-weight objective.
    table = pd.DataFrame({"id": ["b", "a", "c"], "cap": [1.0, 1.0, 1.0], "cost": [2.0, 1.0, 3.0]})
    cfg = RankingConfig(
        objectives=[Objective(column="cap", direction="max"), Objective(column="cost", direction="min", weight=0)]
    )
    ranked, _ = rank(table, cfg)
    assert ranked["id"].tolist() == ["a", "b", "c"]
    assert ranked["pareto_rank"].tolist() == [1, 2, 3]


def test_rank_is_independent_of_input_row_order():
    rng = np.random.default_rng(3)
    table = pd.DataFrame(
        {"id": [f"m{i:03d}" for i in range(200)], "a": rng.integers(0, 4, 200), "b": rng.normal(size=200)}
    )
    cfg = RankingConfig(
        objectives=[
            Objective(column="a", direction="max", normalise="rank"),
            Objective(column="b", direction="min", normalise="zscore", weight=0.5),
        ]
    )
    first, _ = rank(table, cfg)
    second, _ = rank(table.sample(frac=1.0, random_state=1), cfg)
    pd.testing.assert_frame_equal(first, second)


def test_rank_unknown_objective_is_config_error():
    cfg = RankingConfig(objectives=[Objective(column="capacity", direction="max")])
    with pytest.raises(ConfigError, match=r"ranking.objectives\[0\].column"):
        rank(pd.DataFrame({"id": ["a"], "cap": [1.0]}), cfg)


def test_rank_with_everything_removed():
    cfg = RankingConfig(
        constraints=[Constraint(column="cap", min=10)], objectives=[Objective(column="cap", direction="max")]
    )
    ranked, summary = rank(pd.DataFrame({"id": ["a", "b"], "cap": [1.0, 2.0]}), cfg)
    assert len(ranked) == 0 and {"rank", "score", "pareto_rank", "crowding_distance"} <= set(ranked.columns)
    assert summary["rows_kept"] == 0
