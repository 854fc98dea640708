"""A screen killed part-way (SIGKILL) and run again with --resume ends with the same outputs, reusing shards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mi.config import load_config
from mi.errors import MiError
from mi.pipeline import screen

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "demo.yaml"


def _overrides(tmp_path: Path) -> list[str]:
    # One candidate per chunk, no feature cache: each chunk does real work, so a kill lands mid-run.
    return ["execution.chunk_size=1", "execution.workers=1", "export.report=false", "features.cache_dir=null"]


def _outputs(run: Path) -> dict[str, bytes]:
    return {name: (run / name).read_bytes() for name in ("ranked.csv", "ranked.json", "failures.csv", "removed.csv")}


def test_killed_screen_resumes_to_the_same_outputs(tmp_path):
    out = tmp_path / "killed"
    args = [a for o in _overrides(tmp_path) for a in ("--set", o)]
    code = "import sys; from mi.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "screen", str(DEMO), "--out", str(out), "--no-progress", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list((out / "shards").glob("chunk-*.json"))) >= 2:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the screen finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    done_before = {p.name: p.stat().st_mtime_ns for p in (out / "shards").glob("chunk-*.parquet")}
    assert 2 <= len(list((out / "shards").glob("chunk-*.json"))) < 21
    assert json.loads((out / "manifest.json").read_text())["status"] == "running"
    assert not (out / "ranked.csv").exists()

    cfg = load_config(DEMO, _overrides(tmp_path))
    resumed = screen(cfg, out=out, progress=False, resume=True)
    reference = screen(cfg, out=tmp_path / "uninterrupted", progress=False)
    assert _outputs(resumed.run_dir) == _outputs(reference.run_dir)
    counts = resumed.manifest["counts"]
    assert counts["chunks"] == 21 and counts["chunks_reused"] >= 2
    # Reused shards were not written again (a shard without its sealing record may have been redone).
    untouched = [n for n, m in done_before.items() if (out / "shards" / n).stat().st_mtime_ns == m]
    assert len(untouched) >= counts["chunks_reused"]


def test_a_damaged_shard_is_computed_again_and_a_changed_config_is_refused(tmp_path):
    cfg = load_config(DEMO, ["execution.chunk_size=8", "execution.workers=1", "export.report=false", f"features.cache_dir={tmp_path / 'c'}"])
    first = screen(cfg, out=tmp_path / "run", progress=False)
    before = _outputs(first.run_dir)
    shard = first.run_dir / "shards" / "chunk-000001.parquet"
    shard.write_bytes(shard.read_bytes()[:100])  # truncated, as by a crash mid-write of a foreign tool
    again = screen(cfg, out=first.run_dir, progress=False, resume=True)
    assert again.manifest["counts"]["chunks_reused"] == 2  # 3 chunks, the damaged one recomputed
    assert _outputs(again.run_dir) == before

    changed = load_config(
        DEMO, ["execution.chunk_size=8", "execution.workers=1", "export.report=false", "ranking.top_k=3", f"features.cache_dir={tmp_path / 'c'}"]
    )
    with pytest.raises(MiError, match="--resume needs the same config"):
        screen(changed, out=first.run_dir, progress=False, resume=True)


def test_resume_refuses_a_checkpoint_changed_since_the_shards_were_written(tmp_path):
    import shutil

    import mi.models

    builtin = Path(mi.models.__file__).parent / "builtin"
    model = tmp_path / "model.pt"
    shutil.copy(builtin / "oracle_multitask.pt", model)
    overrides = ["execution.chunk_size=8", "execution.workers=1", "export.report=false", f"model.checkpoint={model}", "features.cache_dir=null"]
    first = screen(load_config(DEMO, overrides), out=tmp_path / "run", progress=False)
    shutil.copy(builtin / "formation_enthalpy.pt", model)  # retrained in place: same path, other bytes
    with pytest.raises(MiError, match="checkpoint_sha256"):
        screen(load_config(DEMO, overrides), out=first.run_dir, progress=False, resume=True)


def test_removed_rows_live_beside_their_shard_and_a_damaged_file_is_computed_again(tmp_path):
    overrides = [
        "execution.chunk_size=8", "execution.workers=1", "export.report=false", f"features.cache_dir={tmp_path / 'c'}",
        "ranking.constraints=[{column: capacity_mAh_g, min: 150}, {column: e_hull_eV_atom, max: 0.1, probability: 0.8}]",
    ]
    cfg = load_config(DEMO, overrides)
    first = screen(cfg, out=tmp_path / "run", progress=False)
    before = _outputs(first.run_dir)
    shards = first.run_dir / "shards"
    records = [json.loads(p.read_text()) for p in sorted(shards.glob("chunk-*[0-9].json"))]
    removed = sum(sum(r["removed"].values()) for r in records)
    lines = before["removed.csv"].decode().splitlines()
    assert removed == first.manifest["counts"]["removed_by_constraints"] == len(lines) - 1 >= 5
    assert all("removed_rows" not in r for r in records)  # the record stays small; the rows are in a side file
    side = sorted(shards.glob("chunk-*.removed.csv"))
    assert b"".join(p.read_bytes() for p in side) == before["removed.csv"].split(b"\n", 1)[1]

    side[0].write_text(side[0].read_text()[:-20])  # damaged: that chunk is computed again
    again = screen(cfg, out=first.run_dir, progress=False, resume=True)
    assert again.manifest["counts"]["chunks_reused"] == len(records) - 1
    assert _outputs(again.run_dir) == before
