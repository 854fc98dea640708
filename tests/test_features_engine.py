"""The featurization engine: cache, worker pool, time limit, failure isolation, config wiring."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Composition, Lattice, Structure

import mi.features.engine as engine
import mi.features.sets as sets_module
from mi.candidates.base import Candidate, composition_hash, structure_hash
from mi.config import FeaturesConfig
from mi.features import FEATURE_SETS, FeatureCache, featurize_candidates, featurize_with_config

ALL_SETS = ["composition", "structure", "working_ion"]
ROOT = Path(__file__).resolve().parents[1]


def formula_candidate(formula: str, cid: str) -> Candidate:
    composition = Composition(formula)
    return Candidate(cid, "test.csv", cid, composition, None, composition_hash(composition))


def structure_candidate(structure: Structure, cid: str) -> Candidate:
    return Candidate(cid, f"{cid}.cif", cid, structure.composition, structure, structure_hash(structure))


@pytest.fixture(scope="module")
def small_structures() -> list[Structure]:
    """Rock-salt and antifluorite cells of a few lattice constants: distinct content hashes."""
    out = []
    for a in (4.0, 4.2, 4.4):
        out.append(Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Li", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]))
        out.append(Structure.from_spacegroup("Fm-3m", Lattice.cubic(a + 1.3), ["S", "Li"], [[0, 0, 0], [0.25] * 3]))
    return out


@pytest.fixture(scope="module")
def candidates(small_structures) -> list[Candidate]:
    mixed = [structure_candidate(s, f"s{k}") for k, s in enumerate(small_structures)]
    mixed += [formula_candidate(f, f"f{k}") for k, f in enumerate(["LiFePO4", "Li7La3Zr2O12", "NaCoO2"])]
    return mixed


def test_second_run_reads_everything_from_the_cache(candidates, tmp_path, monkeypatch):
    first = featurize_candidates(candidates, ALL_SETS, working_ion="Li", cache=tmp_path)
    assert first.failures == []
    assert (first.computed, first.from_cache) == (len(candidates) * 3, 0)

    def must_not_run(*args, **kwargs):
        raise AssertionError("a cached feature was computed again")

    monkeypatch.setattr(sets_module, "composition_features", must_not_run)
    monkeypatch.setattr(engine, "describe_structure", must_not_run)
    second = featurize_candidates(candidates, ALL_SETS, working_ion="Li", cache=FeatureCache(tmp_path))
    assert (second.computed, second.from_cache) == (0, len(candidates) * 3)
    pd.testing.assert_frame_equal(first.features, second.features)  # float64 round trip: identical values


def test_cache_keys_on_version_and_working_ion(candidates, tmp_path, monkeypatch):
    featurize_candidates(candidates, ALL_SETS, working_ion="Li", cache=tmp_path)
    other_ion = featurize_candidates(candidates, ALL_SETS, working_ion="Na", cache=tmp_path)
    assert other_ion.counts_by_set["working_ion"] == {"computed": len(candidates), "from_cache": 0}
    assert other_ion.counts_by_set["composition"]["from_cache"] == len(candidates)
    monkeypatch.setattr(FEATURE_SETS["structure"], "version", 999)
    bumped = featurize_candidates(candidates, ["structure"], cache=tmp_path)
    assert bumped.from_cache == 0 and bumped.computed == len(candidates)
    assert (tmp_path / "structure-v999").is_dir() and (tmp_path / "working_ion-v1-Na").is_dir()


def test_unreadable_cache_pack_is_recomputed(candidates, tmp_path, caplog):
    featurize_candidates(candidates[:2], ["composition"], cache=tmp_path)
    for pack in (tmp_path / f"composition-v{FEATURE_SETS['composition'].version}").glob("*.npz"):
        pack.write_bytes(b"not a zip file")
    again = featurize_candidates(candidates[:2], ["composition"], cache=tmp_path)
    assert again.computed == 2 and "unreadable" in caplog.text


def test_one_bad_candidate_among_many_in_process(candidates, tmp_path):
    collapsed = Structure(Lattice([[3, 0, 0], [0, 3, 0], [6, 0, 0]]), ["Li", "O"], [[0, 0, 0], [0.5, 0.5, 0]])
    bad = structure_candidate(collapsed, "collapsed")
    batch = [*candidates[:3], bad, *candidates[3:]]
    result = featurize_candidates(batch, ALL_SETS, working_ion="Li", cache=tmp_path, timeout_s=30)
    assert [f.id for f in result.failures] == ["collapsed"]
    assert "volume" in result.failures[0].reason and result.failures[0].stage == "features"
    assert list(result.features.index) == [c.id for c in candidates]
    # The error is deterministic, so it is cached like a row: the second run reports it without work.
    again = featurize_candidates(batch, ALL_SETS, working_ion="Li", cache=tmp_path)
    assert again.computed == 0 and [f.reason for f in again.failures] == [f.reason for f in result.failures]


def test_in_process_time_limit(candidates, tmp_path, monkeypatch):
    real = engine.describe_structure
    slow_id = candidates[1].structure

    def describe(structure, set_names, working_ion):
        if structure is slow_id:
            time.sleep(5)  # a structure that would hold the run up
        return real(structure, set_names, working_ion)

    monkeypatch.setattr(engine, "describe_structure", describe)
    started = time.perf_counter()
    result = featurize_candidates(candidates, ["structure"], timeout_s=0.5, workers=0, cache=tmp_path)
    assert time.perf_counter() - started < 4
    assert [f.id for f in result.failures] == [candidates[1].id] and "timed out" in result.failures[0].reason
    assert result.timed_out == 1 and len(result.features) == len(candidates) - 1
    monkeypatch.setattr(engine, "describe_structure", real)
    retry = featurize_candidates(candidates, ["structure"], cache=tmp_path)  # a time-out is not cached
    assert retry.computed == 1 and retry.failures == []


@pytest.mark.slow
def test_pool_survives_a_pathological_structure(small_structures, tmp_path):
    """A crushed cell of thousands of atoms hits the time limit, a flat cell fails; the pool carries on."""
    # 2,197 Li on a grid 0.51 A apart: passes a reader's 0.5 A overlap check, and its 4 A neighbour list
    # (~4.4 million pairs, just under the size guard) keeps pymatgen's C code busy for seconds.
    n = 13
    grid = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1).reshape(-1, 3) / n
    crushed = Structure(Lattice.cubic(n * 0.51), ["Li"] * len(grid), grid)
    flat = Structure(Lattice([[3, 0, 0], [0, 3, 0], [0, 0, 1e-4]]), ["Li", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    batch = [structure_candidate(s, f"ok{k}") for k, s in enumerate(small_structures)]
    batch.insert(2, structure_candidate(crushed, "crushed"))
    batch.insert(5, structure_candidate(flat, "flat"))
    started = time.perf_counter()
    result = featurize_candidates(
        batch, ["structure", "working_ion"], working_ion="Li", workers=2, chunk_size=2, timeout_s=0.5, cache=tmp_path
    )
    reasons = {f.id: f.reason for f in result.failures}
    assert set(reasons) == {"crushed", "flat"}
    # On a loaded machine the crushed cell's structure features run past the limit and the worker is killed;
    # on an idle one they may finish, and the working-ion features' size guard refuses the cell instead.
    # Either way it is a failure row and the pool carries on (the in-process time limit is tested above).
    timed_out = "timed out after 0.5 s" in reasons["crushed"]
    assert timed_out or "collapsed or far too large a cell" in reasons["crushed"]
    assert "collapsed" in reasons["flat"]
    assert list(result.features.index) == [f"ok{k}" for k in range(len(small_structures))]
    assert result.timed_out == int(timed_out)
    assert time.perf_counter() - started < 60  # two worker start-ups and a kill, not a hang
    # The pool gives the same numbers as this process.
    alone = featurize_candidates(batch[:2], ["structure", "working_ion"], working_ion="Li")
    pd.testing.assert_frame_equal(result.features.loc[["ok0", "ok1"]], alone.features)


def test_config_wiring(candidates, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    auto = featurize_with_config(candidates[:2], ["composition"], FeaturesConfig(), working_ion="Li")
    assert auto.computed == 2 and (tmp_path / "xdg" / "mi" / "features").is_dir()
    relative = FeaturesConfig(cache_dir="cache", workers=0)
    featurize_with_config(candidates[:2], ["composition"], relative, working_ion="Li", resolve=lambda p: tmp_path / p)
    assert (tmp_path / "cache").is_dir()
    none = featurize_with_config(candidates[:2], ["composition"], FeaturesConfig(cache_dir=None), working_ion="Li")
    assert none.from_cache == 0 and not (tmp_path / "none").exists()
    with pytest.raises(ValueError, match="workers"):
        FeaturesConfig(workers=-1)


@pytest.mark.slow
def test_screen_counts_cache_hits_in_the_manifest(tmp_path):
    from mi.cli import main

    cache = f"features.cache_dir={tmp_path / 'c'}"
    args = ["screen", str(ROOT / "configs" / "demo.yaml"), "--no-progress", "--set", cache]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    assert main([*args, "--out", str(tmp_path / "two")]) == 0
    one = json.loads((tmp_path / "one" / "manifest.json").read_text())["counts"]
    two = json.loads((tmp_path / "two" / "manifest.json").read_text())["counts"]
    assert one["features_computed"] > 0 and one["features_from_cache"] == 0
    assert two["features_computed"] == 0 and two["features_from_cache"] == one["features_computed"]
    ranked_one = pd.read_csv(tmp_path / "one" / "ranked.csv")
    ranked_two = pd.read_csv(tmp_path / "two" / "ranked.csv")
    np.testing.assert_array_equal(ranked_one["id"], ranked_two["id"])
