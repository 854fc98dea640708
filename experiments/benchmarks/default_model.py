"""Benchmark the default surrogate recipe against a random forest on the same features.

Grouped, seeded k-fold cross-validation on pymatgen's 2,135 experimental formation enthalpies (eV/atom):
the same reduced formula never sits in both train and test. Each fold trains

* ours: the recipe of ``configs/formation_enthalpy_model.yaml`` (``builtin:formation_enthalpy``, an
  ensemble of MLPs; it holds out its own validation set from the training fold for early stopping and spread calibration);
* RF: ``sklearn.ensemble.RandomForestRegressor`` on the very same feature matrix (all of the training fold);
* mean: the training-fold mean, for scale;

and reports MAE per model (mean +- std over folds), the calibration of our predicted std (fraction of
test |errors| within 1 and 2 std; 0.683 and 0.954 for a calibrated Gaussian), and the MAE ratio ours/RF.

    python experiments/benchmarks/default_model.py [--folds 5] [--quick] [--threads 1]

Latest run (composition set v2, 145 Magpie-equivalent columns; 5 folds, seed 0; 2 cores shared with other
jobs, so the seconds are inflated):

    model                                       MAE [eV/atom]  train+predict s
    ours (5 x MLP [256, 128])                0.0989 ± 0.0066             5497
    RandomForest (300 trees)                 0.1183 ± 0.0097               87
    training-fold mean                       0.7697 ± 0.0324                -
    ours calibration: |error| <= 1 std 0.675 (0.683 ideal), <= 2 std 0.889 (0.954 ideal)
    MAE ratio ours/RF: 0.836
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Composition
from sklearn.ensemble import RandomForestRegressor
from sklearn.model_selection import GroupKFold

from mi.config import load_train_config
from mi.models.datasets import load_dataset
from mi.models.train import featurize_formulas, train as train_model

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = ROOT / "configs" / "formation_enthalpy_model.yaml"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folds", type=int, default=5, help="number of grouped CV folds (default 5)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 members, 60 epochs, 100 trees")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="training recipe (a TrainRunConfig)")
    parser.add_argument("--trees", type=int, default=300, help="random-forest trees (default 300)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch / RF threads (default: library default)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = ["train.device=cpu"]
    trees = args.trees
    if args.quick:
        overrides += ["train.model.ensemble_size=2", "train.epochs=60", "train.patience=15"]
        trees = min(trees, 100)
    cfg = load_train_config(args.config, overrides).train
    if args.threads:
        torch.set_num_threads(args.threads)

    dataset = load_dataset(cfg.dataset)
    (target,) = dataset.targets
    features, failures = featurize_formulas(dataset.frame["formula"].tolist(), cfg.model.feature_sets)
    dataset = dataset.subset(features.index.to_numpy())
    frame = dataset.frame
    y = frame[target].to_numpy(dtype=float)
    x = features.to_numpy(dtype=float)
    groups = np.array([Composition(f).reduced_formula for f in frame["formula"]])
    print(
        f"{len(y)} compounds ({len(failures)} not featurizable), {x.shape[1]} features "
        f"({', '.join(cfg.model.feature_sets)}), {args.folds}-fold CV grouped by reduced formula, seed {args.seed}"
    )
    print(
        f"ours: {cfg.model.ensemble_size} x MLP {cfg.model.hidden}, <= {cfg.epochs} epochs; RF: {trees} trees; "
        f"target {target} [{dataset.units[target]}]"
    )

    folds = GroupKFold(n_splits=args.folds, shuffle=True, random_state=args.seed)
    mae = {"ours": [], "rf": [], "mean": []}
    within1, within2, seconds = [], [], {"ours": 0.0, "rf": 0.0}
    for k, (train, test) in enumerate(folds.split(x, y, groups)):
        started = time.perf_counter()
        fold_cfg = cfg.model_copy(update={"seed": args.seed + k})
        surrogate, _ = train_model(fold_cfg, dataset.subset(train), progress=False)
        prediction = surrogate.predict(features.iloc[test].set_axis(frame.index[test]))
        seconds["ours"] += time.perf_counter() - started
        error = np.abs(prediction[target].to_numpy() - y[test])
        std = prediction[f"{target}_std"].to_numpy()
        mae["ours"].append(error.mean())
        within1.append(np.mean(error <= std))
        within2.append(np.mean(error <= 2 * std))

        started = time.perf_counter()
        forest = RandomForestRegressor(n_estimators=trees, random_state=args.seed + k, n_jobs=args.threads or None)
        forest.fit(x[train], y[train])
        mae["rf"].append(np.abs(forest.predict(x[test]) - y[test]).mean())
        seconds["rf"] += time.perf_counter() - started
        mae["mean"].append(np.abs(y[train].mean() - y[test]).mean())
        print(
            f"fold {k + 1}/{args.folds}: n_test {len(test)}  MAE ours {mae['ours'][-1]:.4f}  "
            f"RF {mae['rf'][-1]:.4f}  within 1/2 std {within1[-1]:.2f}/{within2[-1]:.2f}",
            flush=True,
        )

    unit = dataset.units[target]
    print()
    print(f"{'model':<34} {'MAE [' + unit + ']':>22} {'train+predict s':>16}")
    rows = [
        (f"ours ({cfg.model.ensemble_size} x MLP {cfg.model.hidden})", "ours", f"{seconds['ours']:.0f}"),
        (f"RandomForest ({trees} trees)", "rf", f"{seconds['rf']:.0f}"),
        ("training-fold mean", "mean", "-"),
    ]
    for label, key, time_s in rows:
        values = np.array(mae[key])
        print(f"{label:<34} {values.mean():>12.4f} ± {values.std():.4f} {time_s:>16}")
    print(f"ours calibration: |error| <= 1 std {np.mean(within1):.3f} (0.683 ideal), "
          f"<= 2 std {np.mean(within2):.3f} (0.954 ideal)")
    print(f"MAE ratio ours/RF: {np.mean(mae['ours']) / np.mean(mae['rf']):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
