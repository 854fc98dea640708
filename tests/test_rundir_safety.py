"""A run is never lost (issue 14): a used --out folder is refused unless --overwrite or --resume, a run lock
keeps two screens out of one folder, a stage that raises costs only its chunk's candidates, and a screen
where every candidate fails still writes all its files. The report escapes what users wrote."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from mi.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quick_screen import GOOD, write_config  # noqa: E402

SOURCES = [GOOD / n for n in ("Li2O.cif", "LiCoO2.vasp", "LiFePO4.cif", "LiMn2O4.cif", "Li2S.json")]


def _files(run: Path) -> dict[str, bytes]:
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def _screen_args(tmp_path: Path, out: Path, *more: str, report: bool = True) -> list[str]:
    config = write_config(tmp_path / "safety.yaml", SOURCES, report=report)
    return ["screen", str(config), "--out", str(out), "--no-progress", *more]


def test_a_second_screen_into_a_used_folder_refuses_and_the_first_run_is_intact(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_screen_args(tmp_path, out)) == 0
    first = _files(out)
    assert {"ranked.csv", "failures.csv", "removed.csv", "manifest.json", "report.html"} <= set(first)
    assert any(name.startswith("passport/") for name in first) and any(name.startswith("top/") for name in first)
    assert "run.lock" not in first  # released when the screen ended

    capsys.readouterr()
    assert main(_screen_args(tmp_path, out)) == 1
    error = capsys.readouterr().err
    assert "holds a run started" in error and "--overwrite" in error and "--resume" in error
    assert _files(out) == first  # not one byte changed

    assert main(_screen_args(tmp_path, out, "--resume")) == 0  # the same run, continued: allowed
    assert main(_screen_args(tmp_path, out, "--overwrite")) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert any(n.startswith("--overwrite: replaced a run started") for n in manifest["notes"])


def test_a_screen_where_every_candidate_fails_still_writes_its_files(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.cif").write_text("")
    (bad / "junk.vasp").write_bytes(b"\x00\x01garbage")
    (bad / "formulas.csv").write_text("id,formula\nx,Xx2O\n")
    config = write_config(tmp_path / "allbad.yaml", [bad])
    out = tmp_path / "run"
    assert main(["screen", str(config), "--out", str(out), "--no-progress"]) == 1  # still a non-zero exit
    assert pd.read_csv(out / "ranked.csv").empty and list(pd.read_csv(out / "ranked.csv").columns)[:2] == ["rank", "id"]
    assert pd.read_csv(out / "removed.csv").empty
    failures = pd.read_csv(out / "failures.csv", dtype=str)
    assert set(failures["id"]) == {"empty", "junk", "x"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["counts"]["files_read"] == 0
    assert manifest["counts"]["files_refused"] == {"binary data, not a text file": 1, "empty file": 1,
                                                   "unknown element 'Xx'": 1}
    assert not (out / "run.lock").exists()


def test_a_stage_that_raises_costs_its_chunk_not_the_run(tmp_path, monkeypatch):
    """Fault injection: the properties stage raises for one chunk; its candidates become failures."""
    import mi.properties

    real = mi.properties.compute_properties

    def flaky(candidates, *args, **kwargs):
        if any(c.id == "LiCoO2" for c in candidates):
            raise RuntimeError("element table lookup exploded")
        return real(candidates, *args, **kwargs)

    monkeypatch.setattr(mi.properties, "compute_properties", flaky)
    out = tmp_path / "run"
    args = _screen_args(tmp_path, out, "--set", "execution.chunk_size=2", "--set", "execution.workers=1", report=False)
    assert main(args) == 0
    failures = pd.read_csv(out / "failures.csv", dtype=str).set_index("id")
    chunk = set(failures.index)
    assert "LiCoO2" in chunk and len(chunk) == 2  # the chunk of two, no more
    assert set(failures["stage"]) == {"properties"}
    assert "RuntimeError: element table lookup exploded" in failures.loc["LiCoO2", "reason"]
    ranked = pd.read_csv(out / "ranked.csv")
    removed = pd.read_csv(out / "removed.csv")
    assert set(ranked["id"]) | set(removed["id"]) | chunk == {"Li2O", "LiCoO2", "LiFePO4", "LiMn2O4", "Li2S"}


def test_a_screen_where_a_stage_fails_for_every_candidate_still_writes_its_files(tmp_path, monkeypatch):
    import mi.features

    def broken(*args, **kwargs):
        raise MemoryError("no room for the feature matrix")

    monkeypatch.setattr(mi.features, "featurize_with_config", broken)
    out = tmp_path / "run"
    assert main(_screen_args(tmp_path, out, "--set", "execution.workers=1")) == 1
    written = {p.name for p in out.iterdir()}
    assert {"ranked.csv", "failures.csv", "removed.csv", "manifest.json", "report.html"} <= written
    assert pd.read_csv(out / "ranked.csv").empty
    failures = pd.read_csv(out / "failures.csv", dtype=str)
    assert len(failures) == len(SOURCES) and set(failures["stage"]) == {"features"}
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"
    assert "No candidate passed" in (out / "report.html").read_text(encoding="utf-8")


_HOLD_LOCK = """
import sys, time
from mi.export.rundir import acquire_run_lock
acquire_run_lock(sys.argv[1])
print("locked", flush=True)
time.sleep(120)
"""


def test_a_held_lock_refuses_a_second_screen_and_a_dead_holders_lock_is_taken_over(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        capsys.readouterr()
        assert main(_screen_args(tmp_path, out, report=False)) == 1
        error = capsys.readouterr().err
        assert f"another screen is writing into this folder (pid {holder.pid} on this host" in error
        assert sorted(p.name for p in out.iterdir()) == ["run.lock"]  # nothing written next to it
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    # the holder died without releasing: its lock is stale and is taken over, with a note
    assert (out / "run.lock").exists()
    assert main(_screen_args(tmp_path, out, report=False)) == 0
    notes = json.loads((out / "manifest.json").read_text())["notes"]
    assert any(f"took over a stale run lock of pid {holder.pid}" in n for n in notes)
    assert not (out / "run.lock").exists()


def test_two_concurrent_screens_into_one_folder_one_refuses(tmp_path):
    """Two real `mi screen` processes started together: whichever takes the lock runs, the other refuses
    (the lock is held, or, if it comes too late, the folder holds a run), and the run is whole."""
    out = tmp_path / "run"
    code = "import sys; from mi.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = _screen_args(tmp_path, out, report=False)
    procs = [
        subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True, env=env)
        for _ in range(2)
    ]
    started = time.monotonic()
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    refusal = next(err for code, err in results if code == 1)
    assert "another screen is writing into this folder" in refusal or "holds a run started" in refusal
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"
    assert len(pd.read_csv(out / "ranked.csv")) + len(pd.read_csv(out / "removed.csv")) == len(SOURCES)
    assert time.monotonic() - started < 300


def test_the_report_escapes_a_hostile_id(tmp_path):
    hostile = "<script>alert(1)</script>"
    table = tmp_path / "formulas.csv"
    table.write_text(f'id,formula\n"{hostile}",LiFePO4\nplain,LiMnPO4\n')
    config = write_config(tmp_path / "hostile.yaml", [table], report=True)
    out = tmp_path / "run"
    assert main(["screen", str(config), "--out", str(out), "--no-progress"]) == 0
    assert hostile in set(pd.read_csv(out / "ranked.csv")["id"])  # it was ranked, so the page shows it
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_lock_is_one_holders_and_release_removes_only_its_own(tmp_path):
    from mi.errors import MiError
    from mi.export.rundir import acquire_run_lock, releases_run_locks

    lock = acquire_run_lock(tmp_path)
    held = json.loads((tmp_path / "run.lock").read_text())
    assert held["pid"] == os.getpid() and held["host"] and held["started_at"]
    with pytest.raises(MiError, match="another screen is writing"):
        acquire_run_lock(tmp_path)  # this very process holds it: still refused
    lock.release()
    assert not (tmp_path / "run.lock").exists()
    lock.release()  # twice: harmless

    taken = acquire_run_lock(tmp_path)
    (tmp_path / "run.lock").write_text(json.dumps({**held, "token": "someone else"}))
    taken.release()
    assert (tmp_path / "run.lock").exists()  # not ours any more: left alone
    (tmp_path / "run.lock").unlink()

    @releases_run_locks
    def crashing_screen():
        acquire_run_lock(tmp_path)
        raise RuntimeError("mid-run")

    with pytest.raises(RuntimeError):
        crashing_screen()
    assert not (tmp_path / "run.lock").exists()  # released on the way out


def test_another_screens_lock_draft_does_not_make_the_folder_foreign(tmp_path):
    """Two screens started together: the loser's draft lock file (``.run.lock.<random>``, there for an instant)
    must not make the winner refuse the folder as 'not empty and not an mi run directory'."""
    from mi.errors import MiError
    from mi.export.rundir import prepare_out_dir

    (tmp_path / ".run.lock.k3j9x2").write_text("{}")  # a draft, as tempfile.mkstemp names it
    (tmp_path / ".run.lock.stale.0123abcd").write_text("{}")  # a stale lock being moved aside
    (tmp_path / "run.lock").write_text("{}")
    assert prepare_out_dir(tmp_path) == tmp_path
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(MiError, match="not an mi run directory"):
        prepare_out_dir(tmp_path)


def test_removed_csv_streams_the_shard_records_in_order(tmp_path):
    from mi.export.rundir import write_removed

    records = [
        {"removed_rows": [{"id": "a", "formula": "LiF", "constraint": "x <= 1", "column": "x", "value": 2.0}]},
        {"removed_rows": []},
        {},  # a shard written before removed.csv existed
        {"removed_rows": [{"id": "b", "formula": "Li2O", "constraint": "x <= 1", "column": "x", "value": None,
                           "std": 0.1, "probability": 0.2}]},
    ]
    removed = pd.read_csv(write_removed(tmp_path, iter(records)))
    assert list(removed.columns) == ["id", "formula", "source", "constraint", "column", "value", "std", "probability"]
    assert removed["id"].tolist() == ["a", "b"] and removed["value"].isna().tolist() == [False, True]
    assert pd.read_csv(write_removed(tmp_path, [])).empty
