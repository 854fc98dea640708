"""The surrogates of one screen: several checkpoints, each contributing its predicted columns.

A screen names its models with ``model:`` (one) and ``models:`` (a list); each entry is a checkpoint
(``builtin:<name>`` or a path) and may keep only some of its targets (``columns:``). Two models predicting
the same column is a config error naming both entries, unless ``columns:`` picks one or every entry that
predicts it says ``blend: true``: the column is then their average, read as an equal mixture of the models'
normal predictions (mean of the means; variance = mean of the variances + variance of the means, so models
that disagree widen the std) and in domain only where every model is. `ModelRef` is the picklable reference
a worker process or a Ray task loads the models from; `ScreenModels` is the loaded set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mi.errors import ConfigError

if TYPE_CHECKING:  # pandas loads with the models; `mi validate` needs neither
    import pandas as pd


@dataclass(frozen=True)
class ModelRef:
    """One model of a screen: where its checkpoint is, where it predicts, which targets it contributes."""

    key: str  # the config key path, for messages: "model" or "models[1]"
    label: str  # builtin:<name> or an absolute path
    device: str = "auto"
    columns: tuple[str, ...] | None = None  # None: every target
    sha256: str | None = None  # the checkpoint file's, once known
    blend: bool = False  # average the columns it shares with other blend entries


def model_refs(cfg) -> list[ModelRef]:
    """The checkpoint references of a `ScreenConfig`'s ``model`` and ``models`` (recipes excluded: the
    pipeline trains those first and refers to the checkpoints it wrote)."""
    refs = []
    for key, entry in cfg.model_entries():
        if entry.checkpoint is None:
            continue
        spec = entry.checkpoint
        label = spec if spec.startswith("builtin:") else str(cfg.resolve(spec).resolve())
        refs.append(ModelRef(key, label, entry.device, tuple(entry.columns) if entry.columns is not None else None,
                             blend=entry.blend))
    return refs


def check_models(refs: Sequence[ModelRef]) -> list[ModelRef]:
    """Read each checkpoint's card; refuse unknown ``columns`` and columns two models both predict.

    Returns the refs with their file hashes and their columns made explicit.
    """
    from mi.models.checkpoint import checkpoint_targets

    owner: dict[str, ModelRef] = {}
    checked = []
    for ref in refs:
        targets, sha256 = checkpoint_targets(ref.label)  # without torch: validation stays fast
        columns = ref.columns if ref.columns is not None else tuple(targets)
        unknown = [c for c in columns if c not in targets]
        if unknown:
            raise ConfigError(
                f"{ref.key}.columns: {ref.label} does not predict {', '.join(unknown)} (it predicts {', '.join(targets)})"
            )
        for column in columns:
            first = owner.setdefault(column, ref)
            if first is not ref and not (first.blend and ref.blend):
                raise ConfigError(
                    f"{first.key} and {ref.key} ({ref.label}) both predict {column}: pick one with 'columns:' "
                    f"on a model entry, or average them with 'blend: true' on both"
                )
        checked.append(ModelRef(ref.key, ref.label, ref.device, tuple(columns), sha256, ref.blend))
    return checked


class ScreenModels:
    """Loaded surrogates and the columns each contributes; predicts them all into one frame."""

    def __init__(self, refs: Sequence[ModelRef], surrogates: Sequence) -> None:
        self.refs = list(refs)
        self.surrogates = list(surrogates)

    @classmethod
    def load(cls, refs: Sequence[ModelRef]) -> ScreenModels:
        from mi.models.checkpoint import load_checkpoint
        from mi.models.device import resolve_device

        surrogates = []
        for ref in refs:
            surrogate = load_checkpoint(ref.label, expected_sha256=ref.sha256)
            surrogate.to(resolve_device(ref.device))
            surrogates.append(surrogate)
        return cls(refs, surrogates)

    @property
    def targets(self) -> list[str]:
        """Every predicted column, in model order (a blended one once)."""
        return list(dict.fromkeys(c for ref, s in zip(self.refs, self.surrogates) for c in (ref.columns or s.targets)))

    @property
    def feature_sets(self) -> list[str]:
        """The descriptor sets any of the models reads."""
        return list(dict.fromkeys(n for s in self.surrogates for n in s.spec.feature_sets))

    def predict(self, features: pd.DataFrame | None, candidates: Sequence) -> pd.DataFrame:
        """``<target>``, ``<target>_std`` (and ``<target>_in_domain`` where the model has a domain) of every
        contributed target, one row per row of `features` (per candidate without them: each model then
        computes the features it reads)."""
        import pandas as pd

        if features is None:
            features = pd.DataFrame(index=pd.Index([c.id for c in candidates], name="id", dtype=object))
        frames = []
        for ref, surrogate in zip(self.refs, self.surrogates):
            predicted = surrogate.predict(features, candidates, targets=ref.columns)
            keep = set(ref.columns or surrogate.targets)
            frames.append(predicted[[c for c in predicted.columns if _target_of(c, surrogate.targets) in keep]])
        if not frames:
            return pd.DataFrame(index=features.index)
        out = pd.concat(frames, axis=1)
        return _blended(out, self.targets) if out.columns.duplicated().any() else out


def model_cards(refs: Sequence[ModelRef]) -> list[dict]:
    """Per model: key, checkpoint, sha256, columns contributed and the card's provenance and metrics (read
    without torch: what a screen whose workers load the models needs)."""
    from mi.models.checkpoint import checkpoint_card

    out = []
    for ref in refs:
        card = checkpoint_card(ref.label)
        out.append({"key": ref.key, "checkpoint": ref.label, "sha256": card["sha256"], "columns": list(ref.columns or ()),
                    "blend": ref.blend, "card": card})
    return out


def predicted_columns(refs: Sequence[ModelRef]) -> list[str]:
    """`ScreenModels.targets` of checked refs (`check_models`), without loading the models."""
    from mi.models.checkpoint import checkpoint_targets

    return list(dict.fromkeys(c for ref in refs for c in (ref.columns or checkpoint_targets(ref.label)[0])))


def _blended(frame: pd.DataFrame, targets: Sequence[str]) -> pd.DataFrame:
    """One column per name: the blend of the models that predict it (see the module docstring); a model
    without a value for a row (e.g. a structure model on a formula) leaves that row to the others."""
    import warnings

    import numpy as np
    import pandas as pd

    out = {}
    with warnings.catch_warnings():  # a row no model predicts stays NaN, without "mean of empty slice"
        warnings.simplefilter("ignore", RuntimeWarning)
        for target in targets:
            own = [c for c in (target, f"{target}_std", f"{target}_in_domain") if c in frame.columns]
            if (frame.columns == target).sum() == 1:  # one model: its columns as they are
                out.update({c: frame[c] for c in own})
                continue
            means = frame.loc[:, [target]].to_numpy(dtype=float)  # rows x models predicting it
            out[target] = np.nanmean(means, axis=1)
            if f"{target}_std" in frame.columns:
                stds = frame.loc[:, [f"{target}_std"]].to_numpy(dtype=float)
                out[f"{target}_std"] = np.sqrt(np.nanmean(stds**2, axis=1) + np.nanvar(means, axis=1))
            if f"{target}_in_domain" in frame.columns:
                flags = frame.loc[:, [f"{target}_in_domain"]].astype("boolean")
                known = flags.notna().any(axis=1)
                out[f"{target}_in_domain"] = flags.fillna(True).all(axis=1).astype("boolean").where(known, pd.NA)
    return pd.DataFrame(out, index=frame.index)


def _target_of(column: str, targets: Sequence[str]) -> str:
    for suffix in ("_in_domain", "_std"):
        if column.endswith(suffix) and column[: -len(suffix)] in targets:
            return column[: -len(suffix)]
    return column


__all__ = ["ModelRef", "ScreenModels", "check_models", "model_cards", "model_refs", "predicted_columns"]
