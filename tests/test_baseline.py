"""Physics baselines: a voltage from an energy model's formation energies, and a surrogate that corrects it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Composition

from mi.candidates.base import Candidate, composition_hash
from mi.config import TrainConfig
from mi.errors import CheckpointError, ConfigError, InputError
from mi.models.baseline import intercalation_voltage
from mi.models.checkpoint import (baseline_energy_model, checkpoint_card, checkpoint_targets, load_checkpoint,
                                  save_checkpoint)
from mi.models.surrogate import Surrogate
from mi.models.train import train_surrogate

LABELS = Path(__file__).resolve().parents[1] / "datasets" / "voltage" / "li" / "labels.json"
BASELINE = {"kind": "intercalation_voltage", "target": "voltage_V", "energy_model": "builtin:mp_stability",
            "energy_column": "formation_energy_eV_atom"}


def _candidates(formulas):
    return [Candidate(f, "test", f, Composition(f), None, composition_hash(Composition(f))) for f in formulas]


@pytest.fixture(scope="module")
def mp_stability():
    return baseline_energy_model("builtin:mp_stability", checkpoint_targets("builtin:mp_stability")[1])


def test_intercalation_voltage_is_the_energy_difference_of_removing_every_extractable_ion(mp_stability):
    formulas = ["LiFePO4", "LiCoO2", "Li2FeSiO4", "Fe2O3", "LiF"]
    voltage, in_domain = intercalation_voltage([Composition(f) for f in formulas], mp_stability,
                                               "formation_energy_eV_atom")
    e = mp_stability.predict(candidates=_candidates(["LiFePO4", "FePO4", "LiCoO2", "CoO2", "Li2FeSiO4", "LiFeSiO4"]))
    e = e["formation_energy_eV_atom"]
    # per formula unit: E_f(host) N(host) - E_f(lithiated) N(lithiated), over the ions removed
    assert voltage[0] == pytest.approx((e["FePO4"] * 6 - e["LiFePO4"] * 7) / 1)
    assert voltage[1] == pytest.approx((e["CoO2"] * 3 - e["LiCoO2"] * 4) / 1)
    assert voltage[2] == pytest.approx((e["LiFeSiO4"] * 7 - e["Li2FeSiO4"] * 8) / 1)  # Fe2+ -> Fe3+: one Li of two
    assert 2.5 < voltage[0] < 4.5 and 3.0 < voltage[1] < 5.0 and in_domain[:3].all()
    # no working ion (Fe2O3), nothing to oxidise (LiF): no voltage, not in domain
    assert np.isnan(voltage[3:]).all() and not in_domain[3:].any()


@pytest.fixture(scope="module")
def corrected(tmp_path_factory):
    rows = [r for r in json.loads(LABELS.read_text())["data"] if r.get("voltage_V") is not None]
    frame = pd.DataFrame({"formula": [r["formula"] for r in rows], "voltage_V": [r["voltage_V"] for r in rows]})
    cfg = TrainConfig(model={"kind": "forest", "trees": 12, "min_samples_leaf": 3}, baseline=BASELINE,
                      split={"kind": "chemsys", "val_fraction": 0.2}, device="cpu")
    surrogate, _ = train_surrogate(cfg, frame, {"voltage_V": "V"}, progress=False)
    path = save_checkpoint(surrogate, tmp_path_factory.mktemp("baseline") / "voltage.pt")
    return path, frame


def test_a_surrogate_trained_on_a_baseline_predicts_baseline_plus_its_correction(corrected, mp_stability):
    path, frame = corrected
    surrogate = load_checkpoint(path)  # weights_only load; the baseline travels in the checkpoint
    assert surrogate.spec.baseline["energy_sha256"] == checkpoint_targets("builtin:mp_stability")[1]
    formulas = ["LiFePO4", "LiMn2O4", "NaFePO4", "Fe2O3"]
    predicted = surrogate.predict(candidates=_candidates(formulas))
    raw = Surrogate(surrogate.module, dataclasses.replace(surrogate.spec, baseline=None), surrogate.domain)
    correction = raw.predict(candidates=_candidates(formulas))["voltage_V"].to_numpy()
    baseline, _ = intercalation_voltage([Composition(f) for f in formulas], mp_stability, "formation_energy_eV_atom")
    np.testing.assert_allclose(predicted["voltage_V"].to_numpy()[:3], (baseline + correction)[:3])
    # a correction, not a voltage (NaFePO4 left out: the Li labels alone say little of a Na cathode)
    assert np.abs(correction[:2]).max() < 1.0
    assert predicted.loc["Fe2O3"].isna().all()  # no Li or Na: no voltage, no std, no verdict
    assert (predicted["voltage_V_std"][:3] > 0).all() and predicted["voltage_V_in_domain"][:3].notna().all()
    # the card metrics are voltage errors: the correction's error is the voltage's
    assert 0 < surrogate.spec.training["metrics"]["val_mae"]["voltage_V"] < 0.6


def test_a_baseline_refuses_another_energy_model_and_a_target_the_data_lacks(corrected):
    path, frame = corrected
    surrogate = load_checkpoint(path)
    other = {**surrogate.spec.baseline, "energy_sha256": "sha256:" + "0" * 64}  # as if mp_stability were retrained
    moved = Surrogate(surrogate.module, dataclasses.replace(surrogate.spec, baseline=other), surrogate.domain)
    moved_path = save_checkpoint(moved, path.with_name("moved.pt"))
    with pytest.raises(CheckpointError, match="moved.pt: its intercalation_voltage baseline reads builtin:mp_stability.*sha256"):
        load_checkpoint(moved_path)
    without_energy = Surrogate(surrogate.module, surrogate.spec, surrogate.domain)
    with pytest.raises(InputError, match="without its energy model"):
        without_energy.predict(candidates=_candidates(["LiFePO4"]))
    cfg = TrainConfig(model={"kind": "forest", "trees": 4}, baseline={**BASELINE, "target": "capacity"}, device="cpu")
    with pytest.raises(ConfigError, match="train.baseline.target: 'capacity'"):
        train_surrogate(cfg, frame, {"voltage_V": "V"}, progress=False)


def test_asking_for_the_baseline_target_alone_runs_only_the_rows_with_a_baseline(tmp_path):
    rows = [r for r in json.loads(LABELS.read_text())["data"]]
    frame = pd.DataFrame({"formula": [r["formula"] for r in rows], "voltage_V": [r["voltage_V"] for r in rows],
                          "relaxed_density_g_cm3": [r["relaxed_density_g_cm3"] for r in rows]})
    cfg = TrainConfig(model={"kind": "forest", "trees": 8, "min_samples_leaf": 3}, baseline=BASELINE, device="cpu")
    surrogate, _ = train_surrogate(cfg, frame, {"voltage_V": "V", "relaxed_density_g_cm3": "g/cm^3"}, progress=False)
    candidates = _candidates(["LiFePO4", "Fe2O3", "LiCoO2", "NaCl", "Li2O"])
    everything = surrogate.predict(candidates=candidates)
    voltage_only = surrogate.predict(candidates=candidates, targets=["voltage_V"])  # as a screen keeping voltage_V
    columns = ["voltage_V", "voltage_V_std", "voltage_V_in_domain"]
    pd.testing.assert_frame_equal(voltage_only[columns], everything[columns])
    assert everything["relaxed_density_g_cm3"].notna().all()  # the density needs no baseline
    # rows without a baseline value (no Li or Na, nothing to oxidise) were not run at all
    assert voltage_only["relaxed_density_g_cm3"].isna().tolist() == [False, True, False, True, True]


def test_the_shipped_voltage_model_knows_the_known_cathodes():
    """builtin:voltage keeps every known cathode of experiments/benchmarks/known_materials.py in its domain, the
    layered sulfide too (datasets/voltage's round 4), with voltages within 0.7 V of the measured averages."""
    measured = {"LiFePO4": 3.45, "LiCoO2": 3.9, "LiMn2O4": 4.1, "LiNiO2": 3.8, "NaFePO4": 2.9, "LiTiS2": 2.1}
    predicted = load_checkpoint("builtin:voltage").predict(candidates=_candidates(list(measured)))
    assert predicted["voltage_V_in_domain"].all(), predicted.loc[~predicted["voltage_V_in_domain"], "voltage_V"]
    np.testing.assert_allclose(predicted["voltage_V"].to_numpy(), list(measured.values()), atol=0.7)
    assert (predicted["voltage_V_std"] < 0.3).all()
    card = checkpoint_card("builtin:voltage")
    assert "sulfide" in card["training"]["data"] and card["training"]["n_used"] >= 800
