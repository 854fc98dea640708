"""Training: splits, losses, schedule, the run folder, --resume, configs. Tiny CPU runs into tmp_path."""

from __future__ import annotations

import csv
import math

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from pymatgen.core import Composition

import mi.models.train as train_module
from mi.candidates.base import Candidate, composition_hash
from mi.cli import main
from mi.config import TrainConfig, load_train_config
from mi.errors import ConfigError, InputError
from mi.models.checkpoint import load_checkpoint
from mi.models.train import group_keys, lr_factor, masked_loss, split_rows, train_from_config

FORMULAS = ["LiCoO2", "LiFePO4", "NaCl", "MgO", "Al2O3", "LiMn2O4", "Li3PS4", "TiO2", "ZnO", "CaF2", "Li2O", "Li2O2"]


def _write_config(tmp_path, extra: str = "", epochs: int = 4) -> object:
    rng = np.random.default_rng(0)
    formulas = FORMULAS * 3
    table = pd.DataFrame({
        "composition": formulas,
        "y1": rng.normal(size=len(formulas)),
        "y2": np.where(np.arange(len(formulas)) % 3 == 0, np.nan, rng.normal(size=len(formulas))),
    })
    table.to_csv(tmp_path / "data.csv", index=False)
    path = tmp_path / "train.yaml"
    path.write_text(
        "name: tiny\n"
        "train:\n"
        "  dataset: {kind: csv, path: data.csv, formula_column: composition, targets: {a: y1, b: y2},"
        " units: {a: eV, b: GPa}}\n"
        "  model: {kind: mlp, ensemble_size: 2, hidden: [8], dropout: 0.1}\n"
        f"  epochs: {epochs}\n  patience: 50\n  batch_size: 8\n  device: cpu\n"
        "  split: {kind: composition, val_fraction: 0.3}\n"
        f"{extra}"
        "checkpoint: out/tiny.pt\n"
    )
    return path


def _rows(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_train_from_config_writes_checkpoint_run_folder_and_masks_missing_targets(tmp_path):
    path = train_from_config(load_train_config(_write_config(tmp_path)), progress=False)
    assert path == tmp_path / "out" / "tiny.pt" and path.is_file()
    surrogate = load_checkpoint(path)
    assert surrogate.targets == ["a", "b"] and surrogate.spec.units == {"a": "eV", "b": "GPa"}
    assert surrogate.spec.training["name"] == "tiny"
    assert all(math.isfinite(v) for v in surrogate.spec.training["metrics"]["val_mae"].values())
    run_dir = tmp_path / "out" / "tiny.pt.run"
    rows = _rows(run_dir / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert {"lr", "train_loss", "val_score", "val_mae_a", "val_mae_b", "active_members"} <= set(rows[0])
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["train"]["dataset"]["path"] == str((tmp_path / "data.csv").resolve())
    raw = torch.load(run_dir / "resume.pt", weights_only=True, map_location="cpu")
    assert raw["epoch"] == 4 and len(raw["best"]) == 2


def test_resume_continues_from_the_saved_epoch_and_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    whole = tmp_path / "whole"
    whole.mkdir()
    reference = load_checkpoint(train_from_config(load_train_config(_write_config(whole)), progress=False))

    broken = tmp_path / "broken"
    broken.mkdir()
    config = _write_config(broken)
    original = train_module._atomic_torch_save

    def save_then_crash(payload, path):
        original(payload, path)
        if payload["epoch"] == 2:
            raise KeyboardInterrupt  # as if the machine went away after epoch 2

    monkeypatch.setattr(train_module, "_atomic_torch_save", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train_from_config(load_train_config(config), progress=False)
    monkeypatch.setattr(train_module, "_atomic_torch_save", original)
    run_dir = broken / "out" / "tiny.pt.run"
    assert [int(r["epoch"]) for r in _rows(run_dir / "metrics.csv")] == [1, 2]
    assert not (broken / "out" / "tiny.pt").exists()

    assert main(["train", str(config), "--resume", "--no-progress"]) == 0
    assert [int(r["epoch"]) for r in _rows(run_dir / "metrics.csv")] == [1, 2, 3, 4]
    resumed = load_checkpoint(broken / "out" / "tiny.pt")
    candidates = [Candidate(f, "t", f, Composition(f), None, composition_hash(Composition(f))) for f in FORMULAS]
    pd.testing.assert_frame_equal(resumed.predict(candidates=candidates), reference.predict(candidates=candidates))


def test_resume_refuses_another_recipe_and_a_missing_file(tmp_path):
    config = _write_config(tmp_path, epochs=2)
    with pytest.raises(InputError, match="no resume.pt"):
        train_from_config(load_train_config(config), progress=False, resume=True)
    train_from_config(load_train_config(config), progress=False)
    with pytest.raises(InputError, match="another recipe"):
        train_from_config(load_train_config(config, ["train.optimiser.lr=0.1"]), progress=False, resume=True)


def test_split_rows_keeps_groups_together_and_is_seeded():
    formulas = ["LiCoO2", "Li2Co2O4", "NaCl", "MgO", "Mg2O2", "Al2O3", "ZnO", "CaF2", "LiF", "KCl"] * 2
    groups = group_keys(formulas, "composition")
    train, val, test = split_rows(groups, 0.2, 0.2, seed=3)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(len(formulas)))
    sides = {}
    for side, rows in (("train", train), ("val", val), ("test", test)):
        for row in rows:
            assert sides.setdefault(groups[row], side) == side  # a reduced formula never straddles sides
    assert len(val) and len(test) and len(train) >= len(formulas) // 2
    again = split_rows(groups, 0.2, 0.2, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again))
    assert group_keys(["LiCoO2", "Li2CoO3", "NaCl"], "chemsys") == ["Co-Li-O", "Co-Li-O", "Cl-Na"]
    assert group_keys(["NaCl", "NaCl"], "random") == ["0", "1"]
    with pytest.raises(InputError, match="two distinct"):
        split_rows(["a", "a"], 0.5, 0.0, seed=0)


def test_masked_loss_ignores_missing_targets():
    mean = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    target = torch.tensor([[0.0, float("nan")], [3.0, 2.0]])
    assert masked_loss("l1", mean, None, target).item() == pytest.approx((1 + 0 + 2) / 3)
    assert masked_loss("mse", mean, None, target).item() == pytest.approx((1 + 0 + 4) / 3)
    log_std = torch.zeros_like(mean)
    assert masked_loss("robust_l1", mean, log_std, target).item() == pytest.approx(math.sqrt(2) * 3 / 3)
    assert masked_loss("gaussian_nll", mean, log_std, target).item() == pytest.approx(0.5 * 5 / 3)


def test_lr_schedule_warms_up_then_decays():
    factors = [lr_factor(s, total=100, warmup=10, name="cosine", min_factor=0.1) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0) and factors[-1] == pytest.approx(0.1, abs=1e-3)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    assert lr_factor(50, total=100, warmup=0, name="constant", min_factor=0.0) == 1.0


def test_model_config_errors_name_the_key_path(tmp_path):
    path = _write_config(tmp_path, extra="  optimiser: {name: adamw, lr: 0.01, momentun: 0.9}\n")
    with pytest.raises(ConfigError, match=r"train\.optimiser\.momentun: unknown key"):
        load_train_config(path)
    with pytest.raises(ConfigError, match=r"train\.model\.element_attention: .*d_model \(10\) must be a multiple"):
        load_train_config(_write_config(tmp_path), ["train.model={kind: element_attention, d_model: 10, n_heads: 4}"])
    cfg = TrainConfig(model={"hidden": [4]})
    assert cfg.model.kind == "mlp"  # the descriptor MLP is the default kind
    with pytest.raises(ValueError, match="leave rows to train"):
        TrainConfig(split={"val_fraction": 0.6, "test_fraction": 0.4})


def test_test_split_metrics_are_recorded(tmp_path):
    path = _write_config(tmp_path, extra="  split: {kind: random, val_fraction: 0.2, test_fraction: 0.2}\n", epochs=2)
    text = path.read_text().replace("  split: {kind: composition, val_fraction: 0.3}\n", "")
    path.write_text(text)
    surrogate = load_checkpoint(train_from_config(load_train_config(path), progress=False))
    metrics = surrogate.spec.training["metrics"]
    assert metrics["n_test"] > 0 and set(metrics["test"]) == {"a", "b"}
    assert {"mae", "rmse", "r2", "spearman", "within_1sigma"} <= set(metrics["test"]["a"])
