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
