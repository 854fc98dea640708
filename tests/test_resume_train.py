"""`mi train` killed with SIGKILL part-way and resumed with --resume ends where an uninterrupted run ends."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Composition

from mi.candidates.base import Candidate, composition_hash
from mi.config import load_train_config
from mi.models.checkpoint import load_checkpoint
from mi.models.train import train_from_config

FORMULAS = ["LiCoO2", "LiFePO4", "NaCl", "MgO", "Al2O3", "LiMn2O4", "Li3PS4", "TiO2", "ZnO", "CaF2", "Li2O", "Li2O2"]
EPOCHS = 40


def _config(folder) -> object:
    folder.mkdir()
    rng = np.random.default_rng(1)
    formulas = FORMULAS * 20
    pd.DataFrame({"formula": formulas, "y": rng.normal(size=len(formulas))}).to_csv(folder / "data.csv", index=False)
    path = folder / "train.yaml"
    path.write_text(
        "name: killme\n"
        "train:\n"
        "  dataset: {kind: csv, path: data.csv, targets: {y: y}, units: {y: eV}}\n"
        "  model: {kind: mlp, ensemble_size: 2, hidden: [64, 64], dropout: 0.1}\n"
        f"  epochs: {EPOCHS}\n  patience: 100\n  batch_size: 4\n  device: cpu\n  seed: 3\n"
        "  split: {kind: random, val_fraction: 0.2}\n"
        "checkpoint: out/model.pt\n"
    )
    return path


def _epochs(path) -> list[int]:
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [int(r["epoch"]) for r in csv.DictReader(handle)]


def _run(config, *extra) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MI_DEVICE": "cpu"}
    code = "import sys, torch; torch.set_num_threads(1); from mi.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, "train", str(config), "--no-progress", *extra], env=env)


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    whole = _config(tmp_path / "whole")
    assert _run(whole).wait(timeout=300) == 0
    reference = load_checkpoint(tmp_path / "whole" / "out" / "model.pt")

    broken = _config(tmp_path / "broken")
    metrics = tmp_path / "broken" / "out" / "model.pt.run" / "metrics.csv"
    process = _run(broken)
    deadline = time.monotonic() + 300
    while len(_epochs(metrics)) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    done = _epochs(metrics)
    assert 2 <= len(done) < EPOCHS, f"killed after {len(done)} epochs (the run was too fast to interrupt)"
    assert not (tmp_path / "broken" / "out" / "model.pt").exists()

    resumed = _run(broken, "--resume")
    assert resumed.wait(timeout=300) == 0
    assert _epochs(metrics) == list(range(1, EPOCHS + 1))  # contiguous, no epoch twice
    model = load_checkpoint(tmp_path / "broken" / "out" / "model.pt")
    candidates = [Candidate(f, "t", f, Composition(f), None, composition_hash(Composition(f))) for f in FORMULAS]
    pd.testing.assert_frame_equal(model.predict(candidates=candidates), reference.predict(candidates=candidates),
                                  check_exact=True)
    assert model.spec.training["metrics"]["val"] == reference.spec.training["metrics"]["val"]
    # the columns that do not depend on timing are identical epoch by epoch
    keep = ["epoch", "lr", "train_loss", "val_score", "best_val_score"]
    whole_rows = pd.read_csv(tmp_path / "whole" / "out" / "model.pt.run" / "metrics.csv")[keep]
    pd.testing.assert_frame_equal(pd.read_csv(metrics)[keep], whole_rows)


def test_tiny_config_is_valid(tmp_path):
    assert load_train_config(_config(tmp_path / "c")).train.epochs == EPOCHS
    _ = train_from_config  # the in-process entry point is covered by tests/test_train.py
