"""JSON lines (``.jsonl``): one candidate per line, as `mi generate` writes its shards; read line by line."""

from __future__ import annotations

import json
from pathlib import Path

from mi.candidates.formats import FileInput, Reader
from mi.candidates.textio import BadRecord, open_binary, reason, too_many

CONTEXT = "not a valid record"


def _iter_jsonl(path: Path, stem: str, max_atoms: int):
    from mi.candidates.generate.shards import record_item

    with open_binary(path) as fh:  # line by line: shards can be large
        for n, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            record, candidate_id = f"line {n}", f"{stem}:{n}"
            try:
                if b"\x00" in raw:
                    raise BadRecord("binary data (NUL bytes) in this line")
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise BadRecord(f"not UTF-8 text (byte 0x{raw[exc.start]:02X} at offset {exc.start})") from None
                data = json.loads(line)
                if isinstance(data, dict) and data.get("id") not in (None, ""):
                    candidate_id = str(data["id"])
                structure = data.get("structure") if isinstance(data, dict) else None
                sites = structure.get("sites") if isinstance(structure, dict) else None
                sites = data.get("species") if isinstance(data, dict) and sites is None else sites
                if isinstance(sites, list):
                    refused = too_many(len(sites), max_atoms)
                    if refused:
                        yield record, candidate_id, refused
                        continue
                yield record, candidate_id, record_item(data)
            except BadRecord as exc:
                yield record, candidate_id, exc
            except Exception as exc:  # noqa: BLE001 - one bad line must not stop the others
                yield record, candidate_id, BadRecord(reason(exc, CONTEXT))


def _records(source: FileInput):
    return _iter_jsonl(source.path, source.stem, source.cfg.max_atoms)


READER = Reader("jsonl", (".jsonl",), records=_records, reads_text=False, context=CONTEXT)
