"""JSON (``.json``): as candidates, a pymatgen Structure dict, a list of them or a mapping id -> Structure
dict; as a training table, a list of records or ``{"data": [...], "units": {...}}``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pymatgen.core import Structure

from mi.candidates.formats import FileInput, Reader, Rows
from mi.candidates.textio import BadFile, BadRecord, reason, text_of, too_many
from mi.errors import InputError

CONTEXT = "not a valid pymatgen Structure dict"


def _structure_from_dict(d: Any, max_atoms: int) -> Structure | BadRecord:
    if not isinstance(d, dict) or "lattice" not in d or "sites" not in d:
        return BadRecord("not a pymatgen Structure dict (needs 'lattice' and 'sites')")
    if isinstance(d["sites"], list):
        refused = too_many(len(d["sites"]), max_atoms)
        if refused:
            return refused
    return Structure.from_dict(d)


def _iter_json(text: str, stem: str, max_atoms: int):
    data = json.loads(text)
    if isinstance(data, dict) and "lattice" in data and "sites" in data:
        items = [("0", stem, data)]
    elif isinstance(data, list):
        items = [(str(i), f"{stem}:{i}", d) for i, d in enumerate(data)]
    elif isinstance(data, dict):
        items = [(str(k), str(k), d) for k, d in data.items()]
    else:
        raise BadFile("expected a pymatgen Structure dict, a list of them, or a mapping id -> Structure dict")
    for record, candidate_id, d in items:
        try:
            yield record, candidate_id, _structure_from_dict(d, max_atoms)
        except Exception as exc:  # noqa: BLE001
            yield record, candidate_id, BadRecord(reason(exc, CONTEXT))


def _records(source: FileInput):
    return _iter_json(source.text, source.stem, source.cfg.max_atoms)


def _rows(path: Path) -> Rows:
    data = json.loads(text_of(path))
    units = {}
    if isinstance(data, dict):
        units = dict(data.get("units", {}))
        data = data.get("data", data.get("records"))
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a list of records, or {{'data': [...], 'units': {{...}}}}")
    return [(str(r.get("id", i)) if isinstance(r, dict) else str(i), r, None) for i, r in enumerate(data)], units


READER = Reader("json", (".json",), records=_records, rows=_rows, context=CONTEXT)
