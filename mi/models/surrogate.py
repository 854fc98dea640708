"""Surrogate networks with their normalisers inside, and a wrapper that knows what they were trained on.

Every network is an `EnsembleNet`: ``ensemble_size`` independently initialised members that predict
standardised targets (and, with ``heteroscedastic``, a log standard deviation per target). Everything needed
to return physical units lives in the module as registered buffers, so it travels in the state_dict:

* ``target_mean`` / ``target_std``: members predict standardised targets, scaled back here;
* ``std_scale``: per-target factor applied to the predicted standard deviation, fitted on the validation
  split after training so that it is calibrated (1 = as the ensemble says);
* model-specific ones, e.g. the `EnsembleMLP`'s ``feature_mean`` / ``feature_std`` (a NaN feature is imputed
  to the training mean, so it becomes 0 after standardising; a constant feature has std 1).

The predicted std combines the spread of the member means (epistemic) and, with a heteroscedastic head,
the mean of the members' predicted variances (aleatoric).

`Surrogate` pairs a network with a `SurrogateSpec` (feature sets and versions, feature columns, targets and
units, training metadata) and predicts for candidates: from a features frame (descriptor models), their
compositions (element models) or their structures (graph models).
"""

from __future__ import annotations

import math

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from mi.errors import InputError

if TYPE_CHECKING:
    from mi.candidates.base import Candidate
    from mi.models.domain import Domain

LOG_STD_RANGE = (-10.0, 5.0)  # clamp of a heteroscedastic head's log std, in standardised units


def mlp(n_in: int, n_out: int, hidden: Sequence[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = n_in
    for size in hidden:
        layers += [nn.Linear(width, size), nn.SiLU(), nn.Dropout(dropout)]
        width = size
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


class EnsembleNet(nn.Module):
    """Base of every surrogate network. Subclasses build ``self.members`` and define `run_member`.

    ``kind`` names the class in checkpoints; ``input_kind`` is what `mi.models.inputs` must build for it.
    """

    kind: ClassVar[str] = ""
    input_kind: ClassVar[str] = ""
    members: nn.ModuleList

    def __init__(self, n_targets: int, ensemble_size: int, heteroscedastic: bool) -> None:
        super().__init__()
        self.n_targets = int(n_targets)
        self.ensemble_size = int(ensemble_size)
        self.heteroscedastic = bool(heteroscedastic)
        self.register_buffer("target_mean", torch.zeros(self.n_targets))
        self.register_buffer("target_std", torch.ones(self.n_targets))
        self.register_buffer("std_scale", torch.ones(self.n_targets))

    @property
    def n_outputs(self) -> int:
        """Outputs per member: a mean per target, and a log std per target with a heteroscedastic head."""
        return self.n_targets * (2 if self.heteroscedastic else 1)

    def config(self) -> dict[str, Any]:
        """Plain-typed arguments that rebuild this module: ``type(module)(**module.config())``."""
        raise NotImplementedError

    def featurizer(self) -> dict[str, Any]:
        """What the module reads, in plain types (``inputs`` is one of features, composition, graph)."""
        return {"inputs": self.input_kind}

    @torch.no_grad()
    def fit_normalisers(self, inputs: Any, targets: torch.Tensor) -> None:
        """Set the normalisers from the training rows (NaN-aware); subclasses add their input statistics."""
        self.target_mean.copy_(_nan_mean(targets))
        self.target_std.copy_(_nan_std(targets, self.target_mean))

    def prepare(self, batch: Any) -> Any:
        """Work shared by all members on a batch (e.g. standardising features)."""
        return batch

    def run_member(self, index: int, prepared: Any) -> torch.Tensor:
        """One member's raw outputs, shape (n, n_outputs): standardised means, then log stds if heteroscedastic."""
        raise NotImplementedError

    def run_members(self, prepared: Any) -> torch.Tensor:
        """Every member's raw outputs, (members, n, n_outputs); a kind that can run them together overrides it."""
        return torch.stack([self.run_member(i, prepared) for i in range(self.ensemble_size)])

    def split_outputs(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(standardised means, log stds or None) from `run_member` outputs (any leading dimensions)."""
        mean = outputs[..., : self.n_targets]
        if not self.heteroscedastic:
            return mean, None
        return mean, outputs[..., self.n_targets :].clamp(*LOG_STD_RANGE)

    def combine(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) in physical units from stacked member outputs of shape (members, n, n_outputs)."""
        mu, log_std = self.split_outputs(outputs.float())
        mean = mu.mean(dim=0)
        var = mu.var(dim=0, unbiased=False) if mu.shape[0] > 1 else torch.zeros_like(mean)
        if log_std is not None:
            var = var + torch.exp(2 * log_std).mean(dim=0)
        return mean * self.target_std + self.target_mean, torch.sqrt(var) * self.target_std * self.std_scale

    def forward(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        prepared = self.prepare(batch)
        return self.combine(self.run_members(prepared))


class EnsembleMLP(EnsembleNet):
    """`ensemble_size` independent MLPs on standardised descriptor features; forward -> (mean, std)."""

    kind = "mlp"
    input_kind = "features"

    def __init__(
        self,
        n_features: int,
        n_targets: int,
        hidden: list[int],
        dropout: float = 0.0,
        ensemble_size: int = 5,
        heteroscedastic: bool = False,
    ) -> None:
        super().__init__(n_targets, ensemble_size, heteroscedastic)
        self.n_features = int(n_features)
        self.hidden = [int(h) for h in hidden]
        self.dropout = float(dropout)
        self.register_buffer("feature_mean", torch.zeros(self.n_features))
        self.register_buffer("feature_std", torch.ones(self.n_features))
        self.members = nn.ModuleList(
            mlp(self.n_features, self.n_outputs, self.hidden, self.dropout) for _ in range(self.ensemble_size)
        )

    def config(self) -> dict[str, Any]:
        return {
            "n_features": self.n_features,
            "n_targets": self.n_targets,
            "hidden": list(self.hidden),
            "dropout": self.dropout,
            "ensemble_size": self.ensemble_size,
            "heteroscedastic": self.heteroscedastic,
        }

    @torch.no_grad()
    def fit_normalisers(self, inputs: Any, targets: torch.Tensor) -> None:
        features = inputs.x if hasattr(inputs, "x") else inputs
        self.feature_mean.copy_(_nan_mean(features))
        self.feature_std.copy_(_nan_std(features, self.feature_mean, constant=math.inf))
        super().fit_normalisers(inputs, targets)

    def standardise(self, features: torch.Tensor) -> torch.Tensor:
        """Impute NaN to the training mean, then standardise."""
        features = torch.where(torch.isnan(features), self.feature_mean, features)
        return (features - self.feature_mean) / self.feature_std

    def prepare(self, batch: torch.Tensor) -> torch.Tensor:
        return self.standardise(batch)

    def run_member(self, index: int, prepared: torch.Tensor) -> torch.Tensor:
        return self.members[index](prepared)


def _nan_mean(x: torch.Tensor) -> torch.Tensor:
    mean = torch.nanmean(x.double(), dim=0)
    return torch.nan_to_num(mean, nan=0.0).to(x.dtype)  # an all-NaN column imputes to 0


def _nan_std(x: torch.Tensor, mean: torch.Tensor | None = None, constant: float = 1.0) -> torch.Tensor:
    """Column std over the non-NaN values; `constant` for a column that does not vary.

    Summed in float64: in float32 a constant column of 54.8 keeps a spurious std of 1e-5, and a new value
    of 453 then stands 5e7 "standard deviations" away. Features use ``constant=inf``: a descriptor that never
    varied in training standardises to 0, since the network cannot have learnt what its changes mean.
    `mean` is accepted for symmetry with `_nan_mean` and not used (the float64 mean is recomputed).
    """
    x64 = x.double()
    valid = ~torch.isnan(x64)
    count = valid.sum(dim=0).clamp(min=1)
    mean64 = torch.where(valid, x64, 0.0).sum(dim=0) / count
    std = torch.sqrt((torch.where(valid, x64 - mean64, 0.0) ** 2).sum(dim=0) / count)
    varies = std > 1e-6 * mean64.abs().clamp(min=1.0)
    return torch.where(varies, std, torch.full_like(std, constant)).to(x.dtype)


@dataclass(frozen=True)
class SurrogateSpec:
    """What a surrogate needs to be used correctly, and where it came from. Plain types only."""

    feature_sets: dict[str, int]  # feature-set name -> version (descriptor models; empty otherwise)
    feature_names: list[str]  # columns ``<set>.<feature>``, in the model's input order
    targets: list[str]
    units: dict[str, str]  # target -> unit
    training: dict[str, Any] = field(default_factory=dict)  # dataset, recipe, metrics, data hash, ...
    # a physics baseline the module's output corrects (`mi.models.baseline`): kind, target, energy model + sha256
    baseline: dict[str, Any] | None = None


_DEFAULT_BATCH = {"features": 8192, "composition": 2048, "graph": 64}


class Surrogate:
    """A trained `EnsembleNet` and its `SurrogateSpec`; predicts for candidates in physical units."""

    def __init__(self, module: EnsembleNet, spec: SurrogateSpec, domain: Domain | None = None,
                 baseline_model: Surrogate | None = None) -> None:
        self.module = module
        self.spec = spec
        self.domain = domain  # `mi.models.domain.Domain`, or None for a checkpoint without one
        self.baseline_model = baseline_model  # the energy model of ``spec.baseline``, loaded with the checkpoint

    @property
    def kind(self) -> str:
        return self.module.kind

    @property
    def targets(self) -> list[str]:
        return list(self.spec.targets)

    @property
    def device(self) -> torch.device:
        return self.module.target_mean.device

    def to(self, device: torch.device | str) -> Surrogate:
        self.module.to(device)
        return self

    def output_columns(self) -> list[str]:
        """``<target>``, ``<target>_std`` and, with a domain, ``<target>_in_domain`` for every target."""
        suffixes = ("", "_std", "_in_domain") if self.domain is not None else ("", "_std")
        return [f"{t}{s}" for t in self.spec.targets for s in suffixes]

    def domain_inputs(
        self, features: pd.DataFrame | None, candidates: Sequence[Candidate] | None, index: pd.Index
    ) -> np.ndarray:
        """The rows of `index` in the space of this model's domain: its descriptors, else element fractions."""
        from mi.models.domain import element_fractions

        if self.spec.feature_names:
            if features is None or any(c not in features.columns for c in self.spec.feature_names):
                from mi.features import featurize

                by_id = {c.id: c for c in candidates or ()}
                features = featurize([by_id[i] for i in index], list(self.spec.feature_sets))[0]
            return self._select(features.reindex(index))
        by_id = {c.id: c for c in candidates or ()}
        return element_fractions([by_id[i].composition for i in index])

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

    def model_inputs(
        self, features: pd.DataFrame | None = None, candidates: Sequence[Candidate] | None = None
    ) -> tuple[pd.Index, Any, np.ndarray, list[str | None]]:
        """(row index, the module's inputs, positions in the index that have inputs, reason per row or None).

        Rows are ``features.index`` when a features frame is given, else the candidates' ids. A descriptor
        model reads the frame (or featurizes the candidates itself); element and graph models read the
        candidates with those ids.
        """
        from mi.models import inputs as model_inputs

        if features is None and candidates is None:
            raise InputError("predict needs a features frame, candidates, or both")
        if features is not None:
            index = features.index
        else:
            index = pd.Index([c.id for c in candidates], name="id", dtype=object)
        kind = self.module.input_kind
        if kind == "features":
            lacking = features is None or any(c not in features.columns for c in self.spec.feature_names)
            if lacking and candidates is not None:  # featurize what the frame lacks (or there is no frame)
                from mi.features import featurize

                computed, _failures = featurize(candidates, list(self.spec.feature_sets))
                features = computed.reindex(index)
            x = self._select(features)
            usable = ~np.isnan(x).all(axis=1) if x.shape[1] else np.ones(len(x), dtype=bool)
            reasons = [None if ok else "features: none computed" for ok in usable]
            return index, model_inputs.DenseInputs(torch.from_numpy(x[usable])), np.flatnonzero(usable), reasons
        if candidates is None:
            raise InputError(
                f"this surrogate ({self.kind}) predicts from the candidates' "
                f"{'compositions' if kind == 'composition' else 'structures'}: pass the candidates to predict()"
            )
        by_id = {c.id: c for c in candidates}
        absent = [i for i in index if i not in by_id]
        if absent:
            raise InputError(f"predict: no candidate for {len(absent)} row(s) of the features frame, e.g. {absent[0]!r}")
        rows = [by_id[i] for i in index]
        if kind == "composition":
            inputs, reasons = model_inputs.composition_inputs([c.composition for c in rows])
            if self.spec.feature_names:  # an element model that also reads descriptors
                if features is None or any(c not in features.columns for c in self.spec.feature_names):
                    from mi.features import featurize

                    features = featurize(rows, list(self.spec.feature_sets))[0].reindex(index)
                x = self._select(features)
                reasons = [r if r is not None or not np.isnan(x[i]).all() else "features: none computed"
                           for i, r in enumerate(reasons)]
                ok = [i for i, r in enumerate(reasons) if r is None]
                inputs, _ = model_inputs.composition_inputs([rows[i].composition for i in ok])
                inputs = model_inputs.CompositionInputs(inputs.z, inputs.frac, torch.from_numpy(x[ok]))
        elif kind == "graph":
            config = self.module.featurizer()
            inputs, reasons = model_inputs.graph_inputs(
                [c.structure for c in rows], config["cutoff"], config["max_neighbors"]
            )
        else:
            raise InputError(f"unknown model input kind {kind!r}")
        return index, inputs, np.array([i for i, r in enumerate(reasons) if r is None], dtype=np.int64), reasons

    @torch.inference_mode()
    def predict(
        self,
        features: pd.DataFrame | None = None,
        candidates: Sequence[Candidate] | None = None,
        batch_size: int | None = None,
        targets: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Columns ``<target>`` and ``<target>_std`` (>= 0) in physical units, one row per input row.

        Rows the model cannot describe (a formula for a graph model, an unparseable composition) are NaN.
        `targets` names the targets the caller keeps (default: all); where they all rest on the baseline, only
        the rows with a baseline value are run (e.g. a voltage model over a screen where few rows hold Li).
        """
        from mi.models.inputs import to_device

        index, inputs, usable, _reasons = self.model_inputs(features, candidates)
        by_id = {c.id: c for c in candidates} if candidates is not None else None
        compositions = [by_id[i].composition for i in index] if by_id is not None else None
        baseline = self._baseline(compositions)
        run = np.arange(len(usable))  # positions in `inputs` (the usable rows) to run
        if baseline is not None and targets is not None and set(targets) <= {baseline[0]}:
            run = run[np.isfinite(baseline[1][usable])]
        batch_size = batch_size or _DEFAULT_BATCH.get(self.module.input_kind, 1024)
        self.module.eval()
        n_targets = len(self.spec.targets)
        mean = np.full((len(index), n_targets), np.nan)
        std = np.full((len(index), n_targets), np.nan)
        means, stds = [], []
        for start in range(0, len(run), batch_size):
            m, s = self.module(to_device(inputs.batch(run[start : start + batch_size]), self.device))
            means.append(m.float().cpu().numpy())
            stds.append(s.float().cpu().numpy())
        if means:
            mean[usable[run]] = np.concatenate(means)
            std[usable[run]] = np.concatenate(stds)
        out = {}
        for j, target in enumerate(self.spec.targets):
            out[target] = mean[:, j].astype(float)
            out[f"{target}_std"] = std[:, j].astype(float)
        if baseline is not None:
            target, values, _ = baseline
            out[target] = out[target] + values  # no baseline value: no prediction
            out[f"{target}_std"] = np.where(np.isfinite(values), out[f"{target}_std"], np.nan)
        if self.domain is not None:
            self._flag_domain(out, features, candidates, index, compositions, baseline)
        return pd.DataFrame(out, index=index, columns=self.output_columns())

    def _baseline(self, compositions: list | None) -> tuple[str, np.ndarray, np.ndarray] | None:
        """(target, baseline value, the baseline's own in-domain flag) per row; None without a baseline."""
        baseline = self.spec.baseline
        if baseline is None:
            return None
        if compositions is None:
            raise InputError(f"this surrogate corrects a {baseline['kind']} baseline computed from the compositions: "
                             "pass the candidates to predict()")
        if self.baseline_model is None:
            raise InputError(f"this surrogate corrects a {baseline['kind']} baseline but was built without its energy "
                             f"model ({baseline['energy_model']}): load it with mi.models.checkpoint.load_checkpoint")
        from mi.models.baseline import baseline_values

        return (baseline["target"], *baseline_values(baseline, self.baseline_model, compositions))

    def _flag_domain(self, out: dict[str, Any], features: pd.DataFrame | None, candidates: Sequence[Candidate] | None,
                     index: pd.Index, compositions: list | None, baseline: tuple | None) -> None:
        """``<target>_in_domain`` into `out`, judged on the rows with a value (no value, no verdict: <NA>)."""
        valued = np.zeros(len(index), dtype=bool)
        for target in self.spec.targets:
            valued |= np.isfinite(out[target])
        rows = np.flatnonzero(valued)
        subset = [compositions[i] for i in rows] if compositions is not None else None
        flags = self.domain.check(
            self.domain_inputs(features, candidates, index[rows]) if len(rows) else np.empty((0, 0)), subset,
            {t: out[f"{t}_std"][rows] for t in self.spec.targets},
        )
        for target in self.spec.targets:
            flag = pd.array(np.zeros(len(index), dtype=bool), dtype="boolean")
            flag[rows] = flags[target]
            if baseline is not None and target == baseline[0]:
                flag &= baseline[2]
            flag[~np.isfinite(out[target])] = pd.NA
            out[f"{target}_in_domain"] = flag

    def __repr__(self) -> str:
        config = {k: v for k, v in self.module.config().items() if k not in ("n_features", "n_targets")}
        return f"Surrogate(kind={self.kind!r}, targets={self.spec.targets}, {config})"
