"""CSV (``.csv``): as candidates, formulas (composition screening: ``candidates.formula_column``,
``candidates.id_column``); as a training table, one row per record, "NaN" read as sodium nitride."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path

from mi.candidates.formats import FileInput, Reader, Rows
from mi.candidates.textio import BadFile, BadRecord, parse_formula, reason, text_of

CONTEXT = "not understood"


def _lines(text: str):
    """The lines of `text` one at a time, ends kept (as io.StringIO gives them), without the copy a StringIO
    makes: four bytes a character, most of a large table's memory."""
    start = 1 if text.startswith("\ufeff") else 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


def _iter_csv(lines: Iterable[str], stem: str, formula_column: str, id_column: str):
    reader = csv.DictReader(lines, strict=True)
    if reader.fieldnames is None or formula_column not in reader.fieldnames:
        raise BadFile(
            f"no {formula_column!r} column (candidates.formula_column); columns are {reader.fieldnames or []}"
        )
    line = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # a broken quote swallows the rest of the file: say so and stop
            yield f"line {reader.line_num}", f"{stem}:{reader.line_num}", BadRecord(f"not valid CSV here: {exc}")
            return
        line = reader.line_num
        record = f"line {line}"
        candidate_id = (row.get(id_column) or "").strip() or f"{stem}:{line}"
        formula = row.get(formula_column)
        if formula is None:
            yield record, candidate_id, BadRecord(f"field {formula_column!r} is missing (the row is too short)")
            continue
        formula = formula.strip()
        if not formula:
            yield record, candidate_id, BadRecord(f"field {formula_column!r} is empty")
            continue
        try:
            yield record, candidate_id, parse_formula(formula)
        except Exception as exc:  # noqa: BLE001
            yield record, candidate_id, BadRecord(
                f"field {formula_column!r}: cannot parse formula {formula[:60]!r}: {reason(exc, CONTEXT)}"
            )


def _records(source: FileInput):
    lines = source.lines if source.lines is not None else _lines(source.text)
    return _iter_csv(lines, source.stem, source.cfg.formula_column, source.cfg.id_column)


def _rows(path: Path) -> Rows:
    import pandas as pd

    # "NaN" is sodium nitride, not a missing value: only these spellings mean missing.
    # text through the screens' reader layer: byte-order marks honoured, Latin-1 and binary data refused
    table = pd.read_csv(io.StringIO(text_of(path)), keep_default_na=False,
                        na_values=["", "nan", "NA", "N/A", "null", "None"])
    ids = table["id"].astype(str) if "id" in table.columns else pd.Series([str(i) for i in range(len(table))])
    return [(ids[i], row, None) for i, row in enumerate(table.to_dict("records"))], {}


READER = Reader("csv", (".csv",), records=_records, rows=_rows, context=CONTEXT, reads_lines=True)
