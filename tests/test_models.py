"""Surrogates and checkpoints: every model kind trained tiny on the CPU, saved, reloaded, identical predictions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Composition, Lattice, Structure

from mi.candidates.base import Candidate, composition_hash, structure_hash
from mi.cli import main
from mi.config import TrainConfig
from mi.errors import CheckpointError, ConfigError, InputError
from mi.files import sha256_file as file_sha256
from mi.models.checkpoint import FORMAT_VERSION, checkpoint_card, load_checkpoint, payload_digest, save_checkpoint
from mi.models.datasets import EXP_FORMATION_ENTHALPY, Dataset, load_exp_formation_enthalpy
from mi.models.device import resolve_device
from mi.models.train import featurize_formulas, train, train_surrogate

TARGET = EXP_FORMATION_ENTHALPY
FAST = {"epochs": 3, "batch_size": 32, "patience": 5, "device": "cpu"}
TINY_MLP = TrainConfig(model={"kind": "mlp", "feature_sets": ["composition"], "ensemble_size": 2, "hidden": [32]}, **FAST)
ELEMENT = {"kind": "element_attention", "d_model": 16, "n_heads": 2, "n_layers": 1, "ff_dim": 32, "head_hidden": [16],
           "ensemble_size": 2}
TINY_ELEMENT = TrainConfig(model=ELEMENT, loss="robust_l1", **FAST)
TINY_HYBRID = TrainConfig(model={**ELEMENT, "descriptor_sets": ["composition"]}, **FAST)
TINY_GRAPH = TrainConfig(
    model={"kind": "cgcnn", "cutoff": 4.0, "max_neighbors": 8, "n_gaussians": 8, "atom_dim": 8, "n_conv": 1,
           "head_hidden": [8], "ensemble_size": 2},
    split={"kind": "random", "val_fraction": 0.25},
    **{**FAST, "batch_size": 4},
)
PROBE = ["LiFePO4", "Al2O3", "NaCl", "LiCoO2"]


def _candidates(formulas):
    return [Candidate(f, "test", f, Composition(f), None, composition_hash(Composition(f))) for f in formulas]


FCC = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])


def _structures() -> list[Structure]:
    """A dozen small real crystals: rock salts, antifluorites, CsCl types, with one disordered site.

    Built from explicit coordinates (Structure.from_spacegroup costs most of a second per call).
    """
    out = []
    for a, (cation, anion) in zip(np.linspace(4.0, 6.0, 5), [("Li", "F"), ("Na", "Cl"), ("Mg", "O"), ("K", "Br"), ("Ca", "S")]):
        out.append(Structure(Lattice.cubic(a), [cation] * 4 + [anion] * 4, np.vstack([FCC, (FCC + 0.5) % 1])))
    for a, (cation, anion) in zip((5.7, 4.6, 6.5), [("Li", "S"), ("Li", "O"), ("Na", "S")]):
        tetrahedral = np.vstack([FCC + 0.25, FCC + 0.75]) % 1
        out.append(Structure(Lattice.cubic(a), [anion] * 4 + [cation] * 8, np.vstack([FCC, tetrahedral])))
    for a, (x, y) in zip((3.4, 4.1, 3.0), [("Cs", "Cl"), ("Cs", "Br"), ("Cu", "Zn")]):
        out.append(Structure(Lattice.cubic(a), [x, y], [[0, 0, 0], [0.5, 0.5, 0.5]]))
    disordered = out[0].copy()
    disordered.replace_species({"Li": {"Li": 0.5, "Na": 0.4}})
    out.append(disordered)
    return out


def _structure_dataset() -> Dataset:
    structures = _structures()
    values = [s.density + 0.1 * i for i, s in enumerate(structures)]  # structure-dependent, deterministic
    frame = pd.DataFrame(
        {"formula": [s.composition.formula for s in structures], "density_like": values},
        index=pd.Index([f"s{i}" for i in range(len(structures))], name="id"),
    )
    return Dataset(frame, {"density_like": "g/cm^3"}, {"name": "tiny_structures"}, tuple(structures))


@pytest.fixture(scope="module")
def exp_data() -> pd.DataFrame:
    return load_exp_formation_enthalpy()


@pytest.fixture(scope="module")
def trained(exp_data, tmp_path_factory):
    """kind -> (surrogate, metrics, saved path, candidates to predict)."""
    torch.set_num_threads(1)
    frame = exp_data.sample(120, random_state=0)
    out = {}
    folder = tmp_path_factory.mktemp("ckpt")
    for name, cfg in (("mlp", TINY_MLP), ("element_attention", TINY_ELEMENT), ("hybrid", TINY_HYBRID)):
        surrogate, metrics = train_surrogate(cfg, frame, {TARGET: "eV/atom"}, progress=False)
        out[name] = (surrogate, metrics, save_checkpoint(surrogate, folder / f"{name}.pt"), _candidates(PROBE))
    dataset = _structure_dataset()
    surrogate, metrics = train(TINY_GRAPH, dataset, progress=False)
    candidates, _ = dataset.candidates()
    out["cgcnn"] = (surrogate, metrics, save_checkpoint(surrogate, folder / "cgcnn.pt"), candidates)
    return out


def _plain(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    if isinstance(value, torch.Tensor):
        return value.device.type == "cpu"
    return value is None or isinstance(value, (str, int, float, bool))


def test_exp_dataset_is_per_atom(exp_data):
    assert len(exp_data) == 2135 and list(exp_data.columns) == ["formula", TARGET]
    ag2o = exp_data.set_index("formula").loc["Ag2O", TARGET]
    assert ag2o == pytest.approx(-0.3223287863097536 / 3)


@pytest.mark.parametrize("name", ["mlp", "element_attention", "hybrid", "cgcnn"])
def test_checkpoint_round_trip_for_every_model_kind(trained, name, capsys):
    surrogate, metrics, path, candidates = trained[name]
    kind = "element_attention" if name == "hybrid" else name
    raw = torch.load(path, weights_only=True, map_location="cpu")
    assert raw["format_version"] == FORMAT_VERSION and raw["model_kind"] == kind and _plain(raw)
    assert raw["featurizer"]["inputs"] == surrogate.module.input_kind
    assert set(raw["versions"]) >= {"mi", "torch", "pymatgen"} and raw["created_utc"].endswith("Z")
    assert raw["training"]["data_sha256"].startswith("sha256:") and raw["training"]["n_rows"] > 0
    assert "val" in raw["training"]["metrics"] and raw["training"]["recipe"]["model"]["kind"] == kind
    for name in ("target_mean", "target_std", "std_scale"):
        assert name in raw["state_dict"]

    loaded = load_checkpoint(path)
    before, after = surrogate.predict(candidates=candidates), loaded.predict(candidates=candidates)
    pd.testing.assert_frame_equal(after, before, check_exact=True)
    assert before.notna().all().all() and (before.filter(like="_std") >= 0).all().all()

    assert main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert kind in text and surrogate.targets[0] in text
    card = checkpoint_card(path)
    assert "state_dict" not in card and card["sha256"] == file_sha256(path) and card["n_parameters"] > 0


def test_mlp_predicts_from_a_features_frame_too(trained):
    surrogate, _, _, candidates = trained["mlp"]
    features, _ = featurize_formulas(PROBE, ["composition"])
    features.index = pd.Index(PROBE, name="id")
    from_frame = surrogate.predict(features)
    values = [TARGET, f"{TARGET}_std"]
    from_candidates = surrogate.predict(candidates=candidates)
    pd.testing.assert_frame_equal(from_frame[values], from_candidates[values], check_index_type=False)
    assert list(from_frame.columns) == [*values, f"{TARGET}_in_domain"]
    # without compositions the element rule cannot apply: the frame's flags are never stricter
    assert (from_frame[f"{TARGET}_in_domain"] | ~from_candidates[f"{TARGET}_in_domain"]).all()
    with pytest.raises(InputError, match=r"composition\..*compute the feature sets"):
        surrogate.predict(features.drop(columns=[features.columns[0]]))


def test_element_and_graph_models_need_candidates(trained):
    frame = pd.DataFrame(index=pd.Index(["LiF"], name="id"))
    for name in ("element_attention", "hybrid", "cgcnn"):
        with pytest.raises(InputError, match="pass the candidates"):
            trained[name][0].predict(frame)


def test_hybrid_element_model_reads_descriptors_from_the_frame_or_computes_them(trained):
    surrogate, _, _, candidates = trained["hybrid"]
    assert list(surrogate.spec.feature_sets) == ["composition"]
    assert "feature_mean" in surrogate.module.state_dict() and surrogate.module.n_features > 0
    features, _ = featurize_formulas(PROBE, ["composition"])
    features.index = pd.Index(PROBE, name="id")
    pd.testing.assert_frame_equal(
        surrogate.predict(features, candidates), surrogate.predict(candidates=candidates), check_index_type=False
    )


def test_graph_model_leaves_formula_only_rows_empty(trained):
    surrogate, _, _, candidates = trained["cgcnn"]
    rows = [*candidates[:2], *_candidates(["LiF"])]
    prediction = surrogate.predict(candidates=rows)
    assert prediction.iloc[:2].notna().all().all() and prediction.iloc[2].isna().all()


def test_heteroscedastic_head_and_metrics(trained):
    surrogate, metrics, _, _ = trained["element_attention"]
    assert surrogate.module.heteroscedastic and surrogate.module.n_outputs == 2
    val = metrics["val"][TARGET]
    assert {"mae", "rmse", "r2", "spearman", "within_1sigma", "within_2sigma"} <= set(val)
    assert metrics["calibration"]["std_scale"][TARGET] > 0


def test_bad_files_raise_checkpoint_error(trained, tmp_path):
    saved = trained["mlp"][2]
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.pt")

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated, corrupted"):
        load_checkpoint(truncated)

    raw = torch.load(saved, weights_only=True, map_location="cpu")
    future = tmp_path / "future.pt"
    torch.save({**raw, "format_version": FORMAT_VERSION + 1}, future)
    with pytest.raises(CheckpointError, match=f"format version {FORMAT_VERSION + 1}.*reads version {FORMAT_VERSION}"):
        load_checkpoint(future)
    assert main(["info", str(future)]) == 1

    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": raw["state_dict"]}, foreign)
    with pytest.raises(CheckpointError, match="not an mi surrogate checkpoint"):
        load_checkpoint(foreign)

    stale = tmp_path / "stale.pt"
    torch.save(_rehashed({**raw, "feature_sets": [{"name": "composition", "version": 99}]}), stale)
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(stale)

    mismatched = tmp_path / "mismatched.pt"
    torch.save(_rehashed({**raw, "model_config": {**raw["model_config"], "hidden": [16]}}), mismatched)
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(mismatched)

    unknown = tmp_path / "unknown.pt"
    torch.save(_rehashed({**raw, "model_kind": "transformer9000"}), unknown)
    with pytest.raises(CheckpointError, match="model kind 'transformer9000'"):
        load_checkpoint(unknown)


def _rehashed(payload: dict) -> dict:
    """A payload edited on purpose, with its payload hash made to match again (as a writer would)."""
    return {**payload, "payload_sha256": payload_digest(payload)}


def test_version_1_checkpoints_are_refused_without_a_payload_hash_and_read_with_one(trained, tmp_path):
    """Version 1 held descriptor MLPs without model_kind/featurizer (read as kind 'mlp') and without a payload
    hash: such a file is refused, as any checkpoint without one that mi did not ship; with a hash it loads."""
    surrogate, _, saved, candidates = trained["mlp"]
    raw = torch.load(saved, weights_only=True, map_location="cpu")
    v1 = {k: v for k, v in raw.items() if k not in ("model_kind", "featurizer", "payload_sha256")}
    v1["format_version"] = 1
    v1["model_config"] = {k: v for k, v in v1["model_config"].items() if k != "heteroscedastic"}
    path = tmp_path / "v1.pt"
    torch.save(v1, path)
    with pytest.raises(CheckpointError, match="no payload_sha256"):
        load_checkpoint(path)
    torch.save(_rehashed(v1), path)
    loaded = load_checkpoint(path)
    assert loaded.kind == "mlp"
    pd.testing.assert_frame_equal(loaded.predict(candidates=candidates), surrogate.predict(candidates=candidates))


def test_builtin_checkpoint_predicts_sensible_signs():
    surrogate = load_checkpoint("builtin:formation_enthalpy")
    prediction = surrogate.predict(candidates=_candidates(["Al2O3", "LiF", "Cu"]))[TARGET].to_numpy()
    assert prediction[0] < -2.5  # experiment: -3.47 eV/atom
    assert prediction[1] < -2.5  # experiment: -3.20 eV/atom
    assert abs(prediction[2]) < 0.5  # an element: 0
    card = checkpoint_card("builtin:formation_enthalpy")
    assert card["size_bytes"] < 2_000_000
    assert "exp_compounds" in card["training"]["dataset"]["source"]
    assert "Kubaschewski" in card["training"]["dataset"]["provenance"]
    assert card["training"]["metrics"]["val_mae"][TARGET] < 0.2
    with pytest.raises(CheckpointError, match="no such built-in"):
        load_checkpoint("builtin:nope")


def test_structure_hash_of_dataset_candidates_is_stable():
    dataset = _structure_dataset()
    candidates, failures = dataset.candidates()
    assert not failures and [c.id for c in candidates] == list(dataset.frame.index)
    assert candidates[0].content_hash == structure_hash(dataset.structures[0])


def test_resolve_device(monkeypatch):
    monkeypatch.delenv("MI_DEVICE", raising=False)
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("MI_DEVICE", "cpu")
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setenv("MI_DEVICE", "tpu")
    with pytest.raises(ConfigError, match="MI_DEVICE"):
        resolve_device()
    assert resolve_device("cpu") == torch.device("cpu")  # the argument wins over the environment


def test_card_metrics_are_finite_json(trained):
    card = checkpoint_card(trained["mlp"][2])
    text = json.dumps(card, default=str)
    assert "val_mae" in text and math.isfinite(card["training"]["metrics"]["val_mae"][TARGET])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["hybrid", "cgcnn"])
def test_the_screening_pipeline_runs_element_and_graph_checkpoints(trained, name, tmp_path):
    """`mi screen` loads any model kind through load_checkpoint and predicts through Surrogate.predict."""
    surrogate, _, path, _ = trained[name]
    target = surrogate.targets[0]
    demo = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
    out = tmp_path / "run"
    overrides = ["--set", f"model.checkpoint={path}", "--set", "ranking.constraints=[]",
                 "--set", f"ranking.objectives=[{{column: {target}, direction: min}}]", "--set", "export.report=false"]
    assert main(["screen", str(demo), "--out", str(out), "--no-progress", *overrides]) == 0
    ranked = pd.read_csv(out / "ranked.csv")
    assert {target, f"{target}_std"} <= set(ranked.columns)
    with_structure = ranked["density_g_cm3"].notna()
    assert ranked.loc[with_structure, target].notna().all()
    if name == "cgcnn":  # formula-only candidates get no prediction from a graph model
        assert ranked.loc[~with_structure, target].isna().all()
    else:
        assert ranked[target].notna().all()


def test_a_feature_constant_in_training_is_ignored_not_blown_up():
    from mi.models.surrogate import EnsembleMLP

    torch.manual_seed(0)
    x = torch.randn(40, 3)
    x[:, 1] = 54.8  # constant: float32 sums leave it a spurious std of ~1e-5
    model = EnsembleMLP(3, 1, [8], ensemble_size=2)
    model.fit_normalisers(x, torch.randn(40, 1))
    assert torch.isinf(model.feature_std[1]) and torch.isfinite(model.feature_std[[0, 2]]).all()
    new = x[:2].clone()
    new[:, 1] = 453.7  # a value never seen in training
    assert torch.equal(model.standardise(new), model.standardise(x[:2]))
    assert model.standardise(new)[:, 1].abs().max() == 0


def test_every_model_kind_reads_inputs_training_builds_and_an_unknown_kind_is_refused():
    from mi.errors import ConfigError
    from mi.models.nets import model_class, model_kinds

    assert {cls.input_kind for cls in model_kinds().values()} == {"features", "composition", "graph"}
    with pytest.raises(ConfigError, match="unknown model kind 'transformer9000' \\(known: mlp, element_attention, cgcnn, forest\\)"):
        model_class("transformer9000")
