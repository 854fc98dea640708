"""Read candidates from files, folders, globs and databases.

Supported: CIF (every data block is a record), VASP POSCAR/CONTCAR, extended XYZ (every frame),
pymatgen JSON (a Structure dict, a list of them, or a mapping id -> Structure dict), JSON lines (``.jsonl``,
one candidate per line, as `mi generate` writes its shards), ASE databases (``.db``, every row) and
formula-only CSVs (composition screening: the structure stays None). ``candidates.generate`` adds the
candidates of a generator (`mi.candidates.generate`) without files. Each of these may be compressed
(``.gz``, ``.bz2``, ``.xz``: ``Li2O.cif.gz``, ``POSCAR.bz2``); the id is that of the uncompressed name.

What VASP, ASE and the databases write: selective-dynamics flags and CONTCAR velocities are kept as site
properties (plain lists, so that they serialise); a VASP 4 POSCAR (no element line) takes its species from a
POTCAR beside it, else from ``candidates.species``, else from element symbols after the coordinates, and is
a failure otherwise (pymatgen would name the species H, He, Li...: never guessed). CIF blocks that hold no
structure by design (``data_global``: no cell, no atom sites) are skipped with a note when the file has a
structure block. Formulas may use Unicode subscripts, full-width letters and hydrate dots (``CuSO4·5H2O``).

Ids are stable and come from the source: the file stem for single-record files, ``<stem>:<record>``
otherwise, or the CSV ``id`` column / database ``id``/``name`` key where present. An entry that cannot be
read or is unphysical becomes a `Failure` naming file, record and reason; the others go on.

Hardening (tests/malformed.py is the corpus): text is UTF-8 or carries a byte-order mark, anything else is
refused with the offending byte; cells over ``candidates.max_atoms`` are refused from the count the file
declares, before parsing; a CIF whose sites do not make its own ``_chemical_formula_sum`` is reported as
truncated or edited; an extended XYZ file is split into frames first, so one bad frame costs only itself.
Left-handed lattices are valid (a choice of axes, not another crystal) and are kept as read; pymatgen's
POSCAR reader turns them right-handed, and whatever relaxes a structure must normalise them first.
Library exceptions are translated into a user's words (`_reason`).
"""

from __future__ import annotations

import bz2
import csv
import fnmatch
import functools
import glob
import gzip
import io
import json
import lzma
import math
import re
import tempfile
import unicodedata
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Composition, Structure

from mi.candidates.base import Candidate, Failure, composition_hash, structure_hash
from mi.candidates.validate import composition_problem, structure_problem
from mi.config import CandidatesConfig
from mi.errors import InputError

STRUCTURE_SUFFIXES = {".cif", ".mcif", ".vasp", ".poscar", ".xyz", ".extxyz", ".json", ".jsonl", ".db"}
TABLE_SUFFIXES = {".csv"}
COMPRESSED_SUFFIXES = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
# A compressed file may expand a thousandfold: stop reading past this (a structure file is never near it).
MAX_DECOMPRESSED_BYTES = 1 << 30


class _BadRecord(Exception):
    """One record of a file is unusable; the reason is the message."""


class _BadFile(Exception):
    """A whole file is unusable; the reason is the message (already in a user's words)."""


class _NoStructure(Exception):
    """A record that holds no structure by design (a CIF ``data_global`` block); the message says which."""


# --- compressed files -------------------------------------------------------------------------------


def uncompressed_name(path: Path) -> str:
    """The file name without a compression suffix: ``Li2O.cif.gz`` -> ``Li2O.cif``."""
    suffix = path.suffix.lower()
    return path.name[: -len(suffix)] if suffix in COMPRESSED_SUFFIXES else path.name


def open_binary(path: Path):
    """The file's bytes, decompressed on the fly when it ends in ``.gz``, ``.bz2`` or ``.xz``."""
    opener = COMPRESSED_SUFFIXES.get(path.suffix.lower(), open)
    return opener(path, "rb")


def read_bytes(path: Path) -> bytes:
    """The whole file, decompressed; a damaged or oversized compressed file is a `_BadFile`."""
    if path.suffix.lower() not in COMPRESSED_SUFFIXES:
        return path.read_bytes()
    try:
        with open_binary(path) as fh:
            data = fh.read(MAX_DECOMPRESSED_BYTES + 1)
    except Exception as exc:  # noqa: BLE001 - every codec has its own error types
        raise _BadFile(_reason(exc)) from None
    if len(data) > MAX_DECOMPRESSED_BYTES:
        raise _BadFile(f"decompresses to more than {MAX_DECOMPRESSED_BYTES >> 20} MiB (refused)")
    return data


def _is_decompression_error(exc: BaseException) -> bool:
    return isinstance(exc, (EOFError, gzip.BadGzipFile, lzma.LZMAError, zlib.error)) or (
        isinstance(exc, OSError) and "Invalid data stream" in str(exc)
    )


# Byte-order marks: a file that starts with one is decoded accordingly (Windows tools write UTF-16 with a BOM).
_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


def read_text(path: Path) -> tuple[str, str]:
    """(text, encoding) of a structure or table file.

    UTF-8; a byte-order mark selects UTF-8/16/32 (Windows tools write UTF-16 with one). Anything else is
    refused rather than guessed: Latin-1 would read any bytes, garbage included. NUL bytes without a BOM
    mean binary data (or UTF-16 without its mark).
    """
    data = read_bytes(path)
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom) :].decode(encoding.replace("-sig", "")), encoding
            except UnicodeDecodeError as exc:
                raise _BadFile(
                    f"starts with a {encoding} byte-order mark but is not {encoding} text "
                    f"(bad bytes at offset {exc.start + len(bom)})"
                ) from None
    nul = data.find(b"\x00")
    if nul >= 0:
        raise _BadFile(f"binary data, not a text file (NUL byte at offset {nul}; UTF-16 text needs a byte-order mark)")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        raise _BadFile(
            f"not UTF-8 text (byte 0x{data[exc.start]:02X} at offset {exc.start}, e.g. Latin-1 accents or binary "
            "data); save it as UTF-8"
        ) from None


def file_kind(path: Path) -> str | None:
    """The format of `path` (compressed or not), or None for a file that is not a candidate file."""
    inner = Path(uncompressed_name(path))
    name = inner.name.upper()
    if name.startswith(("POSCAR", "CONTCAR")):
        return "poscar"
    suffix = inner.suffix.lower()
    return {
        ".cif": "cif",
        ".mcif": "cif",
        ".vasp": "poscar",
        ".poscar": "poscar",
        ".xyz": "extxyz",
        ".extxyz": "extxyz",
        ".json": "json",
        ".jsonl": "jsonl",
        ".db": "ase_db",
        ".csv": "csv",
    }.get(suffix)


def expand_sources(
    sources: list[str], resolve: Callable[[str], Path], skipped: list[Path] | None = None
) -> list[Path]:
    """Files named by the config, in a stable order. A source that matches nothing is a fatal error.

    Files of a folder that are not candidate files (a README, a POTCAR) are left out; when `skipped` is
    given, they are appended to it, so that the read summary can count them.
    """
    files: list[Path] = []
    for i, spec in enumerate(sources):
        path = resolve(spec)
        if any(ch in spec for ch in "*?["):
            matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
            if not matches:
                raise InputError(f"candidates.sources[{i}]: {spec!r} matches no file (looked for {path})")
            files.extend(matches)
        elif path.is_dir():
            every = sorted(p for p in path.rglob("*") if p.is_file())
            matches = [p for p in every if file_kind(p) is not None]
            if skipped is not None:
                skipped.extend(p for p in every if file_kind(p) is None)
            if not matches:
                raise InputError(f"candidates.sources[{i}]: folder {path} holds no readable candidate files")
            files.extend(matches)
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(f"candidates.sources[{i}]: {spec!r} does not exist (looked for {path})")
    seen: set[Path] = set()
    unique = []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def display_path(path: Path) -> str:
    """A path as users will recognise it: relative to the working directory when below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


# --- per-format record iterators: yield (record, suggested_id, Structure | Composition | _BadRecord) ------
# Each gets the file's text and `max_atoms`: a cell with more sites than that is refused from the count its
# file declares, before pymatgen builds (and neighbour-searches) tens of thousands of sites.


def text_of(path: Path) -> str:
    """`read_text` for readers outside this module (training datasets): the text, or an InputError naming the
    file and what is wrong with its bytes."""
    try:
        return read_text(path)[0]
    except _BadFile as exc:
        raise InputError(f"{display_path(path)}: {exc}") from None


def too_many_sites(n: int, max_atoms: int) -> str | None:
    """Why a cell of `n` sites is refused (more than `max_atoms`), or None."""
    refused = _too_many(n, max_atoms)
    return str(refused) if refused is not None else None


def _too_many(n: int, max_atoms: int, what: str = "sites") -> _BadRecord | None:
    if n > max_atoms:
        return _BadRecord(f"{n} {what} is more than candidates.max_atoms={max_atoms} (refused before parsing)")
    return None


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
        raise _BadFile("no data block found (not a CIF?)")
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
                yield f"data_{name}", stem, _NoStructure(f"CIF block data_{name} skipped: no cell and no atom sites")
        blocks = structural
    for name, block in blocks:
        record = f"data_{name}"
        candidate_id = stem if len(blocks) == 1 else f"{stem}:{name}"
        rows = next((block.data[k] for k in sites if k in block.data), [])
        n_rows = len(rows) if isinstance(rows, list) else 1
        if n_rows == 0:
            yield record, candidate_id, _BadRecord("no atom sites (no _atom_site_fract_x loop)")
            continue
        refused = _too_many(n_rows, max_atoms, "atom sites")
        if refused:
            yield record, candidate_id, refused
            continue
        bad_length = _bad_cell_length(block.data)
        if bad_length:
            yield record, candidate_id, _BadRecord(bad_length)
            continue
        try:
            parser = CifParser.from_str(str(block))
            structures = parser.parse_structures(primitive=False, on_error="raise")
            if not structures:
                raise ValueError("no structure could be built from this block")
            mismatch = _formula_mismatch(structures[0], block.data.get("_chemical_formula_sum"))
            yield record, candidate_id, _BadRecord(mismatch) if mismatch else structures[0]
        except Exception as exc:  # noqa: BLE001 - one bad block must not stop the others
            yield record, candidate_id, _BadRecord(_reason(exc, "cif"))


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
        raise _BadRecord(f"{path.name} beside it has no TITEL or VRHFIN lines naming elements (not a POTCAR?)")
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


def _vasp4_species(path: Path, cfg: CandidatesConfig, n_types: int) -> list[str] | _BadRecord | None:
    """The species of a VASP 4 POSCAR with `n_types` counts: from a POTCAR beside it, else from
    ``candidates.species``; a failure when they disagree or do not match the counts; None when neither
    gives any."""
    try:
        potcar = _potcar_species(path.parent)
    except _BadRecord as exc:
        return exc
    configured = _configured_species(path, cfg.species)
    if potcar and configured and potcar[1] != configured:
        return _BadRecord(
            f"VASP 4 POSCAR: {potcar[0]} beside it gives species {' '.join(potcar[1])} but candidates.species "
            f"gives {' '.join(configured)}"
        )
    origin, symbols = (potcar[0] + " beside it", potcar[1]) if potcar else ("candidates.species", configured)
    if symbols is not None and len(symbols) != n_types:
        return _BadRecord(
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
            refused = _too_many(sum(int(tok) for tok in candidate), max_atoms)
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
            yield "0", stem, _BadRecord(f"scale factor {' '.join(lines[1])} on line 2 is zero or not finite")
            return
    # VASP 4 has no element line: line 6 holds the counts.
    vasp4 = len(lines) > 5 and bool(lines[5]) and all(tok.isdigit() for tok in lines[5])
    species = species_of(len(lines[5])) if vasp4 else None
    if isinstance(species, _BadRecord):
        yield "0", stem, species
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        poscar = Poscar.from_str(text, default_names=species, read_velocities=True)
    if vasp4 and species is None and any("false names" in str(w.message) for w in caught):
        yield "0", stem, _BadRecord(
            "VASP 4 POSCAR: no element line, no POTCAR beside it and no candidates.species for it; the species "
            "are not guessed (give them in candidates.species, or put the run's POTCAR next to the file)"
        )
        return
    yield "0", stem, poscar.structure


def _extxyz_frames(text: str) -> Iterator[tuple[int, str | _BadRecord]]:
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
            yield frame, _BadRecord(
                f"line {i + 1}: expected the atom count of a frame, found {head[:40]!r}; the rest of the file is skipped"
            )
            return
        body = lines[i : i + n + 2]
        if len(body) < n + 2:
            yield frame, _BadRecord(f"frame starting on line {i + 1} declares {n} atoms but the file ends early")
            return
        yield frame, "\n".join(body) + "\n"
        i += n + 2
        frame += 1


def _iter_extxyz(text: str, stem: str, max_atoms: int):
    from ase.io.extxyz import read_xyz
    from pymatgen.io.ase import AseAtomsAdaptor

    frames = list(_extxyz_frames(text))
    if not frames:
        raise _BadFile("no frame found (not an extended XYZ file?)")
    single = len(frames) == 1
    for i, frame in frames:
        candidate_id = stem if single else f"{stem}:{i}"
        if isinstance(frame, _BadRecord):
            yield str(i), candidate_id, frame
            continue
        refused = _too_many(int(frame.split("\n", 1)[0]), max_atoms)
        if refused:
            yield str(i), candidate_id, refused
            continue
        try:
            atoms = next(read_xyz(io.StringIO(frame), 0))
            candidate_id = str(atoms.info.get("id", candidate_id))
            if not atoms.pbc.all() or not abs(atoms.cell.volume) > 1e-9:
                yield str(i), candidate_id, _BadRecord("frame has no periodic 3D cell (Lattice/pbc missing)")
                continue
            yield str(i), candidate_id, AseAtomsAdaptor.get_structure(atoms)
        except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the others
            yield str(i), candidate_id, _BadRecord(_reason(exc, "extxyz"))


def _structure_from_dict(d: Any, max_atoms: int) -> Structure | _BadRecord:
    if not isinstance(d, dict) or "lattice" not in d or "sites" not in d:
        return _BadRecord("not a pymatgen Structure dict (needs 'lattice' and 'sites')")
    if isinstance(d["sites"], list):
        refused = _too_many(len(d["sites"]), max_atoms)
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
        raise _BadFile("expected a pymatgen Structure dict, a list of them, or a mapping id -> Structure dict")
    for record, candidate_id, d in items:
        try:
            yield record, candidate_id, _structure_from_dict(d, max_atoms)
        except Exception as exc:  # noqa: BLE001
            yield record, candidate_id, _BadRecord(_reason(exc, "json"))


def _iter_jsonl(path: Path, stem: str, max_atoms: int):
    from mi.candidates.generate.shards import record_item

    with open_binary(path) as fh:  # line by line: shards can be large
        for n, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            record, candidate_id = f"line {n}", f"{stem}:{n}"
            try:
                if b"\x00" in raw:
                    raise _BadRecord("binary data (NUL bytes) in this line")
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise _BadRecord(f"not UTF-8 text (byte 0x{raw[exc.start]:02X} at offset {exc.start})") from None
                data = json.loads(line)
                if isinstance(data, dict) and data.get("id") not in (None, ""):
                    candidate_id = str(data["id"])
                structure = data.get("structure") if isinstance(data, dict) else None
                sites = structure.get("sites") if isinstance(structure, dict) else None
                sites = data.get("species") if isinstance(data, dict) and sites is None else sites
                if isinstance(sites, list):
                    refused = _too_many(len(sites), max_atoms)
                    if refused:
                        yield record, candidate_id, refused
                        continue
                yield record, candidate_id, record_item(data)
            except _BadRecord as exc:
                yield record, candidate_id, exc
            except Exception as exc:  # noqa: BLE001 - one bad line must not stop the others
                yield record, candidate_id, _BadRecord(_reason(exc, "jsonl"))


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
            refused = _too_many(int(row.natoms), max_atoms)
            if refused:
                yield str(row.id), candidate_id, refused
                continue
            try:
                atoms = row.toatoms()
                if not atoms.pbc.all() or not abs(atoms.cell.volume) > 1e-9:
                    raise ValueError("row has no periodic 3D cell")
                yield str(row.id), candidate_id, AseAtomsAdaptor.get_structure(atoms)
            except Exception as exc:  # noqa: BLE001
                yield str(row.id), candidate_id, _BadRecord(_reason(exc, "ase_db"))


_SYMBOL = re.compile(r"([A-Z][a-z]?)\s*([-+]?[0-9.eE+-]*)")


_HYDRATE_DOT = re.compile(r"\s*[\u00b7\u2022\u2219\u22c5\u30fb*]\s*")


def plain_formula(formula: str) -> str:
    """A formula as pymatgen reads it: full-width letters and sub/superscript digits made ASCII (NFKC:
    ``Li₂O``, ``ＬｉＦｅＰＯ４``), and hydrate dots written as groups (``CuSO4·5H2O`` -> ``CuSO4(H2O)5``).
    A plain '.' stays a decimal point (``Li0.5CoO2``)."""
    text = unicodedata.normalize("NFKC", formula).strip()
    head, *adducts = _HYDRATE_DOT.split(text)
    groups = []
    for part in adducts:
        match = re.fullmatch(r"(\d+(?:\.\d+)?)?\s*(\S.*)", part)
        if not match:
            raise ValueError(f"nothing after a hydrate dot in {formula!r}")
        groups.append(f"({match.group(2)}){match.group(1) or ''}")
    return head + "".join(groups)


def _parse_formula(formula: str) -> Composition:
    """A Composition, refusing what pymatgen would silently change: zero amounts ('Li0O' reads as O)."""
    formula = plain_formula(formula)
    for symbol, amount in _SYMBOL.findall(formula):
        try:
            if amount and float(amount) == 0:
                raise ValueError(f"amount of {symbol} is zero")
        except ValueError as exc:
            if "zero" in str(exc):
                raise
    return Composition(formula)


def _iter_csv(text: str, stem: str, formula_column: str, id_column: str):
    if text.startswith("\ufeff"):
        text = text[1:]
    reader = csv.DictReader(io.StringIO(text), strict=True)
    if reader.fieldnames is None or formula_column not in reader.fieldnames:
        raise _BadFile(
            f"no {formula_column!r} column (candidates.formula_column); columns are {reader.fieldnames or []}"
        )
    line = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # a broken quote swallows the rest of the file: say so and stop
            yield f"line {reader.line_num}", f"{stem}:{reader.line_num}", _BadRecord(f"not valid CSV here: {exc}")
            return
        line = reader.line_num
        record = f"line {line}"
        candidate_id = (row.get(id_column) or "").strip() or f"{stem}:{line}"
        formula = row.get(formula_column)
        if formula is None:
            yield record, candidate_id, _BadRecord(f"field {formula_column!r} is missing (the row is too short)")
            continue
        formula = formula.strip()
        if not formula:
            yield record, candidate_id, _BadRecord(f"field {formula_column!r} is empty")
            continue
        try:
            yield record, candidate_id, _parse_formula(formula)
        except Exception as exc:  # noqa: BLE001
            yield record, candidate_id, _BadRecord(
                f"field {formula_column!r}: cannot parse formula {formula[:60]!r}: {_reason(exc, 'csv')}"
            )


# Library errors whose own text means nothing to a user: what they mean in a structure file.
_PLAIN = {
    IndexError: "the file ends early or a line has too few fields (truncated or garbled?)",
    StopIteration: "the file ends early (truncated?)",
    ZeroDivisionError: "a zero where a length, count or scale is needed",
    OverflowError: "a number is too large",
    RecursionError: "nested too deeply",
    MemoryError: "too large to read into memory",
}


_CONTEXT = {
    "cif": "CIF not understood",
    "poscar": "POSCAR not understood",
    "extxyz": "extended XYZ frame not understood",
    "json": "not a valid pymatgen Structure dict",
    "jsonl": "not a valid record",
    "ase_db": "database row not understood",
    "csv": "not understood",
}


def _reason(exc: BaseException, kind: str = "") -> str:
    """A library exception in a user's words: what went wrong, never just a Python message on its own."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    # pymatgen's CIF parser says "No structure parsed for section 1 in CIF." first and the cause after it
    lines = [line for line in lines if not line.startswith("No structure parsed")] or lines
    text = "; ".join(lines)[:300]
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
    if _is_decompression_error(exc):
        detail = text or type(exc).__name__
        return f"compressed data is damaged or truncated, or not in the format its suffix says ({detail})"
    if isinstance(exc, UnicodeDecodeError):
        return f"not text in a known encoding ({exc.reason} at byte {exc.start})"
    for cls, plain in _PLAIN.items():
        if isinstance(exc, cls):
            return plain
    if isinstance(exc, KeyError):
        key = text.strip("'\"")
        if re.fullmatch(r"[A-Z][a-z]?", key) or re.fullmatch(r"[A-Z][a-z]{0,2}", key):
            return f"unknown element {key!r}"
        return f"required field {text} is missing"
    if "could not convert string to float" in text or "invalid literal for int" in text:
        bad = text.split(":", 1)[1].strip() if ":" in text else text
        return f"a number could not be read: {bad}"
    if "is not a valid Element" in text or "Invalid element" in text:
        return f"unknown element: {text}"
    if "not a multiple of" in text or "argument 2 is longer" in text or "argument 1 is longer" in text:
        return "a table (loop) has a row with missing or extra values (truncated or garbled?)"
    if "with a sequence" in text or "inhomogeneous" in text or "cannot reshape" in text or "wrong shape" in text:
        return f"rows of numbers have the wrong length (a line with missing or extra values: truncated or garbled?): {text}"
    if "Singular matrix" in text or "singular" in text.lower():
        return "the cell is degenerate (zero volume: impossible lengths or angles)"
    if "exceeded tolerance" in text or "occupancies sum to more than 1" in text.lower():
        return f"site occupancies sum to more than 1 ({text})"
    context = _CONTEXT.get(kind, "cannot be read")
    return f"{context}: {text}" if text else f"{context} ({type(exc).__name__})"


# --- the public reader ---------------------------------------------------------------------------------


def iter_file(path: Path, cfg: CandidatesConfig) -> Iterator[Candidate | Failure]:
    """Every record of one file, as a Candidate or a Failure."""
    source = display_path(path)
    kind = file_kind(path)
    name = uncompressed_name(path)  # Li2O.cif.gz has the id of Li2O.cif
    # VASP folders hold many files called POSCAR/CONTCAR: name those by their folder.
    stem = f"{path.resolve().parent.name}/{name}" if name.upper() in ("POSCAR", "CONTCAR") else Path(name).stem
    if kind is None:
        yield Failure(source, "", "candidates", f"unsupported file type {path.suffix or path.name!r}")
        return
    if path.stat().st_size == 0:
        yield Failure(source, "", "candidates", "empty file", id=stem)
        return
    max_atoms = cfg.max_atoms
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen/ASE warn a lot about harmless CIF quirks
            if kind == "ase_db":
                records = _iter_ase_db(path, stem, max_atoms)
            elif kind == "jsonl":
                records = _iter_jsonl(path, stem, max_atoms)
            else:
                text, encoding = read_text(path)
                if not text.strip():
                    yield Failure(source, "", "candidates", "empty file (only white space)", id=stem)
                    return
                if "\r" in text:  # Windows (CRLF) and old Mac (CR) line endings
                    text = text.replace("\r\n", "\n").replace("\r", "\n")
                records = {
                    "cif": lambda: _iter_cif(text, stem, max_atoms),
                    "poscar": lambda: _iter_poscar(text, stem, max_atoms, lambda n: _vasp4_species(path, cfg, n)),
                    "extxyz": lambda: _iter_extxyz(text, stem, max_atoms),
                    "json": lambda: _iter_json(text, stem, max_atoms),
                    "csv": lambda: _iter_csv(text, stem, cfg.formula_column, cfg.id_column),
                }[kind]()
            n_records = 0
            notes: list[str] = []  # records skipped by design; the file's next candidate carries them
            for record, candidate_id, item in records:
                if isinstance(item, _NoStructure):
                    notes.append(f"{source}: {item}")
                    continue
                n_records += 1
                made = _make_candidate(source, record, candidate_id, item, cfg)
                if notes and isinstance(made, Candidate):
                    made.meta["notes"], notes = notes, []
                yield made
            if n_records == 0:
                yield Failure(source, "", "candidates", f"no records in this {kind} file (empty or blank)", id=stem)
    except _BadFile as exc:
        reason = str(exc) if str(exc).startswith(("not UTF-8", "binary")) else f"cannot read {kind} file: {exc}"
        yield Failure(source, "", "candidates", reason, id=stem)
    except Exception as exc:  # noqa: BLE001 - a file that cannot be parsed at all is one failure
        yield Failure(source, "", "candidates", f"cannot read {kind} file: {_reason(exc, kind)}", id=stem)


def _make_candidate(source: str, record: str, candidate_id: str, item, cfg: CandidatesConfig) -> Candidate | Failure:
    if isinstance(item, _BadRecord):
        return Failure(source, record, "candidates", str(item), id=candidate_id)
    if isinstance(item, Structure):
        _plain_site_properties(item)
        structure, composition = item, item.composition
        problem = structure_problem(
            item,
            min_distance_A=cfg.min_distance_A,
            min_volume_per_atom_A3=cfg.min_volume_per_atom_A3,
            max_atoms=cfg.max_atoms,
        )
        content_hash = structure_hash(item) if not problem else ""
    else:
        structure, composition = None, item
        problem = composition_problem(item)
        content_hash = composition_hash(item) if not problem else ""
    if problem:
        return Failure(source, record, "candidates", problem, id=candidate_id)
    return Candidate(candidate_id, source, record, composition, structure, content_hash)


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _plain_site_properties(structure: Structure) -> None:
    """Site properties as plain lists and numbers (selective-dynamics flags, velocities and ASE arrays come
    as numpy arrays, which JSON cannot write); one that still is not JSON is dropped."""
    for key in list(structure.site_properties):
        values = [_plain(v) for v in structure.site_properties[key]]
        try:
            json.dumps(values)
        except (TypeError, ValueError):
            structure.remove_site_property(key)
            continue
        structure.add_site_property(key, values)


def generator_config(cfg: CandidatesConfig, resolve: Callable[[str], Path]):
    """The `GenerateConfig` of ``candidates.generate``: inline, or the ``generate`` section of a config file."""
    from mi.config import load_generate_config

    if cfg.generate is None or not isinstance(cfg.generate, str):
        return cfg.generate
    return load_generate_config(resolve(cfg.generate)).generate


def iter_generated(cfg: CandidatesConfig, resolve: Callable[[str], Path]) -> Iterator[Candidate | Failure]:
    """The candidates of ``candidates.generate``, validated like read ones (source ``generate:<family>``)."""
    from mi.candidates.generate import generate

    for g in generate(generator_config(cfg, resolve)):
        item = g.structure if g.structure is not None else g.composition
        yield _make_candidate(f"generate:{g.family}", "", g.id, item, cfg)


__all__ = [
    "expand_sources",
    "iter_file",
    "iter_generated",
    "generator_config",
    "file_kind",
    "display_path",
    "plain_formula",
    "uncompressed_name",
]
