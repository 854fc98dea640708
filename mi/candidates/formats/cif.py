"""CIF (``.cif``, ``.mcif``): every data block with atom sites is a record; a ``data_global`` block beside
structure blocks is skipped with a note; a block whose sites do not make its ``_chemical_formula_sum`` is refused."""

from __future__ import annotations

import math
import re

from pymatgen.core import Composition, Structure

from mi.candidates.formats import FileInput, Reader
from mi.candidates.textio import BadFile, BadRecord, NoStructure, reason, too_many

CONTEXT = "CIF not understood"


def _formula_mismatch(structure: Structure, declared: str | None) -> str | None:
    """A reason when the atom sites do not make the CIF's own `_chemical_formula_sum` (a truncated file)."""
    if not declared or not isinstance(declared, str) or declared.strip() in ("?", "."):
        return None
    try:
        formula = Composition(declared.replace("'", "").replace('"', ""))
    except Exception:  # noqa: BLE001 - an unparsable declaration cannot be checked; the sites decide
        return None
    got = structure.composition.element_composition
    want = formula.element_composition
    if not want or set(got) != set(want):
        return (
            f"the atom sites give {got.reduced_formula} but _chemical_formula_sum says {declared.strip()!r} "
            "(truncated or edited file?)"
        )
    # Sites are a whole number of formula units (2% slack for rounded partial occupancies).
    ratios = [got[el] / want[el] for el in want if want[el] > 0]
    if ratios and max(ratios) > 1.02 * min(ratios):
        return (
            f"the atom sites give {got.reduced_formula} but _chemical_formula_sum says {declared.strip()!r} "
            "(truncated or edited file?)"
        )
    return None


def _bad_cell_length(data: dict) -> str | None:
    """CIF cell lengths must be positive numbers (the dictionary's range is 0.0:); pymatgen would flip a
    negative one into a left-handed cell of another crystal."""
    for axis in "abc":
        raw = data.get(f"_cell_length_{axis}")
        if not isinstance(raw, str):
            continue
        try:
            value = float(re.sub(r"\(.*\)$", "", raw))
        except ValueError:
            return f"_cell_length_{axis} = {raw[:30]!r} is not a number"
        if not (math.isfinite(value) and value > 0):
            return f"_cell_length_{axis} = {raw[:30]} is not a positive length"
    return None


def _iter_cif(text: str, stem: str, max_atoms: int):
    from pymatgen.io.cif import CifFile, CifParser

    cif = CifFile.from_str(text)
    blocks = list(cif.data.items())
    if not blocks:
        raise BadFile("no data block found (not a CIF?)")
    # Journals' CIFs start with a data_global block (authors, journal): no cell, no atom sites. Next to a
    # structure block it is skipped with a note; a file of such blocks only is reported block by block.
    sites = ("_atom_site_fract_x", "_atom_site_Cartn_x")
    structural = [
        (name, block) for name, block in blocks
        if any(k in block.data for k in (*sites, "_cell_length_a", "_cell_length_b", "_cell_length_c"))
    ]
    if structural and len(structural) < len(blocks):
        for name, _ in blocks:
            if all(name != n for n, _ in structural):
                yield f"data_{name}", stem, NoStructure(f"CIF block data_{name} skipped: no cell and no atom sites")
        blocks = structural
    for name, block in blocks:
        record = f"data_{name}"
        candidate_id = stem if len(blocks) == 1 else f"{stem}:{name}"
        rows = next((block.data[k] for k in sites if k in block.data), [])
        n_rows = len(rows) if isinstance(rows, list) else 1
        if n_rows == 0:
            yield record, candidate_id, BadRecord("no atom sites (no _atom_site_fract_x loop)")
            continue
        refused = too_many(n_rows, max_atoms, "atom sites")
        if refused:
            yield record, candidate_id, refused
            continue
        bad_length = _bad_cell_length(block.data)
        if bad_length:
            yield record, candidate_id, BadRecord(bad_length)
            continue
        try:
            parser = CifParser.from_str(str(block))
            structures = parser.parse_structures(primitive=False, on_error="raise")
            if not structures:
                raise ValueError("no structure could be built from this block")
            mismatch = _formula_mismatch(structures[0], block.data.get("_chemical_formula_sum"))
            yield record, candidate_id, BadRecord(mismatch) if mismatch else structures[0]
        except Exception as exc:  # noqa: BLE001 - one bad block must not stop the others
            yield record, candidate_id, BadRecord(reason(exc, CONTEXT))


def _records(source: FileInput):
    return _iter_cif(source.text, source.stem, source.cfg.max_atoms)


READER = Reader("cif", (".cif", ".mcif"), records=_records, context=CONTEXT)
