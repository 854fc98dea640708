"""Evaluation metrics, and `mi evaluate` writing metrics, predictions and the two PNGs."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from mi.cli import main
from mi.errors import ConfigError
from mi.models.datasets import EXP_FORMATION_ENTHALPY, load_exp_formation_enthalpy
from mi.models.evaluate import (
    calibration_metrics,
    classification_metrics,
    fit_std_scale,
    parse_threshold,
    regression_metrics,
)

PNG = b"\x89PNG\r\n\x1a\n"


def test_regression_metrics_by_hand():
    m = regression_metrics(np.array([1.0, 2.0, 3.0, np.nan]), np.array([1.5, 2.0, 2.0, 7.0]))
    assert m["n"] == 3 and m["mae"] == pytest.approx(0.5) and m["rmse"] == pytest.approx(math.sqrt(1.25 / 3))
    assert m["r2"] == pytest.approx(1 - 1.25 / 2.0)
    assert regression_metrics(np.arange(5.0), np.arange(5.0) ** 3)["spearman"] == pytest.approx(1.0)
    assert math.isnan(regression_metrics(np.array([np.nan]), np.array([1.0]))["mae"])


def test_classification_metrics_and_daf():
    truth = np.array([0.0, 0.01, 0.1, 0.2])
    prediction = np.array([0.02, 0.2, 0.03, 0.3])
    m = classification_metrics(truth, prediction, "<=", 0.05)  # hits: rows 0, 1; predicted: rows 0, 2
    assert (m["precision"], m["recall"], m["f1"], m["prevalence"]) == (0.5, 0.5, 0.5, 0.5)
    assert m["daf"] == pytest.approx(1.0) and m["n_true_hits"] == 2 and m["n_predicted_hits"] == 2
    perfect = classification_metrics(truth, truth, "<=", 0.05)
    assert perfect["f1"] == 1.0 and perfect["daf"] == pytest.approx(2.0)
    assert math.isnan(classification_metrics(truth, prediction + 1, "<=", 0.05)["precision"])


def test_calibration_and_recalibration():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=20000)
    mean = np.zeros_like(truth)
    m = calibration_metrics(truth, mean, np.ones_like(truth))
    assert m["within_1sigma"] == pytest.approx(0.683, abs=0.01) and m["within_2sigma"] == pytest.approx(0.954, abs=0.01)
    scale = fit_std_scale(truth, mean, np.full_like(truth, 0.5))  # stds too small by two
    assert scale == pytest.approx(2.0, rel=0.03)
    assert fit_std_scale(truth[:3], mean[:3], np.ones(3)) == 1.0  # too few rows: leave it


def test_parse_threshold():
    assert parse_threshold("e_hull_eV_atom<=0.05") == ("e_hull_eV_atom", "<=", 0.05)
    assert parse_threshold(" gap > 1e-1 ") == ("gap", ">", 0.1)
    with pytest.raises(ConfigError, match="expected TARGET<=VALUE"):
        parse_threshold("e_hull = 0.05")


@pytest.fixture(scope="module")
def exp_table(tmp_path_factory):
    frame = load_exp_formation_enthalpy().sample(40, random_state=1)
    folder = tmp_path_factory.mktemp("eval")
    frame.to_csv(folder / "exp.csv", index=False)
    frame.rename(columns={EXP_FORMATION_ENTHALPY: "dH"}).to_csv(folder / "renamed.csv", index=False)
    return folder


def test_mi_evaluate_writes_metrics_predictions_and_plots(exp_table, capsys):
    out = exp_table / "out"
    code = main(["evaluate", "builtin:formation_enthalpy", str(exp_table / "exp.csv"), "--out", str(out),
                 "--threshold", f"{EXP_FORMATION_ENTHALPY}<=-1.0"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    target = metrics["targets"][EXP_FORMATION_ENTHALPY]
    assert target["n"] == 40 and target["mae"] < 0.5 and target["unit"] == "eV/atom"
    assert {"rmse", "r2", "spearman", "within_1sigma", "within_2sigma"} <= set(target)
    hits = target["thresholds"]["<=-1"]
    assert {"precision", "recall", "f1", "daf", "prevalence"} <= set(hits)
    predictions = pd.read_csv(out / "predictions.csv")
    assert len(predictions) == 40 and {f"{EXP_FORMATION_ENTHALPY}_pred", f"{EXP_FORMATION_ENTHALPY}_std"} <= set(predictions)
    for name in ("parity.png", "calibration.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000
    assert "MAE" in capsys.readouterr().out


def test_mi_evaluate_maps_columns_and_reports_bad_input(exp_table, capsys):
    out = exp_table / "renamed_out"
    args = ["evaluate", "builtin:formation_enthalpy", str(exp_table / "renamed.csv"), "--out", str(out)]
    assert main([*args, "--column", f"{EXP_FORMATION_ENTHALPY}=dH"]) == 0
    assert json.loads((out / "metrics.json").read_text())["targets"][EXP_FORMATION_ENTHALPY]["n"] == 40
    assert main(args) == 1  # the target column is absent and not mapped
    assert main([*args, "--column", f"{EXP_FORMATION_ENTHALPY}=dH", "--threshold", "nope<=1"]) == 1
    assert "not an evaluated target" in capsys.readouterr().err
