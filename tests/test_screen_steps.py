"""`mi.pipeline.screen` as named steps: a model entry that names a training recipe is trained by the
training step, once, into the run folder, and the screen ranks with what it trained."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mi.config import load_config
from mi.files import sha256_file
from mi.models.checkpoint import load_checkpoint
from mi.pipeline import screen

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_model_entry_with_a_recipe_is_trained_once_into_the_run_and_used(tmp_path):
    rng = np.random.default_rng(1)
    formulas = ["LiCoO2", "LiFePO4", "LiMn2O4", "Li2S", "LiF", "NaCl", "Li3PS4", "LiNiO2", "Li2O", "MgO"] * 3
    pd.DataFrame({"formula": formulas, "y": rng.normal(size=len(formulas))}).to_csv(tmp_path / "train.csv", index=False)
    (tmp_path / "formulas.csv").write_text("id,formula\nlco,LiCoO2\nlfp,LiFePO4\nlmo,LiMn2O4\nlps,Li3PS4\n")
    config = {
        "name": "trained_here",
        "candidates": {"sources": ["formulas.csv"]},
        "features": {"sets": ["composition"], "cache_dir": None},
        "model": {"train": {
            "dataset": {"kind": "csv", "path": "train.csv", "targets": {"toy_eV": "y"}, "units": {"toy_eV": "eV"}},
            "model": {"kind": "mlp", "ensemble_size": 2, "hidden": [8], "dropout": 0.0, "feature_sets": ["composition"]},
            "epochs": 3, "batch_size": 8, "device": "cpu", "split": {"kind": "random", "val_fraction": 0.3},
        }},
        "properties": {"calculators": ["capacity"]},
        "ranking": {"objectives": [{"column": "toy_eV", "direction": "min"}, {"column": "capacity_mAh_g", "direction": "max"}]},
        "export": {"report": False, "top_cif": False},
    }
    path = tmp_path / "screen.yaml"
    path.write_text(yaml.safe_dump(config))
    result = screen(load_config(path), out=tmp_path / "run", progress=False)
    trained = result.run_dir / "model.pt"
    assert trained.is_file() and (result.run_dir / "model.train").is_dir()
    (record,) = result.manifest["checkpoints"]
    assert record["checkpoint"] == str(trained) and record["sha256"] == sha256_file(trained)
    ranked = pd.read_csv(result.run_dir / "ranked.csv")
    assert sorted(ranked["id"]) == ["lco", "lfp", "lmo", "lps"] and ranked["toy_eV"].notna().all()
    # the checkpoint the run ranked with is the recipe's model
    model = load_checkpoint(trained)
    assert model.targets == ["toy_eV"]
