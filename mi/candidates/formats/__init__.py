"""Readers by registry: one module per file format, for the screens' candidates and for training tables.

A format is a one-file addition: a module in this package with a module-level ``READER = Reader(...)`` that
names its suffixes and its read functions. Nothing registers itself on import; `registry()` imports the
package's modules when a file is first read and collects their READERs (two claiming one kind or suffix is
an error). `mi.candidates.readers` reads candidates through ``Reader.records`` and
`mi.models.datasets.read_table` reads training tables through ``Reader.rows``; the bytes, text, compression,
byte-order marks and refusals every reader shares are in `mi.candidates.textio`.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mi.candidates.textio import uncompressed_name

if TYPE_CHECKING:
    from mi.config import CandidatesConfig

# what `records` yields: (record, suggested id, Structure | Composition | BadRecord | NoStructure)
Record = tuple[str, str, Any]
# what `rows` returns: [(row id, {column: value}, ase.Atoms | None)], and units the file declares
Rows = tuple[list[tuple[str, dict[str, Any], Any]], dict[str, str]]


@dataclass(frozen=True)
class FileInput:
    """One candidate file as a reader gets it: `text` is the decoded text (line endings made ``\\n``) when the
    reader reads text (or its `lines`, for a reader that takes them), else None and the reader opens `path`
    itself."""

    path: Path
    stem: str  # the id of a single-record file
    cfg: CandidatesConfig
    text: str | None = None
    lines: Iterable[str] | None = None  # for a reader that `reads_lines`: the text's lines, streamed (then text is None)


@dataclass(frozen=True)
class Reader:
    kind: str  # in messages: "cannot read <kind> file"
    suffixes: tuple[str, ...]  # lower case, with the dot; compressed files match by their inner name
    records: Callable[[FileInput], Iterator[Record]] | None = None  # candidates (screens, mi label, mi loop)
    rows: Callable[[Path], Rows] | None = None  # training tables (mi train)
    names: tuple[str, ...] = ()  # file-name prefixes read whatever their suffix (POSCAR, CONTCAR)
    reads_text: bool = True  # records gets the text; False: it reads the path (line by line, or SQLite)
    reads_lines: bool = False  # records takes the text's lines (`FileInput.lines`) where they can be streamed
    context: str = "cannot be read"  # leads a library error that has no plainer words (`textio.reason`)


@functools.cache
def registry() -> dict[str, Reader]:
    """Every reader of this package by kind, its modules imported on first use."""
    found: dict[str, Reader] = {}
    claimed: dict[str, str] = {}
    for info in pkgutil.iter_modules(__path__):
        reader = getattr(importlib.import_module(f"{__name__}.{info.name}"), "READER", None)
        if reader is None:
            continue
        if reader.kind in found:
            raise RuntimeError(f"two readers of kind {reader.kind!r} in {__name__}")
        for key in (*reader.suffixes, *(n.upper() for n in reader.names)):
            if key in claimed:
                raise RuntimeError(f"{key!r} is claimed by the readers {claimed[key]!r} and {reader.kind!r}")
            claimed[key] = reader.kind
        found[reader.kind] = reader
    return found


def reader_for(path: Path) -> Reader | None:
    """The candidate reader of `path` (compressed or not), or None for a file that is not a candidate file."""
    inner = Path(uncompressed_name(path))
    readers = [r for r in registry().values() if r.records is not None]
    name = inner.name.upper()
    for reader in readers:
        if any(name.startswith(prefix.upper()) for prefix in reader.names):
            return reader
    suffix = inner.suffix.lower()
    return next((r for r in readers if suffix in r.suffixes), None)


def table_reader_for(path: Path) -> Reader | None:
    """The training-table reader of `path` by its suffix, or None."""
    suffix = path.suffix.lower()
    return next((r for r in registry().values() if r.rows is not None and suffix in r.suffixes), None)


def table_suffixes() -> list[str]:
    return [s for r in registry().values() if r.rows is not None for s in r.suffixes]


__all__ = ["FileInput", "Reader", "reader_for", "registry", "table_reader_for", "table_suffixes"]
