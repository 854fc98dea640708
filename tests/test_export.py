"""The run directory: atomic writes, ranked tables, CIFs, failures and the manifest."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import re

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifParser

import mi
import mi.files
from mi.candidates.base import Failure
from mi.errors import MiError
from mi.export import (
    atomic_write_bytes,
    atomic_write_csv,
    atomic_write_json,
    atomic_write_text,
    build_manifest,
    column_order,
    format_top_table,
    git_commit,
    new_run_dir,
    prepare_out_dir,
    safe_file_stem,
    utc_now,
    write_config,
    write_failures,
    write_manifest,
    write_ranked,
    write_top_cifs,
)


@pytest.fixture(scope="session")
def li2s() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.7), ["S", "Li"], [[0, 0, 0], [0.25, 0.25, 0.25]])


@pytest.fixture(scope="session")
def nacl() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture
def ranked() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "score": [0.9, 0.5, 0.25, 0.1],
            "capacity_mAh_g": [1167.0, 300.0, np.nan, 10.0],
            "formation_enthalpy_eV_atom_std": [0.05, 0.1, 0.2, 0.3],
            "source": ["a.cif", "b.csv", "c.cif", "d.cif"],
            "formation_enthalpy_eV_atom": [-1.2, -0.4, 0.1, -0.05],
            "id": ["Li2S", "Li/Fe PO4", "NaCl", "none"],
            "formula": ["Li2S", "LiFePO4", "NaCl", "LiCoO2"],
            "pareto_rank": [1, 1, 2, 3],
            "rank": [1, 2, 3, 4],
        }
    )


# --- atomic writes --------------------------------------------------------------------------------


def test_atomic_write_replaces_content_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second\n")
    assert target.read_text() == "second\n"
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bin", "out.txt"]


def test_atomic_write_failure_keeps_old_file_and_cleans_up(tmp_path, monkeypatch):
    target = tmp_path / "data.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"a": object()})
    assert json.loads(target.read_text()) == {"a": 1}

    def exploding(*_):
        raise RuntimeError("disk full")

    original = target.read_text()
    monkeypatch.setattr(mi.files.os, "replace", exploding)
    with pytest.raises(RuntimeError):
        atomic_write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == original
    assert [p.name for p in tmp_path.iterdir()] == ["data.json"]


def test_atomic_json_handles_nan_and_numpy(tmp_path):
    path = atomic_write_json(
        tmp_path / "x.json",
        {
            "nan": float("nan"),
            "inf": np.float64(np.inf),
            "i": np.int64(3),
            "f": np.float32(0.5),
            "b": np.bool_(True),
            "arr": np.array([1.0, np.nan]),
            "path": tmp_path,
            "na": pd.NA,
        },
    )
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {
        "nan": None,
        "inf": None,
        "i": 3,
        "f": 0.5,
        "b": True,
        "arr": [1.0, None],
        "path": str(tmp_path),
        "na": None,
    }


def test_json_records_are_the_bytes_of_atomic_write_json(tmp_path):
    from mi.files import atomic_write_json_records

    n = 11
    frame = pd.DataFrame({
        "rank": np.arange(1, n + 1),
        "id": [f"id-{i}" if i % 3 else f'Li\u2082O "{i}"' for i in range(n)],
        "x": [0.1, np.nan, np.inf, -np.inf, -0.0, 1e16, 1e-7, 123456789.125, 2.0, 1 / 3, -5.5],
        "flag": [bool(i % 2) for i in range(n)],
        "small": np.arange(n, dtype=np.float32) / 4,
        "maybe": pd.array([1, None] * 5 + [7], dtype="Int64"),
        "mixed": [None, True, 1.5, "t", np.nan, np.inf, np.int64(3), np.bool_(False), pd.NA, np.float32(0.5), 2],
    })

    def reference(table, path):
        return atomic_write_json(path, [dict(zip(table.columns, r)) for r in table.itertuples(index=False, name=None)])

    for table in (frame, frame.iloc[:0], frame.iloc[:1], frame.iloc[:, :0], frame.assign(cell=[[1, 2]] * n)):
        fast = atomic_write_json_records(tmp_path / "fast.json", table, block=4)  # several blocks
        assert fast.read_bytes() == reference(table, tmp_path / "slow.json").read_bytes()
    assert json.loads(fast.read_text())[0]["cell"] == [1, 2]  # not a scalar: the general writer
    order = ["x", "id", "rank"]  # a selection in another order: no reordered copy, the same bytes
    fast = atomic_write_json_records(tmp_path / "fast.json", frame, columns=order, block=3)
    assert fast.read_bytes() == reference(frame[order], tmp_path / "slow.json").read_bytes()
    fast = atomic_write_csv(tmp_path / "fast.csv", frame, columns=order, block=3)
    assert fast.read_text() == frame[order].to_csv(index=False, lineterminator="\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fast.csv", "fast.json", "slow.json"]


def test_csv_and_json_written_together_are_the_bytes_of_each_writer(tmp_path):
    from mi.files import atomic_write_csv_json, atomic_write_json_records

    n = 11
    frame = pd.DataFrame({
        "rank": np.arange(1, n + 1),
        "id": [f"id-{i}" if i % 3 else f'Li\u2082O, "{i}"\nx' for i in range(n)],  # quoted in CSV
        "x": [0.1, np.nan, np.inf, -np.inf, -0.0, 1e16, 1e-7, 123456789.125, 2.0, 1 / 3, 5e-324],
        "flag": [bool(i % 2) for i in range(n)],
        "maybe": pd.array([True, None] * 5 + [False], dtype="boolean"),
        "mixed": [None, True, 1.5, "t", np.nan, np.inf, np.int64(3), np.bool_(False), pd.NA, "", 2],
        "count": np.arange(n, dtype=np.int32) - 5,
    })
    others = [frame.iloc[:0], frame.assign(cell=[[1, 2]] * n), frame.assign(small=np.arange(n, dtype=np.float32) / 10)]
    for table, columns in [(frame, None), (frame, ["x", "mixed", "id", "rank"]), *((t, None) for t in others)]:
        atomic_write_csv(tmp_path / "a.csv", table, columns=columns)
        atomic_write_json_records(tmp_path / "a.json", table, columns=columns)
        atomic_write_csv_json(tmp_path / "b.csv", tmp_path / "b.json", table, columns, block=4)  # several blocks
        for name in ("csv", "json"):
            assert (tmp_path / f"b.{name}").read_bytes() == (tmp_path / f"a.{name}").read_bytes(), (name, columns)
    atomic_write_csv_json(tmp_path / "c.csv", None, frame, block=3)
    assert (tmp_path / "c.csv").read_text() == frame.to_csv(index=False, lineterminator="\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "a.json", "b.csv", "b.json", "c.csv"]


def test_atomic_csv(tmp_path):
    frame = pd.DataFrame({"a": [1, 2], "b": [np.nan, "x"]})
    path = atomic_write_csv(tmp_path / "t.csv", frame)
    assert path.read_text() == "a,b\n1,\n2,x\n"


# --- run directories ------------------------------------------------------------------------------


def test_new_run_dir_layout(tmp_path):
    path = new_run_dir(tmp_path, "li-cathodes")
    assert path.is_dir() and path.parent == tmp_path / "li-cathodes"
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", path.name)
    assert new_run_dir(tmp_path, "li-cathodes", run_id="fixed").name == "fixed"
    with pytest.raises(MiError, match="already exists"):
        new_run_dir(tmp_path, "li-cathodes", run_id="fixed")
    with pytest.raises(MiError):
        new_run_dir(tmp_path, "../escape")


def test_prepare_out_dir(tmp_path):
    fresh = prepare_out_dir(tmp_path / "new" / "run")
    assert fresh.is_dir()
    assert prepare_out_dir(fresh) == fresh  # empty: fine

    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(MiError, match="not an mi run directory"):
        prepare_out_dir(foreign)
    assert (foreign / "thesis.tex").read_text() == "precious"

    (tmp_path / "file").write_text("x")
    with pytest.raises(MiError, match="not a folder"):
        prepare_out_dir(tmp_path / "file")


def test_prepare_out_dir_refuses_an_earlier_run_unless_overwrite_and_then_clears_its_outputs(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write_manifest(run, build_manifest(config_hash="sha256:0", started=utc_now()))
    write_config(run, "name: x\n")
    (run / "top").mkdir()
    (run / "top" / "07_old.cif").write_text("stale")
    (run / "notes.txt").write_text("mine")
    before = sorted(p.name for p in run.rglob("*"))
    with pytest.raises(MiError, match="holds a run started 20.*--overwrite"):
        prepare_out_dir(run)
    assert sorted(p.name for p in run.rglob("*")) == before  # refused: nothing touched
    assert prepare_out_dir(run, resume=True) == run  # --resume continues it: nothing removed
    assert sorted(p.name for p in run.rglob("*")) == before
    with pytest.raises(MiError, match="exclude each other"):
        prepare_out_dir(run, overwrite=True, resume=True)
    assert prepare_out_dir(run, overwrite=True) == run
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt", "top"]
    assert list((run / "top").iterdir()) == []


# --- the ranked table -----------------------------------------------------------------------------


def test_column_order(ranked):
    assert column_order(ranked, ["formation_enthalpy_eV_atom"]) == [
        "rank",
        "id",
        "formula",
        "source",
        "capacity_mAh_g",
        "formation_enthalpy_eV_atom",
        "formation_enthalpy_eV_atom_std",
        "score",
        "pareto_rank",
    ]
    # Not predicted: the _std column stays where it is.
    assert column_order(ranked, [])[4:7] == [
        "capacity_mAh_g",
        "formation_enthalpy_eV_atom_std",
        "formation_enthalpy_eV_atom",
    ]


def test_write_ranked_csv_and_json(tmp_path, ranked):
    paths = write_ranked(tmp_path, ranked, ["formation_enthalpy_eV_atom"], write_json=True)
    assert [p.name for p in paths] == ["ranked.csv", "ranked.json"]
    back = pd.read_csv(tmp_path / "ranked.csv")
    assert list(back.columns) == column_order(ranked, ["formation_enthalpy_eV_atom"])
    assert back["id"].tolist() == ranked["id"].tolist()
    records = json.loads((tmp_path / "ranked.json").read_text())
    assert len(records) == 4 and records[2]["capacity_mAh_g"] is None and records[0]["rank"] == 1
    assert list(records[0]) == list(back.columns)

    other = tmp_path / "nojson"
    other.mkdir()
    write_ranked(other, ranked, [], write_json=False)
    assert sorted(p.name for p in other.iterdir()) == ["ranked.csv"]


def test_write_top_cifs_for_rows_with_structures(tmp_path, ranked, li2s, nacl):
    structures = {"Li2S": li2s, "NaCl": nacl, "none": li2s}
    written, failures = write_top_cifs(tmp_path, ranked, structures, top_k=3)
    assert failures == []
    # Rank 2 has no structure; rank 4 ("none") is outside the top 3.
    assert sorted(p.name for p in (tmp_path / "top").iterdir()) == ["1_Li2S.cif", "3_NaCl.cif"]
    assert sorted(written) == sorted((tmp_path / "top").iterdir())
    back = CifParser(tmp_path / "top" / "1_Li2S.cif").parse_structures(primitive=False)[0]
    assert back.composition.reduced_formula == "Li2S"
    assert back.matches(li2s)
    assert len(back) == len(li2s)


def test_top_cif_names_are_padded_and_sanitised(tmp_path, ranked, li2s):
    written, _ = write_top_cifs(tmp_path, ranked, {"Li/Fe PO4": li2s}, top_k=10)
    assert [p.name for p in written] == ["02_Li_Fe_PO4.cif"]
    assert safe_file_stem("../../etc/passwd") == "etc_passwd"
    assert safe_file_stem("...") == "candidate"


def test_bad_structure_becomes_a_failure(tmp_path, ranked, li2s):
    written, failures = write_top_cifs(tmp_path, ranked, {"Li2S": "not a structure", "NaCl": li2s}, top_k=4)
    assert [p.name for p in written] == ["3_NaCl.cif"]
    assert len(failures) == 1 and failures[0].id == "Li2S" and failures[0].stage == "export"


# --- failures, config, manifest -------------------------------------------------------------------


def test_failures_csv_has_header_when_empty(tmp_path):
    path = write_failures(tmp_path, [])
    assert path.read_text() == "id,file,record,stage,reason\n"


def test_failures_csv_rows(tmp_path):
    failures = [
        Failure(source="in/a.cif", record="", stage="read", reason='bad "CIF", line 3', id="a"),
        Failure(source="in/b.csv", record="row 7", stage="featurize", reason="unknown element Xx"),
    ]
    with open(write_failures(tmp_path, failures), newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows == [f.as_row() for f in failures]


def test_write_config(tmp_path):
    assert write_config(tmp_path, "name: demo\n").read_text() == "name: demo\n"


def test_manifest_is_valid_json_with_the_expected_keys(tmp_path):
    inp = tmp_path / "in.cif"
    inp.write_bytes(b"data_x\n")
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"weights")
    start = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
    manifest = build_manifest(
        config_hash="sha256:abc",
        inputs=[inp],
        checkpoint=str(ckpt),
        started=start,
        counts={"read": 5, "failed": 1, "ranked": 3, "constrained_out": 1},
        notes="smoke test",
        extra={"run_id": "r1"},
    )
    path = write_manifest(tmp_path, manifest)
    data = json.loads(path.read_text())
    for key in (
        "mi_version",
        "git_commit",
        "config_hash",
        "input_hashes",
        "checkpoint",
        "checkpoint_hash",
        "packages",
        "started_at",
        "ended_at",
        "counts",
        "notes",
    ):
        assert key in data, key
    assert data["mi_version"] == mi.__version__
    assert data["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40,64}", data["git_commit"])
    assert list(data["input_hashes"]) == [str(inp)]
    assert data["input_hashes"][str(inp)] == "sha256:" + hashlib.sha256(b"data_x\n").hexdigest()
    assert data["checkpoint_hash"] == "sha256:" + hashlib.sha256(b"weights").hexdigest()
    assert set(data["packages"]) >= {
        "python", "numpy", "pandas", "torch", "pymatgen", "ase", "scikit-learn", "pydantic"
    }
    assert data["packages"]["numpy"] == np.__version__
    assert data["started_at"] == "2024-05-01T12:00:00+00:00"
    assert dt.datetime.fromisoformat(data["ended_at"]) >= start
    assert data["counts"] == {"read": 5, "failed": 1, "ranked": 3, "constrained_out": 1}
    assert data["notes"] == ["smoke test"] and data["run_id"] == "r1"


def test_manifest_defaults_and_builtin_checkpoint():
    manifest = build_manifest(checkpoint="builtin:formation_enthalpy", checkpoint_hash="sha256:ff")
    assert manifest["counts"] == {"read": None, "failed": None, "ranked": None}
    assert manifest["checkpoint_hash"] == "sha256:ff"
    assert manifest["input_hashes"] == {} and manifest["notes"] == []
    json.dumps(manifest, allow_nan=False)


def test_manifest_takes_precomputed_hashes_and_refuses_unknown_or_clashing_keys():
    manifest = build_manifest(input_hashes={"/data/a.cif": "sha256:aa"}, started="2024-01-01T00:00:00+00:00")
    assert manifest["input_hashes"] == {"/data/a.cif": "sha256:aa"}
    assert manifest["started_at"] == "2024-01-01T00:00:00+00:00"
    with pytest.raises(TypeError):
        build_manifest(started_at="2024-01-01")  # misspelt keyword: an error, not a stray key
    with pytest.raises(ValueError, match="mi_version"):
        build_manifest(extra={"mi_version": "9"})
    with pytest.raises(ValueError, match="timezone-aware"):
        build_manifest(started=dt.datetime(2024, 1, 1))


def test_git_commit_outside_a_checkout_is_none(tmp_path):
    assert git_commit(tmp_path) is None
    assert git_commit(tmp_path / "does-not-exist") is None


# --- terminal table -------------------------------------------------------------------------------


def test_format_top_table(ranked):
    text = format_top_table(ranked, ["rank", "id", "formation_enthalpy_eV_atom", "capacity_mAh_g", "absent"], 3)
    lines = text.splitlines()
    assert len(lines) == 2 + 3
    assert lines[0].split() == ["rank", "id", "formation_enthalpy_eV_atom", "capacity_mAh_g"]
    assert "1167" in lines[2] and "-1.2" in lines[2]
    assert lines[4].split()[-1] == "-"  # NaN capacity
    assert "Li/Fe PO4" in lines[3]
    # numbers right-aligned: every data line has the same length as the separator once padded
    assert len({len(line) for line in lines[1:]}) == 1
    assert format_top_table(ranked, ["score"], 1).splitlines()[-1].strip() == "0.9"
    assert f"{123456.789:.4g}" in format_top_table(pd.DataFrame({"x": [123456.789]}), ["x"], 1)
