"""The run directory: ranked table, top structures, failures, resolved config and a manifest.

Layout of ``<out_dir>/<name>/<run-id>/``::

    config.yaml     the resolved config
    ranked.csv      ranked candidates (ranked.json: the same as a list of records)
    failures.csv    id,file,record,stage,reason (header only when nothing failed)
    removed.csv     id,formula,source,constraint,column,value,std,probability: each candidate a constraint
                    dropped, with the first constraint that dropped it (header only when none)
    top/            <rank>_<id>.cif for the top-k candidates that have a structure
    report.html     the run as one self-contained page (mi.export.report)
    passport/       <id>.json, a passport-style record per top-k candidate (mi.export.passport)
    manifest.json   versions, hashes, times and counts
    run.lock        while a screen writes: {pid, host, started_at}; gone when it ends

A run is never lost: ``--out`` onto a folder that holds another run refuses unless ``--overwrite`` (or
``--resume`` of that run), and the lock keeps two screens from writing into one folder at once (a lock
left by a process that died on this host is taken over, with a note).
"""

from __future__ import annotations

import atexit
import contextvars
import datetime as _dt
import functools
import importlib.metadata
import json
import math
import os
import platform
import re
import secrets
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import mi
from mi.candidates.base import Failure
from mi.errors import MiError
from mi.files import (
    atomic_file, atomic_write_csv, atomic_write_csv_json, atomic_write_json, atomic_write_text, sha256_file,
)

MANIFEST_VERSION = 1
RUN_FILES = ("config.yaml", "ranked.csv", "ranked.json", "failures.csv", "removed.csv", "manifest.json", "report.html")
LOCK_FILE = "run.lock"
TOP_DIR = "top"
PASSPORT_DIR = "passport"
LEADING_COLUMNS = ("rank", "id", "formula", "source")
TRAILING_COLUMNS = ("score", "pareto_rank")
PACKAGES = ("numpy", "pandas", "torch", "pymatgen", "ase", "scikit-learn", "pydantic")

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# --- the folder -------------------------------------------------------------------------------------


def utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def make_run_id(now: _dt.datetime | None = None) -> str:
    """``YYYYmmdd-HHMMSS-<6 hex>`` in UTC, e.g. ``20240501-134502-9f3a1c``."""
    now = (now or utc_now()).astimezone(_dt.timezone.utc)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def new_run_dir(out_dir: str | Path, name: str, run_id: str | None = None) -> Path:
    """Create and return ``<out_dir>/<name>/<run-id>/``; an existing run folder is never reused."""
    run_id = make_run_id() if run_id is None else run_id
    for label, part in (("experiment name", name), ("run id", run_id)):
        if not _RUN_ID.match(part):
            raise MiError(f"{label} {part!r} is not a valid folder name (letters, digits, '_', '.', '-')")
    path = Path(out_dir).expanduser() / name / run_id
    try:
        path.mkdir(parents=True, exist_ok=False)
    except FileExistsError:
        raise MiError(f"{path}: run directory already exists") from None
    return path


def looks_like_run_dir(path: str | Path) -> bool:
    """A folder holding a ``manifest.json`` written by mi (a JSON object with ``mi_version``)."""
    manifest = Path(path) / "manifest.json"
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "mi_version" in data


def _describe_run(path: Path) -> str:
    try:
        data = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    started = data.get("started_at") or "at an unknown time"
    return f"a run started {started} (status {data.get('status', 'unknown')})"


def prepare_out_dir(path: str | Path, *, overwrite: bool = False, resume: bool = False) -> Path:
    """The folder given with ``--out``: created if missing, used if empty.

    A folder holding another mi run is refused unless `overwrite` (its mi outputs, the files in
    `RUN_FILES`, ``top/*.cif`` and ``passport/*.json``, are removed first so that nothing stale survives
    next to the new run; other files are left alone) or `resume` (the run is continued: nothing is
    removed). Any other non-empty folder is refused. The run lock (`acquire_run_lock`) must be held
    before calling this: `open_run_dir` does both.
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise MiError(f"{path}: exists and is not a folder")
    if overwrite and resume:
        raise MiError("--overwrite and --resume exclude each other: replace the run in the folder, or continue it")
    if path.is_dir() and any(not _lock_file(p.name) for p in path.iterdir()):
        if not looks_like_run_dir(path):
            raise MiError(
                f"{path}: folder is not empty and is not an mi run directory (no manifest.json); "
                "choose another --out or empty it"
            )
        if resume:
            return path
        if not overwrite:
            raise MiError(
                f"{path}: holds {_describe_run(path)}; nothing was changed. Use --overwrite to replace it, "
                "--resume to continue it, or choose another --out"
            )
        for name in RUN_FILES:
            (path / name).unlink(missing_ok=True)
        for folder, pattern in ((TOP_DIR, "*.cif"), (PASSPORT_DIR, "*.json")):
            if (path / folder).is_dir():
                for stale in (path / folder).glob(pattern):
                    stale.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- the run lock -----------------------------------------------------------------------------------

# Locks taken during the current `releases_run_locks` call (a screen): released when it returns or raises.
_SCOPE: contextvars.ContextVar[list | None] = contextvars.ContextVar("mi_run_locks", default=None)


def _pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (a zombie, dead but not yet reaped, counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    except OSError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class RunLock:
    """``<run>/run.lock``, created atomically (written aside, then hard-linked into place) and removed
    by `release` only while it is still this one."""

    def __init__(self, path: Path, info: dict, notes: list[str]) -> None:
        self.path, self.info, self.notes = path, info, notes
        self.released = False

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        try:
            if json.loads(self.path.read_text(encoding="utf-8")).get("token") == self.info["token"]:
                self.path.unlink()
        except (OSError, ValueError, AttributeError):
            pass


def _lock_file(name: str) -> bool:
    """The lock, or a file another screen's `acquire_run_lock` holds for an instant (its draft, or a stale
    lock moved aside): neither makes a folder a non-empty one."""
    return name == LOCK_FILE or name.startswith(f".{LOCK_FILE}.")


def _place_lock(path: Path, info: dict) -> bool:
    """Create `path` holding `info`, atomically; False if it exists."""
    fd, tmp = tempfile.mkstemp(prefix=".run.lock.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(info, fh)
        os.link(tmp, path)  # fails if the lock exists: one process wins
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


def acquire_run_lock(run_dir: str | Path) -> RunLock:
    """Take ``<run_dir>/run.lock`` or raise MiError naming who holds it.

    A lock whose process is dead on this host is stale: it is taken over, with a note. A lock of another
    host, or one that cannot be read, is not: the message says how to remove it. The lock is released when
    the enclosing `releases_run_locks` call ends, else at interpreter exit.
    """
    path = Path(run_dir) / LOCK_FILE
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started_at": _iso(utc_now()),
        "token": secrets.token_hex(8),
    }
    notes: list[str] = []
    for _ in range(5):
        if _place_lock(path, info):
            lock = RunLock(path, info, notes)
            scope = _SCOPE.get()
            if scope is not None:
                scope.append(lock)
            atexit.register(lock.release)
            return lock
        try:
            text = path.read_text(encoding="utf-8")
            held = json.loads(text)
            pid, host = int(held["pid"]), str(held["host"])
        except FileNotFoundError:
            continue  # released in between: try again
        except (OSError, ValueError, KeyError, TypeError):
            raise MiError(
                f"{path}: a run lock that cannot be read; if no screen is writing into {path.parent}, delete it"
            ) from None
        if host != info["host"] or _pid_alive(pid):
            where = "this host" if host == info["host"] else f"host {host}"
            raise MiError(
                f"{path.parent}: another screen is writing into this folder (pid {pid} on {where}, started "
                f"{held.get('started_at', '?')}); wait for it or choose another --out"
                + ("" if host == info["host"] else f" (if it is no longer running, delete {path})")
            )
        # Stale: move it aside, and put it back if what was moved is not what was read (a race lost).
        aside = path.with_name(f".{LOCK_FILE}.stale.{info['token']}")
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            continue
        if aside.read_text(encoding="utf-8") != text:
            try:
                os.link(aside, path)
            except FileExistsError:
                pass
            aside.unlink()
            continue
        aside.unlink()
        notes.append(
            f"took over a stale run lock of pid {pid} (started {held.get('started_at', '?')}), "
            "which is no longer running on this host"
        )
    raise MiError(f"{path}: could not take the run lock (other screens keep taking it)")


def releases_run_locks(fn: Callable) -> Callable:
    """Release the run locks taken during a call of `fn` when it returns or raises."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        token = _SCOPE.set([])
        try:
            return fn(*args, **kwargs)
        finally:
            for lock in _SCOPE.get() or ():
                lock.release()
            _SCOPE.reset(token)

    return wrapper


def open_run_dir(
    out: str | Path | None,
    *,
    out_dir: str | Path,
    name: str,
    overwrite: bool = False,
    resume: bool = False,
) -> tuple[Path, list[str]]:
    """The run folder, locked: `out` (`prepare_out_dir`'s rules) or a new ``<out_dir>/<name>/<run-id>``.

    Returns the folder and notes for the manifest (a stale lock taken over, a run replaced).
    """
    if out is None:
        run_dir = new_run_dir(out_dir, name)
        return run_dir, acquire_run_lock(run_dir).notes
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise MiError(f"{path}: exists and is not a folder")
    path.mkdir(parents=True, exist_ok=True)
    lock = acquire_run_lock(path)
    try:
        replaced = overwrite and looks_like_run_dir(path)
        before = _describe_run(path) if replaced else ""
        prepare_out_dir(path, overwrite=overwrite, resume=resume)
    except BaseException:
        lock.release()
        raise
    return path, [*lock.notes, *([f"--overwrite: replaced {before} in {path}"] if replaced else [])]


# --- the ranked table -------------------------------------------------------------------------------


def column_order(frame: pd.DataFrame, predicted: Sequence[str]) -> list[str]:
    """``rank, id, formula, source``, then the property columns in table order with ``<p>_std`` right
    after ``<p>`` for every predicted ``p``, then ``score, pareto_rank``. Absent columns are skipped;
    no column is dropped."""
    columns = [str(c) for c in frame.columns]
    present = set(columns)
    std_of = {f"{p}_std": p for p in predicted if p in present and f"{p}_std" in present}
    head = [c for c in LEADING_COLUMNS if c in present]
    tail = [c for c in TRAILING_COLUMNS if c in present]
    fixed = set(head) | set(tail)
    middle: list[str] = []
    for c in columns:
        if c in fixed or c in std_of:
            continue
        middle.append(c)
        if f"{c}_std" in std_of:
            middle.append(f"{c}_std")
    return head + middle + tail


def write_ranked(
    run_dir: str | Path, ranked: pd.DataFrame, predicted: Sequence[str], write_json: bool
) -> list[Path]:
    """``ranked.csv`` (and ``ranked.json``, a list of records with NaN as null), columns in
    `column_order`. Returns the paths written."""
    run_dir = Path(run_dir)
    order = column_order(ranked, predicted)  # written block by block: no reordered copy of a wide table
    return atomic_write_csv_json(run_dir / "ranked.csv", run_dir / "ranked.json" if write_json else None, ranked, order)


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_file_stem(text: str, max_length: int = 80) -> str:
    """`text` usable as a file name on any platform: runs of other characters become '_', no leading or
    trailing '.' or '_', at most `max_length` characters; ``"candidate"`` if nothing is left."""
    stem = _UNSAFE.sub("_", str(text)).strip("._")[:max_length].rstrip("._")
    return stem or "candidate"


def top_ranked(ranked: pd.DataFrame, k: int) -> pd.DataFrame:
    """The first `k` rows by ``rank`` (table order if there is none), without a sorted copy of the table."""
    if "rank" not in ranked.columns:
        return ranked.head(k)
    return ranked.iloc[np.argsort(ranked["rank"].to_numpy(), kind="stable")[:k]]


def write_top_cifs(
    run_dir: str | Path, ranked: pd.DataFrame, structures: Mapping[str, Any], top_k: int
) -> tuple[list[Path], list[Failure]]:
    """``top/<rank>_<id>.cif`` for each of the first `top_k` ranked rows that has a structure.

    Rows are taken by ``rank`` (table order if there is none). The rank is zero-padded to the width of
    `top_k` (top_k=10: ``01_...`` .. ``10_...``); ids are made safe with `safe_file_stem`. Rows without
    a structure are skipped, so fewer than `top_k` files may be written. A structure that CifWriter
    cannot write becomes a Failure (stage ``export``) instead of stopping the run.
    Returns the paths written and the failures.
    """
    from pymatgen.io.cif import CifWriter

    top = Path(run_dir) / TOP_DIR
    top.mkdir(parents=True, exist_ok=True)
    rows = top_ranked(ranked, top_k)
    width = len(str(top_k))
    written: list[Path] = []
    failures: list[Failure] = []
    for position, row in enumerate(rows.to_dict("records"), start=1):
        cid = str(row.get("id"))
        structure = structures.get(cid)
        if structure is None:
            continue
        rank = int(row["rank"]) if "rank" in row else position
        path = top / f"{rank:0{width}d}_{safe_file_stem(cid)}.cif"
        try:
            text = str(CifWriter(structure))
        except Exception as exc:  # one bad structure must not lose the run's other outputs
            failures.append(
                Failure(
                    source=str(row.get("source", "")),
                    record="",
                    stage="export",
                    reason=f"CIF not written: {type(exc).__name__}: {exc}",
                    id=cid,
                )
            )
            continue
        written.append(atomic_write_text(path, text))
    return written, failures


# --- failures and config ----------------------------------------------------------------------------


def write_failures(run_dir: str | Path, failures: Sequence[Failure]) -> Path:
    """``failures.csv`` with header ``id,file,record,stage,reason``, also when there are none."""
    frame = pd.DataFrame([f.as_row() for f in failures], columns=list(Failure.COLUMNS), dtype=object)
    return atomic_write_csv(Path(run_dir) / "failures.csv", frame)


def write_removed(run_dir: str | Path, parts: Iterable[Path | Mapping[str, Any]]) -> Path:
    """``removed.csv``: every shard's removed rows, in shard order, streamed to a temporary file and renamed
    into place (a screen may remove millions); header only when nothing was removed. A part is a shard's
    removed-rows file (removed.csv lines, copied as they are) or a mapping with ``removed_rows`` records."""
    import shutil

    from mi.ranking.constraints import REMOVED_COLUMNS, removed_csv

    path = Path(run_dir) / "removed.csv"
    with atomic_file(path, "wb") as fh:
        fh.write((",".join(REMOVED_COLUMNS) + "\n").encode("utf-8"))
        for part in parts:
            if isinstance(part, Mapping):
                fh.write(removed_csv(part.get("removed_rows") or []).encode("utf-8"))
            else:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, fh)
    return path


def empty_ranked() -> pd.DataFrame:
    """A ranked table without rows: the columns every ranking has."""
    return pd.DataFrame(columns=[*LEADING_COLUMNS, *TRAILING_COLUMNS])


def write_empty_outputs(run_dir: str | Path, write_json: bool) -> None:
    """``ranked.csv`` (and ``ranked.json``) and ``removed.csv`` with headers only: a screen where nothing
    could be read still leaves every file a script looks for."""
    write_ranked(run_dir, empty_ranked(), [], write_json)
    write_removed(run_dir, [])


def write_config(run_dir: str | Path, yaml_text: str) -> Path:
    """``config.yaml``: the resolved config, as given."""
    return atomic_write_text(Path(run_dir) / "config.yaml", yaml_text)


# --- the manifest -----------------------------------------------------------------------------------


def git_commit(folder: str | Path | None = None) -> str | None:
    """HEAD of the git checkout holding `folder` (default: the mi package), if the package files are
    tracked there; None when git is missing, it is not a checkout, or anything else goes wrong."""
    folder = Path(folder) if folder is not None else Path(mi.__file__).resolve().parent
    try:
        tracked = subprocess.run(
            ["git", "ls-files", "--error-unmatch", "__init__.py"],
            cwd=folder, capture_output=True, text=True, timeout=10, check=False,
        )
        if tracked.returncode != 0:
            return None
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    commit = head.stdout.strip()
    return commit if head.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", commit) else None


def package_versions() -> dict[str, str | None]:
    """Python and the key libraries, read from installed metadata (nothing is imported); None if absent."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _iso(when: _dt.datetime | str | None) -> str | None:
    if when is None or isinstance(when, str):
        return when
    if when.tzinfo is None:
        raise ValueError("manifest times must be timezone-aware (use mi.export.utc_now())")
    return when.astimezone(_dt.timezone.utc).isoformat(timespec="seconds")


def build_manifest(
    *,
    config_hash: str | None = None,
    inputs: Iterable[str | Path] = (),
    input_hashes: Mapping[str, str] | None = None,
    checkpoint: str | None = None,
    checkpoint_hash: str | None = None,
    started: _dt.datetime | str | None = None,
    ended: _dt.datetime | str | None = None,
    counts: Mapping[str, Any] | None = None,
    notes: Sequence[str] | str = (),
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The run's manifest as a plain dict (keyword arguments only; a misspelt one is a TypeError).

    Keys: ``manifest_version, mi_version, git_commit, config_hash, input_hashes, checkpoint,
    checkpoint_hash, packages, started_at, ended_at, counts, notes`` plus the keys of `extra`.

    `input_hashes` maps each input file to its ``sha256:...``; files in `inputs` are hashed here and
    added (a missing file is an error). `checkpoint` is the reference as given (a path or
    ``builtin:<name>``); its hash is `checkpoint_hash`, or the file's sha256 when it is an existing file.
    Times become UTC ISO strings (strings are kept as given); `ended` defaults to now. `counts` always
    has ``read``, ``failed`` and ``ranked`` (None when not given) plus whatever the caller adds.
    """
    if checkpoint_hash is None and checkpoint is not None and Path(checkpoint).is_file():
        checkpoint_hash = sha256_file(checkpoint)
    manifest: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION,
        "mi_version": mi.__version__,
        "git_commit": git_commit(),
        "config_hash": config_hash,
        "input_hashes": {**{str(p): sha256_file(p) for p in inputs}, **dict(input_hashes or {})},
        "checkpoint": checkpoint,
        "checkpoint_hash": checkpoint_hash,
        "packages": package_versions(),
        "started_at": _iso(started),
        "ended_at": _iso(ended if ended is not None else utc_now()),
        "counts": {"read": None, "failed": None, "ranked": None, **dict(counts or {})},
        "notes": [notes] if isinstance(notes, str) else list(notes),
    }
    clash = sorted(set(extra or {}) & set(manifest))
    if clash:
        raise ValueError(f"extra manifest keys {clash} would replace standard ones")
    manifest.update(extra or {})
    return manifest


def write_manifest(run_dir: str | Path, manifest: Mapping[str, Any]) -> Path:
    """``manifest.json`` (NaN as null, numpy scalars unwrapped)."""
    return atomic_write_json(Path(run_dir) / "manifest.json", dict(manifest))


# --- the terminal -----------------------------------------------------------------------------------


def _cell(value: Any) -> tuple[str, bool]:
    """(text, is_number)."""
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)) or value is pd.NA:
        return "-", True
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)), False
    if isinstance(value, (int, np.integer)):
        return str(int(value)), True
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}", True
    return str(value), False


def format_top_table(ranked: pd.DataFrame, columns: Sequence[str], k: int, max_width: int = 32) -> str:
    """The first `k` rows as an aligned plain-text table: numbers right-aligned to 4 significant digits,
    text left-aligned and cut to `max_width` characters, missing values as ``-``. Columns not in
    `ranked` are left out."""
    cols = [c for c in columns if c in ranked.columns]
    rows = ranked.head(k)
    header = [str(c) for c in cols]
    cells: list[list[tuple[str, bool]]] = []
    for values in rows[cols].itertuples(index=False, name=None):
        row = []
        for value in values:
            text, numeric = _cell(value)
            if len(text) > max_width:
                text = text[: max_width - 3] + "..."
            row.append((text, numeric))
        cells.append(row)
    widths = [max([len(h)] + [len(r[i][0]) for r in cells]) for i, h in enumerate(header)]
    numeric_col = [bool(cells) and all(r[i][1] for r in cells) for i in range(len(cols))]
    lines = [
        "  ".join(h.rjust(w) if num else h.ljust(w) for h, w, num in zip(header, widths, numeric_col)).rstrip(),
        "  ".join("-" * w for w in widths),
    ]
    for row in cells:
        lines.append(
            "  ".join(
                t.rjust(w) if numeric_col[i] else t.ljust(w) for i, ((t, _), w) in enumerate(zip(row, widths))
            ).rstrip()
        )
    return "\n".join(lines)
