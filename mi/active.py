"""The active-learning loop: rank the pool with the surrogate, label a batch, retrain, repeat.

`run_loop` reads top to bottom:

0. the pool (a candidates section or a dataset) is read and featurized once, for the feature sets the
   surrogate's recipe needs; the labeller is built (a table, or the CHGNet oracle);
1. round 0 labels the initial set (a labelled table, or ``n_random`` seeded picks);
2. each round r = 1..rounds: train the surrogate on everything labelled so far (seed ``train.seed + r``),
   predict the unlabelled pool, score every row by the acquisition function on the multi-objective score
   (`mi.ranking.acquisition`; rows within the constraints first), label the best ``batch_size``, and
   write the round: ``labelled.csv`` and ``failures.csv`` (each row with its round), then one row of
   ``loop_log.csv`` (the mark that the round is complete), ``loop.png`` and ``model.pt``.

``resume`` reads ``loop_log.csv``, keeps the labels of the complete rounds and goes on from the next one;
a resumed loop must have the same config (``rounds`` may grow). All files are written atomically.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from mi.candidates.base import Candidate, Failure
from mi.config import LoopConfig, model_feature_sets
from mi.errors import ConfigError, InputError
from mi.oracle.base import Labeller

log = logging.getLogger(__name__)

LOG_FILE = "loop_log.csv"
LABELS_FILE = "labelled.csv"
FAILURES_FILE = "failures.csv"
PLOT_FILE = "loop.png"
CONFIG_FILE = "config.yaml"
MODEL_FILE = "model.pt"


@dataclass
class LoopResult:
    out_dir: Path
    log: pd.DataFrame  # one row per complete round
    labelled: pd.DataFrame  # id, formula, round, targets, the prediction and acquisition value at pick time
    failures: list[Failure]


# --- set-up -----------------------------------------------------------------------------------------


def make_labeller(cfg: LoopConfig) -> Labeller:
    """The configured labeller: a table, or an oracle of the registry set up as `mi label` sets it up (its
    module imported only when asked for)."""
    spec = cfg.labeller
    if spec.kind == "table":
        from mi.oracle.table import TableLabeller

        return TableLabeller(
            cfg.resolve(spec.path), dict(spec.targets), dict(spec.units), match=spec.match,
            formula_column=spec.formula_column, duplicates=spec.duplicates,
        )
    from mi.oracle.run import build_labeller

    return build_labeller(spec.oracle, spec.labels, cfg.resolve)


def read_pool(cfg: LoopConfig) -> tuple[list[Candidate], list[Failure]]:
    """The pool's candidates and the failures of reading it."""
    if cfg.pool.candidates is not None:
        from mi.candidates import read_candidates

        return read_candidates(cfg.pool.candidates, cfg.resolve)
    from mi.models.datasets import load_dataset

    dataset_cfg = cfg.pool.dataset
    dataset = load_dataset(dataset_cfg, cfg.resolve(dataset_cfg.path) if dataset_cfg.path else None, resolve=cfg.resolve)
    candidates, failures = dataset.candidates()
    return candidates, [*dataset.failures, *failures]


def feature_sets(cfg: LoopConfig) -> list[str]:
    """The descriptor sets the surrogate's recipe reads (none for a graph network)."""
    return model_feature_sets(cfg.train.model)


def featurize_pool(cfg: LoopConfig, candidates: list[Candidate]) -> tuple[pd.DataFrame, list[Failure]]:
    """Features of the pool, computed once (cached by content hash as `features` says)."""
    from mi.features import featurize_with_config

    sets = feature_sets(cfg)
    if not sets:
        return pd.DataFrame(index=pd.Index([c.id for c in candidates], name="id")), []
    result = featurize_with_config(candidates, sets, cfg.features, working_ion=None, resolve=cfg.resolve)
    return result.features, result.failures


def _check_columns(cfg: LoopConfig, targets: list[str]) -> None:
    for field_name, items in (("objectives", cfg.objectives), ("constraints", cfg.constraints), ("good", cfg.good)):
        for i, item in enumerate(items):
            if item.column not in targets:
                raise ConfigError(
                    f"{field_name}[{i}].column: {item.column!r} is not a target of the labeller ({', '.join(targets)})"
                )


def _comparable(cfg: LoopConfig) -> dict:
    """The config a resumed loop must share: everything but the number of rounds."""
    data = cfg.model_dump(mode="json")
    data.pop("rounds", None)
    return data


# --- bookkeeping ------------------------------------------------------------------------------------


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    from mi.files import atomic_write_csv

    atomic_write_csv(path, frame)


def _failures_frame(failures: list[tuple[int | None, Failure]]) -> pd.DataFrame:
    """failures.csv: pool failures (reading, features) with an empty round, label failures with theirs."""
    rows = [{**f.as_row(), "round": "" if r is None else r} for r, f in failures]
    return pd.DataFrame(rows, columns=[*Failure.COLUMNS, "round"])


def good_mask(labels: pd.DataFrame, cfg: LoopConfig) -> np.ndarray:
    """Labelled rows that count as discoveries: within every `good` constraint (on the labels)."""
    from mi.ranking.acquisition import feasible

    if not cfg.good or labels.empty:
        return np.zeros(len(labels), dtype=bool)
    return feasible(labels.reset_index(drop=True), cfg.good)


def write_plot(path: Path, log_frame: pd.DataFrame, cfg: LoopConfig, targets: list[str]) -> None:
    """loop.png: discoveries (or the best first objective) against oracle calls, and validation MAE by round."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from mi.files import atomic_write_bytes

    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    calls = log_frame["n_calls"].to_numpy(dtype=float)
    if cfg.good:
        left.plot(calls, log_frame["n_good"].to_numpy(dtype=float), "o-", color="#c0392b")
        left.set_ylabel("good candidates found")
    else:
        column = cfg.objectives[0].column
        left.plot(calls, log_frame[f"best_{column}"].to_numpy(dtype=float), "o-", color="#c0392b")
        left.set_ylabel(f"best {column} ({cfg.objectives[0].direction})")
    left.set_xlabel("oracle calls")
    left.set_title(f"{cfg.name}: {cfg.acquisition.kind}")
    for target in targets:
        column = f"val_mae_{target}"
        if column in log_frame.columns and log_frame[column].notna().any():
            right.plot(log_frame["round"], log_frame[column].to_numpy(dtype=float), "o-", label=target)
    right.set_xlabel("round")
    right.set_ylabel("surrogate validation MAE")
    if right.get_legend_handles_labels()[0]:
        right.legend(fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())


# --- the loop ---------------------------------------------------------------------------------------


def _training_dataset(labelled: pd.DataFrame, targets: list[str], units: dict[str, str], by_id: dict[str, Candidate]):
    from mi.models.datasets import Dataset

    frame = labelled.set_index("id")[["formula", *targets]].astype({t: float for t in targets})
    frame.index = pd.Index([str(i) for i in frame.index], name="id")
    structures = tuple(by_id[i].structure if i in by_id else None for i in frame.index)
    return Dataset(frame, dict(units), {"name": "active_learning_labels"},
                   structures if any(s is not None for s in structures) else None)


def _score_frame(
    labelled: pd.DataFrame, predictions: pd.DataFrame | None, targets: list[str]
) -> tuple[pd.DataFrame, np.ndarray]:
    """One frame for ranking: labels (std 0) for labelled rows, predictions for the others; and the mask
    of labelled rows."""
    labels = labelled[["id", *targets]].copy()
    for t in targets:
        labels[f"{t}_std"] = 0.0
    parts = [labels]
    if predictions is not None and len(predictions):
        predicted = predictions.reset_index().rename(columns={predictions.index.name or "index": "id"})
        parts.append(predicted[["id", *[c for t in targets for c in (t, f"{t}_std")]]])
    frame = pd.concat(parts, ignore_index=True)
    return frame, np.arange(len(frame)) < len(labels)


def _log_row(
    round_: int, labelled: pd.DataFrame, n_calls: int, n_failed: int, cfg: LoopConfig, targets: list[str],
    predictions: pd.DataFrame | None, metrics: dict | None, seconds: float,
) -> dict:
    from mi.ranking.stats import weighted_score

    row: dict = {"round": round_, "n_labelled": len(labelled), "n_calls": n_calls, "n_failed": n_failed}
    best_score = np.nan
    if predictions is not None and len(labelled):
        frame, is_label = _score_frame(labelled, predictions, targets)
        best_score = float(weighted_score(frame, cfg.objectives)[is_label].max())
    row["best_score"] = best_score
    for o in cfg.objectives:
        values = pd.to_numeric(labelled[o.column], errors="coerce")
        row[f"best_{o.column}"] = (values.max() if o.direction == "max" else values.min()) if len(values) else np.nan
    row["n_good"] = int(good_mask(labelled, cfg).sum()) if cfg.good else np.nan
    for t in targets:
        row[f"val_mae_{t}"] = (metrics or {}).get("val_mae", {}).get(t, np.nan)
    row["acquisition"] = "initial" if round_ == 0 else cfg.acquisition.kind
    row["seconds"] = round(seconds, 2)
    return row


def _label(
    labeller: Labeller, picks: list[Candidate], round_: int, targets: list[str], extra: pd.DataFrame | None
) -> tuple[pd.DataFrame, list[Failure]]:
    labels, failures = labeller.label(picks)
    by_id = {c.id: c for c in picks}
    rows = pd.DataFrame(
        {
            "id": list(labels.index.astype(str)),
            "formula": [by_id[i].formula for i in labels.index],
            "round": round_,
        }
    )
    for t in targets:
        rows[t] = labels[t].to_numpy(dtype=float) if t in labels.columns else np.nan
    if extra is not None:
        rows = rows.merge(extra, on="id", how="left")
    return rows, failures


def run_loop(
    cfg: LoopConfig,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    labeller: Labeller | None = None,
    pool: tuple[list[Candidate], pd.DataFrame] | None = None,
) -> LoopResult:
    """Run (or resume) the loop of `cfg` into `out` (default ``<out_dir>/<name>``); see the module docstring.

    `labeller` and `pool` (candidates and their features) replace the configured ones, so that a benchmark
    can share one featurized pool between runs.
    """
    from mi.candidates.generate.prototypes import check_jobs
    from mi.features.sets import check_names
    from mi.files import atomic_write_text
    from mi.models.checkpoint import save_checkpoint
    from mi.models.train import train
    from mi.ranking.acquisition import acquisition_values, feasible, select_batch

    check_names(cfg)  # names only the stages know, before the loop folder is touched
    check_jobs(cfg)
    out_dir = Path(out) if out is not None else cfg.resolve(cfg.out_dir) / cfg.name
    log_path = out_dir / LOG_FILE
    if resume and not log_path.is_file():
        raise InputError(f"--resume: no {LOG_FILE} in {out_dir} to resume from")
    if not resume and log_path.is_file():
        raise InputError(f"{out_dir} holds a loop already ({LOG_FILE}); --resume continues it, or choose another --out")
    if resume:
        config_path = out_dir / CONFIG_FILE
        recorded = yaml.safe_load(config_path.read_text(encoding="utf-8")) if config_path.is_file() else None
        if recorded is not None:
            recorded.pop("rounds", None)
            if recorded != _comparable(cfg):
                raise InputError(f"--resume: {config_path} differs from this config (only 'rounds' may change)")
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / CONFIG_FILE, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))

    # 0. pool, features, labeller
    labeller = labeller if labeller is not None else make_labeller(cfg)
    targets = list(labeller.targets)
    _check_columns(cfg, targets)
    units = labeller.units
    if pool is None:
        candidates, pool_failures = read_pool(cfg)
        features, feature_failures = featurize_pool(cfg, candidates)
        pool_failures += feature_failures
    else:
        (candidates, features), pool_failures = pool, []
    candidates = [c for c in candidates if c.id in features.index]
    if not candidates:
        raise InputError("the pool has no usable candidates (none could be read and featurized)")
    by_id = {c.id: c for c in candidates}
    pool_ids = np.array([c.id for c in candidates], dtype=object)
    features = features.loc[list(pool_ids)]
    log.info("pool: %d candidates (%d failed to read or featurize)", len(candidates), len(pool_failures))

    # 1. state: resumed, or round 0
    label_failures: list[tuple[int, Failure]] = []
    if resume:
        log_frame = pd.read_csv(log_path)
        done = int(log_frame["round"].max())
        labelled = pd.read_csv(out_dir / LABELS_FILE, dtype={"id": str}, keep_default_na=False, na_values=[""])
        labelled = labelled[labelled["round"] <= done].reset_index(drop=True)
        if (out_dir / FAILURES_FILE).is_file():
            old = pd.read_csv(out_dir / FAILURES_FILE, dtype=str, keep_default_na=False)
            for row in old.to_dict("records"):
                if row["round"] and int(row["round"]) <= done:  # pool failures (no round) are found again
                    failure = Failure(row["file"], row["record"], row["stage"], row["reason"], id=row["id"])
                    label_failures.append((int(row["round"]), failure))
        rows = log_frame.to_dict("records")
        n_calls = int(log_frame["n_calls"].iloc[-1])
        log.info("resuming after round %d (%d labelled)", done, len(labelled))
    else:
        done, rows = 0, []
        t0 = time.perf_counter()
        if cfg.initial.labelled is not None:
            from mi.models.datasets import read_table

            path = cfg.resolve(cfg.initial.labelled)
            table = read_table(path, {t: t for t in targets}, units)
            labelled = table.frame.reset_index()[["id", "formula", *targets]]
            labelled.insert(2, "round", 0)
            n_calls = 0
        else:
            rng = np.random.default_rng([cfg.seed, 0])
            n = min(cfg.initial.n_random, len(pool_ids))
            picks = [by_id[i] for i in rng.choice(sorted(pool_ids), size=n, replace=False)]
            labelled, failures = _label(labeller, picks, 0, targets, None)
            label_failures += [(0, f) for f in failures]
            n_calls = len(picks)
        seconds = time.perf_counter() - t0
        rows.append(_log_row(0, labelled, n_calls, len(label_failures), cfg, targets, None, None, seconds))
        _write_round(out_dir, labelled, label_failures, pool_failures, rows, cfg, targets)

    # 2. rounds
    model = None
    for round_ in range(done + 1, cfg.rounds + 1):
        t0 = time.perf_counter()
        done_ids = set(labelled["id"].astype(str)) | {f.id for _, f in label_failures}
        open_mask = np.array([i not in done_ids for i in pool_ids])
        if not open_mask.any():
            log.info("the pool is exhausted after round %d", round_ - 1)
            break
        open_ids = pool_ids[open_mask]
        metrics, predictions = None, None
        if cfg.acquisition.kind == "random":
            table = pd.DataFrame({"id": open_ids})
            values = acquisition_values(table, cfg.objectives, "random", seed=[cfg.seed, round_])
            preferred = None
        else:
            recipe = cfg.train.model_copy(update={"seed": cfg.train.seed + round_})
            dataset = _training_dataset(labelled, targets, units, by_id)
            model, metrics = train(recipe, dataset, run_dir=None, progress=False)
            open_candidates = [by_id[i] for i in open_ids]
            predictions = model.predict(features.loc[list(open_ids)], open_candidates)
            frame, is_label = _score_frame(labelled, predictions, targets)
            all_values = acquisition_values(
                frame, cfg.objectives, cfg.acquisition.kind, kappa=cfg.acquisition.kappa, xi=cfg.acquisition.xi,
                labelled=is_label,
            )
            all_preferred = feasible(frame, cfg.constraints)
            table = frame[~is_label].reset_index(drop=True)
            values, preferred = all_values[~is_label], all_preferred[~is_label]
        picked = select_batch(table, values, cfg.batch_size, preferred=preferred)
        extra = pd.DataFrame({"id": table["id"].astype(str), "acquisition_value": values})
        if predictions is not None:
            predicted = predictions.add_prefix("predicted_")
            predicted.index = predicted.index.astype(str)
            extra = extra.merge(predicted, left_on="id", right_index=True, how="left")
        extra = extra[extra["id"].isin(picked)]
        new, failures = _label(labeller, [by_id[i] for i in picked], round_, targets, extra)
        labelled = pd.concat([labelled, new], ignore_index=True)
        label_failures += [(round_, f) for f in failures]
        n_calls += len(picked)
        rows.append(
            _log_row(round_, labelled, n_calls, len(label_failures), cfg, targets, predictions, metrics,
                     time.perf_counter() - t0)
        )
        if model is not None:
            save_checkpoint(model, out_dir / MODEL_FILE)
        _write_round(out_dir, labelled, label_failures, pool_failures, rows, cfg, targets)
        last = rows[-1]
        log.info(
            "round %d: %d labelled, %s good, best score %s, %.1f s", round_, last["n_labelled"], last["n_good"],
            f"{last['best_score']:.3f}" if np.isfinite(last["best_score"]) else "-", last["seconds"],
        )
    log_frame = pd.DataFrame(rows)
    return LoopResult(out_dir, log_frame, labelled, [*pool_failures, *(f for _, f in label_failures)])


def _write_round(
    out_dir: Path, labelled: pd.DataFrame, label_failures: list[tuple[int, Failure]], pool_failures: list[Failure],
    rows: list[dict], cfg: LoopConfig, targets: list[str],
) -> None:
    """Labels and failures first, the log row last: a round is complete once the log says so."""
    _write_csv(out_dir / LABELS_FILE, labelled)
    _write_csv(out_dir / FAILURES_FILE, _failures_frame([*((None, f) for f in pool_failures), *label_failures]))
    log_frame = pd.DataFrame(rows)
    _write_csv(out_dir / LOG_FILE, log_frame)
    write_plot(out_dir / PLOT_FILE, log_frame, cfg, targets)


__all__ = ["LoopResult", "feature_sets", "featurize_pool", "good_mask", "make_labeller", "read_pool", "run_loop"]
