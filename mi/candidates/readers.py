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
Library exceptions are translated into a user's words (`textio.reason`).

Each format is a module of `mi.candidates.formats` (a one-file addition: suffixes and a read function,
found by registry); the bytes and text every format shares are in `mi.candidates.textio`.
"""

from __future__ import annotations

import glob
import json
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from mi.candidates.base import Candidate, Failure, composition_hash, structure_hash
from mi.candidates.formats import FileInput, reader_for
from mi.candidates.textio import (
    BadFile,
    BadRecord,
    NoStructure,
    display_path,
    plain_formula,
    read_text,
    reason,
    text_lines,
    uncompressed_name,
)
from mi.candidates.validate import composition_problem, structure_problem
from mi.config import CandidatesConfig
from mi.errors import InputError


def file_kind(path: Path) -> str | None:
    """The format of `path` (compressed or not), or None for a file that is not a candidate file."""
    reader = reader_for(path)
    return reader.kind if reader is not None else None


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


# --- the public reader ---------------------------------------------------------------------------------


def iter_file(path: Path, cfg: CandidatesConfig) -> Iterator[Candidate | Failure]:
    """Every record of one file, as a Candidate or a Failure."""
    source = display_path(path)
    reader = reader_for(path)
    name = uncompressed_name(path)  # Li2O.cif.gz has the id of Li2O.cif
    # VASP folders hold many files called POSCAR/CONTCAR: name those by their folder.
    stem = f"{path.resolve().parent.name}/{name}" if name.upper() in ("POSCAR", "CONTCAR") else Path(name).stem
    if reader is None:
        yield Failure(source, "", "candidates", f"unsupported file type {path.suffix or path.name!r}")
        return
    if path.stat().st_size == 0:
        yield Failure(source, "", "candidates", "empty file", id=stem)
        return
    kind = reader.kind
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen/ASE warn a lot about harmless CIF quirks
            text, lines = None, None
            if reader.reads_lines:
                lines = text_lines(path)  # a table of millions of rows is not read whole (None: it is)
            if reader.reads_text and lines is None:
                text, encoding = read_text(path)
                if not text.strip():
                    yield Failure(source, "", "candidates", "empty file (only white space)", id=stem)
                    return
                if "\r" in text:  # Windows (CRLF) and old Mac (CR) line endings
                    text = text.replace("\r\n", "\n").replace("\r", "\n")
            records = reader.records(FileInput(path, stem, cfg, text, lines))
            n_records = 0
            notes: list[str] = []  # records skipped by design; the file's next candidate carries them
            for record, candidate_id, item in records:
                if isinstance(item, NoStructure):
                    notes.append(f"{source}: {item}")
                    continue
                n_records += 1
                made = _make_candidate(source, record, candidate_id, item, cfg)
                if notes and isinstance(made, Candidate):
                    made.meta["notes"], notes = notes, []
                yield made
            if n_records == 0:
                yield Failure(source, "", "candidates", f"no records in this {kind} file (empty or blank)", id=stem)
    except BadFile as exc:
        reason_ = str(exc) if str(exc).startswith(("not UTF-8", "binary")) else f"cannot read {kind} file: {exc}"
        yield Failure(source, "", "candidates", reason_, id=stem)
    except Exception as exc:  # noqa: BLE001 - a file that cannot be parsed at all is one failure
        yield Failure(source, "", "candidates", f"cannot read {kind} file: {reason(exc, reader.context)}", id=stem)


def _make_candidate(source: str, record: str, candidate_id: str, item, cfg: CandidatesConfig) -> Candidate | Failure:
    if isinstance(item, BadRecord):
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
    from mi.candidates.generate.prototypes import check_jobs
    from mi.config import load_generate_config

    if cfg.generate is None or not isinstance(cfg.generate, str):
        return cfg.generate
    run_cfg = load_generate_config(resolve(cfg.generate))
    check_jobs(run_cfg)  # an unknown prototype or site named with that file and its key path
    return run_cfg.generate


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
