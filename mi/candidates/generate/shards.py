"""Shards: generated candidates streamed to files that `mi screen` reads.

JSON lines (``.jsonl``, the default): one candidate per line,
    {"id": ..., "lattice": [[3x3]], "species": ["Li", {"Ni": 0.8, "Co": 0.2}, ...],
     "coords": [[fractional]], "meta": {...}}
or, for composition-only candidates, {"id": ..., "formula": ..., "meta": {...}}. Disordered (virtual) sites and
oxidation-state-free species survive the round trip; `mi.candidates.readers` reads the format.
Extended XYZ (``.extxyz``) holds ordered structures only, with the id in each frame's info; the rest of a run
in that format still goes to JSON lines.

Each shard is written under a temporary name and renamed when complete, so a reader never sees half a shard.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from pymatgen.core import Composition, Structure

from mi.files import atomic_file

DECIMALS = 8


def structure_record(cid: str, structure: Structure, meta: dict | None = None) -> dict:
    species = [
        site.species_string if site.is_ordered else {str(el): round(float(x), 6) for el, x in site.species.items()}
        for site in structure
    ]
    record = {
        "id": cid,
        "lattice": [[round(float(x), DECIMALS) for x in row] for row in structure.lattice.matrix],
        "species": species,
        "coords": [[round(float(x), DECIMALS) for x in row] for row in structure.frac_coords],
    }
    if meta:
        record["meta"] = meta
    return record


def composition_record(cid: str, composition: Composition, meta: dict | None = None) -> dict:
    record = {"id": cid, "formula": composition.formula.replace(" ", "")}
    if meta:
        record["meta"] = meta
    return record


def record_item(record: dict) -> Structure | Composition:
    """The structure or composition of one JSON-lines record (raises ValueError naming the problem)."""
    if not isinstance(record, dict):
        raise ValueError("a record must be a JSON object")
    if "lattice" in record and "species" in record and "coords" in record:
        if len(record["species"]) != len(record["coords"]):
            raise ValueError(f"{len(record['species'])} species but {len(record['coords'])} coordinates")
        return Structure(record["lattice"], record["species"], record["coords"])
    if "structure" in record:
        return Structure.from_dict(record["structure"])
    if "formula" in record:
        return Composition(record["formula"])
    raise ValueError("a record needs 'lattice', 'species' and 'coords', or 'structure', or 'formula'")


class ShardWriter:
    """Writes records to ``<folder>/<prefix>-00000.<ext>``, `shard_size` per file."""

    def __init__(self, folder: Path, prefix: str, fmt: str = "jsonl", shard_size: int = 10000):
        self.folder = Path(folder)
        self.prefix = prefix
        self.fmt = fmt
        self.shard_size = shard_size
        self.paths: list[Path] = []
        self.bytes = 0
        self._handle: io.TextIOBase | None = None
        self._file = None  # the `atomic_file` of the shard being written
        self._count = 0

    def _open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{self.prefix}-{len(self.paths):05d}.{self.fmt}"
        self._file = atomic_file(path, "w", encoding="utf-8", newline="\n")
        self._handle = self._file.__enter__()
        self.paths.append(path)
        self._count = 0

    def _close_shard(self) -> None:
        if self._handle is None:
            return
        self._file.__exit__(None, None, None)
        self.bytes += self.paths[-1].stat().st_size
        self._handle = None

    def write(self, cid: str, item: Structure | Composition, meta: dict | None = None) -> None:
        if self._handle is None or self._count >= self.shard_size:
            self._close_shard()
            self._open()
        if self.fmt == "extxyz":
            self._handle.write(_extxyz_frame(cid, item))
        elif isinstance(item, Structure):
            self._handle.write(json.dumps(structure_record(cid, item, meta), separators=(",", ":")) + "\n")
        else:
            self._handle.write(json.dumps(composition_record(cid, item, meta), separators=(",", ":")) + "\n")
        self._count += 1

    def close(self) -> list[Path]:
        self._close_shard()
        return list(self.paths)

    def abort(self) -> None:
        """Drop the shard being written (on an error); completed shards stay."""
        if self._handle is not None:
            aborted = RuntimeError("shard aborted")
            self._file.__exit__(RuntimeError, aborted, None)  # removes the temporary file
            self.paths.pop()
            self._handle = None


def _extxyz_frame(cid: str, structure: Structure) -> str:
    import ase.io
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.info = {"id": cid}
    buf = io.StringIO()
    ase.io.write(buf, atoms, format="extxyz")
    return buf.getvalue()
