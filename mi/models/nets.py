"""The surrogate network kinds, by the name checkpoints record (``model_kind``)."""

from __future__ import annotations

from typing import Any

from mi.errors import ConfigError
from mi.models.surrogate import EnsembleMLP, EnsembleNet


def model_kinds() -> dict[str, type[EnsembleNet]]:
    """kind -> class; imported on demand so that `import mi.models.surrogate` stays light."""
    from mi.models.element_net import ElementAttentionNet
    from mi.models.forest import TreeEnsemble
    from mi.models.graph_net import CrystalGraphNet

    return {cls.kind: cls for cls in (EnsembleMLP, ElementAttentionNet, CrystalGraphNet, TreeEnsemble)}


def model_class(kind: str) -> type[EnsembleNet]:
    """The network class of a model kind; an unknown kind is a ConfigError naming the known ones."""
    classes = model_kinds()
    if kind not in classes:
        raise ConfigError(f"train.model.kind: unknown model kind {kind!r} (known: {', '.join(classes)})")
    return classes[kind]


def module_from_config(kind: str, config: dict[str, Any]) -> EnsembleNet:
    """Rebuild a network from its checkpoint entries; raises KeyError for an unknown kind."""
    return model_kinds()[kind](**config)


def build_module(model_cfg: Any, n_targets: int, *, n_features: int = 0, heteroscedastic: bool = False) -> EnsembleNet:
    """A fresh network for a model config (`mi.config.MLPModelConfig`, `ElementAttentionConfig`, ...); a forest
    gets its trees from `TreeEnsemble.fit_trees`."""
    options = model_cfg.model_dump()
    kind = options.pop("kind")
    if kind in ("mlp", "forest"):
        options.pop("feature_sets")
        return model_class(kind)(n_features=n_features, n_targets=n_targets, heteroscedastic=heteroscedastic, **options)
    cls = model_class(kind)
    if options.pop("descriptor_sets", None):
        options["n_features"] = n_features
    return cls(n_targets=n_targets, heteroscedastic=heteroscedastic, **options)
