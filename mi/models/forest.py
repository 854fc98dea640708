"""A tree-ensemble surrogate (``kind: forest``): scikit-learn fits it, plain arrays carry it, numpy predicts.

`TreeEnsemble.fit_trees` fits one scikit-learn forest per target (``random_forest`` or ``extra_trees``) on the
training rows and exports every tree as flat arrays, all trees of all targets end to end. Node ``k`` splits
on ``feature[k]`` at ``threshold[k]``: ``x <= threshold`` goes to ``k + 1`` (scikit-learn stores trees depth
first, so a left child always follows its parent; checked on export), otherwise to ``right[k]``; a leaf has
``feature[k] == -1`` and predicts ``value[k]`` (standardised units, like every member's output). The arrays
are buffers, so a checkpoint holds tensors and plain types only (no pickled estimator) and loads with
``torch.load(weights_only=True)``; prediction walks every tree at once in numpy (`walk_trees`: one level per
step for all (tree, row) pairs, in blocks of rows that stay in cache, dropping the pairs that reached a
leaf), on the CPU wherever the module sits, and equals scikit-learn's.

The trees are the ensemble's members: the mean is their average (as scikit-learn's ``predict``), the std
their spread, rescaled on the validation rows like every ensemble's (`EnsembleNet.combine`, ``std_scale``).
A missing feature is imputed to its training mean, in fitting and in prediction alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from mi.errors import InputError
from mi.models.surrogate import EnsembleNet, _nan_mean

ROW_BLOCK = 512  # rows walked together: their (tree, row) positions stay in cache
STEPS_BETWEEN_CHECKS = 4  # levels walked before the pairs that reached a leaf are dropped


class _Trees(nn.Module):
    """The node arrays of every tree (buffers only): ``right``, ``feature``, ``threshold``, ``value`` per node and
    ``roots`` (targets, trees), the node each tree starts at."""

    def __init__(self, n_nodes: int, n_targets: int, n_trees: int) -> None:
        super().__init__()
        self.register_buffer("right", torch.zeros(n_nodes, dtype=torch.int32))
        self.register_buffer("feature", torch.full((n_nodes,), -1, dtype=torch.int16))
        self.register_buffer("threshold", torch.zeros(n_nodes, dtype=torch.float32))
        self.register_buffer("value", torch.zeros(n_nodes, dtype=torch.float32))
        self.register_buffer("roots", torch.zeros(n_targets, n_trees, dtype=torch.int32))


def _float32_at_most(threshold: np.ndarray) -> np.ndarray:
    """The largest float32 <= each float64 threshold: for a float32 feature x (scikit-learn compares its float32
    copy of X), ``x <= t`` exactly when ``x <= _float32_at_most(t)``, so the float32 tree routes as the original."""
    t32 = threshold.astype(np.float32)
    above = t32.astype(np.float64) > threshold
    t32[above] = np.nextafter(t32[above], np.float32(-np.inf))
    return t32


def export_tree(tree: Any, offset: int) -> dict[str, np.ndarray]:
    """A fitted scikit-learn ``tree_`` as the flat arrays `_Trees` holds, node indices shifted by `offset`."""
    left, right = tree.children_left, tree.children_right
    leaf = left < 0
    inner = np.flatnonzero(~leaf)
    if np.any(left[inner] != inner + 1):  # the layout `walk_trees` relies on
        raise ValueError("scikit-learn tree not stored depth first (a left child does not follow its parent)")
    return {
        "right": np.where(leaf, -1, right + offset).astype(np.int32),
        "feature": np.where(leaf, -1, tree.feature).astype(np.int16),
        "threshold": np.where(leaf, 0.0, _float32_at_most(tree.threshold)).astype(np.float32),
        "value": tree.value[:, 0, 0].astype(np.float32),
    }


def walk_trees(x: np.ndarray, roots: np.ndarray, right: np.ndarray, feature: np.ndarray, threshold: np.ndarray
               ) -> np.ndarray:
    """The leaf each row of `x` (n, features; float32, no NaN) reaches in each tree starting at `roots` (k,):
    (k, n) node indices. Arrays as `_Trees` holds them."""
    leaf = feature < 0
    node_ids = np.arange(len(feature))
    # children[2 k] is where x <= threshold goes, children[2 k + 1] the other side; a leaf leads to itself
    children = np.stack([np.where(leaf, node_ids, node_ids + 1), np.where(leaf, node_ids, right)], axis=1).ravel()
    split_on = np.where(leaf, 0, feature).astype(np.intp)
    n_features = x.shape[1]
    out = np.empty((len(roots), len(x)), dtype=np.intp)
    for start in range(0, len(x), ROW_BLOCK):
        n = min(ROW_BLOCK, len(x) - start)
        block = np.ascontiguousarray(x[start : start + n]).ravel()
        node = np.repeat(roots.astype(np.intp), n)  # pair p: tree p // n, row p % n
        offset = np.tile(np.arange(n, dtype=np.intp) * n_features, len(roots))
        pair = np.arange(len(node))
        reached = np.empty(len(node), dtype=np.intp)
        while len(pair):
            for _ in range(STEPS_BETWEEN_CHECKS):
                node = children[2 * node + (block[split_on[node] + offset] > threshold[node])]
            done = leaf[node]
            reached[pair[done]] = node[done]
            node, offset, pair = node[~done], offset[~done], pair[~done]
        out[:, start : start + n] = reached.reshape(len(roots), n)
    return out


class TreeEnsemble(EnsembleNet):
    """``trees`` trees per target on descriptor features; ``n_nodes`` counts the nodes of all fitted trees (0
    before `fit_trees`), the other arguments say how scikit-learn grows them."""

    kind = "forest"
    input_kind = "features"

    def __init__(
        self,
        n_features: int,
        n_targets: int,
        trees: int = 300,
        algorithm: str = "random_forest",
        min_samples_leaf: int = 1,
        max_features: float | str = 1.0,
        max_depth: int | None = None,
        n_nodes: int = 0,
        heteroscedastic: bool = False,
    ) -> None:
        if heteroscedastic:
            raise ValueError("a forest has no heteroscedastic std head")
        if n_features >= np.iinfo(np.int16).max:
            raise ValueError(f"a forest reads at most {np.iinfo(np.int16).max - 1} features, got {n_features}")
        super().__init__(n_targets, trees, heteroscedastic=False)
        self.n_features = int(n_features)
        self.algorithm = str(algorithm)
        self.min_samples_leaf = int(min_samples_leaf)
        self.max_features = max_features if isinstance(max_features, str) else float(max_features)
        self.max_depth = None if max_depth is None else int(max_depth)
        self.n_nodes = int(n_nodes)
        self.register_buffer("feature_mean", torch.zeros(self.n_features))
        self.members = _Trees(self.n_nodes, self.n_targets, self.ensemble_size)

    def config(self) -> dict[str, Any]:
        return {
            "n_features": self.n_features,
            "n_targets": self.n_targets,
            "trees": self.ensemble_size,
            "algorithm": self.algorithm,
            "min_samples_leaf": self.min_samples_leaf,
            "max_features": self.max_features,
            "max_depth": self.max_depth,
            "n_nodes": self.n_nodes,
        }

    @torch.no_grad()
    def fit_normalisers(self, inputs: Any, targets: torch.Tensor) -> None:
        self.feature_mean.copy_(_nan_mean(inputs.x if hasattr(inputs, "x") else inputs))
        super().fit_normalisers(inputs, targets)

    def estimator(self, seed: int, n_jobs: int | None = None):
        """A fresh scikit-learn forest of this module's settings."""
        from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor

        cls = RandomForestRegressor if self.algorithm == "random_forest" else ExtraTreesRegressor
        return cls(
            n_estimators=self.ensemble_size, min_samples_leaf=self.min_samples_leaf, max_features=self.max_features,
            max_depth=self.max_depth, random_state=seed, n_jobs=n_jobs,
        )

    @torch.no_grad()
    def fit_trees(self, inputs: Any, targets: torch.Tensor, seed: int, n_jobs: int | None = None) -> list[Any]:
        """Fit one scikit-learn forest per target on these rows (a row counts for the targets it has), in
        standardised units (normalisers fitted first), and take their trees over. Returns the estimators."""
        x = self.prepare(inputs.x if hasattr(inputs, "x") else inputs).cpu().numpy()
        y = ((targets.to(self.target_mean.device) - self.target_mean) / self.target_std).cpu().numpy()
        estimators, parts, roots, offset = [], [], [], 0
        for j in range(self.n_targets):
            rows = np.flatnonzero(np.isfinite(y[:, j]))
            if len(rows) < 2:
                raise InputError(f"target {j}: a forest needs at least two training rows with a value, got {len(rows)}")
            forest = self.estimator(seed + j, n_jobs).fit(x[rows], y[rows, j])
            estimators.append(forest)
            for tree in forest.estimators_:
                roots.append(offset)
                parts.append(export_tree(tree.tree_, offset))
                offset += tree.tree_.node_count
        arrays = {key: torch.from_numpy(np.concatenate([p[key] for p in parts])) for key in parts[0]}
        self.n_nodes = offset
        device = self.target_mean.device
        self.members = _Trees(self.n_nodes, self.n_targets, self.ensemble_size).to(device)
        for key, array in arrays.items():
            getattr(self.members, key).copy_(array)
        self.members.roots.copy_(torch.tensor(roots, dtype=torch.int32).reshape(self.n_targets, self.ensemble_size))
        return estimators

    def prepare(self, batch: torch.Tensor) -> torch.Tensor:
        """Impute a missing feature to its training mean (the trees never saw NaN)."""
        batch = batch.float()
        return torch.where(torch.isnan(batch), self.feature_mean, batch)

    def run_members(self, prepared: torch.Tensor) -> torch.Tensor:
        """Every tree's prediction, (trees, n, targets) in standardised units, on the device of `prepared`."""
        arrays = {name: t.cpu().numpy() for name, t in self.members.state_dict().items()}
        leaves = walk_trees(prepared.detach().cpu().numpy().astype(np.float32, copy=False), arrays["roots"].ravel(),
                            arrays["right"], arrays["feature"], arrays["threshold"])
        values = arrays["value"][leaves].reshape(self.n_targets, self.ensemble_size, len(prepared))
        return torch.from_numpy(np.ascontiguousarray(values.transpose(1, 2, 0))).to(prepared.device)

    def run_member(self, index: int, prepared: torch.Tensor) -> torch.Tensor:
        return self.run_members(prepared)[index]


__all__ = ["TreeEnsemble", "export_tree"]
