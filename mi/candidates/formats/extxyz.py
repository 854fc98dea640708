"""Extended XYZ (``.xyz``, ``.extxyz``): every frame is a record (split on the atom-count lines first, so
one bad frame costs only itself); as a training table, ``info`` keys and calculator results are columns."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mi.candidates.formats import FileInput, Reader, Rows
from mi.candidates.textio import BadFile, BadRecord, reason, text_of, too_many

CONTEXT = "extended XYZ frame not understood"


def _extxyz_frames(text: str) -> Iterator[tuple[int, str | BadRecord]]:
    """(frame index, text of the frame) of an extended XYZ file, split on the atom-count lines."""
    lines = text.splitlines()
    i, frame = 0, 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        head = lines[i].strip()
        try:
            n = int(head)
            if n < 0:
                raise ValueError
        except ValueError:
            yield frame, BadRecord(
                f"line {i + 1}: expected the atom count of a frame, found {head[:40]!r}; the rest of the file is skipped"
            )
            return
        body = lines[i : i + n + 2]
        if len(body) < n + 2:
            yield frame, BadRecord(f"frame starting on line {i + 1} declares {n} atoms but the file ends early")
            return
        yield frame, "\n".join(body) + "\n"
        i += n + 2
        frame += 1


def _iter_extxyz(text: str, stem: str, max_atoms: int):
    from ase.io.extxyz import read_xyz
    from pymatgen.io.ase import AseAtomsAdaptor

    frames = list(_extxyz_frames(text))
    if not frames:
        raise BadFile("no frame found (not an extended XYZ file?)")
    single = len(frames) == 1
    for i, frame in frames:
        candidate_id = stem if single else f"{stem}:{i}"
        if isinstance(frame, BadRecord):
            yield str(i), candidate_id, frame
            continue
        refused = too_many(int(frame.split("\n", 1)[0]), max_atoms)
        if refused:
            yield str(i), candidate_id, refused
            continue
        try:
            atoms = next(read_xyz(io.StringIO(frame), 0))
            candidate_id = str(atoms.info.get("id", candidate_id))
            if not atoms.pbc.all() or not abs(atoms.cell.volume) > 1e-9:
                yield str(i), candidate_id, BadRecord("frame has no periodic 3D cell (Lattice/pbc missing)")
                continue
            yield str(i), candidate_id, AseAtomsAdaptor.get_structure(atoms)
        except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the others
            yield str(i), candidate_id, BadRecord(reason(exc, CONTEXT))


def _records(source: FileInput):
    return _iter_extxyz(source.text, source.stem, source.cfg.max_atoms)


def _rows(path: Path) -> Rows:
    from ase.io import read

    frames = read(io.StringIO(text_of(path)), index=":", format="extxyz")
    records = []
    for i, atoms in enumerate(frames):
        columns = dict(atoms.info)
        if atoms.calc is not None:
            columns.update({k: v for k, v in atoms.calc.results.items() if np.ndim(v) == 0})
        records.append((str(columns.get("id", i)), columns, atoms))
    return records, {}


READER = Reader("extxyz", (".xyz", ".extxyz"), records=_records, rows=_rows, context=CONTEXT)
