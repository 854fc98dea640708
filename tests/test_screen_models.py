"""Several surrogates in one screen, the domain of applicability, and what ranking does outside it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Composition

from mi.cli import main
from mi.config import RankingConfig, load_config
from mi.errors import ConfigError
from mi.models.checkpoint import checkpoint_card, load_checkpoint, save_checkpoint
from mi.models.datasets import Dataset, concat_datasets
from mi.models.domain import Domain, element_fractions
from mi.models.screen_models import ModelRef, check_models, model_refs
from mi.pipeline import screen
from mi.ranking import rank

FORMULAS = ["LiFePO4", "LiCoO2", "LiMn2O4", "Li3PO4", "XeF2"]  # Xe: no training row of the enthalpy model has it


def _config(tmp_path, models: str, extra: str = "") -> object:
    (tmp_path / "formulas.csv").write_text("id,formula\n" + "".join(f"{f},{f}\n" for f in FORMULAS))
    (tmp_path / "screen.yaml").write_text(
        f"""name: two_models
candidates: {{sources: [formulas.csv]}}
features: {{sets: [composition]}}
{models}
properties: {{calculators: [capacity, cost]}}
ranking:
  objectives:
    - {{column: formation_enthalpy_eV_atom, direction: min}}
    - {{column: cost_usd_kg, direction: min, weight: 0.5}}
  top_k: 3
{extra}
export: {{out_dir: runs, report: false}}
"""
    )
    return load_config(tmp_path / "screen.yaml")


TWO = """model: {checkpoint: "builtin:formation_enthalpy"}
models:
  - {checkpoint: "builtin:oracle_multitask", columns: [voltage_V]}"""


def test_two_models_merge_their_columns(tmp_path):
    cfg = _config(tmp_path, TWO)
    result = screen(cfg, out=tmp_path / "run", progress=False)
    ranked = result.ranked
    for column in ("formation_enthalpy_eV_atom", "formation_enthalpy_eV_atom_std", "voltage_V", "voltage_V_std"):
        assert column in ranked.columns
        assert ranked[column].notna().all(), column
    # the second model contributes only the column it was given
    assert "formation_energy_eV_atom" not in ranked.columns and "e_hull_eV_atom" not in ranked.columns
    # the same values as each model alone
    alone = load_checkpoint("builtin:oracle_multitask")
    from mi.candidates.base import Candidate, composition_hash

    cands = [Candidate(f, "t", f, Composition(f), None, composition_hash(Composition(f))) for f in FORMULAS]
    expected = alone.predict(candidates=cands)["voltage_V"]
    got = ranked.set_index("id")["voltage_V"]
    assert np.allclose(got.loc[expected.index], expected, atol=1e-5)
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert [c["key"] for c in manifest["checkpoints"]] == ["model", "models[0]"]
    assert all(c["sha256"].startswith("sha256:") for c in manifest["checkpoints"])
    assert manifest["checkpoints"][1]["columns"] == ["voltage_V"]


def test_two_models_predicting_one_column_is_a_config_error(tmp_path, capsys):
    clash = """model: {checkpoint: "builtin:oracle_multitask"}
models:
  - {checkpoint: "builtin:oracle_multitask", columns: [voltage_V]}"""
    cfg = _config(tmp_path, clash)
    with pytest.raises(ConfigError, match=r"model and models\[0\].*both predict voltage_V"):
        check_models(model_refs(cfg))
    assert main(["validate", str(tmp_path / "screen.yaml")]) == 2
    assert "both predict voltage_V" in capsys.readouterr().err
    # a column the model does not predict is named too
    with pytest.raises(ConfigError, match=r"models\[0\]\.columns: .* does not predict conductivity"):
        check_models([ModelRef("models[0]", "builtin:oracle_multitask", columns=("conductivity",))])


def test_blended_models_average_a_shared_column_as_a_mixture(tmp_path):
    from mi.models.screen_models import ScreenModels

    blend = """model: {checkpoint: "builtin:formation_enthalpy"}
models:
  - {checkpoint: "builtin:mp_stability", columns: [formation_energy_eV_atom], blend: true}
  - {checkpoint: "builtin:oracle_multitask", columns: [formation_energy_eV_atom], blend: true}"""
    cfg = _config(tmp_path, blend)
    refs = check_models(model_refs(cfg))  # no clash: both entries blend
    models = ScreenModels.load(refs)
    assert models.targets == ["formation_enthalpy_eV_atom", "formation_energy_eV_atom"]
    from mi.candidates.base import Candidate, composition_hash

    cands = [Candidate(f, "t", f, Composition(f), None, composition_hash(Composition(f))) for f in FORMULAS]
    got = models.predict(None, cands)
    assert not got.columns.duplicated().any()
    parts = [s.predict(candidates=cands) for s in models.surrogates[1:]]
    c = "formation_energy_eV_atom"
    means = np.stack([p[c].to_numpy() for p in parts])
    stds = np.stack([p[f"{c}_std"].to_numpy() for p in parts])
    assert np.allclose(got[c], means.mean(axis=0))
    assert np.allclose(got[f"{c}_std"] ** 2, (stds**2).mean(axis=0) + means.var(axis=0))  # disagreement widens it
    assert (got[f"{c}_std"] >= stds.min(axis=0)).all()
    # in domain only where both models are (the multitask model knows 104 oxides: most formulas are outside it)
    flags = np.stack([p[f"{c}_in_domain"].to_numpy(dtype=bool) for p in parts])
    assert (got[f"{c}_in_domain"].to_numpy(dtype=bool) == flags.all(axis=0)).all()
    # the column no other model predicts is passed through as it was
    alone = models.surrogates[0].predict(candidates=cands)
    assert (got["formation_enthalpy_eV_atom_std"] == alone["formation_enthalpy_eV_atom_std"]).all()
    # one entry without blend: the clash is an error again, and says how to blend
    with pytest.raises(ConfigError, match="blend: true"):
        check_models(model_refs(_config(tmp_path, blend.replace(", blend: true}", "}", 1))))
    ranked = screen(cfg, out=tmp_path / "run", progress=False).ranked
    assert ranked[c].notna().all() and list(ranked.columns).count(c) == 1


def test_out_of_domain_candidate_is_flagged_in_a_screen(tmp_path):
    result = screen(_config(tmp_path, TWO), out=tmp_path / "run", progress=False)
    flags = result.ranked.set_index("id")["formation_enthalpy_eV_atom_in_domain"]
    assert not flags["XeF2"]  # Xe never appears in the model's training rows
    assert flags["LiFePO4"] and flags["LiCoO2"]


def _table(policy_column_in_domain: list[bool]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "e": [-1.0, -2.0, -9.0],  # c is "best" by far, but an extrapolation
            "e_std": [0.1, 0.1, 3.0],
            "e_in_domain": policy_column_in_domain,
            "cost": [1.0, 2.0, 1.5],
        }
    )


@pytest.mark.parametrize("kappa", [None, 2.0])
def test_out_of_domain_value_cannot_rank_first_under_penalize(kappa):
    table = _table([True, True, False])
    objectives = [{"column": "e", "direction": "min"}, {"column": "cost", "direction": "min", "weight": 0.2}]
    sort = {"ucb_kappa": kappa, "sort_by": "ucb_score"} if kappa else {}
    keep = rank(table, RankingConfig(objectives=objectives, out_of_domain="keep", **sort))[0]
    assert keep.iloc[0]["id"] == "c"  # taken at face value, the extrapolation wins
    ranked = rank(table, RankingConfig(objectives=objectives, **sort))[0]  # default: penalize
    assert ranked.iloc[0]["id"] != "c"
    assert ranked.set_index("id").loc["c", "e"] == -9.0  # the value itself is kept in the table


def test_out_of_domain_drop_removes_the_row():
    from mi.ranking.domain import DROP_KEY, drop_out_of_domain

    cfg = RankingConfig(objectives=[{"column": "e", "direction": "min"}], out_of_domain="drop")
    kept, removed, rows = drop_out_of_domain(_table([True, False, True]), cfg)
    assert list(kept["id"]) == ["a", "c"] and removed == {DROP_KEY: 1}
    assert rows.to_dict("records")[0] | {"probability": None} == {
        "id": "b", "formula": "", "source": "", "constraint": DROP_KEY, "column": "e", "value": -2.0, "std": 0.1,
        "probability": None,
    }


def test_streamed_and_in_memory_rankings_penalize_alike(tmp_path):
    from mi.execution.merge import merge_shards

    rng = np.random.default_rng(0)
    n = 60
    table = pd.DataFrame(
        {"id": [f"r{i}" for i in range(n)], "e": rng.normal(size=n), "e_std": rng.uniform(0.1, 1, n),
         "e_in_domain": rng.uniform(size=n) > 0.2, "cost": rng.uniform(1, 5, n)}
    )
    files = []
    for k in range(3):
        path = tmp_path / f"s{k}.parquet"
        table.iloc[k * 20 : (k + 1) * 20].to_parquet(path)
        files.append(path)
    cfg = RankingConfig(objectives=[{"column": "e", "direction": "min"}, {"column": "cost", "direction": "min"}],
                        top_k=5, ucb_kappa=1.0)
    memory, _ = merge_shards(files, cfg, rows=n, max_rows_in_memory=10**6)
    streamed, _ = merge_shards(files, cfg, rows=n, max_rows_in_memory=10)
    top = memory.head(5)
    assert list(streamed.head(5)["id"]) == list(top["id"])
    assert np.allclose(streamed.head(5)["score"], top["score"])
    # an out-of-domain row scores on its cost alone (its energy counts as the worst): at most cost's weight
    out = memory[~memory["e_in_domain"].astype(bool)]
    assert len(out) and (out["score"] <= 0.5 + 1e-12).all()


def test_domain_flags_rare_elements_and_far_rows_and_round_trips():
    rng = np.random.default_rng(1)
    comps = [Composition({"Li": 1, "O": 1 + int(i % 3)}) for i in range(200)]
    x = rng.normal(size=(200, 6))
    domain = Domain.fit(x, comps, space="descriptors", min_element_rows=10)
    near, far = np.zeros((1, 6)), np.full((1, 6), 50.0)
    flags = domain.check(np.vstack([near, far, near]), [comps[0], comps[0], Composition("CsO")])["*"]
    assert list(flags) == [True, False, False]
    again = Domain.from_payload(json.loads(json.dumps(domain.to_payload())))
    assert np.allclose(again.distances(far), domain.distances(far), rtol=1e-5)
    assert domain.summary()["elements_seen"] == 2
    # a training row is in domain by distance, however isolated (half the rows only set the threshold)
    lonely = np.vstack([x, np.full((1, 6), 8.0)])
    fitted = Domain.fit(lonely, comps + [comps[0]], space="descriptors")
    assert fitted.distances(lonely).max() < 1e-2 and fitted.check(lonely, None)["*"].all()  # float32 distances
    assert fitted.distances(lonely[-1:] + 1.0)[0] > fitted.distance_threshold  # a step beyond it is out
    # element fractions: the space of models that read no descriptors
    fractions = element_fractions([Composition("Li2O")])
    assert fractions.shape == (1, 103) and np.isclose(fractions.sum(), 1.0)


def test_checkpoint_keeps_its_domain_and_refuses_an_edited_one(tmp_path):
    surrogate = load_checkpoint("builtin:formation_enthalpy")
    assert surrogate.domain is not None
    path = save_checkpoint(surrogate, tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True, map_location="cpu")
    assert "domain" in payload and payload["domain"]["distance_threshold"] > 0
    card = checkpoint_card(path)
    assert "reference" not in card["domain"] and card["domain"]["n_train"] > 100
    payload["domain"]["distance_threshold"] = 1e9  # widen the domain by hand
    torch.save(payload, tmp_path / "edited.pt")
    from mi.errors import CheckpointError

    with pytest.raises(CheckpointError, match="payload_sha256"):
        load_checkpoint(tmp_path / "edited.pt")


def test_concat_dataset_stacks_targets_with_gaps():
    a = Dataset(pd.DataFrame({"formula": ["LiF", "NaCl"], "x": [1.0, 2.0]}, index=pd.Index(["0", "1"], name="id")),
                {"x": "eV"}, {"name": "a"})
    b = Dataset(pd.DataFrame({"formula": ["KBr"], "y": [3.0]}, index=pd.Index(["0"], name="id")), {"y": "V"},
                {"name": "b"})
    both = concat_datasets([a, b])
    assert list(both.frame.index) == ["0:0", "0:1", "1:0"]
    assert both.targets == ["x", "y"] and both.units == {"x": "eV", "y": "V"}
    assert np.isnan(both.frame.loc["1:0", "x"]) and both.frame.loc["1:0", "y"] == 3.0
