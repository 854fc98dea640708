"""Train a surrogate: featurize, split, fit the normalisers, train the ensemble, calibrate, package.

`train` reads top to bottom, one named step each:

1. ``prepare_data``: the model's featurizer turns the dataset rows into inputs (descriptors, compositions or
   graphs); rows it cannot describe, or without any target, are left out and counted; with a physics
   baseline (``baseline``), ``subtract_baseline`` leaves its target as the correction to learn;
2. ``split_data``: validation (and optionally test) rows split off: random, or whole groups of one reduced
   formula or one chemical system, seeded;
3. ``build_model``: the network, its normalisers (buffers in the module) fitted on the training rows;
4. ``start_optimisation`` (or ``resume_optimisation`` from resume.pt): one optimiser and one learning-rate
   schedule over all members, mixed precision on CUDA;
5. ``run_epochs``: every step each active member sees its own shuffled batch and the loss is masked, so a
   missing target does not count (``train_epoch``); after every epoch the validation score per member (MAE
   in units of the target's std, averaged over targets), the best weights of each member kept, a member
   stopped after ``patience`` epochs without improvement (``validate_epoch``); a row of metrics.csv and an
   atomically written resume.pt (model, optimiser, schedule, epoch, best scores, RNG states) in the run folder;
6. ``restore_best``: each member's best weights restored; ``calibrated``: the predicted std scaled so that
   68.3 % of validation errors fall within one std (``recalibrate``); ``training_metrics``: validation and
   test metrics;
7. ``package``: the `Surrogate` (on the CPU) with its card and its domain of applicability (``fit_domain``).

A forest (``kind: forest``) has no epochs: ``fit_forest`` replaces steps 4 to 6's first half (scikit-learn
fits its trees on the training rows; `mi.models.forest`); the same split, calibration, metrics and domain follow.
With ``refit``, the forest is then fitted again on the training and validation rows (the std scale, the std
thresholds and the card's metrics stay those of the split), so the shipped model has seen every chemical system.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from pymatgen.core import Composition
from tqdm.auto import tqdm

from mi.candidates.base import Candidate, Failure, composition_hash
from mi.config import BaselineConfig, TrainConfig, TrainRunConfig, model_feature_sets
from mi.errors import ConfigError, InputError
from mi.models import inputs as model_inputs
from mi.models.checkpoint import baseline_energy_model, checkpoint_targets, save_checkpoint
from mi.models.datasets import Dataset, dataset_hash, load_dataset
from mi.models.device import resolve_device
from mi.models.evaluate import calibration_metrics, fit_std_scale, regression_metrics
from mi.models.nets import build_module, model_class
from mi.models.surrogate import EnsembleNet, Surrogate, SurrogateSpec

log = logging.getLogger(__name__)

RESUME_FILE = "resume.pt"
METRICS_FILE = "metrics.csv"
RESUME_FORMAT = "mi.train_state"
RESUME_VERSION = 1
HETEROSCEDASTIC_LOSSES = ("robust_l1", "gaussian_nll")
_EVAL_BATCH = {"features": 8192, "composition": 4096, "graph": 128}


# --- 1. data ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingData:
    """The rows a model can learn from: its inputs, targets (NaN = missing) and grouping keys."""

    inputs: Any  # DenseInputs | CompositionInputs | GraphInputs, one row per usable dataset row
    targets: torch.Tensor  # (n, n_targets) float32
    formulas: list[str]  # reduced formula of each row
    ids: list[str]
    target_names: list[str]
    units: dict[str, str]
    feature_sets: dict[str, int]  # descriptor models: feature-set name -> version
    feature_names: list[str]
    failures: list[Failure]


def featurize_formulas(formulas: Sequence[str], sets: Sequence[str]) -> tuple[pd.DataFrame, list[Failure]]:
    """Descriptor features of each formula, indexed by row position (int); unparseable formulas become Failures."""
    from mi.features import featurize

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


def prepare_data(cfg: TrainConfig, dataset: Dataset) -> TrainingData:
    """The model's inputs for every dataset row it can describe that has at least one target."""
    from mi.features import FEATURE_SETS, featurize

    candidates, failures = dataset.candidates()
    model = cfg.model
    descriptor_sets = model_feature_sets(model)
    feature_sets = {name: FEATURE_SETS[name].version for name in descriptor_sets}
    feature_names: list[str] = []
    x = None
    if descriptor_sets:
        features, more = featurize(candidates, descriptor_sets)
        failures += more
        candidates = [c for c in candidates if c.id in features.index]
        features = features.loc[[c.id for c in candidates]]
        feature_names = list(features.columns)
        x = torch.tensor(features.to_numpy(dtype=np.float32, na_value=np.nan))
    input_kind = model_class(model.kind).input_kind  # an unknown kind is a ConfigError, not a graph model
    if input_kind == "features":
        kept, inputs = candidates, model_inputs.DenseInputs(x)
    else:
        if input_kind == "composition":
            inputs, reasons = model_inputs.composition_inputs([c.composition for c in candidates])
            ok = [i for i, r in enumerate(reasons) if r is None]
            if x is not None:
                inputs = model_inputs.CompositionInputs(inputs.z, inputs.frac, x[torch.as_tensor(ok, dtype=torch.long)])
        elif input_kind == "graph":
            inputs, reasons = model_inputs.graph_inputs([c.structure for c in candidates], model.cutoff, model.max_neighbors)
        else:
            raise ConfigError(f"train.model.kind: {model.kind!r} reads {input_kind!r} inputs, which training cannot build")
        kept = [c for c, r in zip(candidates, reasons) if r is None]
        failures += [Failure(c.source, c.record, "features", r, id=c.id) for c, r in zip(candidates, reasons) if r]
    targets = dataset.frame.loc[[c.id for c in kept], dataset.targets].to_numpy(dtype=np.float32, na_value=np.nan)
    has_target = ~np.isnan(targets).all(axis=1)
    rows = np.flatnonzero(has_target)
    if len(rows) < len(kept):
        inputs = _subset_inputs(inputs, rows)
    kept = [kept[i] for i in rows]
    for failure in failures[:5]:
        log.warning("training row %s skipped: %s", failure.record, failure.reason)
    return TrainingData(
        inputs=inputs,
        targets=torch.from_numpy(targets[rows]),
        formulas=[c.composition.reduced_formula for c in kept],
        ids=[c.id for c in kept],
        target_names=list(dataset.targets),
        units={t: dataset.units.get(t, "") for t in dataset.targets},
        feature_sets=feature_sets,
        feature_names=feature_names,
        failures=failures,
    )


def subtract_baseline(cfg: BaselineConfig, data: TrainingData) -> tuple[TrainingData, dict[str, Any]]:
    """Step 1b: the baseline's target less the baseline (`mi.models.baseline`), and the record the checkpoint
    keeps (with the energy model's sha256). A row without a baseline value loses that target; a row left
    without any target is left out."""
    from mi.models.baseline import baseline_values

    if cfg.target not in data.target_names:
        raise ConfigError(f"train.baseline.target: {cfg.target!r} is not a target of the dataset "
                          f"(targets: {', '.join(data.target_names)})")
    energy_targets, sha256 = checkpoint_targets(cfg.energy_model)
    if cfg.energy_column not in energy_targets:
        raise ConfigError(f"train.baseline.energy_column: {cfg.energy_model} predicts {', '.join(energy_targets)}, "
                          f"not {cfg.energy_column!r}")
    record = {**cfg.model_dump(mode="json"), "energy_sha256": sha256}
    energy = baseline_energy_model(cfg.energy_model, sha256)
    values, _ = baseline_values(record, energy, [Composition(f) for f in data.formulas])
    targets = data.targets.clone()
    j = data.target_names.index(cfg.target)
    targets[:, j] -= torch.from_numpy(values).to(targets.dtype)  # NaN where there is no baseline
    rows = np.flatnonzero(~torch.isnan(targets).all(dim=1).numpy())
    if len(rows) < len(data.ids):
        log.warning("baseline %s: %d training rows have no value and no other target; left out",
                    cfg.kind, len(data.ids) - len(rows))
    return replace(
        data, inputs=_subset_inputs(data.inputs, rows), targets=targets[rows],
        formulas=[data.formulas[i] for i in rows], ids=[data.ids[i] for i in rows],
    ), record


def _subset_inputs(inputs: Any, rows: np.ndarray) -> Any:
    if isinstance(inputs, model_inputs.DenseInputs):
        return model_inputs.DenseInputs(inputs.x[torch.as_tensor(rows)])
    if isinstance(inputs, model_inputs.CompositionInputs):
        return inputs.subset(rows)
    return model_inputs.GraphInputs([inputs.graphs[i] for i in rows])


# --- 2. split ---------------------------------------------------------------------------------------


def group_keys(formulas: Sequence[str], kind: str) -> list[str]:
    """Split groups: one per row (random), per reduced formula (composition) or per chemical system."""
    if kind == "random":
        return [str(i) for i in range(len(formulas))]
    if kind == "composition":
        return [Composition(f).reduced_formula for f in formulas]
    if kind == "chemsys":
        return ["-".join(sorted(el.symbol for el in Composition(f).elements)) for f in formulas]
    raise ConfigError(f"train.split.kind: unknown split {kind!r}")


def split_rows(
    groups: Sequence[str], val_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) row positions; whole groups go to one side; at least one row to train and validate.

    Groups are taken in a seeded random order, test first, until each side holds its fraction of the rows.
    """
    groups = np.asarray(groups)
    unique, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    if len(unique) < 2:
        raise InputError(f"training needs at least two distinct groups of rows, got {len(unique)}")
    order = np.random.default_rng(seed).permutation(len(unique))
    filled = np.cumsum(counts[order])
    n = len(groups)
    n_test = int(np.searchsorted(filled, test_fraction * n, side="right")) if test_fraction > 0 else 0
    n_val = int(np.searchsorted(filled, (test_fraction + val_fraction) * n, side="right")) - n_test
    n_val = max(n_val, 1)
    if n_test + n_val >= len(unique):
        n_test = max(0, min(n_test, len(unique) - 2))
        n_val = len(unique) - 1 - n_test
    side = np.zeros(len(unique), dtype=np.int8)  # 0 train, 1 val, 2 test
    side[order[:n_test]] = 2
    side[order[n_test : n_test + n_val]] = 1
    row_side = side[inverse]
    return np.flatnonzero(row_side == 0), np.flatnonzero(row_side == 1), np.flatnonzero(row_side == 2)


# --- 4. loss, schedule ------------------------------------------------------------------------------


def masked_loss(kind: str, mean: torch.Tensor, log_std: torch.Tensor | None, target: torch.Tensor) -> torch.Tensor:
    """Mean loss over the known targets (NaN = missing), all in standardised units."""
    mask = ~torch.isnan(target)
    diff = mean - torch.nan_to_num(target)
    if kind == "l1":
        error = diff.abs()
    elif kind == "mse":
        error = diff**2
    elif kind == "robust_l1":  # Laplace negative log likelihood with std exp(log_std) (as in Roost)
        error = math.sqrt(2.0) * diff.abs() * torch.exp(-log_std) + log_std
    elif kind == "gaussian_nll":
        error = 0.5 * diff**2 * torch.exp(-2 * log_std) + log_std
    else:
        raise ConfigError(f"train.loss: unknown loss {kind!r}")
    return torch.where(mask, error, torch.zeros_like(error)).sum() / mask.sum().clamp(min=1)


def lr_factor(step: int, total: int, warmup: int, name: str, min_factor: float) -> float:
    """Learning-rate multiplier at optimiser step `step`: linear warm-up, then cosine decay or constant."""
    if step < warmup:
        return (step + 1) / warmup
    if name == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimiser(cfg: TrainConfig, parameters) -> torch.optim.Optimizer:
    opt = cfg.optimiser
    if opt.name == "adamw":
        return torch.optim.AdamW(parameters, lr=opt.lr, weight_decay=opt.weight_decay)
    if opt.name == "adam":
        return torch.optim.Adam(parameters, lr=opt.lr, weight_decay=opt.weight_decay)
    return torch.optim.SGD(parameters, lr=opt.lr, weight_decay=opt.weight_decay, momentum=opt.momentum)


# --- 5. evaluation and bookkeeping ------------------------------------------------------------------


@torch.no_grad()
def member_outputs(module: EnsembleNet, inputs: Any, rows: np.ndarray, device: torch.device) -> torch.Tensor:
    """Raw outputs of every member on these rows, (members, n, n_outputs), float32 on the CPU."""
    module.eval()
    size = _EVAL_BATCH.get(module.input_kind, 1024)
    parts = []
    for start in range(0, len(rows), size):
        prepared = module.prepare(model_inputs.to_device(inputs.batch(rows[start : start + size]), device))
        parts.append(module.run_members(prepared).float().cpu())
    if not parts:
        return torch.empty(module.ensemble_size, 0, module.n_outputs)
    return torch.cat(parts, dim=1)


def member_scores(module: EnsembleNet, outputs: torch.Tensor, target: torch.Tensor) -> list[float]:
    """Per member: MAE in units of each target's training std, averaged over targets (lower is better)."""
    mean, _ = module.split_outputs(outputs)
    standardised = (target - module.target_mean.cpu()) / module.target_std.cpu()
    error = (mean - standardised).abs()  # (members, n, targets); NaN where the target is missing
    per_target = torch.nanmean(error, dim=1)  # (members, targets)
    return [float(torch.nanmean(row)) for row in per_target]


def _cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def _recipe(cfg: TrainConfig) -> dict[str, Any]:
    """The parts of a recipe a resumed run must share (where it runs may change)."""
    return {k: v for k, v in cfg.model_dump(mode="json").items() if k not in ("device", "amp")}


def _atomic_torch_save(payload: dict[str, Any], path: Path) -> None:
    from mi.files import atomic_write_bytes

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _metrics_header(target_names: list[str]) -> list[str]:
    return ["epoch", "lr", "train_loss", "val_score", "best_val_score", *[f"val_mae_{t}" for t in target_names],
            "active_members", "seconds"]


def _restart_metrics_csv(path: Path, header: list[str], keep_epochs: int) -> None:
    """metrics.csv with its header and the rows of the first `keep_epochs` epochs (a resumed run rewrites the rest)."""
    rows = []
    if keep_epochs and path.is_file():
        with open(path, newline="", encoding="utf-8") as handle:
            rows = [r for r in csv.DictReader(handle) if int(r["epoch"]) <= keep_epochs]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def _append_metrics(path: Path, header: list[str], row: dict[str, Any]) -> None:
    with open(path, "a", newline="", encoding="utf-8") as handle:
        csv.DictWriter(handle, fieldnames=header).writerow(row)


# --- the steps of `train` -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """Row positions of each side, and the seed that drew them."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    seed: int


def split_data(cfg: TrainConfig, data: TrainingData) -> Split:
    """Step 2: whole groups (one row, reduced formula or chemical system) to train, validation and test, seeded."""
    seed = cfg.split.seed if cfg.split.seed is not None else cfg.seed
    groups = group_keys(data.formulas, cfg.split.kind)
    return Split(*split_rows(groups, cfg.split.val_fraction, cfg.split.test_fraction, seed), seed=seed)


def build_model(cfg: TrainConfig, data: TrainingData, split: Split, device: torch.device) -> EnsembleNet:
    """Step 3: the seeded network, its normalisers (buffers) fitted on the training rows, on `device`."""
    torch.manual_seed(cfg.seed)
    heteroscedastic = cfg.loss in HETEROSCEDASTIC_LOSSES
    module = build_module(cfg.model, len(data.target_names), n_features=len(data.feature_names),
                          heteroscedastic=heteroscedastic)
    module.fit_normalisers(_subset_inputs(data.inputs, split.train), data.targets[split.train])
    return module.to(device)


@dataclass
class Optimisation:
    """What the epochs change, and what a resume file restores: the optimiser, schedule and loss scaler, each
    member's batch order, best score and weights, and whether it stopped; the split (a resume keeps its own)."""

    module: EnsembleNet
    split: Split
    optimiser: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    orders: list[torch.Generator]
    best: list[dict[str, Any]]
    stopped: list[bool]
    steps_per_epoch: int
    use_amp: bool
    amp_dtype: torch.dtype
    start_epoch: int = 0


def start_optimisation(cfg: TrainConfig, module: EnsembleNet, split: Split, device: torch.device) -> Optimisation:
    """Step 4: one optimiser and one warm-up-then-cosine schedule over all members; mixed precision on CUDA."""
    steps_per_epoch = math.ceil(len(split.train) / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    warmup = int(round(cfg.schedule.warmup_epochs * steps_per_epoch))
    optimiser = make_optimiser(cfg, module.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimiser,
        lambda step: lr_factor(step, total_steps, warmup, cfg.schedule.name, cfg.schedule.min_lr_factor),
    )
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    ensemble = module.ensemble_size
    return Optimisation(
        module=module,
        split=split,
        optimiser=optimiser,
        scheduler=scheduler,
        scaler=torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16),
        orders=[torch.Generator().manual_seed(cfg.seed * 1000 + i) for i in range(ensemble)],
        best=[{"score": math.inf, "epoch": -1, "state": _cpu_state(module.members[i])} for i in range(ensemble)],
        stopped=[False] * ensemble,
        steps_per_epoch=steps_per_epoch,
        use_amp=use_amp,
        amp_dtype=amp_dtype,
    )


def _resume_state(cfg: TrainConfig, opt: Optimisation, data_sha256: str, device: torch.device) -> dict[str, Any]:
    """What resume.pt holds after an epoch: enough to continue as if the run had not stopped."""
    split = opt.split
    return {
        "format": RESUME_FORMAT,
        "version": RESUME_VERSION,
        "epoch": opt.start_epoch,
        "recipe": _recipe(cfg),
        "data_sha256": data_sha256,
        "module": _cpu_state(opt.module),
        "optimiser": opt.optimiser.state_dict(),
        "scheduler": opt.scheduler.state_dict(),
        "scaler": opt.scaler.state_dict(),
        "best": opt.best,
        "stopped": opt.stopped,
        "generators": [g.get_state() for g in opt.orders],
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
        "split": {k: torch.as_tensor(v) for k, v in (("train", split.train), ("val", split.val), ("test", split.test))},
    }


def resume_optimisation(path: Path, cfg: TrainConfig, opt: Optimisation, data_sha256: str, device: torch.device) -> None:
    """Step 4 of a resumed run: restore `opt` (and the RNG states) from `path`, written for the same recipe and data."""
    state = torch.load(path, weights_only=True, map_location="cpu")
    if state.get("format") != RESUME_FORMAT or state.get("version") != RESUME_VERSION:
        raise InputError(f"{path}: not a resume file of this mi (format {state.get('format')!r})")
    if state["recipe"] != _recipe(cfg) or state["data_sha256"] != data_sha256:
        raise InputError(
            f"{path}: written for another recipe or dataset; resume with the same config "
            "and data, or train afresh without --resume"
        )
    opt.module.load_state_dict(state["module"], strict=True)
    opt.optimiser.load_state_dict(state["optimiser"])
    opt.scheduler.load_state_dict(state["scheduler"])
    opt.scaler.load_state_dict(state["scaler"])
    opt.best, opt.stopped, opt.start_epoch = state["best"], list(state["stopped"]), int(state["epoch"])
    for generator, generator_state in zip(opt.orders, state["generators"]):
        generator.set_state(generator_state)
    torch.set_rng_state(state["torch_rng"])
    if device.type == "cuda" and state.get("cuda_rng"):
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    opt.split = Split(*(state["split"][k].numpy() for k in ("train", "val", "test")), seed=opt.split.seed)
    log.info("resuming at epoch %d from %s", opt.start_epoch + 1, path)


def train_epoch(cfg: TrainConfig, opt: Optimisation, data: TrainingData, y_std: torch.Tensor, active: list[int],
                device: torch.device) -> float:
    """Step 5, one epoch's optimisation: every step each active member sees its own shuffled batch; the
    members' masked losses are summed into one backward pass. Returns the mean loss per member and step."""
    module, train_rows, batch_size = opt.module, opt.split.train, cfg.batch_size
    module.train()
    orders_now = {i: torch.randperm(len(train_rows), generator=opt.orders[i]).numpy() for i in active}
    loss_sum, loss_count = 0.0, 0
    for step in range(opt.steps_per_epoch):
        total = torch.zeros((), device=device)
        for i in active:
            rows = train_rows[orders_now[i][step * batch_size : (step + 1) * batch_size]]
            batch = model_inputs.to_device(data.inputs.batch(rows), device, non_blocking=True)
            with torch.autocast(device_type=device.type, dtype=opt.amp_dtype, enabled=opt.use_amp):
                outputs = module.run_member(i, module.prepare(batch))
            mean, log_std = module.split_outputs(outputs.float())
            total = total + masked_loss(cfg.loss, mean, log_std, y_std[torch.as_tensor(rows, device=device)])
        opt.optimiser.zero_grad(set_to_none=True)
        opt.scaler.scale(total).backward()
        if cfg.optimiser.grad_clip is not None:
            opt.scaler.unscale_(opt.optimiser)
            for i in active:  # per member: one member's bad batch must not shrink the others' steps
                torch.nn.utils.clip_grad_norm_(module.members[i].parameters(), cfg.optimiser.grad_clip)
        opt.scaler.step(opt.optimiser)
        opt.scaler.update()
        opt.scheduler.step()
        loss_sum += float(total.detach()) / len(active)
        loss_count += 1
    return loss_sum / max(loss_count, 1)


def validate_epoch(cfg: TrainConfig, opt: Optimisation, data: TrainingData, epoch: int, active: list[int],
                   device: torch.device) -> tuple[list[float], list[float]]:
    """Step 5, after the epoch: each member's validation score, its best weights kept, a member stopped after
    ``patience`` epochs without improvement. Returns (scores, validation MAE of the ensemble per target)."""
    module, y_val = opt.module, data.targets[opt.split.val]
    outputs = member_outputs(module, data.inputs, opt.split.val, device)
    scores = member_scores(module, outputs, y_val)
    for i in active:
        if scores[i] < opt.best[i]["score"]:
            opt.best[i] = {"score": scores[i], "epoch": epoch, "state": _cpu_state(module.members[i])}
        elif epoch - opt.best[i]["epoch"] >= cfg.patience:
            opt.stopped[i] = True
    mean, _ = module.combine(outputs.to(device))
    return scores, torch.nanmean((mean.cpu() - y_val).abs(), dim=0).tolist()


def run_epochs(cfg: TrainConfig, opt: Optimisation, data: TrainingData, data_sha256: str, device: torch.device,
               run_dir: Path | None, progress: bool) -> None:
    """Step 5: the epochs, until ``epochs`` or every member stopped; with `run_dir`, a row of metrics.csv and
    an atomically written resume.pt after each."""
    module = opt.module
    y_std = (data.targets.to(device) - module.target_mean) / module.target_std  # standardised, NaN kept
    header = _metrics_header(data.target_names)
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        _restart_metrics_csv(run_dir / METRICS_FILE, header, opt.start_epoch)
    bar = tqdm(range(opt.start_epoch, cfg.epochs), desc="train", unit="epoch", disable=not progress, leave=False,
               initial=opt.start_epoch, total=cfg.epochs)
    for epoch in bar:
        active = [i for i in range(module.ensemble_size) if not opt.stopped[i]]
        if not active:
            break
        epoch_started = time.perf_counter()
        train_loss = train_epoch(cfg, opt, data, y_std, active, device)
        scores, val_mae = validate_epoch(cfg, opt, data, epoch, active, device)
        bar.set_postfix(val_mae=f"{float(np.nanmean(val_mae)):.4g}", active=len(active))
        if run_dir is None:
            continue
        _append_metrics(run_dir / METRICS_FILE, header, {
            "epoch": epoch + 1,
            "lr": f"{opt.scheduler.get_last_lr()[0]:.6g}",
            "train_loss": f"{train_loss:.6g}",
            "val_score": f"{float(np.mean([scores[i] for i in active])):.6g}",
            "best_val_score": f"{float(np.mean([b['score'] for b in opt.best])):.6g}",
            **{f"val_mae_{t}": f"{v:.6g}" for t, v in zip(data.target_names, val_mae)},
            "active_members": len(active),
            "seconds": f"{time.perf_counter() - epoch_started:.2f}",
        })
        opt.start_epoch = epoch + 1  # the epoch a resume continues after
        _atomic_torch_save(_resume_state(cfg, opt, data_sha256, device), run_dir / RESUME_FILE)
    bar.close()


def restore_best(opt: Optimisation) -> dict[str, Any]:
    """Step 6 of a network: each member's best weights. Returns how training went, for the metrics."""
    module = opt.module
    for i in range(module.ensemble_size):
        module.members[i].load_state_dict(opt.best[i]["state"])
    return {
        "member_val_score": [float(b["score"]) for b in opt.best],
        "best_epochs": [int(b["epoch"]) + 1 for b in opt.best],
        "amp": str(opt.amp_dtype).replace("torch.", "") if opt.use_amp else "off",
    }


def fit_forest(cfg: TrainConfig, module: EnsembleNet, data: TrainingData, split: Split) -> dict[str, Any]:
    """Steps 4 to 6 of a forest: scikit-learn fits its trees on the training rows in one go (no epochs);
    `TreeEnsemble.fit_trees` takes them over as arrays. Returns what was grown, for the metrics."""
    forests = module.fit_trees(_subset_inputs(data.inputs, split.train), data.targets[split.train], seed=cfg.seed,
                               n_jobs=torch.get_num_threads())
    return {"n_nodes": module.n_nodes,
            "max_depth": max(tree.tree_.max_depth for forest in forests for tree in forest.estimators_)}


def calibrated(cfg: TrainConfig, module: EnsembleNet, data: TrainingData, val_rows: np.ndarray,
               device: torch.device) -> tuple[EnsembleNet, dict[str, Any]]:
    """Step 6: the predicted std scaled so that 68.3 % of validation errors fall within one std
    (``recalibrate``). Returns the module on the CPU and the calibration record."""
    module.eval()
    outputs = member_outputs(module, data.inputs, val_rows, device).to(device)
    val_mean, val_std = (t.cpu().numpy() for t in module.combine(outputs))
    y_val = data.targets[val_rows].numpy().astype(float)
    scales, before = [], {}
    for j, target in enumerate(data.target_names):
        before[target] = calibration_metrics(y_val[:, j], val_mean[:, j], val_std[:, j])
        scales.append(fit_std_scale(y_val[:, j], val_mean[:, j], val_std[:, j]) if cfg.recalibrate else 1.0)
    module.std_scale.copy_(torch.tensor(scales, dtype=module.std_scale.dtype))
    module.cpu()
    calibration = {
        "recalibrated": bool(cfg.recalibrate),
        "std_scale": dict(zip(data.target_names, scales)),
        "val_before": before,
    }
    return module, calibration


def training_metrics(module: EnsembleNet, split: Split, data: TrainingData, calibration: dict[str, Any],
                     history: dict[str, Any], device: torch.device, seconds: float) -> dict[str, Any]:
    """Step 6: validation (and test) metrics of the calibrated ensemble, and how training went (`history`)."""
    metrics: dict[str, Any] = {
        "val": _split_metrics(module, data, split.val),
        "calibration": calibration,
        **history,
        "n_train": int(len(split.train)),
        "n_val": int(len(split.val)),
        "n_test": int(len(split.test)),
        "device": str(device),
        "train_seconds": round(seconds, 1),
    }
    if len(split.test):
        metrics["test"] = _split_metrics(module, data, split.test)
    metrics["val_mae"] = {t: m["mae"] for t, m in metrics["val"].items()}
    return metrics


def package(cfg: TrainConfig, dataset: Dataset, data: TrainingData, data_sha256: str, module: EnsembleNet,
            split: Split, metrics: dict[str, Any], training_info: dict[str, Any] | None,
            baseline: dict[str, Any] | None = None, domain_rows: np.ndarray | None = None,
            std_rows: np.ndarray | dict[str, np.ndarray] | None = None) -> Surrogate:
    """Step 7: the `Surrogate`: module, card (targets, units, features, data, recipe, metrics) and the domain
    of applicability (`fit_domain`; on the training rows and the validation std unless told otherwise)."""
    spec = SurrogateSpec(
        feature_sets=data.feature_sets,
        feature_names=data.feature_names,
        targets=data.target_names,
        units=data.units,
        training={
            **(training_info or {}),
            "dataset": dict(dataset.info),
            "data_sha256": data_sha256,
            "n_rows": int(len(dataset)),
            "n_used": int(len(data.ids)),
            "n_failed": len(data.failures),
            "split": {"kind": cfg.split.kind, "seed": int(split.seed)},
            "recipe": cfg.model_dump(mode="json"),
            "metrics": metrics,
        },
        baseline=baseline,
    )
    domain = fit_domain(module, data, split.train if domain_rows is None else domain_rows,
                        split.val if std_rows is None else std_rows, seed=cfg.seed)
    energy = baseline_energy_model(baseline["energy_model"], baseline["energy_sha256"]) if baseline else None
    return Surrogate(module, spec, domain, energy)


def train(
    cfg: TrainConfig,
    dataset: Dataset,
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    training_info: dict[str, Any] | None = None,
) -> tuple[Surrogate, dict[str, Any]]:
    """Train the model of `cfg` on `dataset`; see the module docstring. Returns (surrogate on the CPU, metrics).

    With `run_dir`, writes ``metrics.csv`` and ``resume.pt`` there every epoch; ``resume=True`` continues
    from that resume file (same recipe and data, else an error).
    """
    started = time.perf_counter()
    device = resolve_device(cfg.device)
    run_dir = Path(run_dir) if run_dir is not None else None
    if resume and cfg.model.kind == "forest":
        raise InputError("--resume: a forest is fitted in one go, there is nothing to resume; train without --resume")
    if resume and (run_dir is None or not (run_dir / RESUME_FILE).is_file()):
        raise InputError(f"--resume: no {RESUME_FILE} in {run_dir} to resume from")
    data = prepare_data(cfg, dataset)
    baseline = None
    if cfg.baseline is not None:
        data, baseline = subtract_baseline(cfg.baseline, data)
    data_sha256 = dataset_hash(dataset)
    if len(data.ids) < 2:
        raise InputError(f"training needs at least two usable rows with a target, got {len(data.ids)}")
    split = split_data(cfg, data)
    module = build_model(cfg, data, split, device)
    if cfg.model.kind == "forest":
        history = fit_forest(cfg, module, data, split)
    else:
        opt = start_optimisation(cfg, module, split, device)
        if resume:
            resume_optimisation(run_dir / RESUME_FILE, cfg, opt, data_sha256, device)
        run_epochs(cfg, opt, data, data_sha256, device, run_dir, progress)
        split, history = opt.split, restore_best(opt)  # a resumed run keeps the split it started with
    module, calibration = calibrated(cfg, module, data, split.val, device)
    metrics = training_metrics(module, split, data, calibration, history, device, time.perf_counter() - started)
    domain_rows, std_rows = split.train, split.val
    if cfg.refit and len(split.val):
        # the split's model sets the std thresholds (on rows it did not fit); the refitted trees then know the
        # validation rows too, and so does the domain's reference
        std_rows = validation_std(module, data, split.val)
        domain_rows = np.sort(np.concatenate([split.train, split.val]))
        metrics["refit"] = {"n_rows": int(len(domain_rows)),
                            **fit_forest(cfg, module, data, Split(domain_rows, split.val[:0], split.test, split.seed))}
    surrogate = package(cfg, dataset, data, data_sha256, module, split, metrics, training_info, baseline,
                        domain_rows=domain_rows, std_rows=std_rows)
    return surrogate, metrics


@torch.no_grad()
def validation_std(module: EnsembleNet, data: TrainingData, rows: np.ndarray) -> dict[str, np.ndarray]:
    """``{target: predicted std}`` of `module` on `rows` (what `fit_domain` sets the std thresholds from)."""
    _, std = module.combine(member_outputs(module, data.inputs, rows, torch.device("cpu")))
    return {t: std[:, j].numpy() for j, t in enumerate(data.target_names)}


@torch.no_grad()
def fit_domain(module: EnsembleNet, data: TrainingData, train_rows: np.ndarray,
               val_rows: np.ndarray | dict[str, np.ndarray], seed: int = 0):
    """The domain of applicability (`mi.models.domain`) of a trained module: elements and distances from the
    training rows, the std threshold from rows it did not train on (validation; training rows without one),
    or from `val_rows` given as that std already (``{target: std}``, `validation_std`)."""
    from mi.models.domain import Domain, element_fractions

    compositions = [Composition(f) for f in data.formulas]
    x = getattr(data.inputs, "x", None)
    space = "descriptors" if x is not None and data.feature_names else "element_fractions"
    matrix = x.numpy() if space == "descriptors" else element_fractions(compositions)
    domain = Domain.fit(
        matrix[train_rows], [compositions[i] for i in train_rows], space=space, seed=seed
    )
    if isinstance(val_rows, dict):
        return domain.with_std_thresholds(val_rows)
    return domain.with_std_thresholds(validation_std(module, data, val_rows if len(val_rows) else train_rows))


def attach_domain(surrogate: Surrogate, cfg: TrainConfig, dataset: Dataset) -> Surrogate:
    """`surrogate` (trained by recipe `cfg` on `dataset`) with its domain fitted on the same split, without
    retraining: for checkpoints written before domains existed."""
    if cfg.refit:  # its std thresholds came from the split's trees, which the refit replaced
        raise InputError("--domain-only: a refitted forest's domain comes from the model before its refit; "
                         "train it again (a forest takes seconds)")
    data = prepare_data(cfg, dataset)
    if cfg.baseline is not None:  # the rows training kept
        data, _ = subtract_baseline(cfg.baseline, data)
    split = split_data(cfg, data)
    surrogate.module.cpu()
    domain = fit_domain(surrogate.module, data, split.train, split.val, cfg.seed)
    return Surrogate(surrogate.module, surrogate.spec, domain, surrogate.baseline_model)


@torch.no_grad()
def _split_metrics(module: EnsembleNet, data: TrainingData, rows: np.ndarray) -> dict[str, dict[str, float]]:
    """Regression and calibration metrics per target on these rows (the module on the CPU)."""
    mean, std = (t.numpy() for t in module.combine(member_outputs(module, data.inputs, rows, torch.device("cpu"))))
    truth = data.targets[rows].numpy().astype(float)
    out = {}
    for j, target in enumerate(data.target_names):
        out[target] = {
            **regression_metrics(truth[:, j], mean[:, j]),
            **calibration_metrics(truth[:, j], mean[:, j], std[:, j]),
        }
    return out


# --- entry points -----------------------------------------------------------------------------------


def train_surrogate(
    cfg: TrainConfig,
    frame: pd.DataFrame,
    units: dict[str, str],
    progress: bool = True,
    *,
    dataset_info: dict[str, Any] | None = None,
) -> tuple[Surrogate, dict[str, Any]]:
    """Train on a table with a ``formula`` column and one column per target (composition-only data)."""
    if "formula" not in frame.columns:
        raise InputError(f"the training table needs a 'formula' column (has: {', '.join(map(str, frame.columns))})")
    if len(frame.columns) < 2:
        raise InputError("the training table has no target columns besides 'formula'")
    frame = frame.reset_index(drop=True)
    frame.index = pd.Index([str(i) for i in frame.index], name="id")
    dataset = Dataset(frame, dict(units), dict(dataset_info or {}))
    return train(cfg, dataset, progress=progress)


def default_run_dir(run_cfg: TrainRunConfig) -> Path:
    """``run_dir`` of the config, else ``<checkpoint>.run/`` beside the checkpoint."""
    if run_cfg.run_dir:
        return run_cfg.resolve(run_cfg.run_dir)
    checkpoint = run_cfg.resolve(run_cfg.checkpoint)
    return checkpoint.with_name(checkpoint.name + ".run")


def train_from_config(run_cfg: TrainRunConfig, progress: bool = True, resume: bool = False) -> Path:
    """Load the dataset, train (writing the run folder), save the checkpoint; returns its path."""
    from mi.files import atomic_write_bytes

    from mi.features.sets import check_names

    check_names(run_cfg)  # the recipe's feature sets, before any data is read
    dataset_cfg = run_cfg.train.dataset
    dataset = load_dataset(dataset_cfg, run_cfg.resolve(dataset_cfg.path) if dataset_cfg.path else None, resolve=run_cfg.resolve)
    run_dir = default_run_dir(run_cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = run_cfg.model_dump(mode="json")
    if dataset_cfg.path:
        resolved["train"]["dataset"]["path"] = str(run_cfg.resolve(dataset_cfg.path).resolve())
    resolved["checkpoint"] = str(run_cfg.resolve(run_cfg.checkpoint).resolve())
    resolved["run_dir"] = str(run_dir.resolve())
    atomic_write_bytes(run_dir / "config.yaml", yaml.safe_dump(resolved, sort_keys=False).encode())
    surrogate, metrics = train(
        run_cfg.train, dataset, run_dir=run_dir, resume=resume, progress=progress,
        training_info={"name": run_cfg.name, **run_cfg.card},
    )
    out = save_checkpoint(surrogate, run_cfg.resolve(run_cfg.checkpoint).resolve())
    log.info("saved %s (val MAE %s)", out, metrics["val_mae"])
    return out


def domain_from_config(run_cfg: TrainRunConfig) -> Path:
    """Fit the domain of the recipe's existing checkpoint on the recipe's data and split; re-save it in place."""
    from mi.models.checkpoint import load_checkpoint

    path = run_cfg.resolve(run_cfg.checkpoint).resolve()
    surrogate = load_checkpoint(path)
    recipe, wanted = surrogate.spec.training.get("recipe") or {}, run_cfg.train.model_dump(mode="json")
    if any(recipe.get(k) != wanted[k] for k in ("model", "split", "seed")):  # what fixes inputs and split
        raise InputError(f"{path}: trained with another recipe than {run_cfg.name!r}; retrain it instead")
    dataset_cfg = run_cfg.train.dataset
    dataset = load_dataset(dataset_cfg, run_cfg.resolve(dataset_cfg.path) if dataset_cfg.path else None, resolve=run_cfg.resolve)
    if surrogate.spec.training.get("data_sha256") != dataset_hash(dataset):
        raise InputError(f"{path}: trained on other data than the recipe reads now; retrain it instead")
    surrogate = attach_domain(surrogate, run_cfg.train, dataset)
    surrogate.spec.training.update(run_cfg.card)
    return save_checkpoint(surrogate, path)


__all__ = [
    "TrainingData",
    "domain_from_config",
    "attach_domain",
    "default_run_dir",
    "fit_domain",
    "featurize_formulas",
    "group_keys",
    "lr_factor",
    "masked_loss",
    "prepare_data",
    "split_rows",
    "train",
    "train_from_config",
    "train_surrogate",
]
