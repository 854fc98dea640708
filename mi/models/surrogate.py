"""Descriptor surrogate: an ensemble of MLPs with its normalisers inside, and a wrapper that knows its spec.

`EnsembleMLP` takes raw feature vectors (NaN allowed) and returns the ensemble mean and standard deviation
in physical units. Everything it needs for that lives in the module as registered buffers, so it travels
in the state_dict:

* ``feature_mean`` / ``feature_std``: training statistics; a NaN feature is imputed to the training mean
  (it becomes 0 after standardising), a constant feature has std 1;
* ``target_mean`` / ``target_std``: members predict standardised targets, scaled back here;
* ``std_scale``: per-target factor applied to the ensemble spread, fitted on the validation set after
  training so that the spread is calibrated (1 = raw ensemble spread).

`Surrogate` pairs the module with a `SurrogateSpec` (feature sets and versions, feature columns, targets
and units, training metadata) and predicts from a features DataFrame by column name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from mi.errors import InputError


def _mlp(n_features: int, n_targets: int, hidden: list[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = n_features
    for size in hidden:
        layers += [nn.Linear(width, size), nn.SiLU(), nn.Dropout(dropout)]
        width = size
    layers.append(nn.Linear(width, n_targets))
    return nn.Sequential(*layers)


class EnsembleMLP(nn.Module):
    """`ensemble_size` independent MLPs on standardised features; forward -> (mean, std) in physical units."""

    def __init__(
        self, n_features: int, n_targets: int, hidden: list[int], dropout: float = 0.0, ensemble_size: int = 5
    ) -> None:
        super().__init__()
        self.n_features = int(n_features)
        self.n_targets = int(n_targets)
        self.hidden = [int(h) for h in hidden]
        self.dropout = float(dropout)
        self.ensemble_size = int(ensemble_size)
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_std", torch.ones(n_features))
        self.register_buffer("target_mean", torch.zeros(n_targets))
        self.register_buffer("target_std", torch.ones(n_targets))
        self.register_buffer("std_scale", torch.ones(n_targets))
        self.members = nn.ModuleList(
            _mlp(self.n_features, self.n_targets, self.hidden, self.dropout) for _ in range(self.ensemble_size)
        )

    def config(self) -> dict[str, Any]:
        """Plain-typed arguments that rebuild this module: ``EnsembleMLP(**module.config())``."""
        return {
            "n_features": self.n_features,
            "n_targets": self.n_targets,
            "hidden": list(self.hidden),
            "dropout": self.dropout,
            "ensemble_size": self.ensemble_size,
        }

    @torch.no_grad()
    def fit_normalisers(self, features: torch.Tensor, targets: torch.Tensor) -> None:
        """Set the feature and target statistics from training data (NaN-aware)."""
        self.feature_mean.copy_(_nan_mean(features))
        self.feature_std.copy_(_nan_std(features, self.feature_mean))
        self.target_mean.copy_(_nan_mean(targets))
        self.target_std.copy_(_nan_std(targets, self.target_mean))

    def standardise(self, features: torch.Tensor) -> torch.Tensor:
        """Impute NaN to the training mean, then standardise."""
        features = torch.where(torch.isnan(features), self.feature_mean, features)
        return (features - self.feature_mean) / self.feature_std

    def member_forward(self, index: int, z: torch.Tensor) -> torch.Tensor:
        """One member on standardised features; standardised targets, shape (n, n_targets)."""
        return self.members[index](z)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.standardise(features)
        outputs = torch.stack([member(z) for member in self.members])  # (members, n, targets)
        outputs = outputs * self.target_std + self.target_mean
        mean = outputs.mean(dim=0)
        spread = outputs.std(dim=0, unbiased=False) if self.ensemble_size > 1 else torch.zeros_like(mean)
        return mean, spread * self.std_scale


def _nan_mean(x: torch.Tensor) -> torch.Tensor:
    mean = torch.nanmean(x, dim=0)
    return torch.nan_to_num(mean, nan=0.0)  # an all-NaN column imputes to 0


def _nan_std(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    filled = torch.where(torch.isnan(x), mean, x)
    count = (~torch.isnan(x)).sum(dim=0).clamp(min=1)
    std = torch.sqrt(((filled - mean) ** 2).sum(dim=0) / count)
    return torch.where(std > 1e-8, std, torch.ones_like(std))


@dataclass(frozen=True)
class SurrogateSpec:
    """What a surrogate needs to be used correctly, and where it came from. Plain types only."""

    feature_sets: dict[str, int]  # feature-set name -> version
    feature_names: list[str]  # columns ``<set>.<feature>``, in the model's input order
    targets: list[str]
    units: dict[str, str]  # target -> unit
    training: dict[str, Any] = field(default_factory=dict)  # dataset, recipe, metrics, data hash, ...


class Surrogate:
    """A trained `EnsembleMLP` and its `SurrogateSpec`; predicts from a features DataFrame."""

    def __init__(self, module: EnsembleMLP, spec: SurrogateSpec) -> None:
        self.module = module
        self.spec = spec

    @property
    def targets(self) -> list[str]:
        return list(self.spec.targets)

    @property
    def device(self) -> torch.device:
        return self.module.feature_mean.device

    def to(self, device: torch.device | str) -> Surrogate:
        self.module.to(device)
        return self

    def output_columns(self) -> list[str]:
        return [c for t in self.spec.targets for c in (t, f"{t}_std")]

    def _select(self, features: pd.DataFrame) -> np.ndarray:
        missing = [c for c in self.spec.feature_names if c not in features.columns]
        if missing:
            sets = ", ".join(f"{n} (v{v})" for n, v in self.spec.feature_sets.items())
            shown = ", ".join(missing[:5]) + (f", ... ({len(missing)} in all)" if len(missing) > 5 else "")
            raise InputError(
                f"the surrogate needs feature columns the input lacks: {shown}; "
                f"compute the feature sets it was trained on: {sets}"
            )
        return np.array(features[self.spec.feature_names].to_numpy(dtype=np.float32, na_value=np.nan))  # writable copy

    @torch.inference_mode()
    def predict(self, features: pd.DataFrame, batch_size: int = 8192) -> pd.DataFrame:
        """Columns ``<target>`` and ``<target>_std`` (ensemble spread, >= 0) in physical units, indexed like input."""
        x = self._select(features)
        self.module.eval()
        means, stds = [], []
        for start in range(0, len(x), batch_size):
            batch = torch.from_numpy(x[start : start + batch_size]).to(self.device)
            mean, std = self.module(batch)
            means.append(mean.cpu().numpy())
            stds.append(std.cpu().numpy())
        n_targets = len(self.spec.targets)
        mean = np.concatenate(means) if means else np.empty((0, n_targets), dtype=np.float32)
        std = np.concatenate(stds) if stds else np.empty((0, n_targets), dtype=np.float32)
        out = {}
        for j, target in enumerate(self.spec.targets):
            out[target] = mean[:, j].astype(float)
            out[f"{target}_std"] = std[:, j].astype(float)
        return pd.DataFrame(out, index=features.index, columns=self.output_columns())

    def __repr__(self) -> str:
        sets = ", ".join(self.spec.feature_sets)
        return (
            f"Surrogate(targets={self.spec.targets}, feature_sets=[{sets}], "
            f"ensemble_size={self.module.ensemble_size}, hidden={self.module.hidden})"
        )
