"""VASP POSCAR/CONTCAR (``POSCAR*``, ``CONTCAR*``, ``.vasp``, ``.poscar``); a VASP 4 file (no element line)
takes its species from a POTCAR beside it, else from ``candidates.species``, and is refused otherwise."""

from __future__ import annotations

import fnmatch
import functools
import math
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mi.candidates.formats import FileInput, Reader
from mi.candidates.textio import BadRecord, read_bytes, too_many, uncompressed_name

if TYPE_CHECKING:
    from mi.config import CandidatesConfig

CONTEXT = "POSCAR not understood"


def _potcar_species(folder: Path) -> tuple[str, list[str]] | None:
    """(file name, element symbols) of the POTCAR in `folder` (plain or compressed), None without one."""
    for name in ("POTCAR", "POTCAR.gz", "POTCAR.bz2", "POTCAR.xz"):
        path = folder / name
        if path.is_file():
            stat = path.stat()
            return name, _potcar_symbols(path, stat.st_mtime_ns, stat.st_size)
    return None


@functools.lru_cache(maxsize=64)
def _potcar_symbols(path: Path, mtime_ns: int, size: int) -> list[str]:
    """The species of a POTCAR, from its ``TITEL = PAW_PBE Li_sv 10Sep2004`` lines (``VRHFIN =Li:`` lines
    otherwise). Cached by path, time and size: a folder of POSCARs shares one POTCAR."""
    from pymatgen.core import Element

    text = read_bytes(path).decode("utf-8", "replace")
    found = re.findall(r"^\s*TITEL\s*=\s*\S+\s+([A-Z][a-z]?)", text, re.M)
    found = found or re.findall(r"^\s*VRHFIN\s*=\s*([A-Z][a-z]?)\s*:", text, re.M)
    if not found or not all(Element.is_valid_symbol(s) for s in found):
        raise BadRecord(f"{path.name} beside it has no TITEL or VRHFIN lines naming elements (not a POTCAR?)")
    return found


def _configured_species(path: Path, species) -> list[str] | None:
    """``candidates.species`` for this file: the list, or the first glob of the mapping that matches the
    file's name or the end of its path (``LiCoO2/*``, ``*.vasp``)."""
    if species is None or isinstance(species, list):
        return species
    full = path.resolve().as_posix()
    for pattern, symbols in species.items():
        names = (path.name, uncompressed_name(path))
        if any(fnmatch.fnmatch(n, pattern) for n in names) or fnmatch.fnmatch(full, "*/" + pattern.lstrip("/")):
            return symbols
    return None


def _vasp4_species(path: Path, cfg: CandidatesConfig, n_types: int) -> list[str] | BadRecord | None:
    """The species of a VASP 4 POSCAR with `n_types` counts: from a POTCAR beside it, else from
    ``candidates.species``; a failure when they disagree or do not match the counts; None when neither
    gives any."""
    try:
        potcar = _potcar_species(path.parent)
    except BadRecord as exc:
        return exc
    configured = _configured_species(path, cfg.species)
    if potcar and configured and potcar[1] != configured:
        return BadRecord(
            f"VASP 4 POSCAR: {potcar[0]} beside it gives species {' '.join(potcar[1])} but candidates.species "
            f"gives {' '.join(configured)}"
        )
    origin, symbols = (potcar[0] + " beside it", potcar[1]) if potcar else ("candidates.species", configured)
    if symbols is not None and len(symbols) != n_types:
        return BadRecord(
            f"VASP 4 POSCAR has {n_types} species counts but {origin} names {len(symbols)} species "
            f"({' '.join(symbols)})"
        )
    return symbols


def _iter_poscar(text: str, stem: str, max_atoms: int, species_of: Callable[[int], Any] = lambda n: None):
    from pymatgen.io.vasp import Poscar

    lines = [line.split("!")[0].split("#")[0].split() for line in text.splitlines()]
    # Line 6 holds the counts (VASP 5) or line 5 does (VASP 4, no species line); refuse huge cells from it.
    for candidate in lines[5:7]:
        if candidate and all(tok.isdigit() for tok in candidate):
            refused = too_many(sum(int(tok) for tok in candidate), max_atoms)
            if refused:
                yield "0", stem, refused
                return
            break
    if len(lines) > 1 and lines[1]:
        try:
            scale = [float(tok) for tok in lines[1]]
        except ValueError:
            scale = []
        if scale and not all(math.isfinite(x) and x != 0 for x in scale):
            yield "0", stem, BadRecord(f"scale factor {' '.join(lines[1])} on line 2 is zero or not finite")
            return
    # VASP 4 has no element line: line 6 holds the counts.
    vasp4 = len(lines) > 5 and bool(lines[5]) and all(tok.isdigit() for tok in lines[5])
    species = species_of(len(lines[5])) if vasp4 else None
    if isinstance(species, BadRecord):
        yield "0", stem, species
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        poscar = Poscar.from_str(text, default_names=species, read_velocities=True)
    if vasp4 and species is None and any("false names" in str(w.message) for w in caught):
        yield "0", stem, BadRecord(
            "VASP 4 POSCAR: no element line, no POTCAR beside it and no candidates.species for it; the species "
            "are not guessed (give them in candidates.species, or put the run's POTCAR next to the file)"
        )
        return
    yield "0", stem, poscar.structure


def _records(source: FileInput):
    return _iter_poscar(
        source.text, source.stem, source.cfg.max_atoms, lambda n: _vasp4_species(source.path, source.cfg, n)
    )


READER = Reader("poscar", (".vasp", ".poscar"), records=_records, names=("POSCAR", "CONTCAR"), context=CONTEXT)
