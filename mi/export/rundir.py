"""The run directory: ranked table, top structures, failures, resolved config and a manifest.

Layout of ``<out_dir>/<name>/<run-id>/``::

    config.yaml     the resolved config
    ranked.csv      ranked candidates (ranked.json: the same as a list of records)
    failures.csv    id,file,record,stage,reason (header only when nothing failed)
    top/            <rank>_<id>.cif for the top-k candidates that have a structure
    report.html     the run as one self-contained page (mi.export.report)
    passport/       <id>.json, a passport-style record per top-k candidate (mi.export.passport)
    manifest.json   versions, hashes, times and counts
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import json
import math
import platform
import re
import secrets
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.io.cif import CifWriter

import mi
from mi.candidates.base import Failure
from mi.errors import MiError
from mi.export.atomic import atomic_write_csv, atomic_write_json, atomic_write_text

MANIFEST_VERSION = 1
RUN_FILES = ("config.yaml", "ranked.csv", "ranked.json", "failures.csv", "manifest.json", "report.html")
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


def prepare_out_dir(path: str | Path) -> Path:
    """The folder given with ``--out``: created if missing, reused if empty or an earlier mi run.

    Any other non-empty folder is refused. When an earlier run is reused, its mi outputs (the files in
    `RUN_FILES`, ``top/*.cif`` and ``passport/*.json``) are removed first so that nothing stale survives
    next to the new run; other files are left alone.
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise MiError(f"{path}: exists and is not a folder")
    if path.is_dir() and any(path.iterdir()):
        if not looks_like_run_dir(path):
            raise MiError(
                f"{path}: folder is not empty and is not an mi run directory (no manifest.json); "
                "choose another --out or empty it"
            )
        for name in RUN_FILES:
            (path / name).unlink(missing_ok=True)
        for folder, pattern in ((TOP_DIR, "*.cif"), (PASSPORT_DIR, "*.json")):
            if (path / folder).is_dir():
                for stale in (path / folder).glob(pattern):
                    stale.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path


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
    table = ranked[column_order(ranked, predicted)]
    paths = [atomic_write_csv(run_dir / "ranked.csv", table)]
    if write_json:
        records = [dict(zip(table.columns, row)) for row in table.itertuples(index=False, name=None)]
        paths.append(atomic_write_json(run_dir / "ranked.json", records))
    return paths


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_file_stem(text: str, max_length: int = 80) -> str:
    """`text` usable as a file name on any platform: runs of other characters become '_', no leading or
    trailing '.' or '_', at most `max_length` characters; ``"candidate"`` if nothing is left."""
    stem = _UNSAFE.sub("_", str(text)).strip("._")[:max_length].rstrip("._")
    return stem or "candidate"


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
    top = Path(run_dir) / TOP_DIR
    top.mkdir(parents=True, exist_ok=True)
    rows = ranked.sort_values("rank", kind="stable") if "rank" in ranked.columns else ranked
    rows = rows.head(top_k)
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


def write_config(run_dir: str | Path, yaml_text: str) -> Path:
    """``config.yaml``: the resolved config, as given."""
    return atomic_write_text(Path(run_dir) / "config.yaml", yaml_text)


# --- the manifest -----------------------------------------------------------------------------------


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


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
