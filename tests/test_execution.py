"""Chunked screening: the streaming reader, the shard merge, the Ray backend against the local one."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mi.candidates import read_candidates
from mi.candidates.stream import CandidateStream, SeenIds, chunked
from mi.cli import main
from mi.config import RankingConfig, load_config
from mi.errors import ConfigError
from mi.execution.merge import merge_shards
from mi.export.rundir import write_ranked
from mi.pipeline import screen
from mi.ranking import rank

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "demo.yaml"


# --- reading ----------------------------------------------------------------------------------------


def test_stream_reads_what_read_candidates_reads_duplicates_included(tmp_path):
    shutil.copytree(ROOT / "datasets" / "demo", tmp_path / "demo")
    # A second table repeating two ids of the first: duplicates, named with where the id was first read.
    table = (tmp_path / "demo" / "formulas.csv").read_text().splitlines()
    (tmp_path / "demo" / "again.csv").write_text("\n".join([table[0], table[1], table[2], "fresh,NaCl"]) + "\n")
    cfg = load_config(DEMO, [f"candidates.sources=[{tmp_path / 'demo'}]"])
    expected, expected_failures = read_candidates(cfg.candidates, cfg.resolve)
    stream = CandidateStream(cfg.candidates, cfg.resolve)
    got = [c.id for chunk in chunked(stream, 4) for c in chunk]
    assert got == [c.id for c in expected]
    assert stream.finish() == expected_failures
    assert sum("duplicate id" in f.reason for f in expected_failures) == 2


def test_seen_ids_survive_the_merge_into_the_sorted_array(monkeypatch):
    import mi.candidates.stream as stream

    monkeypatch.setattr(stream, "_MERGE_EVERY", 8)
    seen = SeenIds()
    assert all(seen.add(f"id-{i}") for i in range(50))
    assert not any(seen.add(f"id-{i}") for i in range(50))
    assert seen.add("id-50") and len(seen) == 51


# --- the merge --------------------------------------------------------------------------------------


def _table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 12, n).astype(float)  # few distinct values: ties in score and Pareto fronts
    b = rng.normal(size=n)
    c = rng.integers(0, 5, n).astype(float)
    a[rng.random(n) < 0.05] = np.nan
    b[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame(
        {"id": [f"c{i:05d}" for i in range(n)], "a": a, "b": b, "b_std": rng.random(n), "c": c, "note": "x"}
    )


@pytest.mark.parametrize(
    "method, kappa", [("minmax", None), ("rank", None), ("zscore", None), ("minmax", 1.0), ("rank", 0.5)]
)
def test_streaming_merge_gives_the_top_k_and_front_of_the_in_memory_ranking(tmp_path, method, kappa):
    table = _table(900, seed=hash(method) % 1000)
    ranking = RankingConfig(
        objectives=[
            {"column": "a", "direction": "max", "normalise": method},
            {"column": "b", "direction": "min", "weight": 0.5, "normalise": method},
            {"column": "c", "direction": "max", "weight": 0.0},
        ],
        top_k=25,
        ucb_kappa=kappa,
        sort_by="ucb_score" if kappa is not None else "score",
    )
    files = []
    for i, part in enumerate(np.array_split(np.arange(len(table)), 7)):
        path = tmp_path / f"chunk-{i}.parquet"
        table.iloc[part].reset_index(drop=True).to_parquet(path, index=False)
        files.append(path)
    expected, _ = rank(table, ranking)
    streamed, summary = merge_shards(files, ranking, rows=len(table), max_rows_in_memory=100)
    in_memory, _ = merge_shards(files, ranking, rows=len(table), max_rows_in_memory=10_000)
    assert summary["streamed"]
    pd.testing.assert_frame_equal(in_memory, expected)
    front = expected["pareto_rank"] == 1
    want = expected[(expected["rank"] <= 25) | front].reset_index(drop=True)
    assert list(streamed.columns) == list(want.columns)
    assert streamed["id"].tolist() == want["id"].tolist()
    assert streamed["rank"].tolist() == want["rank"].tolist()
    assert streamed["pareto_rank"].tolist() == want["pareto_rank"].tolist()
    exact = method != "zscore"  # shard-wise mean and std equal numpy's only up to rounding
    tol = dict(rtol=0, atol=0) if exact else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(streamed["score"], want["score"], **tol)
    on_front = streamed["pareto_rank"] == 1
    np.testing.assert_allclose(streamed.loc[on_front, "crowding_distance"], want.loc[on_front.to_numpy(), "crowding_distance"])
    assert streamed.loc[~on_front, "crowding_distance"].isna().all()


def test_in_memory_merge_is_the_ranking_of_the_shards_concatenation(tmp_path):
    """The merge places each shard's rows at their ranks instead of ranking a concatenated table: the same
    frame, with shards whose columns and types differ as chunks' do (a flag without a missing value is bool
    in one chunk and float in another, a column only one chunk has, an empty chunk, a stale score)."""
    from mi.execution.merge import concat_rows, read_shard

    rng = np.random.default_rng(3)

    def shard(n: int, first: int, **extra) -> pd.DataFrame:
        return pd.DataFrame({
            "id": [f"c{first + i:04d}" for i in range(n)], "a": rng.integers(0, 6, n).astype(float),
            "b": rng.normal(size=n), "b_std": rng.random(n), "count": np.arange(n), **extra,
        })

    shards = [
        shard(40, 0, b_in_domain=True, note="x", opt=None, ok=pd.array([True, None] * 20, dtype="boolean")),
        shard(35, 100, b_in_domain=np.where(rng.random(35) < 0.3, np.nan, 1.0), note=[None, "y,z"] * 17 + ["w"],
              opt="o", ok=pd.array([False] * 35, dtype="boolean")).assign(count=np.arange(35) / 2),
        shard(0, 200, ghost=1.0),
        shard(30, 300, b_in_domain=False, note="q", score=1.0),  # no "opt"
    ]
    shards[1].insert(2, "demand_Kr", rng.random(35))  # only this chunk has krypton
    ranking = RankingConfig(
        objectives=[{"column": "a", "direction": "max"}, {"column": "b", "direction": "min", "normalise": "rank"}],
        constraints=[{"column": "b", "max": 1.5, "probability": 0.3}], out_of_domain="penalize", top_k=5,
    )
    files = []
    for i, frame in enumerate(shards):
        files.append(tmp_path / f"chunk-{i}.parquet")
        frame.to_parquet(files[-1], index=False)
    expected, expected_summary = rank(concat_rows([read_shard(f) for f in files]), ranking)
    merged, summary = merge_shards(files, ranking, rows=105, max_rows_in_memory=1000)
    pd.testing.assert_frame_equal(merged, expected, check_exact=True)
    assert summary == {**expected_summary, "streamed": False}
    assert merged["b_in_domain"].dtype == float and "demand_Kr" in merged and "ghost" not in merged


# --- config and command line ------------------------------------------------------------------------


def test_execution_section_is_checked():
    with pytest.raises(ConfigError, match="execution.backnd"):
        load_config(DEMO, ["execution.backnd=ray"])
    with pytest.raises(ConfigError, match="execution.backend"):
        load_config(DEMO, ["execution.backend=spark"])
    cfg = load_config(DEMO, ["execution.chunk_size=7", "execution.address=auto"])
    assert cfg.execution.chunk_size == 7 and cfg.execution.address == "auto" and cfg.execution.backend == "local"


# --- backends ---------------------------------------------------------------------------------------


def _demo(tmp_path: Path, *overrides: str):
    return load_config(
        DEMO,
        ["execution.chunk_size=4", "execution.workers=1", "export.report=false", f"features.cache_dir={tmp_path / 'cache'}",
         *overrides],
    )


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["2", "auto"])
def test_local_process_pool_matches_in_process(tmp_path, workers):
    one = screen(_demo(tmp_path), out=tmp_path / "one", progress=False)
    pool = screen(_demo(tmp_path, f"execution.workers={workers}"), out=tmp_path / "pool", progress=False)
    assert (one.run_dir / "ranked.csv").read_bytes() == (pool.run_dir / "ranked.csv").read_bytes()
    assert pool.manifest["counts"]["chunks"] == 6  # 21 readable candidates in chunks of 4


def test_ray_backend_ranks_exactly_like_local(tmp_path):
    ray = pytest.importorskip("ray")
    local = screen(_demo(tmp_path), out=tmp_path / "local", progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        code = main(
            ["screen", str(DEMO), "--backend", "ray", "--out", str(tmp_path / "ray"), "--no-progress",
             "--set", "execution.chunk_size=4", "--set", "execution.workers=1", "--set", "export.report=false",
             "--set", f"features.cache_dir={tmp_path / 'ray-cache'}"]
        )
    finally:
        ray.shutdown()
    assert code == 0
    by_ray = pd.read_csv(tmp_path / "ray" / "ranked.csv")
    by_local = pd.read_csv(local.run_dir / "ranked.csv")
    assert by_ray["id"].tolist() == by_local["id"].tolist()
    assert by_ray["score"].tolist() == by_local["score"].tolist()
    assert (tmp_path / "ray" / "ranked.csv").read_bytes() == (local.run_dir / "ranked.csv").read_bytes()
    assert len(list((tmp_path / "ray" / "shards").glob("chunk-*.parquet"))) == 6


# --- notes and models across chunks -----------------------------------------------------------------


def test_chunk_notes_merge_into_the_notes_of_one_chunk(tmp_path):
    """The notes of a screen's chunks, merged (in any order), are the notes the whole set gets at once: the
    counts added up, per element too, and the first ids as examples."""
    from mi.execution.notes import merge_notes
    from mi.properties import compute_properties

    formulas = ["LiCoO2", "NaCl", "UO2", "Nd2O3", "LiFePO4", "CsI", "PuO2", "Li2O", "LiUO3", "Ac2O3", "Li3N",
                "LiNdO2", "Fe2O3", "LiMnO2", "KCl", "Li2PuO3"]
    (tmp_path / "f.csv").write_text("id,formula\n" + "".join(f"c{i:02d},{f}\n" for i, f in enumerate(formulas)))
    cfg = load_config(ROOT / "configs" / "cathode.yaml", [f"candidates.sources=[{tmp_path / 'f.csv'}]"])
    candidates, _ = read_candidates(cfg.candidates, cfg.resolve)
    whole = compute_properties(candidates, cfg.properties)[2]
    chunks = [candidates[i : i + 5] for i in range(0, len(candidates), 5)]
    notes = [compute_properties(chunk, cfg.properties)[2] for chunk in chunks]
    assert sum(map(len, notes)) > len(whole)  # the chunks repeat notes
    merged = merge_notes((i, notes[i]) for i in reversed(range(len(chunks))))
    assert sorted(merged) == sorted(whole)
    assert "capacity_mAh_g is 0 for 8 candidates: no Li in the formula (c01, c02, c03, c05, c06 and 3 more)" in merged
    assert any(n.startswith("co2_lower_bound_kg_per_kg is missing for 7 candidates: no CO2 factor for Ac (1 candidate), "
                            "Cl (2 candidates)") for n in merged)  # per element, not one note per combination
    # Closing parentheses that are no id list (their items do not add up to the count) stay text.
    odd = ["x is odd for 3 candidates (see the docs)"]
    assert merge_notes([(0, odd), (1, odd)]) == ["x is odd for 6 candidates (see the docs)"]


def test_a_screen_in_chunks_has_the_notes_of_one_chunk(tmp_path):
    one = screen(_demo(tmp_path, "execution.chunk_size=1000"), out=tmp_path / "one", progress=False)
    chunks = screen(_demo(tmp_path), out=tmp_path / "chunks", progress=False)
    assert chunks.manifest["counts"]["chunks"] == 6
    assert sorted(chunks.manifest["notes"]) == sorted(one.manifest["notes"])
    header = [(run.run_dir / "ranked.csv").read_text().splitlines()[0] for run in (one, chunks)]
    assert header[0] == header[1]  # the columns in one table's order, however the run was chunked
    for run in (one, chunks):  # the table handed back (merged again from the shards) is the one written
        write_ranked(tmp_path / run.run_dir.name, run.ranked, run.predicted, write_json=False)
        assert (tmp_path / run.run_dir.name / "ranked.csv").read_bytes() == (run.run_dir / "ranked.csv").read_bytes()
        pd.testing.assert_frame_equal(run.top, run.ranked.head(len(run.top)))


def test_the_cathode_screen_has_the_same_demand_columns_in_chunks_of_any_size(tmp_path):
    """A chunk writes tonnes a year only for its own elements (and for those of rows its constraints then
    remove): merged, chunks of 2 give the columns, zeros and values of one chunk."""
    runs = [
        screen(load_config(ROOT / "configs" / "cathode.yaml", [
            f"candidates.sources=[{ROOT / 'datasets' / 'demo' / 'formulas.csv'}]", f"execution.chunk_size={size}",
            "execution.workers=1", "export.report=false", f"features.cache_dir={tmp_path / 'cache'}"]),
            out=tmp_path / f"chunks{size}", progress=False)
        for size in (2, 1000)
    ]
    tables = [pd.read_csv(run.run_dir / "ranked.csv") for run in runs]
    demand = [c for c in tables[1].columns if c.startswith("demand_")]
    assert list(tables[0].columns) == list(tables[1].columns) and len(demand) >= 5
    pd.testing.assert_frame_equal(tables[0][["id", *demand]], tables[1][["id", *demand]], rtol=1e-5)
    assert (tables[1][demand] == 0.0).any().any()  # rows lacking an element: 0 t, not empty


def _cathode_on_demo_formulas(tmp_path: Path, name: str, *overrides: str):
    cfg = load_config(ROOT / "configs" / "cathode.yaml", [
        f"candidates.sources=[{ROOT / 'datasets' / 'demo' / 'formulas.csv'}]", "execution.workers=1",
        "export.report=false", f"features.cache_dir={tmp_path / 'cache'}", *overrides])
    return screen(cfg, out=tmp_path / name, progress=False)


def test_rows_the_leading_exact_constraints_remove_never_reach_the_models(tmp_path, monkeypatch):
    """The cathode preset's first constraint (capacity, an exact column) removes rows before the models
    run; a constraint on an exact column after one on a predicted column waits, so that every removed row
    is still removed by the first constraint it fails."""
    from mi.models.screen_models import ScreenModels

    predict, seen = ScreenModels.predict, []

    def counting(self, features, candidates, *args, **kwargs):
        seen.extend(c.id for c in candidates)
        return predict(self, features, candidates, *args, **kwargs)

    monkeypatch.setattr(ScreenModels, "predict", counting)
    run = _cathode_on_demo_formulas(tmp_path, "capacity_first")
    removed = pd.read_csv(run.run_dir / "removed.csv")
    ranked = pd.read_csv(run.run_dir / "ranked.csv")
    by_capacity = set(removed.loc[removed["constraint"] == "capacity_mAh_g >= 100", "id"])
    assert by_capacity and not by_capacity & set(seen)
    assert set(seen) == set(ranked["id"]) | (set(removed["id"]) - by_capacity)

    seen.clear()  # the model's constraint first: every row is predicted, and removals keep their order
    run = _cathode_on_demo_formulas(tmp_path, "model_first", "ranking.constraints=["
                                    "{column: e_hull_eV_atom, max: 0.0, probability: 0.9}, {column: capacity_mAh_g, min: 100}]")
    reordered = pd.read_csv(run.run_dir / "removed.csv").set_index("id")["constraint"]
    assert sorted(seen) == sorted(set(reordered.index) | set(pd.read_csv(run.run_dir / "ranked.csv")["id"]))
    assert by_capacity <= set(reordered.index)
    assert "P(e_hull_eV_atom <= 0) >= 0.9" in set(reordered[list(by_capacity)])  # not taken by capacity first


def test_a_chunk_whose_rows_the_leading_constraints_all_remove_still_has_every_column(tmp_path):
    """No formula holds Li: the electrolyte preset's first constraint removes them all before the models, yet
    the screen ranks (nothing) with the objectives' columns, as when the models had seen every row."""
    sources = tmp_path / "no_li.csv"
    sources.write_text("id,formula\na,Fe2O3\nb,NaCl\n", encoding="utf-8")
    cfg = load_config(ROOT / "configs" / "solid_electrolyte.yaml", [
        f"candidates.sources=[{sources}]", "execution.workers=1", "export.report=false", "features.cache_dir=null"])
    run = screen(cfg, out=tmp_path / "run", progress=False)
    header = (run.run_dir / "ranked.csv").read_text().splitlines()[0].split(",")
    assert {"esw_oxidation_V", "log10_conductivity_S_cm", "e_hull_eV_atom_std"} <= set(header)
    assert len(pd.read_csv(run.run_dir / "removed.csv")) == 2


def test_leading_constraints_stop_at_the_first_column_not_yet_there():
    from mi.config import Constraint
    from mi.ranking.constraints import leading_constraints

    exact = ["capacity_mAh_g", "cost_usd_kg", "cost_usd_kg_std"]
    rules = [Constraint(column="capacity_mAh_g", min=100), Constraint(column="e_hull_eV_atom", max=0.1),
             Constraint(column="cost_usd_kg", max=50)]
    assert leading_constraints(rules, exact) == 1
    assert leading_constraints(rules[::2], exact) == 2
    assert leading_constraints([Constraint(column="capacity_mAh_g", min=1, max=900, probability=0.8)], exact) == 0  # no std
    assert leading_constraints([], exact) == 0


def test_a_column_only_a_later_shard_has_goes_where_one_table_puts_it():
    from mi.execution.merge import union_columns

    first = ["id", "demand_Li_t_per_year", "demand_O_t_per_year", "max_supply_share", "score"]
    later = ["id", "demand_Li_t_per_year", "demand_F_t_per_year", "demand_O_t_per_year", "max_supply_share",
             "ucb_score", "score"]
    assert union_columns([first, later]) == later
    assert union_columns([later, first]) == later
    assert union_columns([first, first]) == first


@pytest.mark.slow
def test_workers_load_the_models_and_a_checkpoint_they_cannot_load_stops_the_run(tmp_path):
    """With worker processes, the screen's own process reads the checkpoints' cards only (no torch); a
    checkpoint whose card is sound but which no worker can load is one clear error, not failed chunks."""
    import subprocess
    import sys

    import torch

    from mi.models.checkpoint import payload_digest

    raw = torch.load(ROOT / "mi" / "models" / "builtin" / "mp_stability.pt", weights_only=True)
    raw["feature_sets"] = [{**e, "version": int(e["version"]) + 100} for e in raw["feature_sets"]]
    raw["payload_sha256"] = payload_digest({k: v for k, v in raw.items() if k != "payload_sha256"})
    torch.save(raw, tmp_path / "future.pt")
    code = f"""
import sys
from pathlib import Path
from mi.config import load_config
from mi.errors import CheckpointError
from mi.pipeline import screen

def cfg(*more):
    return load_config({str(DEMO)!r}, ["execution.chunk_size=4", "execution.workers=2", "export.report=false",
                                       "features.cache_dir=null", *more])

if __name__ == "__main__":
    result = screen(cfg(), out=Path({str(tmp_path / 'good')!r}), progress=False)
    print("ranked", len(result.ranked), "torch", "torch" in sys.modules)
    try:
        screen(cfg("model.checkpoint={tmp_path / 'future.pt'}"), out=Path({str(tmp_path / 'bad')!r}), progress=False)
    except CheckpointError as exc:
        print("refused:", exc)
"""
    (tmp_path / "run.py").write_text(code)
    done = subprocess.run([sys.executable, str(tmp_path / "run.py")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "torch False" in done.stdout and "ranked 0" not in done.stdout
    assert "refused:" in done.stdout and "this mi computes version" in done.stdout.split("refused:")[1], done.stdout
