"""Read a file written by ``torch.save`` without importing torch: checkpoint cards and ``mi validate``.

Importing torch costs seconds; a card or a config check only needs the plain fields of a checkpoint (and,
to verify its ``payload_sha256``, the tensor bytes). A ``torch.save`` file is a zip holding ``data.pkl``
and one member per tensor storage. The unpickler below knows only the globals an mi checkpoint uses
(``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and the typed storages) and refuses
everything else, as ``torch.load(weights_only=True)`` does; tensors come back as numpy-backed
`StoredTensor` values. Loading a model still goes through ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

# torch's typed storage class -> (torch dtype name, numpy dtype, little-endian)
_STORAGES = {
    "FloatStorage": ("float32", "<f4"),
    "DoubleStorage": ("float64", "<f8"),
    "HalfStorage": ("float16", "<f2"),
    "LongStorage": ("int64", "<i8"),
    "IntStorage": ("int32", "<i4"),
    "ShortStorage": ("int16", "<i2"),
    "CharStorage": ("int8", "<i1"),
    "ByteStorage": ("uint8", "<u1"),
    "BoolStorage": ("bool", "?"),
}


class StoredTensor:
    """A tensor read without torch: ``dtype`` (torch's name, e.g. ``torch.float32``), ``shape`` and the
    values as a C-ordered numpy ``array``."""

    __slots__ = ("array", "dtype", "shape")

    def __init__(self, array: np.ndarray, dtype: str) -> None:
        self.array = array
        self.dtype = f"torch.{dtype}"
        self.shape = tuple(int(n) for n in array.shape)

    def numel(self) -> int:
        return int(self.array.size)

    def __getitem__(self, index):
        return self.array[index]


class _Storage:
    __slots__ = ("dtype", "values")

    def __init__(self, dtype: str, values: np.ndarray) -> None:
        self.dtype, self.values = dtype, values


def _rebuild_tensor(storage: _Storage, offset: int, size, stride, *_ignored) -> StoredTensor:
    size, stride = tuple(int(n) for n in size), tuple(int(s) for s in stride)
    if len(size) != len(stride) or offset < 0 or any(n < 0 for n in size) or any(s < 0 for s in stride):
        raise pickle.UnpicklingError(f"malformed tensor layout: offset {offset}, size {size}, stride {stride}")
    base = storage.values
    # as_strided does not check bounds: make sure the view stays inside the storage
    last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset - 1
    if last >= base.size:
        raise pickle.UnpicklingError(f"tensor of size {size} reaches past its storage of {base.size} values")
    view = np.lib.stride_tricks.as_strided(
        base[offset:], shape=size, strides=[s * base.itemsize for s in stride], writeable=False
    )
    return StoredTensor(np.ascontiguousarray(view), storage.dtype)


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(file)
        self._archive, self._prefix = archive, prefix

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGES:
            return name
        raise pickle.UnpicklingError(f"Weights only load failed: unsupported global {module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and pid[1] in _STORAGES):
            raise pickle.UnpicklingError(f"Weights only load failed: unsupported persistent id {pid!r}")
        dtype, numpy_dtype = _STORAGES[pid[1]]
        raw = self._archive.read(f"{self._prefix}data/{pid[2]}")
        values = np.frombuffer(raw, dtype=numpy_dtype)
        if values.size != int(pid[4]):
            raise pickle.UnpicklingError(f"storage {pid[2]}: {values.size} values, the file says {pid[4]}")
        return _Storage(dtype, values)


def load_without_torch(path: str | Path) -> Any:
    """The object ``torch.save`` wrote to `path`, tensors as `StoredTensor`; raises `pickle.UnpicklingError`
    for anything but plain data and tensors, `zipfile.BadZipFile`/`KeyError`/`EOFError` for a broken file."""
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise zipfile.BadZipFile("no data.pkl: not a file written by torch.save")
        prefix = pickles[0][: -len("data.pkl")]
        if f"{prefix}byteorder" in archive.namelist():
            order = archive.read(f"{prefix}byteorder").decode().strip()
            if order != "little":
                raise pickle.UnpicklingError(f"byte order {order!r}: only little-endian files are read")
        with archive.open(pickles[0]) as data:
            return _Unpickler(data, archive, prefix).load()


__all__ = ["StoredTensor", "load_without_torch"]
