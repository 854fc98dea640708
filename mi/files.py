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
from contextlib import ExitStack, contextmanager
from pathlib import Path, PurePath
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def user_cache_dir(name: str) -> Path:
    """mi's cache folder `name` for this user: ``$XDG_CACHE_HOME/mi/<name>`` (``~/.cache`` without it)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "mi" / name


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


def _json_block(keys: list[str], cells: list[list[str]], first: bool) -> str:
    """One block of records as `atomic_write_json` indents them (the list's brackets aside): `cells` per
    column, `keys` each column's ``    "name": `` prefix."""
    rows = map(",\n".join, zip(*(list(map(k.__add__, c)) for k, c in zip(keys, cells))))
    return ("\n  {\n" if first else ",\n  {\n") + "\n  },\n  {\n".join(rows) + "\n  }"


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
                    handle.write(_json_block(keys, [_json_cells(part.iloc[:, c]) for c in range(len(keys))], start == 0))
                handle.write("\n]\n")
            return Path(path)
        except _NotScalar:
            pass
    table = frame if columns is None else frame[selected]
    records = [dict(zip(names, row)) for row in table.itertuples(index=False, name=None)]
    return atomic_write_json(path, records)


class _Unsupported(Exception):
    pass


def _table_column(series: pd.Series) -> tuple[str, Any, Any]:
    """(kind, values, missing) of one column for `atomic_write_csv_json`: numpy float, int and bool
    columns as they are; object and nullable-boolean columns as objects with their missing-value mask."""
    import numpy as np
    import pandas as pd

    dtype = series.dtype
    if dtype == np.float64 or (isinstance(dtype, np.dtype) and dtype.kind in "iub"):  # float32's str is not its repr
        return dtype.kind, series.to_numpy(), None
    if dtype == object or isinstance(dtype, pd.BooleanDtype):
        return "O", np.asarray(series.to_numpy(dtype=object)), series.isna().to_numpy()
    raise _Unsupported


def _block_cells(kind: str, values, missing) -> tuple[list, list[str]]:
    """The cells of one block of a column: as `DataFrame.to_csv` hands them to the csv writer (a float as
    numpy's str of it, which is its repr; missing as an empty field) and as `_json_cells` writes them."""
    import numpy as np

    if kind == "f":
        text = list(map(float.__repr__, values.tolist()))
        bad = np.flatnonzero(~np.isfinite(values))
        if not len(bad):
            return text, text
        csv_text = list(text)
        for i in bad:
            text[i] = "null"
            if values[i] != values[i]:
                csv_text[i] = ""
        return csv_text, text
    if kind in "iu":
        text = list(map(int.__repr__, values.tolist()))
        return text, text
    if kind == "b":
        flags = values.tolist()
        return ["True" if v else "False" for v in flags], ["true" if v else "false" for v in flags]
    objects = values.tolist()
    json_text = [_json_cell(v) for v in objects]
    for i in np.flatnonzero(missing):
        objects[i] = ""
    return objects, json_text


def atomic_write_csv_json(
    csv_path: str | Path, json_path: str | Path | None, frame: pd.DataFrame, columns: list | None = None,
    block: int = 512,
) -> list[Path]:
    """`atomic_write_csv` (and, with `json_path`, `atomic_write_json_records`) of `frame`, the same bytes,
    written together in one pass over blocks of rows: each value is formatted once for both files (the
    CSV text of a float is numpy's str of it, its repr, as in JSON), from one array per column, and only
    `block` rows of text are held at once (a block of 2,048 wide rows as JSON text was 60 MB). A table
    these columns cannot all take (no row, repeated names, another column type, a cell that is not a
    scalar) goes through the two writers."""
    import csv

    selected = list(frame.columns) if columns is None else list(columns)
    names = [str(c) for c in selected]
    try:
        if not len(frame) or len(set(names)) != len(names) or not frame.columns.is_unique:
            raise _Unsupported
        arrays = [_table_column(frame[c]) for c in selected]
        keys = [f"    {json.dumps(c, ensure_ascii=False)}: " for c in names]
        with ExitStack() as files:
            csv_file = files.enter_context(atomic_file(csv_path, "w", encoding="utf-8", newline=""))
            json_file = files.enter_context(atomic_file(json_path, "w", encoding="utf-8", newline="")) if json_path else None
            writer = csv.writer(csv_file, lineterminator="\n")  # DataFrame.to_csv's dialect
            writer.writerow(selected)
            if json_file is not None:
                json_file.write("[")
            for start in range(0, len(frame), block):
                cells = [
                    _block_cells(kind, values[start : start + block], None if missing is None else missing[start : start + block])
                    for kind, values, missing in arrays
                ]
                writer.writerows(zip(*(c for c, _ in cells)))
                if json_file is not None:
                    json_file.write(_json_block(keys, [j for _, j in cells], start == 0))
            if json_file is not None:
                json_file.write("\n]\n")
    except (_Unsupported, _NotScalar):
        paths = [atomic_write_csv(csv_path, frame, columns=columns)]
        if json_path:
            paths.append(atomic_write_json_records(json_path, frame, columns=columns))
        return paths
    return [Path(csv_path), *([Path(json_path)] if json_path else [])]


__all__ = [
    "atomic_file",
    "atomic_write_csv_json",
    "atomic_write_bytes",
    "atomic_write_csv",
    "atomic_write_json",
    "atomic_write_json_records",
    "atomic_write_text",
    "sha256_file",
    "to_jsonable",
]
