"""ASE databases (``.db``): every row is a record (a compressed one is decompressed to a temporary file:
SQLite reads files only); as a training table, key-value pairs and energies are columns."""

from __future__ import annotations

import tempfile
from pathlib import Path

from mi.candidates.formats import FileInput, Reader, Rows
from mi.candidates.textio import COMPRESSED_SUFFIXES, BadRecord, read_bytes, reason, too_many

CONTEXT = "database row not understood"


def _iter_ase_db(path: Path, stem: str, max_atoms: int):
    if path.suffix.lower() in COMPRESSED_SUFFIXES:  # SQLite reads files only: decompress to a temporary one
        with tempfile.TemporaryDirectory(prefix="mi-db-") as folder:
            plain = Path(folder) / "candidates.db"
            plain.write_bytes(read_bytes(path))
            yield from _iter_ase_db(plain, stem, max_atoms)
        return
    import ase.db
    from pymatgen.io.ase import AseAtomsAdaptor

    with ase.db.connect(str(path), type="db", create_indices=False) as db:
        for row in db.select():
            kv = row.key_value_pairs
            candidate_id = str(kv.get("id", kv.get("name", f"{stem}:{row.id}")))
            refused = too_many(int(row.natoms), max_atoms)
            if refused:
                yield str(row.id), candidate_id, refused
                continue
            try:
                atoms = row.toatoms()
                if not atoms.pbc.all() or not abs(atoms.cell.volume) > 1e-9:
                    raise ValueError("row has no periodic 3D cell")
                yield str(row.id), candidate_id, AseAtomsAdaptor.get_structure(atoms)
            except Exception as exc:  # noqa: BLE001
                yield str(row.id), candidate_id, BadRecord(reason(exc, CONTEXT))


def _records(source: FileInput):
    return _iter_ase_db(source.path, source.stem, source.cfg.max_atoms)


def _rows(path: Path) -> Rows:
    import ase.db

    records = []
    with ase.db.connect(str(path)) as db:
        for row in db.select():
            columns = {**row.key_value_pairs, **{k: row.get(k) for k in ("energy", "free_energy", "charge") if row.get(k) is not None}}
            records.append((str(row.key_value_pairs.get("name", row.id)), columns, row.toatoms()))
    return records, {}


READER = Reader("ase_db", (".db",), records=_records, rows=_rows, reads_text=False, context=CONTEXT)
