"""The forest model kind: scikit-learn fits it, a weights-only checkpoint carries it, it predicts as sklearn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Composition

from mi.candidates.base import Candidate, composition_hash
from mi.cli import format_card
from mi.config import TrainConfig, load_config, load_train_config
from mi.errors import ConfigError, InputError
from mi.features import featurize
from mi.models.checkpoint import checkpoint_card, load_checkpoint, save_checkpoint
from mi.models.datasets import EXP_FORMATION_ENTHALPY, load_exp_formation_enthalpy
from mi.models.forest import TreeEnsemble
from mi.models.surrogate import Surrogate, SurrogateSpec
from mi.models.train import attach_domain, train_from_config, train_surrogate

TARGET = EXP_FORMATION_ENTHALPY
PROBE = ["LiFePO4", "LiCoO2", "LiMn2O4", "Li3PO4", "NaCl", "XeF2"]


def _candidates(formulas):
    return [Candidate(f, "test", f, Composition(f), None, composition_hash(Composition(f))) for f in formulas]


@pytest.fixture(scope="module")
def enthalpies() -> pd.DataFrame:
    return load_exp_formation_enthalpy().sample(150, random_state=0)


@pytest.mark.parametrize("algorithm", ["random_forest", "extra_trees"])
def test_exported_trees_predict_as_sklearn_after_a_weights_only_round_trip(enthalpies, algorithm, tmp_path):
    torch.set_num_threads(1)
    features, _ = featurize(_candidates(list(enthalpies["formula"]) + PROBE), ["composition"])
    x = torch.tensor(features.to_numpy(dtype=np.float32, na_value=np.nan))
    n_train = len(enthalpies)
    y = torch.tensor(enthalpies[[TARGET]].to_numpy(dtype=np.float32))
    module = TreeEnsemble(x.shape[1], 1, trees=12, algorithm=algorithm, max_features=0.5)
    module.fit_normalisers(x[:n_train], y)
    (forest,) = module.fit_trees(x[:n_train], y, seed=3)
    spec = SurrogateSpec({"composition": 2}, list(features.columns), [TARGET], {TARGET: "eV/atom"})
    path = save_checkpoint(Surrogate(module, spec), tmp_path / "forest.pt")

    raw = torch.load(path, weights_only=True, map_location="cpu")  # tensors and plain types, no sklearn object
    assert raw["model_kind"] == "forest" and raw["model_config"]["n_nodes"] == module.n_nodes > 0
    loaded = load_checkpoint(path)
    imputed = module.prepare(x).numpy()  # what the forest was fitted on: NaN at the training mean
    scale, shift = float(module.target_std[0]), float(module.target_mean[0])
    got = loaded.predict(features=features)[TARGET].to_numpy()
    np.testing.assert_allclose(got, forest.predict(imputed) * scale + shift, rtol=1e-5, atol=1e-5)

    # every tree routes rows lying exactly on (and one float32 step around) its thresholds as sklearn does
    tree = forest.estimators_[0].tree_
    inner = np.flatnonzero(tree.children_left >= 0)[:40]
    edges = np.repeat(imputed[:1], 3 * len(inner), axis=0)
    for k, node in enumerate(inner):
        at = np.float32(tree.threshold[node])
        for j, value in enumerate((np.nextafter(at, np.float32(-np.inf)), at, np.nextafter(at, np.float32(np.inf)))):
            edges[3 * k + j, tree.feature[node]] = value
    ours = loaded.module.run_members(torch.from_numpy(edges)).numpy()[0, :, 0]
    np.testing.assert_allclose(ours, tree.predict(edges)[:, 0], rtol=1e-6, atol=1e-6)


def _write_recipe(tmp_path, model: str) -> object:
    rng = np.random.default_rng(0)
    formulas = ["LiCoO2", "LiFePO4", "NaCl", "MgO", "Al2O3", "LiMn2O4", "Li3PS4", "TiO2", "ZnO", "CaF2", "Li2O",
                "Li2O2"] * 3
    pd.DataFrame({
        "composition": formulas,
        "y1": rng.normal(size=len(formulas)),
        "y2": np.where(np.arange(len(formulas)) % 3 == 0, np.nan, rng.normal(size=len(formulas))),
    }).to_csv(tmp_path / "data.csv", index=False)
    path = tmp_path / "train.yaml"
    path.write_text(
        "name: tiny_forest\n"
        "train:\n"
        "  dataset: {kind: csv, path: data.csv, formula_column: composition, targets: {a: y1, b: y2},"
        " units: {a: eV, b: GPa}}\n"
        f"  model: {model}\n"
        "  device: cpu\n"
        "  split: {kind: composition, val_fraction: 0.3}\n"
        "checkpoint: out/forest.pt\n"
    )
    return path


def test_forest_recipe_trains_calibrates_and_flags_its_domain(tmp_path):
    path = _write_recipe(tmp_path, "{kind: forest, trees: 16, min_samples_leaf: 2}")
    checkpoint = train_from_config(load_train_config(path), progress=False)
    surrogate = load_checkpoint(checkpoint)
    assert surrogate.kind == "forest" and surrogate.targets == ["a", "b"]
    metrics = surrogate.spec.training["metrics"]
    assert metrics["calibration"]["recalibrated"] and set(metrics["calibration"]["std_scale"]) == {"a", "b"}
    assert metrics["n_nodes"] == surrogate.module.n_nodes and np.isfinite(list(metrics["val_mae"].values())).all()
    scale = surrogate.module.std_scale.numpy()
    assert (scale > 0).all() and not np.allclose(scale, 1.0)  # the validation rows rescaled the trees' spread
    prediction = surrogate.predict(candidates=_candidates(["LiNiO2", "NaCl", "Cs2O"]))
    for target in ("a", "b"):
        assert prediction[target].notna().all() and (prediction[f"{target}_std"] > 0).all()
        assert prediction[f"{target}_in_domain"].notna().all()
    assert not prediction.loc["Cs2O", "a_in_domain"]  # Cs: never in training
    card = checkpoint_card(checkpoint)  # read without torch
    assert card["model_kind"] == "forest" and card["model_config"]["trees"] == 16 and card["domain"]
    nodes = card["model_config"]["n_nodes"]
    assert nodes > 16 and f"({nodes} tree nodes)" in format_card(card)  # not "parameters": nothing is trained by gradient
    with pytest.raises(InputError, match="forest is fitted in one go"):
        train_from_config(load_train_config(path), progress=False, resume=True)


def test_refit_forest_knows_the_validation_rows_and_keeps_the_splits_calibration(tmp_path):
    path = _write_recipe(tmp_path, "{kind: forest, trees: 16, min_samples_leaf: 2}")
    split_only = load_checkpoint(train_from_config(load_train_config(path), progress=False))
    (tmp_path / "out" / "forest.pt").unlink()
    refit = load_checkpoint(train_from_config(load_train_config(path, ["train.refit=true"]), progress=False))
    before, after = split_only.spec.training["metrics"], refit.spec.training["metrics"]
    assert after["refit"]["n_rows"] == after["n_train"] + after["n_val"] == refit.domain.n_train
    assert split_only.domain.n_train == before["n_train"] < refit.domain.n_train
    assert after["val"] == before["val"]  # the card's metrics are the split's: the refit has seen those rows
    assert torch.equal(refit.module.std_scale, split_only.module.std_scale)
    assert refit.domain.std_threshold == split_only.domain.std_threshold
    data = pd.read_csv(tmp_path / "data.csv").groupby("composition")["y1"].mean()  # 3 rows per formula
    errors = {}
    for name, model in (("split", split_only), ("refit", refit)):
        predicted = model.predict(candidates=_candidates(list(data.index)))["a"]
        errors[name] = float(np.abs(predicted.to_numpy() - data.to_numpy()).mean())
    assert errors["refit"] < 0.7 * errors["split"]  # the labels are noise: only the rows it fitted come out near
    assert refit.module.n_nodes > split_only.module.n_nodes  # more rows, more leaves
    with pytest.raises(InputError, match="a refitted forest's domain"):
        attach_domain(refit, load_train_config(path, ["train.refit=true"]).train, None)
    with pytest.raises(ConfigError, match="refit: only a forest"):
        load_train_config(_write_recipe(tmp_path, "{kind: mlp, hidden: [8]}"), ["train.refit=true"])


def test_forest_config_refuses_unknown_keys_and_a_std_head(tmp_path):
    path = _write_recipe(tmp_path, "{kind: forest, trees: 16, min_sample_leaf: 2}")
    with pytest.raises(ConfigError, match=r"train\.model\.forest\.min_sample_leaf"):
        load_train_config(path)
    with pytest.raises(ConfigError, match="max_features 1.5 must be a fraction"):
        load_train_config(_write_recipe(tmp_path, "{kind: forest, max_features: 1.5}"))
    with pytest.raises(ConfigError, match="a forest has no std head"):
        load_train_config(_write_recipe(tmp_path, "{kind: forest}"), ["train.loss=robust_l1"])


def test_a_screen_with_a_forest_checkpoint_ranks(enthalpies, tmp_path):
    cfg = TrainConfig(model={"kind": "forest", "trees": 20}, device="cpu")
    surrogate, _ = train_surrogate(cfg, enthalpies, {TARGET: "eV/atom"}, progress=False)
    checkpoint = save_checkpoint(surrogate, tmp_path / "enthalpy_forest.pt")
    (tmp_path / "formulas.csv").write_text("id,formula\n" + "".join(f"{f},{f}\n" for f in PROBE))
    (tmp_path / "screen.yaml").write_text(
        f"""name: forest_screen
candidates: {{sources: [formulas.csv]}}
features: {{sets: [composition]}}
model: {{checkpoint: {checkpoint}}}
properties: {{calculators: [cost]}}
ranking:
  objectives: [{{column: {TARGET}, direction: min}}]
  top_k: 3
export: {{out_dir: runs, report: false}}
"""
    )
    from mi.pipeline import screen

    ranked = screen(load_config(tmp_path / "screen.yaml"), out=tmp_path / "run", progress=False).ranked
    assert len(ranked) == len(PROBE) and ranked[TARGET].notna().all() and (ranked[f"{TARGET}_std"] > 0).all()
    assert f"{TARGET}_in_domain" in ranked.columns
    inside = ranked[ranked[f"{TARGET}_in_domain"].astype(bool)]
    assert list(inside[TARGET]) == sorted(inside[TARGET])  # in-domain rows ordered by the prediction
