"""Active learning: acquisition functions, the table labeller, and `mi loop` end to end on a tiny pool."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from pymatgen.core import Composition

from mi.candidates.base import Candidate, composition_hash
from mi.cli import main
from mi.config import Constraint, Objective, load_loop_config
from mi.errors import ConfigError
from mi.oracle.table import TableLabeller
from mi.ranking.acquisition import (
    acquisition_values,
    expected_improvement,
    feasible,
    score_std,
    select_batch,
    ucb,
)
from mi.ranking.stats import weighted_score

MAX_E = Objective(column="e", direction="max")
MIN_E = Objective(column="e", direction="min")


def candidate(cid: str, formula: str) -> Candidate:
    composition = Composition(formula)
    return Candidate(cid, "test", cid, composition, None, composition_hash(composition))


# --- acquisition ------------------------------------------------------------------------------------


def _equal_means() -> pd.DataFrame:
    return pd.DataFrame({"id": ["lo", "hi", "ref"], "e": [1.0, 1.0, 0.0], "e_std": [0.1, 0.5, 0.0]})


@pytest.mark.parametrize("objective", [MAX_E, MIN_E])
def test_ucb_prefers_the_uncertain_candidate_at_equal_mean(objective):
    table = _equal_means()
    if objective.direction == "min":
        table["e"] = -table["e"]
    values = ucb(table, [objective], kappa=1.0)
    assert values[1] > values[0]
    assert ucb(table, [objective], kappa=0.0)[0] == pytest.approx(weighted_score(table, [objective])[0])
    assert select_batch(table, values, 1) == ["hi"]
    greedy = acquisition_values(table, [objective], "greedy")
    assert greedy[0] == greedy[1]


def test_expected_improvement_by_hand_and_its_properties():
    # gain 0.5, std 1: EI = 0.5 Phi(0.5) + phi(0.5)
    phi = math.exp(-0.125) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + math.erf(0.5 / math.sqrt(2)))
    assert expected_improvement(np.array([1.5]), np.array([1.0]), 1.0)[0] == pytest.approx(0.5 * cdf + phi)
    mean = np.linspace(-1, 1, 9)
    ei = expected_improvement(mean, np.full(9, 0.3), 0.2)
    assert (ei >= 0).all() and (np.diff(ei) > 0).all()  # non-negative, increasing in the mean
    by_std = expected_improvement(np.zeros(5), np.array([0.0, 0.1, 0.2, 0.5, 1.0]), 0.2)
    assert by_std[0] == 0.0 and (np.diff(by_std) > 0).all()  # no std, no chance below the best
    assert expected_improvement(np.array([0.7]), np.array([0.0]), 0.2)[0] == pytest.approx(0.5)
    assert expected_improvement(np.array([0.7]), np.array([0.0]), 0.2, xi=0.1)[0] == pytest.approx(0.4)


def test_ei_on_the_score_uses_the_best_label_and_the_score_std():
    table = pd.DataFrame(
        {
            "id": ["label_best", "label", "sure", "unsure"],
            "e": [1.0, 0.0, 0.8, 0.8],
            "e_std": [0.0, 0.0, 0.01, 0.3],
        }
    )
    labelled = np.array([True, True, False, False])
    std = score_std(table, [MAX_E])
    # minmax over [0, 1]: the score moves by the std itself
    assert std == pytest.approx([0.0, 0.0, 0.01, 0.3])
    ei = acquisition_values(table, [MAX_E], "ei", labelled=labelled)
    assert ei[3] > ei[2] > 0
    # a better incumbent leaves less to improve
    assert (acquisition_values(table, [MAX_E], "ei", labelled=np.array([False, True, False, False]))[2:] > ei[2:]).all()


def test_score_std_weights_objectives_and_ignores_exact_columns():
    table = pd.DataFrame(
        {"id": ["a", "b", "c"], "e": [0.0, 1.0, 2.0], "e_std": [0.2, 0.2, 0.2], "cost": [3.0, 1.0, 2.0]}
    )
    objectives = [MAX_E, Objective(column="cost", direction="min", weight=3.0)]
    # e spans 2: a std of 0.2 moves its normalised value by 0.1, at weight 1/4; cost has no std
    assert score_std(table, objectives) == pytest.approx([0.025] * 3)


def test_random_acquisition_is_seeded_and_select_batch_prefers_feasible_rows():
    table = pd.DataFrame({"id": list("abcdef"), "e": [5, 4, 3, 2, 1, 0], "e_std": [0.1] * 6})
    first, again = (acquisition_values(table, [MAX_E], "random", seed=3) for _ in range(2))
    assert (first == again).all() and not (first == acquisition_values(table, [MAX_E], "random", seed=4)).all()
    ok = feasible(table, [Constraint(column="e", max=2.5)])
    assert ok.tolist() == [False, False, False, True, True, True]
    values = acquisition_values(table, [MAX_E], "greedy")
    assert select_batch(table, values, 2, preferred=ok) == ["d", "e"]
    eligible = np.array([True] * 5 + [False])
    assert select_batch(table, values, 10, preferred=ok, eligible=eligible) == ["d", "e", "a", "b", "c"]
    with pytest.raises(ValueError, match="unknown acquisition"):
        acquisition_values(table, [MAX_E], "thompson")


# --- the table labeller -----------------------------------------------------------------------------


@pytest.fixture
def label_table(tmp_path: Path) -> Path:
    path = tmp_path / "labels.csv"
    pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "formula": ["LiFePO4", "Li2O", "Fe2O3", "LiFePO4"],
            "e_hull": [0.0, 0.01, np.nan, 0.2],
        }
    ).to_csv(path, index=False)
    return path


def test_table_labeller_by_id_and_failures(label_table):
    labeller = TableLabeller(label_table, {"e_hull_eV_atom": "e_hull"}, {"e_hull_eV_atom": "eV/atom"})
    assert labeller.targets == ["e_hull_eV_atom"] and labeller.units == {"e_hull_eV_atom": "eV/atom"}
    frame, failures = labeller.label(
        [candidate("b", "Li2O"), candidate("zz", "LiCoO2"), candidate("c", "Fe2O3"), candidate("d", "LiFePO4")]
    )
    assert frame.index.tolist() == ["b", "d"]
    assert frame["e_hull_eV_atom"].tolist() == pytest.approx([0.01, 0.2])
    reasons = {f.id: f.reason for f in failures}
    assert set(reasons) == {"zz", "c"}
    assert "'zz' is not in the label table" in reasons["zz"]
    assert "no value" in reasons["c"]
    assert all(f.stage == "label" for f in failures)
    assert labeller.provenance()["sha256"].startswith("sha256:")


def test_table_labeller_by_formula_takes_the_lowest_polymorph(label_table):
    labeller = TableLabeller(label_table, {"e_hull_eV_atom": "e_hull"}, match="formula")
    frame, failures = labeller.label([candidate("x", "Li2Fe2P2O8"), candidate("y", "CoO")])
    assert frame.loc["x", "e_hull_eV_atom"] == 0.0  # LiFePO4 twice: 0.0 and 0.2
    assert [f.id for f in failures] == ["y"] and "formula CoO" in failures[0].reason
    mean = TableLabeller(label_table, {"e_hull_eV_atom": "e_hull"}, match="formula", duplicates="mean")
    assert mean.label([candidate("x", "LiFePO4")])[0].loc["x", "e_hull_eV_atom"] == pytest.approx(0.1)


# --- the loop ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool_table(tmp_path_factory) -> Path:
    """80 compositions with their experimental formation enthalpies (pymatgen's bundled set)."""
    from mi.models.datasets import load_exp_formation_enthalpy

    frame = load_exp_formation_enthalpy().drop_duplicates("formula").sample(80, random_state=1)
    frame.insert(0, "id", [f"m{i:03d}" for i in range(len(frame))])
    path = tmp_path_factory.mktemp("pool") / "pool.csv"
    frame.to_csv(path, index=False)
    return path


def _loop_yaml(tmp_path: Path, pool: Path, **changes) -> Path:
    data = {
        "name": "tiny_loop",
        "pool": {"candidates": {"sources": [str(pool)]}},
        "initial": {"n_random": 12},
        "train": {
            "model": {"kind": "mlp", "hidden": [16], "ensemble_size": 2, "dropout": 0.0},
            "split": {"kind": "random", "val_fraction": 0.2},
            "epochs": 8,
            "batch_size": 16,
            "device": "cpu",
        },
        "labeller": {"kind": "table", "path": str(pool), "targets": {"eform": "formation_enthalpy_eV_atom"},
                     "units": {"eform": "eV/atom"}},
        "acquisition": {"kind": "ucb", "kappa": 1.0},
        "objectives": [{"column": "eform", "direction": "min"}],
        "good": [{"column": "eform", "max": -2.0}],
        "batch_size": 5,
        "rounds": 2,
        "features": {"cache_dir": None},
        **changes,
    }
    path = tmp_path / "loop.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_loop_runs_two_rounds_and_writes_log_plot_and_labels(tmp_path, pool_table, capsys):
    config = _loop_yaml(tmp_path, pool_table)
    out = tmp_path / "run"
    assert main(["loop", str(config), "--out", str(out)]) == 0
    log = pd.read_csv(out / "loop_log.csv")
    assert log["round"].tolist() == [0, 1, 2]
    assert log["n_labelled"].tolist() == [12, 17, 22]
    assert log["n_calls"].tolist() == [12, 17, 22]
    assert log["val_mae_eform"].isna().tolist() == [True, False, False]
    assert (np.diff(log["n_good"]) >= 0).all()
    assert (np.diff(log["best_eform"]) <= 0).all()
    labelled = pd.read_csv(out / "labelled.csv")
    assert labelled["id"].is_unique and len(labelled) == 22
    truth = pd.read_csv(pool_table).set_index("id")["formation_enthalpy_eV_atom"]
    assert labelled.set_index("id")["eform"].to_dict() == pytest.approx(truth[labelled["id"]].to_dict())
    picked = labelled[labelled["round"] > 0]
    assert picked[["acquisition_value", "predicted_eform", "predicted_eform_std"]].notna().all().all()
    assert (out / "loop.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "model.pt").is_file() and (out / "failures.csv").is_file()
    assert "log, plot and labels in" in capsys.readouterr().out
    # a second plain run into the same folder refuses to overwrite it
    assert main(["loop", str(config), "--out", str(out)]) == 1


def test_resume_skips_finished_rounds(tmp_path, pool_table):
    config = _loop_yaml(tmp_path, pool_table)
    out = tmp_path / "run"
    assert main(["loop", str(config), "--out", str(out), "--set", "rounds=1"]) == 0
    first = pd.read_csv(out / "labelled.csv")
    # a round that crashed after writing its labels but before its log row is redone, not kept
    pd.concat([first, first.tail(1).assign(id="ghost", round=2)]).to_csv(out / "labelled.csv", index=False)
    assert main(["loop", str(config), "--out", str(out), "--resume"]) == 0
    log = pd.read_csv(out / "loop_log.csv")
    assert log["round"].tolist() == [0, 1, 2]
    labelled = pd.read_csv(out / "labelled.csv")
    assert "ghost" not in set(labelled["id"]) and len(labelled) == 22
    # rounds 0 and 1 are the first run's picks, unchanged
    pd.testing.assert_frame_equal(labelled[labelled["round"] <= 1].reset_index(drop=True), first)
    # a different recipe cannot resume this folder
    assert main(["loop", str(config), "--out", str(out), "--resume", "--set", "batch_size=7"]) == 1


def test_random_selection_labels_without_a_surrogate(tmp_path, pool_table):
    config = _loop_yaml(tmp_path, pool_table, acquisition={"kind": "random"}, rounds=1)
    out = tmp_path / "random"
    assert main(["loop", str(config), "--out", str(out)]) == 0
    log = pd.read_csv(out / "loop_log.csv")
    assert log["n_labelled"].tolist() == [12, 17] and log["val_mae_eform"].isna().all()
    assert not (out / "model.pt").exists()


def test_bad_loop_config_names_the_key_path(tmp_path, pool_table, capsys):
    config = _loop_yaml(tmp_path, pool_table, acquisition={"kind": "ucb", "kapa": 1.0})
    with pytest.raises(ConfigError, match=r"loop.yaml: acquisition.kapa: unknown key"):
        load_loop_config(config)
    assert main(["loop", str(config)]) == 2
    assert "acquisition.kapa: unknown key" in capsys.readouterr().err
    config = _loop_yaml(tmp_path, pool_table, objectives=[{"column": "e_hull", "direction": "min"}])
    with pytest.raises(ConfigError, match=r"objectives\[0\].column: 'e_hull' is not a labeller target"):
        load_loop_config(config)
    config = _loop_yaml(tmp_path, pool_table, labeller={"kind": "dft", "path": "x.csv"})
    with pytest.raises(ConfigError, match=r"labeller"):
        load_loop_config(config)
    train = {"dataset": {"kind": "pymatgen_exp_formation_enthalpy"}}
    with pytest.raises(ConfigError, match=r"train: .*leave 'dataset' out"):
        load_loop_config(_loop_yaml(tmp_path, pool_table, train=train))
    assert main(["validate", str(_loop_yaml(tmp_path, pool_table))]) == 0


def test_loop_reports_unlabelled_candidates_and_goes_on(tmp_path, pool_table):
    partial = tmp_path / "partial.csv"
    table = pd.read_csv(pool_table)
    table.iloc[::2].to_csv(partial, index=False)  # half the pool has no label
    labeller = {"kind": "table", "path": str(partial), "targets": {"eform": "formation_enthalpy_eV_atom"}}
    config = _loop_yaml(tmp_path, pool_table, labeller=labeller, rounds=1)
    out = tmp_path / "partial"
    assert main(["loop", str(config), "--out", str(out)]) == 0
    log = pd.read_csv(out / "loop_log.csv")
    failures = pd.read_csv(out / "failures.csv")
    assert log["n_calls"].tolist() == [12, 17]
    assert (log["n_labelled"] + log["n_failed"]).tolist() == [12, 17]
    assert len(failures) == log["n_failed"].iloc[-1] > 0
    assert failures["reason"].str.contains("is not in the label table").all()


def test_the_loop_builds_its_oracle_from_the_registry_with_mi_labels_sections(tmp_path, pool_table, monkeypatch):
    import mi.oracle.registry as registry
    from mi.active import make_labeller
    from mi.oracle.base import EnergyOracle
    from mi.oracle.label import OracleLabeller

    seen = {}

    class Recorder(EnergyOracle):  # an oracle plugged in by name, as a user would
        def __init__(self, **settings):
            seen.update(settings)

        def provenance(self):
            return {"oracle": "recorder"}

        def single_point(self, candidates):
            raise NotImplementedError

        relax = single_point

    monkeypatch.setitem(registry._ORACLES, "recorder", Recorder)
    labeller = {"kind": "oracle", "oracle": {"name": "recorder", "fmax": 0.2}, "labels": {"cache_dir": "oracle_cache", "voltage": False}}
    cfg = load_loop_config(_loop_yaml(tmp_path, pool_table, labeller=labeller))
    built = make_labeller(cfg)
    assert isinstance(built, OracleLabeller) and isinstance(built.oracle, Recorder)
    assert seen["fmax"] == 0.2 and seen["model_name"] == "0.3.0"  # mi label's OracleConfig defaults
    assert built.elemental.cache_dir == tmp_path / "oracle_cache"  # relative to the config file
    assert "voltage_V" not in built.targets
    unknown = load_loop_config(_loop_yaml(tmp_path, pool_table, labeller={"kind": "oracle", "oracle": {"name": "mace"}}))
    with pytest.raises(ConfigError, match="unknown oracle 'mace'; known: .*chgnet"):
        make_labeller(unknown)
    with pytest.raises(ConfigError, match=r"labeller\..*oracle\.fmx: unknown key"):
        load_loop_config(_loop_yaml(tmp_path, pool_table, labeller={"kind": "oracle", "oracle": {"fmx": 0.1}}))
