"""Train the descriptor ensemble surrogate: featurize, split, train each member, calibrate, package.

`train_surrogate` reads top to bottom:

1. featurize the formulas with ``cfg.feature_sets`` (the same `featurize` the screening uses);
2. split off a validation set (seeded, grouped by reduced formula so duplicates do not leak);
3. fit the normalisers (buffers in the module) on the training rows;
4. train each ensemble member from its own seed: AdamW, cosine learning-rate schedule, masked L1 loss on
   standardised targets (a missing target does not count), early stopping on validation MAE, keep the
   best epoch;
5. scale the ensemble spread so that 68.3 % of validation errors fall within one predicted std;
6. return the `Surrogate` (on the CPU) and its metrics.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pymatgen.core import Composition
from tqdm.auto import tqdm

from mi.candidates.base import Candidate, Failure, composition_hash
from mi.config import TrainConfig, TrainRunConfig
from mi.errors import InputError
from mi.features import FEATURE_SETS, featurize
from mi.models.checkpoint import save_checkpoint
from mi.models.datasets import frame_hash, load_dataset
from mi.models.device import resolve_device
from mi.models.surrogate import EnsembleMLP, Surrogate, SurrogateSpec

log = logging.getLogger(__name__)

ONE_SIGMA = math.erf(1 / math.sqrt(2))  # 0.6827


def featurize_formulas(formulas: Sequence[str], sets: Sequence[str]) -> tuple[pd.DataFrame, list[Failure]]:
    """Features of each formula, indexed by row position (int); unparseable formulas become Failures."""
    candidates, failures = [], []
    for i, formula in enumerate(formulas):
        try:
            composition = Composition(str(formula))
            if composition.num_atoms <= 0:
                raise ValueError("no atoms")
        except Exception as exc:  # noqa: BLE001 - a bad row is reported, not fatal
            failures.append(Failure("dataset", str(i), "features", f"formula {formula!r}: {exc}", id=str(i)))
            continue
        candidates.append(Candidate(str(i), "dataset", str(i), composition, None, composition_hash(composition)))
    features, more = featurize(candidates, sets)
    features.index = features.index.astype(int)
    return features, failures + more


def split_groups(groups: Sequence[str], val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows): whole groups go to one side; at least one row on each side."""
    groups = np.asarray(groups)
    unique = np.unique(groups)
    if len(unique) < 2:
        raise InputError(f"training needs at least two distinct formulas, got {len(unique)}")
    order = np.random.default_rng(seed).permutation(unique)
    n_val_groups = min(len(unique) - 1, max(1, round(val_fraction * len(unique))))
    is_val = np.isin(groups, order[:n_val_groups])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def _masked_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    mask = ~torch.isnan(target)
    error = torch.where(mask, (pred - torch.nan_to_num(target)).abs(), torch.zeros_like(pred))
    return error.sum() / mask.sum().clamp(min=1)


def _column_nanmean(values: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a target absent from the validation rows -> NaN
        return np.nanmean(values, axis=0)


def _mae_per_target(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    return _column_nanmean(np.where(np.isnan(target), np.nan, np.abs(pred - target)))


def _reset(member: torch.nn.Module) -> None:
    for layer in member.modules():
        if hasattr(layer, "reset_parameters"):
            layer.reset_parameters()


def fit_surrogate(
    cfg: TrainConfig,
    features: pd.DataFrame,
    targets: pd.DataFrame,
    units: dict[str, str],
    *,
    groups: Sequence[str] | None = None,
    progress: bool = True,
    training_info: dict[str, Any] | None = None,
) -> tuple[Surrogate, dict[str, Any]]:
    """Train on precomputed features (columns ``<set>.<feature>``) and aligned target columns (NaN = missing)."""
    started = time.perf_counter()
    device = resolve_device(cfg.device)
    x_all = torch.tensor(features.to_numpy(dtype=np.float32, na_value=np.nan))
    y_all = torch.tensor(targets.to_numpy(dtype=np.float32, na_value=np.nan))
    if groups is None:
        groups = [str(i) for i in range(len(features))]
    train_rows, val_rows = split_groups(groups, cfg.val_fraction, cfg.seed)

    module = EnsembleMLP(x_all.shape[1], y_all.shape[1], cfg.hidden, cfg.dropout, cfg.ensemble_size)
    module.fit_normalisers(x_all[train_rows], y_all[train_rows])
    module.to(device)
    x_all, y_all = x_all.to(device), y_all.to(device)
    with torch.no_grad():
        z_train = module.standardise(x_all[train_rows])
        z_val = module.standardise(x_all[val_rows])
        y_train = (y_all[train_rows] - module.target_mean) / module.target_std  # standardised, NaN kept
    y_val = y_all[val_rows].cpu().numpy()
    target_std = module.target_std.cpu().numpy()

    member_scores, best_epochs = [], []
    for i in range(cfg.ensemble_size):
        member_seed = cfg.seed * 1000 + i
        torch.manual_seed(member_seed)
        member = module.members[i]
        _reset(member)
        optimiser = torch.optim.AdamW(member.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=cfg.epochs)
        order = torch.Generator().manual_seed(member_seed)
        best = (math.inf, -1, copy.deepcopy(member.state_dict()))  # (val score, epoch, weights)
        bar = tqdm(range(cfg.epochs), desc=f"member {i + 1}/{cfg.ensemble_size}", disable=not progress, leave=False)
        for epoch in bar:
            member.train()
            for batch in torch.randperm(len(train_rows), generator=order).split(cfg.batch_size):
                batch = batch.to(device)
                loss = _masked_l1(member(z_train[batch]), y_train[batch])
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
            schedule.step()

            member.eval()
            with torch.no_grad():
                pred = (member(z_val) * module.target_std + module.target_mean).cpu().numpy()
            mae = _mae_per_target(pred, y_val)
            score = float(np.nanmean(mae / target_std))  # targets weigh alike whatever their units
            if score < best[0]:
                best = (score, epoch, copy.deepcopy(member.state_dict()))
            bar.set_postfix(val_mae=f"{float(np.nanmean(mae)):.4f}", best_epoch=best[1])
            if epoch - best[1] >= cfg.patience:
                break
        bar.close()
        member.load_state_dict(best[2])
        best_epochs.append(best[1] + 1)
        member_scores.append(float(best[0]))
        log.info("member %d/%d: best epoch %d, val score %.4f", i + 1, cfg.ensemble_size, best[1] + 1, best[0])

    # Calibrate the spread: the scale that puts 68.3 % of validation |errors| within one std.
    module.eval()
    with torch.no_grad():
        mean, std = module(x_all[val_rows])
    mean, std = mean.cpu().numpy(), std.cpu().numpy()
    scales = []
    for j in range(y_all.shape[1]):
        ok = ~np.isnan(y_val[:, j]) & (std[:, j] > 0)
        z = np.abs(mean[ok, j] - y_val[ok, j]) / std[ok, j]
        scales.append(float(np.quantile(z, ONE_SIGMA)) if len(z) >= 5 else 1.0)
    module.std_scale.copy_(torch.tensor(scales, dtype=module.std_scale.dtype))
    module.cpu()

    names = list(targets.columns)
    val_mae = _mae_per_target(mean, y_val)
    val_rmse = np.sqrt(_column_nanmean(np.where(np.isnan(y_val), np.nan, (mean - y_val) ** 2)))
    metrics: dict[str, Any] = {
        "val_mae": {t: float(v) for t, v in zip(names, val_mae)},
        "val_rmse": {t: float(v) for t, v in zip(names, val_rmse)},
        "std_scale": {t: s for t, s in zip(names, scales)},
        "member_val_score": member_scores,
        "best_epochs": best_epochs,
        "n_train": int(len(train_rows)),
        "n_val": int(len(val_rows)),
        "device": str(device),
        "train_seconds": round(time.perf_counter() - started, 1),
    }
    feature_sets = {}
    for column in features.columns:
        name = column.split(".", 1)[0]
        feature_sets[name] = FEATURE_SETS[name].version
    spec = SurrogateSpec(
        feature_sets=feature_sets,
        feature_names=list(features.columns),
        targets=names,
        units={t: units.get(t, "") for t in names},
        training={**(training_info or {}), "recipe": cfg.model_dump(mode="json"), "metrics": metrics},
    )
    return Surrogate(module, spec), metrics


def train_surrogate(
    cfg: TrainConfig,
    frame: pd.DataFrame,
    units: dict[str, str],
    progress: bool = True,
    *,
    dataset_info: dict[str, Any] | None = None,
) -> tuple[Surrogate, dict[str, Any]]:
    """Featurize ``frame.formula`` with ``cfg.feature_sets`` and train on the other columns (the targets)."""
    if "formula" not in frame.columns:
        raise InputError(f"the training table needs a 'formula' column (has: {', '.join(map(str, frame.columns))})")
    target_names = [c for c in frame.columns if c != "formula"]
    if not target_names:
        raise InputError("the training table has no target columns besides 'formula'")
    frame = frame.reset_index(drop=True)
    features, failures = featurize_formulas(frame["formula"].tolist(), cfg.feature_sets)
    for failure in failures[:5]:
        log.warning("training row %s skipped: %s", failure.record, failure.reason)
    rows = features.index.to_numpy()
    targets = frame.loc[rows, target_names].astype(float).set_axis(features.index)
    has_target = targets.notna().any(axis=1).to_numpy()
    features, targets, rows = features[has_target], targets[has_target], rows[has_target]
    groups = [Composition(f).reduced_formula for f in frame.loc[rows, "formula"]]
    info = {
        "dataset": dict(dataset_info or {}),
        "data_sha256": frame_hash(frame[["formula", *target_names]]),
        "n_rows": int(len(frame)),
        "n_used": int(len(features)),
        "n_failed": len(failures),
    }
    return fit_surrogate(cfg, features, targets, units, groups=groups, progress=progress, training_info=info)


def train_from_config(run_cfg: TrainRunConfig, progress: bool = True) -> Path:
    """Load the dataset, train, and save the checkpoint to ``run_cfg.checkpoint``; returns its path."""
    dataset_cfg = run_cfg.train.dataset
    path = run_cfg.resolve(dataset_cfg.path) if dataset_cfg.path else None
    dataset = load_dataset(dataset_cfg, path)
    surrogate, metrics = train_surrogate(
        run_cfg.train, dataset.frame, dataset.units, progress, dataset_info=dataset.info
    )
    spec = dataclasses.replace(surrogate.spec, training={"name": run_cfg.name, **surrogate.spec.training})
    out = save_checkpoint(Surrogate(surrogate.module, spec), run_cfg.resolve(run_cfg.checkpoint).resolve())
    log.info("saved %s (val MAE %s)", out, metrics["val_mae"])
    return out
