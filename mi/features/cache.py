"""On-disk feature cache: rows keyed by candidate content hash, per feature set, version and working ion.

Layout::

    <root>/<set>-v<version>[-<working ion>]/<pack>.npz     keys (str), values (float64, n x width),
                                                           errors (str, "" where the row is valid),
                                                           columns (the set's feature names),
                                                           digest (sha256 of the four arrays above)

A pack is written atomically (temporary file, then rename) as each chunk of candidates is finished, so a
run that dies keeps what it computed and concurrent runs never see half a file; newer packs win where keys
repeat. Deterministic errors (a structure a set cannot describe) are cached too; time-outs are not, since a
longer time limit may succeed. A folder of many packs is merged into one. The root is resolved when a
cache is opened, never at import: `default_cache_dir()` is ``$XDG_CACHE_HOME/mi/features`` or
``~/.cache/mi/features``. Changing a set's numbers means bumping its version, which starts a new folder.

Packs are read with ``allow_pickle=False`` (an object array, which could run code, is refused) and checked
against their digest. A pack that is unreadable, truncated, or whose arrays do not match its digest is not
trusted: it is renamed to ``*.npz.bad``, its rows are recomputed, and the problem is logged and listed in
`FeatureCache.problems` (the engine reports them). Packs from before the digest existed are read as they are.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mi.files import atomic_file, user_cache_dir

log = logging.getLogger(__name__)

MAX_PACKS = 32  # merge a folder's packs once it holds more than this


def default_cache_dir() -> Path:
    return user_cache_dir("features")


class FeatureCache:
    """Feature rows on disk under `root`; see the module docstring for the layout."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()
        self.problems: list[str] = []  # packs refused since this object was made, with the reason

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.root)!r})"

    @staticmethod
    def folder_name(name: str, version: int, working_ion: str | None = None) -> str:
        return f"{name}-v{version}" + (f"-{working_ion}" if working_ion else "")

    def _packs(self, folder: str) -> list[Path]:
        path = self.root / folder
        if not path.is_dir():
            return []
        return sorted(path.glob("*.npz"), key=lambda p: (p.stat().st_mtime_ns, p.name))

    def _refuse(self, pack: Path, why: str) -> None:
        message = f"feature cache: {pack} {why}; its rows are recomputed"
        log.warning("%s", message)
        self.problems.append(message)
        try:
            pack.rename(pack.with_name(pack.name + ".bad"))  # kept for inspection, never read again
        except OSError:
            pass

    def _read(self, pack: Path, columns: Sequence[str], *, with_values: bool) -> dict | None:
        try:
            with np.load(pack, allow_pickle=False) as data:
                if list(data["columns"]) != list(columns):
                    log.warning("feature cache: %s holds other columns; ignored", pack)
                    return None
                out = {"keys": data["keys"], "errors": data["errors"], "values": data["values"]}
                if "digest" in data.files:
                    if str(data["digest"]) != _digest(out["keys"], out["values"], out["errors"], data["columns"]):
                        self._refuse(pack, "does not match its digest (modified or corrupted)")
                        return None
                if out["values"].dtype != np.float64 or out["values"].shape != (len(out["keys"]), len(columns)):
                    self._refuse(pack, f"holds values of shape {out['values'].shape} ({out['values'].dtype})")
                    return None
                if not with_values:
                    del out["values"]
                return out
        except FileNotFoundError:
            return None  # merged away by a concurrent run
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            # ValueError includes "Object arrays cannot be loaded when allow_pickle=False"
            self._refuse(pack, f"is unreadable ({type(exc).__name__}: {str(exc)[:120]})")
            return None

    def get(
        self, folder: str, columns: Sequence[str], keys: Sequence[str]
    ) -> dict[str, tuple[np.ndarray, str]]:
        """Cached (row, error) for each of `keys` that the cache holds."""
        wanted = set(keys)
        where: dict[str, tuple[int, int]] = {}
        packs = self._packs(folder)
        for p, pack in enumerate(packs):
            data = self._read(pack, columns, with_values=False)
            if data is None:
                continue
            for row, key in enumerate(data["keys"].tolist()):
                if key in wanted:
                    where[key] = (p, row)  # later packs override earlier ones
        found: dict[str, tuple[np.ndarray, str]] = {}
        by_pack: dict[int, list[tuple[str, int]]] = {}
        for key, (p, row) in where.items():
            by_pack.setdefault(p, []).append((key, row))
        for p, entries in by_pack.items():
            data = self._read(packs[p], columns, with_values=True)
            if data is None:
                continue
            for key, row in entries:
                found[key] = (np.array(data["values"][row], dtype=float), str(data["errors"][row]))
        return found

    def put(
        self, folder: str, columns: Sequence[str], keys: Sequence[str], values: np.ndarray, errors: Sequence[str]
    ) -> Path | None:
        """Write one pack; returns its path (None when there is nothing to write)."""
        if len(keys) == 0:
            return None
        values = np.asarray(values, dtype=float).reshape(len(keys), len(columns))
        path = self.root / folder
        path.mkdir(parents=True, exist_ok=True)
        target = path / f"{uuid.uuid4().hex}.npz"
        self._write(target, columns, list(keys), values, list(errors))
        return target

    def _write(self, target: Path, columns, keys, values, errors) -> None:
        arrays = {
            "keys": np.array(keys, dtype=str),
            "values": np.asarray(values, dtype=np.float64),
            "errors": np.array(errors, dtype=str),
            "columns": np.array(list(columns), dtype=str),
        }
        digest = _digest(arrays["keys"], arrays["values"], arrays["errors"], arrays["columns"])
        with atomic_file(target) as out:
            np.savez(out, **arrays, digest=np.array(digest))

    def compact(self, folder: str, columns: Sequence[str]) -> None:
        """Merge a folder's packs into one when it holds more than MAX_PACKS."""
        packs = self._packs(folder)
        if len(packs) <= MAX_PACKS:
            return
        merged: dict[str, tuple[np.ndarray, str]] = {}
        read = []
        for pack in packs:
            data = self._read(pack, columns, with_values=True)
            if data is None:
                continue
            read.append(pack)
            for key, row, error in zip(data["keys"].tolist(), data["values"], data["errors"].tolist()):
                merged[key] = (row, error)
        if not merged:
            return
        keys = list(merged)
        self._write(
            self.root / folder / f"{uuid.uuid4().hex}.npz",
            columns,
            keys,
            np.array([merged[k][0] for k in keys], dtype=float).reshape(len(keys), len(columns)),
            [merged[k][1] for k in keys],
        )
        for pack in read:
            pack.unlink(missing_ok=True)


def _digest(keys: np.ndarray, values: np.ndarray, errors: np.ndarray, columns: np.ndarray) -> str:
    h = hashlib.sha256()
    for array in (keys, values, errors, columns):
        array = np.ascontiguousarray(array)
        h.update(f"{array.dtype.str}{array.shape}".encode())
        h.update(array.tobytes())
    return "sha256:" + h.hexdigest()


def open_cache(cache_dir: str | Path | None) -> FeatureCache | None:
    """A cache at `cache_dir` (``"auto"``: `default_cache_dir()`), or None for no cache."""
    if cache_dir is None:
        return None
    if str(cache_dir) == "auto":
        return FeatureCache(default_cache_dir())
    return FeatureCache(cache_dir)
