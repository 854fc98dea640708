"""Files: the one atomic writer and the one file hash of mi (the lowest layer: nothing of mi imported).

An atomic write goes to a temporary file in the target's folder, is flushed and fsynced, gets the mode of the
file it replaces (or 0o666 minus the umask) and is renamed onto the target: a reader sees the old file or the
new one, never half of one; on any error the temporary file is removed and the target left as it was.
`atomic_file` is the writer (a file object for anything that streams: Parquet, torch, numpy, CSV row by
row); the ``atomic_write_*`` functions are it for bytes, text, CSV and JSON.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_file(path: str | Path, mode: str = "wb", *, encoding: str | None = None, newline: str | None = None) -> Iterator[IO]:
    """A file object whose contents replace `path` when the block ends without an error (module docstring).

    The folder must exist. `mode` is "wb" or "w" (then `encoding` and `newline` as for `open`).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_file writes whole files: mode 'wb' or 'w', not {mode!r}")
    path = Path(path)
    file_mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_current_umask()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=encoding, newline=newline) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, file_mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    with atomic_file(path) as handle:
        handle.write(data)
    return Path(path)


def sha256_file(path: str | Path) -> str:
    """``sha256:<hex>`` of a file's bytes."""
    with open(path, "rb") as handle:
        return "sha256:" + hashlib.file_digest(handle, "sha256").hexdigest()


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable where the platform allows it (not on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """`text` as UTF-8 (newlines written as given)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_csv(path: str | Path, frame: pd.DataFrame, columns: list | None = None, block: int = 8192) -> Path:
    """`frame` (its `columns`, in that order, if given) as CSV without the index; missing values are empty
    fields. Written `block` rows at a time: no copy of a wide table or of its whole text."""
    with atomic_file(path, "w", encoding="utf-8", newline="") as handle:
        for start in range(0, max(len(frame), 1), block):
            part = frame.iloc[start : start + block]
            (part if columns is None else part[columns]).to_csv(
                handle, index=False, header=start == 0, lineterminator="\n"
            )
    return Path(path)


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types: numpy/pandas scalars and arrays unwrapped, NaN/inf/NA -> None, paths and
    datetimes -> strings, tuples/sets -> lists (sets sorted), mapping keys -> strings.

    Anything else is a TypeError rather than a silent ``str()``.
    """
    import numpy as np  # here: loading a config writes nothing and must not import numpy and pandas
    import pandas as pd

    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)) and not isinstance(obj, np.bool_):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, dict):
        return {str(to_jsonable(k)) if not isinstance(k, str) else k: to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((to_jsonable(v) for v in obj), key=repr)
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, PurePath):
        return str(obj)
    if obj is pd.NaT or obj is pd.NA:
        return None
    if isinstance(obj, (_dt.datetime, _dt.date, pd.Timestamp)):
        return obj.isoformat()
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    raise TypeError(f"cannot write a {type(obj).__name__} as JSON: {obj!r}")


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    """`obj` as JSON (see `to_jsonable`), with a trailing newline."""
    text = json.dumps(to_jsonable(obj), indent=indent, allow_nan=False, ensure_ascii=False)
    return atomic_write_text(path, text + "\n")


def _json_cell(value: Any) -> str:
    """One table cell as `atomic_write_json` writes it (a scalar: no indentation inside)."""
    kind = type(value)
    if kind is float:
        return repr(value) if math.isfinite(value) else "null"
    if kind is str:
        return json.dumps(value, ensure_ascii=False)
    if kind in (int, bool) or value is None:
        return json.dumps(value)
    value = to_jsonable(value)
    if isinstance(value, (list, dict)):
        raise _NotScalar
    return json.dumps(value, allow_nan=False, ensure_ascii=False)


class _NotScalar(Exception):
    pass


def _json_cells(column: pd.Series) -> list[str]:
    """`_json_cell` of every value of a column; numpy float, int and bool columns without a call per value."""
    import numpy as np

    kind = column.dtype.kind if isinstance(column.dtype, np.dtype) else ""
    values = column.tolist()  # numpy scalars as Python ones
    if kind == "f":
        cells = list(map(float.__repr__, values))
        for i in np.flatnonzero(~np.isfinite(column.to_numpy())):
            cells[i] = "null"
        return cells
    if kind in "iu" and kind:
        return list(map(int.__repr__, values))
    if kind == "b":
        return ["true" if v else "false" for v in values]
    return [_json_cell(v) for v in values]


def atomic_write_json_records(
    path: str | Path, frame: pd.DataFrame, columns: list | None = None, block: int = 2048
) -> Path:
    """`frame`'s rows (its `columns`, in that order, if given) as a list of records: the bytes
    `atomic_write_json(path, records)` writes (indent 2), `block` rows at a time, column by column from
    plain Python scalars instead of a recursive walk and the pure-Python indenting encoder (seconds for
    ranked.json of 100,000 rows and 140 columns, and all of it in memory at once). A table with a cell
    that is not a scalar goes through `atomic_write_json`."""
    selected = list(frame.columns) if columns is None else list(columns)
    names = [str(c) for c in selected]
    keys = [f"    {json.dumps(c, ensure_ascii=False)}: " for c in names]
    if len(frame) and names and len(set(names)) == len(names):
        try:
            with atomic_file(path, "w", encoding="utf-8", newline="") as handle:
                handle.write("[")
                for start in range(0, len(frame), block):
                    part = frame.iloc[start : start + block]
                    part = part if columns is None else part[selected]
                    cells = [list(map(k.__add__, _json_cells(part.iloc[:, c]))) for c, k in enumerate(keys)]
                    rows = map(",\n".join, zip(*cells))
                    handle.write(("\n  {\n" if start == 0 else ",\n  {\n") + "\n  },\n  {\n".join(rows) + "\n  }")
                handle.write("\n]\n")
            return Path(path)
        except _NotScalar:
            pass
    table = frame if columns is None else frame[selected]
    records = [dict(zip(names, row)) for row in table.itertuples(index=False, name=None)]
    return atomic_write_json(path, records)


__all__ = [
    "atomic_file",
    "atomic_write_bytes",
    "atomic_write_csv",
    "atomic_write_json",
    "atomic_write_json_records",
    "atomic_write_text",
    "sha256_file",
    "to_jsonable",
]
