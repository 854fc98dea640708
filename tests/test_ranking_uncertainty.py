"""Uncertainty-aware ranking: probabilistic constraints, the UCB score, optional columns."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mi.config import Constraint, Objective, RankingConfig
from mi.errors import ConfigError
from mi.ranking import apply_constraints, describe, probability_within, rank, ucb_score, weighted_score


def phi(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def _hull_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["a", "b", "c", "d", "e"],
            "e_hull_eV_atom": [0.0, 0.01, 0.06, 0.0, 0.02],
            "e_hull_eV_atom_std": [0.05, 0.05, 0.0, np.nan, 0.0],
        }
    )


def test_probability_within_by_hand():
    p = probability_within(np.array([0.0, 0.01, 0.06, 0.0]), np.array([0.05, 0.05, 0.0, np.nan]), None, 0.05)
    assert p[0] == pytest.approx(phi(1.0))  # 0.8413
    assert p[1] == pytest.approx(phi(0.8))  # 0.7881
    assert p[2] == 0.0  # std 0: the mean alone decides
    assert math.isnan(p[3])
    both = probability_within(np.array([1.0]), np.array([0.5]), 0.5, 2.0)
    assert both[0] == pytest.approx(phi(2.0) - phi(-1.0))


def test_probabilistic_constraint_keeps_rows_likely_within_bounds():
    c = Constraint(column="e_hull_eV_atom", max=0.05, probability=0.8)
    assert describe(c) == "P(e_hull_eV_atom <= 0.05) >= 0.8"
    kept, removed = apply_constraints(_hull_table(), [c])
    # a: 0.841 kept; b: 0.788 dropped; c: exact 0.06 dropped; d: no std, dropped; e: exact 0.02 kept
    assert kept["id"].tolist() == ["a", "e"]
    assert removed == {"P(e_hull_eV_atom <= 0.05) >= 0.8": 3}


def test_probabilistic_constraint_keep_missing_and_std_column():
    table = _hull_table().rename(columns={"e_hull_eV_atom_std": "sigma"})
    c = Constraint(column="e_hull_eV_atom", max=0.05, probability=0.8, std_column="sigma", keep_missing=True)
    kept, _ = apply_constraints(table, [c])
    assert kept["id"].tolist() == ["a", "d", "e"]


def test_probabilistic_constraint_without_a_std_column_is_a_config_error():
    table = _hull_table().drop(columns=["e_hull_eV_atom_std"])
    with pytest.raises(ConfigError, match=r"ranking.constraints\[0\].probability: .*'e_hull_eV_atom_std'"):
        apply_constraints(table, [Constraint(column="e_hull_eV_atom", max=0.05, probability=0.8)])


def test_constraint_config_checks():
    with pytest.raises(ValueError, match="only used with 'probability'"):
        Constraint(column="x", max=1, std_column="s")
    with pytest.raises(ValueError):
        Constraint(column="x", max=1, probability=1.5)
    with pytest.raises(ValueError, match="needs ucb_kappa"):
        RankingConfig(objectives=[Objective(column="x", direction="max")], sort_by="ucb_score")


def test_optional_constraint_and_objective_on_absent_columns_are_skipped():
    table = pd.DataFrame({"id": ["a", "b"], "cap": [1.0, 2.0]})
    cfg = RankingConfig(
        constraints=[Constraint(column="e_hull_eV_atom", max=0.05, probability=0.8, required=False)],
        objectives=[
            Objective(column="cap", direction="max"),
            Objective(column="log10_conductivity_S_cm", direction="max", weight=5, required=False),
        ],
    )
    ranked, summary = rank(table, cfg)
    assert ranked["id"].tolist() == ["b", "a"] and ranked["score"].tolist() == [1.0, 0.0]
    assert len(summary["skipped"]) == 2 and summary["objectives"] == ["cap"]
    assert "log10_conductivity_S_cm" in summary["skipped"][1]
    with pytest.raises(ConfigError, match="objectives"):  # a required one still fails loudly
        rank(table, RankingConfig(objectives=[Objective(column="absent", direction="max")]))


def test_an_objective_without_any_value_is_left_out_of_the_score():
    table = pd.DataFrame({"id": ["a", "b"], "cap": [1.0, 2.0], "energy": [np.nan, np.nan]})
    cfg = RankingConfig(objectives=[Objective(column="cap", direction="max"), Objective(column="energy", direction="max")])
    ranked, summary = rank(table, cfg)
    assert ranked["score"].tolist() == [1.0, 0.0]  # not [0.5, 0.0]: the empty objective takes no weight
    assert summary["objectives"] == ["cap"] and "energy" in summary["skipped"][0]


def test_ucb_score_by_hand():
    # a: sure 1.0; b: 0.8 +- 0.2. Optimistic values (kappa 2): a 1.0, b 1.2 -> minmax a 0, b 1.
    # cost (exact, no std column) is min: a 2, b 1 -> a 0, b 1. Weights 3:1.
    table = pd.DataFrame({"id": ["a", "b"], "cap": [1.0, 0.8], "cap_std": [0.0, 0.2], "cost": [2.0, 1.0]})
    objectives = [Objective(column="cap", direction="max", weight=3), Objective(column="cost", direction="min")]
    np.testing.assert_allclose(weighted_score(table, objectives), [0.75, 0.25])
    np.testing.assert_allclose(ucb_score(table, objectives, 2.0), [0.0, 1.0])
    np.testing.assert_allclose(ucb_score(table, objectives, 0.0), weighted_score(table, objectives))


def test_ucb_lowers_a_min_objective_and_can_order_the_ranking():
    table = pd.DataFrame({"id": ["a", "b"], "h": [0.0, 0.1], "h_std": [0.0, 0.2]})
    objectives = [Objective(column="h", direction="min")]
    # optimistic h: a 0.0, b 0.1 - 1 x 0.2 = -0.1 -> b is better
    np.testing.assert_allclose(ucb_score(table, objectives, 1.0), [0.0, 1.0])
    by_score, _ = rank(table, RankingConfig(objectives=objectives, ucb_kappa=1.0))
    by_ucb, _ = rank(table, RankingConfig(objectives=objectives, ucb_kappa=1.0, sort_by="ucb_score"))
    assert by_score["id"].tolist() == ["a", "b"] and by_ucb["id"].tolist() == ["b", "a"]
    assert "ucb_score" in by_score.columns
    plain, _ = rank(table, RankingConfig(objectives=objectives))
    assert "ucb_score" not in plain.columns  # only with ucb_kappa
