"""Evaluate a surrogate on a dataset: regression, calibration and threshold metrics, parity and calibration plots.

`mi evaluate CHECKPOINT DATASET --out DIR` writes into DIR:

* ``metrics.json``: per target MAE, RMSE, R2, Spearman, the fraction of |errors| within 1 and 2 predicted
  std (0.683 and 0.954 for a calibrated Gaussian), and for each ``--threshold "target<=value"`` the
  precision, recall, F1, prevalence and discovery acceleration factor (DAF = precision / prevalence: how
  much more often a predicted hit is a real hit than a random pick);
* ``predictions.csv``: id, formula, true value, prediction and std per target;
* ``parity.png`` and ``calibration.png``.

DATASET is a table file (CSV, JSON, extended XYZ, ASE db; target columns named like the checkpoint's
targets, or mapped with ``--column TARGET=COLUMN``), an OBELiX folder, or a YAML file holding a dataset
config (``kind: ..., path: ...``, paths relative to that file).
"""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ONE_SIGMA = math.erf(1 / math.sqrt(2))  # 0.6827
TWO_SIGMA = math.erf(2 / math.sqrt(2))  # 0.9545
_THRESHOLD = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(<=|>=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


# --- metrics ----------------------------------------------------------------------------------------


def _finite(*arrays: np.ndarray) -> np.ndarray:
    mask = np.ones(len(arrays[0]), dtype=bool)
    for array in arrays:
        mask &= np.isfinite(np.asarray(array, dtype=float))
    return mask


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """n, MAE, RMSE, R2 and Spearman's rank correlation over the rows where both are finite."""
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    ok = _finite(y_true, y_pred)
    t, p = y_true[ok], y_pred[ok]
    n = int(ok.sum())
    if n == 0:
        return {"n": 0, "mae": math.nan, "rmse": math.nan, "r2": math.nan, "spearman": math.nan}
    error = p - t
    variance = float(np.sum((t - t.mean()) ** 2))
    spearman = math.nan
    if n > 1 and np.ptp(t) > 0 and np.ptp(p) > 0:
        spearman = float(pd.Series(t).rank().corr(pd.Series(p).rank()))
    return {
        "n": n,
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "r2": float(1.0 - np.sum(error**2) / variance) if variance > 0 else math.nan,
        "spearman": spearman,
    }


def calibration_metrics(y_true: np.ndarray, mean: np.ndarray, std: np.ndarray) -> dict[str, float]:
    """Fraction of |errors| within 1 and 2 predicted std (0.683 / 0.954 when calibrated), and the mean std."""
    y_true, mean, std = (np.asarray(a, dtype=float) for a in (y_true, mean, std))
    ok = _finite(y_true, mean, std)
    if not ok.any():
        return {"within_1sigma": math.nan, "within_2sigma": math.nan, "mean_std": math.nan}
    error = np.abs(mean[ok] - y_true[ok])
    return {
        "within_1sigma": float(np.mean(error <= std[ok])),
        "within_2sigma": float(np.mean(error <= 2 * std[ok])),
        "mean_std": float(np.mean(std[ok])),
    }


def fit_std_scale(y_true: np.ndarray, mean: np.ndarray, std: np.ndarray, min_rows: int = 5) -> float:
    """The factor that puts 68.3 % of |errors| within one scaled std (1.0 with fewer than `min_rows` rows)."""
    y_true, mean, std = (np.asarray(a, dtype=float) for a in (y_true, mean, std))
    ok = _finite(y_true, mean, std) & (std > 0)
    if ok.sum() < min_rows:
        return 1.0
    z = np.abs(mean[ok] - y_true[ok]) / std[ok]
    scale = float(np.quantile(z, ONE_SIGMA))
    return scale if scale > 0 else 1.0


def parse_threshold(text: str) -> tuple[str, str, float]:
    """``"e_hull_eV_atom<=0.05"`` -> ("e_hull_eV_atom", "<=", 0.05); the hits are the rows that satisfy it."""
    match = _THRESHOLD.match(text)
    if not match:
        from mi.errors import ConfigError

        raise ConfigError(f"--threshold {text!r}: expected TARGET<=VALUE (or <, >=, >), e.g. e_hull_eV_atom<=0.05")
    return match.group(1), match.group(2), float(match.group(3))


def _satisfies(values: np.ndarray, op: str, value: float) -> np.ndarray:
    return {"<=": values <= value, "<": values < value, ">=": values >= value, ">": values > value}[op]


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, op: str, value: float) -> dict[str, float]:
    """Precision, recall, F1, prevalence and discovery acceleration factor of 'y op value' as the hit class."""
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    ok = _finite(y_true, y_pred)
    actual, predicted = _satisfies(y_true[ok], op, value), _satisfies(y_pred[ok], op, value)
    tp = int(np.sum(actual & predicted))
    n_pred, n_true, n = int(predicted.sum()), int(actual.sum()), int(ok.sum())
    precision = tp / n_pred if n_pred else math.nan
    recall = tp / n_true if n_true else math.nan
    f1 = 2 * precision * recall / (precision + recall) if n_pred and n_true and (precision + recall) > 0 else (
        0.0 if n_pred and n_true else math.nan
    )
    prevalence = n_true / n if n else math.nan
    return {
        "threshold": f"{op}{value:g}",
        "n": n,
        "n_true_hits": n_true,
        "n_predicted_hits": n_pred,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "prevalence": prevalence,
        "daf": precision / prevalence if n_pred and prevalence else math.nan,
        "accuracy": float(np.mean(actual == predicted)) if n else math.nan,
    }


# --- plots ------------------------------------------------------------------------------------------


def _figure(n_panels: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.2 * n_panels, 4.0), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)  # no pyplot, no global backend: safe in any process
    return figure, [figure.add_subplot(1, n_panels, i + 1) for i in range(n_panels)]


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def parity_png(truth: dict[str, np.ndarray], mean: dict[str, np.ndarray], std: dict[str, np.ndarray],
               units: dict[str, str], title: str = "") -> bytes:
    """Predicted vs true per target, with the predicted std as error bars and the y = x line."""
    figure, axes = _figure(len(truth))
    for ax, target in zip(axes, truth):
        t, m, s = truth[target], mean[target], std[target]
        ok = _finite(t, m)
        ax.errorbar(t[ok], m[ok], yerr=np.nan_to_num(s[ok]), fmt="o", ms=2.5, alpha=0.5, elinewidth=0.5,
                    color="tab:blue", ecolor="0.6")
        if ok.any():
            lo, hi = float(min(t[ok].min(), m[ok].min())), float(max(t[ok].max(), m[ok].max()))
            ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        unit = f" [{units.get(target)}]" if units.get(target) else ""
        metrics = regression_metrics(t, m)
        ax.set_xlabel(f"true {target}{unit}")
        ax.set_ylabel(f"predicted{unit}")
        ax.set_title(f"{title}MAE {metrics['mae']:.3g}, R2 {metrics['r2']:.3f}, n {metrics['n']}", fontsize=9)
    return _png(figure)


def calibration_png(truth: dict[str, np.ndarray], mean: dict[str, np.ndarray], std: dict[str, np.ndarray]) -> bytes:
    """Observed fraction of |errors| within the central interval of each probability vs that probability."""
    from statistics import NormalDist

    figure, axes = _figure(len(truth))
    expected = np.linspace(0.01, 0.99, 50)
    z = np.array([NormalDist().inv_cdf((1.0 + p) / 2.0) for p in expected])  # half-width of the central interval
    for ax, target in zip(axes, truth):
        t, m, s = truth[target], mean[target], std[target]
        ok = _finite(t, m, s) & (s > 0)
        ratio = np.abs(m[ok] - t[ok]) / s[ok]
        observed = np.array([np.mean(ratio <= k) for k in z]) if ok.any() else np.full_like(expected, np.nan)
        ax.plot(expected, observed, "-", color="tab:orange", label="model")
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
        ax.set_xlabel("expected fraction within interval")
        ax.set_ylabel("observed fraction")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(target, fontsize=9)
        ax.legend(loc="upper left", fontsize=8)
    return _png(figure)


def _jsonable(value: Any) -> Any:
    """NaN -> None (JSON has no NaN), numpy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


# --- the command ------------------------------------------------------------------------------------


def load_eval_dataset(spec: str | Path, targets: list[str], columns: dict[str, str] | None = None):
    """The dataset `mi evaluate` reads: a YAML dataset config, an OBELiX folder, or a table file."""
    import yaml

    from mi.config import DatasetConfig, _resolve
    from mi.errors import ConfigError
    from mi.models.datasets import load_dataset, load_obelix, read_table

    from mi.errors import InputError

    path = Path(spec)
    if not path.exists():
        raise InputError(f"{path}: no such dataset file or folder")
    if path.suffix.lower() in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"{path}: dataset config not found")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        data = data.get("dataset", data) if isinstance(data, dict) else data
        try:
            cfg = DatasetConfig.model_validate(data)
        except Exception as exc:  # noqa: BLE001 - pydantic's message names the key
            raise ConfigError(f"{path}: invalid dataset config: {exc}") from None
        return load_dataset(cfg, _resolve(str(path.resolve().parent), cfg.path) if cfg.path else None)
    if path.is_dir():
        return load_obelix(path)
    mapping = {t: (columns or {}).get(t, t) for t in targets}
    if path.suffix.lower() in (".csv", ".json"):
        # only the targets this file has are evaluated; the others need --column
        present = set(pd.read_csv(path, nrows=0).columns) if path.suffix.lower() == ".csv" else None
        if present is not None:
            mapping = {t: c for t, c in mapping.items() if c in present} or mapping
    return read_table(path, mapping)


def evaluate(surrogate, dataset, out_dir: str | Path, thresholds: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Predict every row of `dataset`, write metrics, predictions and plots to `out_dir`; return the metrics."""
    from mi.errors import InputError
    from mi.files import atomic_write_bytes
    from mi.features import featurize

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = [t for t in surrogate.targets if t in dataset.targets]
    if not targets:
        raise InputError(
            f"the dataset has none of the model's targets ({', '.join(surrogate.targets)}); "
            f"it has {', '.join(dataset.targets) or 'none'} (map a column with --column TARGET=COLUMN)"
        )
    candidates, failures = dataset.candidates()
    features = None
    if surrogate.module.input_kind == "features":
        features, more = featurize(candidates, list(surrogate.spec.feature_sets))
        failures += more
        features = features.reindex([c.id for c in candidates])
    prediction = surrogate.predict(features, candidates)
    frame = dataset.frame.loc[prediction.index]
    metrics: dict[str, Any] = {"n_rows": int(len(dataset)), "n_unreadable": len(failures), "targets": {}}
    truth, mean, std = {}, {}, {}
    for target in targets:
        truth[target] = frame[target].to_numpy(dtype=float)
        mean[target] = prediction[target].to_numpy(dtype=float)
        std[target] = prediction[f"{target}_std"].to_numpy(dtype=float)
        metrics["targets"][target] = {
            "unit": surrogate.spec.units.get(target, ""),
            **regression_metrics(truth[target], mean[target]),
            **calibration_metrics(truth[target], mean[target], std[target]),
            "n_not_predicted": int(np.sum(np.isfinite(truth[target]) & ~np.isfinite(mean[target]))),
        }
    for text in thresholds:
        target, op, value = parse_threshold(text)
        if target not in truth:
            raise InputError(f"--threshold {text!r}: {target!r} is not an evaluated target ({', '.join(targets)})")
        metrics["targets"][target].setdefault("thresholds", {})[f"{op}{value:g}"] = classification_metrics(
            truth[target], mean[target], op, value
        )
    table = pd.DataFrame({"id": frame.index, "formula": frame["formula"].to_numpy()})
    for target in targets:
        table[target] = truth[target]
        table[f"{target}_pred"] = mean[target]
        table[f"{target}_std"] = std[target]
    atomic_write_bytes(out_dir / "predictions.csv", table.to_csv(index=False).encode())
    atomic_write_bytes(out_dir / "metrics.json", (json.dumps(_jsonable(metrics), indent=2) + "\n").encode())
    atomic_write_bytes(out_dir / "parity.png", parity_png(truth, mean, std, surrogate.spec.units))
    atomic_write_bytes(out_dir / "calibration.png", calibration_png(truth, mean, std))
    return metrics
