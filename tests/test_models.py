"""Surrogate, checkpoint, datasets, device: tiny real training runs on the CPU, files in tmp_path."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from mi.config import TrainConfig, load_train_config
from mi.errors import CheckpointError, ConfigError, InputError
from mi.models.checkpoint import FORMAT_VERSION, checkpoint_card, file_sha256, load_checkpoint, save_checkpoint
from mi.models.datasets import EXP_FORMATION_ENTHALPY, load_exp_formation_enthalpy
from mi.models.device import resolve_device
from mi.models.train import featurize_formulas, train_from_config, train_surrogate

TARGET = EXP_FORMATION_ENTHALPY
TINY = TrainConfig(feature_sets=["composition"], ensemble_size=2, hidden=[32], epochs=5, batch_size=32,
                   patience=5, device="cpu")


@pytest.fixture(scope="module")
def exp_data() -> pd.DataFrame:
    return load_exp_formation_enthalpy()


@pytest.fixture(scope="module")
def tiny(exp_data):
    frame = exp_data.sample(100, random_state=0)
    surrogate, metrics = train_surrogate(TINY, frame, {TARGET: "eV/atom"}, progress=False)
    features, _ = featurize_formulas(["LiFePO4", "Al2O3", "NaCl", "LiCoO2"], ["composition"])
    return surrogate, metrics, features


@pytest.fixture(scope="module")
def saved(tiny, tmp_path_factory):
    return save_checkpoint(tiny[0], tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def _plain(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    if isinstance(value, torch.Tensor):
        return value.device.type == "cpu"
    return value is None or isinstance(value, (str, int, float, bool))


def test_exp_dataset_is_per_atom(exp_data):
    assert len(exp_data) == 2135 and list(exp_data.columns) == ["formula", TARGET]
    ag2o = exp_data.set_index("formula").loc["Ag2O", TARGET]
    assert ag2o == pytest.approx(-0.3223287863097536 / 3)


def test_training_metrics_and_std(tiny):
    surrogate, metrics, features = tiny
    assert set(metrics["val_mae"]) == {TARGET} and metrics["val_mae"][TARGET] > 0
    assert metrics["n_train"] + metrics["n_val"] == 100
    prediction = surrogate.predict(features)
    assert list(prediction.columns) == [TARGET, f"{TARGET}_std"]
    assert prediction.index.equals(features.index)
    assert (prediction[f"{TARGET}_std"] >= 0).all() and prediction.notna().all().all()


def test_normaliser_buffers_in_state_dict(tiny):
    state = tiny[0].module.state_dict()
    for name in ("feature_mean", "feature_std", "target_mean", "target_std", "std_scale"):
        assert name in state
    assert state["target_std"].item() > 0


def test_raw_file_loads_with_weights_only(saved):
    raw = torch.load(saved, weights_only=True, map_location="cpu")
    assert raw["format_version"] == FORMAT_VERSION and _plain(raw)
    assert raw["feature_sets"] == [{"name": "composition", "version": 1}]
    assert raw["targets"] == [{"name": TARGET, "unit": "eV/atom"}]
    assert raw["training"]["data_sha256"].startswith("sha256:") and raw["training"]["n_rows"] == 100
    assert set(raw["versions"]) >= {"mi", "torch", "pymatgen"} and raw["created_utc"].endswith("Z")


def test_roundtrip_gives_identical_predictions(tiny, saved):
    surrogate, _, features = tiny
    loaded = load_checkpoint(saved)
    pd.testing.assert_frame_equal(loaded.predict(features), surrogate.predict(features), check_exact=True)
    card = checkpoint_card(saved)
    assert "state_dict" not in card and card["sha256"] == file_sha256(saved) and card["n_parameters"] > 0


def test_missing_feature_column_is_clear(tiny):
    surrogate, _, features = tiny
    with pytest.raises(InputError, match=r"composition\.mean_Z.*composition \(v1\)"):
        surrogate.predict(features.drop(columns=["composition.mean_Z"]))


def test_bad_files_raise_checkpoint_error(saved, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.pt")

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated, corrupted"):
        load_checkpoint(truncated)

    raw = torch.load(saved, weights_only=True, map_location="cpu")
    future = tmp_path / "future.pt"
    torch.save({**raw, "format_version": FORMAT_VERSION + 1}, future)
    with pytest.raises(CheckpointError, match=f"format version {FORMAT_VERSION + 1}.*reads version {FORMAT_VERSION}"):
        load_checkpoint(future)

    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": raw["state_dict"]}, foreign)
    with pytest.raises(CheckpointError, match="not an mi surrogate checkpoint"):
        load_checkpoint(foreign)

    stale = tmp_path / "stale.pt"
    torch.save({**raw, "feature_sets": [{"name": "composition", "version": 99}]}, stale)
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(stale)

    mismatched = tmp_path / "mismatched.pt"
    torch.save({**raw, "model_config": {**raw["model_config"], "hidden": [16]}}, mismatched)
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(mismatched)


def test_builtin_checkpoint_predicts_sensible_signs():
    surrogate = load_checkpoint("builtin:formation_enthalpy")
    features, _ = featurize_formulas(["Al2O3", "LiF", "Cu"], surrogate.spec.feature_sets)
    prediction = surrogate.predict(features)[TARGET].to_numpy()
    assert prediction[0] < -2.5  # experiment: -3.47 eV/atom
    assert prediction[1] < -2.5  # experiment: -3.20 eV/atom
    assert abs(prediction[2]) < 0.5  # an element: 0
    card = checkpoint_card("builtin:formation_enthalpy")
    assert card["size_bytes"] < 2_000_000
    assert "exp_compounds" in card["training"]["dataset"]["source"]
    assert "Kubaschewski" in card["training"]["dataset"]["provenance"]
    assert card["training"]["metrics"]["val_mae"][TARGET] < 0.2
    with pytest.raises(CheckpointError, match="no such built-in"):
        load_checkpoint("builtin:nope")


def test_train_from_config_with_csv_and_missing_targets(tmp_path):
    rng = np.random.default_rng(0)
    formulas = ["LiCoO2", "LiFePO4", "NaCl", "MgO", "Al2O3", "LiMn2O4", "Li3PS4", "TiO2", "ZnO", "CaF2"] * 3
    table = pd.DataFrame({
        "composition": formulas,
        "y1": rng.normal(size=len(formulas)),
        "y2": np.where(np.arange(len(formulas)) % 3 == 0, np.nan, rng.normal(size=len(formulas))),
    })
    table.to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "train.yaml").write_text(
        "name: tiny\n"
        "train:\n"
        "  dataset: {kind: csv, path: data.csv, formula_column: composition, targets: {a: y1, b: y2},"
        " units: {a: eV, b: GPa}}\n"
        "  ensemble_size: 2\n  hidden: [8]\n  epochs: 3\n  val_fraction: 0.3\n  device: cpu\n"
        "checkpoint: out/tiny.pt\n"
    )
    path = train_from_config(load_train_config(tmp_path / "train.yaml"), progress=False)
    assert path == tmp_path / "out" / "tiny.pt" and path.is_file()
    surrogate = load_checkpoint(path)
    assert surrogate.targets == ["a", "b"] and surrogate.spec.units == {"a": "eV", "b": "GPa"}
    assert surrogate.spec.training["name"] == "tiny"
    assert all(math.isfinite(v) for v in surrogate.spec.training["metrics"]["val_mae"].values())


def test_resolve_device(monkeypatch):
    monkeypatch.delenv("MI_DEVICE", raising=False)
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("MI_DEVICE", "cpu")
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setenv("MI_DEVICE", "tpu")
    with pytest.raises(ConfigError, match="MI_DEVICE"):
        resolve_device()
    assert resolve_device("cpu") == torch.device("cpu")  # the argument wins over the environment
