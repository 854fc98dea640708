"""Read candidates from files, folders, globs and databases.

Supported: CIF (every data block is a record), VASP POSCAR/CONTCAR, extended XYZ (every frame),
pymatgen JSON (a Structure dict, a list of them, or a mapping id -> Structure dict), JSON lines (``.jsonl``,
one candidate per line, as `mi generate` writes its shards), ASE databases (``.db``, every row) and
formula-only CSVs (composition screening: the structure stays None). ``candidates.generate`` adds the
candidates of a generator (`mi.candidates.generate`) without files.

Ids are stable and come from the source: the file stem for single-record files, ``<stem>:<record>``
otherwise, or the CSV ``id`` column / database ``id``/``name`` key where present. An entry that cannot be
read or is unphysical becomes a `Failure` naming file, record and reason; the others go on.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from pymatgen.core import Composition, Structure

from mi.candidates.base import Candidate, Failure, composition_hash, structure_hash
from mi.candidates.validate import composition_problem, structure_problem
from mi.config import CandidatesConfig
from mi.errors import InputError

STRUCTURE_SUFFIXES = {".cif", ".mcif", ".vasp", ".poscar", ".xyz", ".extxyz", ".json", ".jsonl", ".db"}
TABLE_SUFFIXES = {".csv"}


class _BadRecord(Exception):
    """One record of a file is unusable; the reason is the message."""


def file_kind(path: Path) -> str | None:
    name = path.name.upper()
    if name.startswith(("POSCAR", "CONTCAR")):
        return "poscar"
    suffix = path.suffix.lower()
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


def expand_sources(sources: list[str], resolve: Callable[[str], Path]) -> list[Path]:
    """Files named by the config, in a stable order. A source that matches nothing is a fatal error."""
    files: list[Path] = []
    for i, spec in enumerate(sources):
        path = resolve(spec)
        if any(ch in spec for ch in "*?["):
            matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
            if not matches:
                raise InputError(f"candidates.sources[{i}]: {spec!r} matches no file (looked for {path})")
            files.extend(matches)
        elif path.is_dir():
            matches = sorted(p for p in path.rglob("*") if p.is_file() and file_kind(p) is not None)
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


# --- per-format record iterators: yield (record, suggested_id, Structure | Composition) ---------------


def _iter_cif(path: Path, stem: str):
    from pymatgen.io.cif import CifFile, CifParser

    text = path.read_text(encoding="utf-8", errors="strict")
    cif = CifFile.from_str(text)
    blocks = list(cif.data.items())
    if not blocks:
        raise _BadRecord("no data block found (not a CIF?)")
    for name, block in blocks:
        record = f"data_{name}"
        candidate_id = stem if len(blocks) == 1 else f"{stem}:{name}"
        try:
            parser = CifParser.from_str(str(block))
            structures = parser.parse_structures(primitive=False, on_error="raise")
            if not structures:
                raise ValueError("no structure could be built from this block")
            yield record, candidate_id, structures[0]
        except Exception as exc:  # noqa: BLE001 - one bad block must not stop the others
            yield record, candidate_id, _BadRecord(_reason(exc))


def _iter_poscar(path: Path, stem: str):
    from pymatgen.io.vasp import Poscar

    poscar = Poscar.from_str(path.read_text(encoding="utf-8"), read_velocities=False)
    yield "0", stem, poscar.structure


def _iter_extxyz(path: Path, stem: str):
    from ase.io import read
    from pymatgen.io.ase import AseAtomsAdaptor

    frames = read(str(path), index=":", format="extxyz")
    for i, atoms in enumerate(frames):
        candidate_id = str(atoms.info.get("id", stem if len(frames) == 1 else f"{stem}:{i}"))
        if not atoms.pbc.all() or abs(atoms.cell.volume) < 1e-9:
            yield str(i), candidate_id, _BadRecord("frame has no periodic 3D cell (Lattice/pbc missing)")
            continue
        yield str(i), candidate_id, AseAtomsAdaptor.get_structure(atoms)


def _iter_json(path: Path, stem: str):
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and "lattice" in data and "sites" in data:
        items = [("0", stem, data)]
    elif isinstance(data, list):
        items = [(str(i), f"{stem}:{i}", d) for i, d in enumerate(data)]
    elif isinstance(data, dict):
        items = [(str(k), str(k), d) for k, d in data.items()]
    else:
        raise _BadRecord("expected a pymatgen Structure dict, a list of them, or a mapping id -> Structure dict")
    for record, candidate_id, d in items:
        try:
            if not isinstance(d, dict) or "lattice" not in d or "sites" not in d:
                raise ValueError("not a pymatgen Structure dict (needs 'lattice' and 'sites')")
            yield record, candidate_id, Structure.from_dict(d)
        except Exception as exc:  # noqa: BLE001
            yield record, candidate_id, _BadRecord(_reason(exc))


def _iter_jsonl(path: Path, stem: str):
    from mi.candidates.generate.shards import record_item

    with open(path, encoding="utf-8") as fh:  # line by line: shards can be large
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            record, candidate_id = f"line {n}", f"{stem}:{n}"
            try:
                data = json.loads(line)
                if isinstance(data, dict) and data.get("id") not in (None, ""):
                    candidate_id = str(data["id"])
                yield record, candidate_id, record_item(data)
            except Exception as exc:  # noqa: BLE001 - one bad line must not stop the others
                yield record, candidate_id, _BadRecord(_reason(exc))


def _iter_ase_db(path: Path, stem: str):
    import ase.db
    from pymatgen.io.ase import AseAtomsAdaptor

    with ase.db.connect(str(path), type="db", create_indices=False) as db:
        for row in db.select():
            kv = row.key_value_pairs
            candidate_id = str(kv.get("id", kv.get("name", f"{stem}:{row.id}")))
            try:
                atoms = row.toatoms()
                if not atoms.pbc.all() or abs(atoms.cell.volume) < 1e-9:
                    raise ValueError("row has no periodic 3D cell")
                yield str(row.id), candidate_id, AseAtomsAdaptor.get_structure(atoms)
            except Exception as exc:  # noqa: BLE001
                yield str(row.id), candidate_id, _BadRecord(_reason(exc))


def _iter_csv(path: Path, stem: str, formula_column: str, id_column: str):
    text = path.read_text(encoding="utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or formula_column not in reader.fieldnames:
        raise _BadRecord(
            f"no {formula_column!r} column (candidates.formula_column); columns are {reader.fieldnames or []}"
        )
    for line, row in enumerate(reader, start=2):  # line 1 is the header
        record = f"line {line}"
        candidate_id = (row.get(id_column) or "").strip() or f"{stem}:{line}"
        formula = (row.get(formula_column) or "").strip()
        if not formula:
            yield record, candidate_id, _BadRecord(f"field {formula_column!r} is empty")
            continue
        try:
            yield record, candidate_id, Composition(formula)
        except Exception as exc:  # noqa: BLE001
            yield record, candidate_id, _BadRecord(f"field {formula_column!r}: cannot parse formula {formula!r}: {exc}")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --- the public reader ---------------------------------------------------------------------------------


def iter_file(path: Path, cfg: CandidatesConfig) -> Iterator[Candidate | Failure]:
    """Every record of one file, as a Candidate or a Failure."""
    source = display_path(path)
    kind = file_kind(path)
    # VASP folders hold many files called POSCAR/CONTCAR: name those by their folder.
    stem = f"{path.resolve().parent.name}/{path.name}" if path.name.upper() in ("POSCAR", "CONTCAR") else path.stem
    if kind is None:
        yield Failure(source, "", "candidates", f"unsupported file type {path.suffix or path.name!r}")
        return
    if path.stat().st_size == 0:
        yield Failure(source, "", "candidates", "empty file", id=stem)
        return
    records = {
        "cif": lambda: _iter_cif(path, stem),
        "poscar": lambda: _iter_poscar(path, stem),
        "extxyz": lambda: _iter_extxyz(path, stem),
        "json": lambda: _iter_json(path, stem),
        "jsonl": lambda: _iter_jsonl(path, stem),
        "ase_db": lambda: _iter_ase_db(path, stem),
        "csv": lambda: _iter_csv(path, stem, cfg.formula_column, cfg.id_column),
    }[kind]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen/ASE warn a lot about harmless CIF quirks
            for record, candidate_id, item in records():
                yield _make_candidate(source, record, candidate_id, item, cfg)
    except UnicodeDecodeError as exc:
        yield Failure(source, "", "candidates", f"not UTF-8 text ({exc.reason} at byte {exc.start})", id=stem)
    except Exception as exc:  # noqa: BLE001 - a file that cannot be parsed at all is one failure
        yield Failure(source, "", "candidates", f"cannot read {kind} file: {_reason(exc)}", id=stem)


def _make_candidate(source: str, record: str, candidate_id: str, item, cfg: CandidatesConfig) -> Candidate | Failure:
    if isinstance(item, _BadRecord):
        return Failure(source, record, "candidates", str(item), id=candidate_id)
    if isinstance(item, Structure):
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


def read_candidates(
    cfg: CandidatesConfig,
    resolve: Callable[[str], Path],
    *,
    strict: bool = False,
    files: list[Path] | None = None,
) -> tuple[list[Candidate], list[Failure]]:
    """All candidates of the configured sources, and the failures. Duplicate ids are failures too.

    With ``strict``, the first failure raises InputError (the CLI exits non-zero).
    """
    files = expand_sources(cfg.sources, resolve) if files is None else files
    candidates: list[Candidate] = []
    failures: list[Failure] = []
    first_seen: dict[str, Candidate] = {}
    streams = [iter_file(path, cfg) for path in files]
    if cfg.generate is not None:
        streams.append(iter_generated(cfg, resolve))
    for stream in streams:
        for item in stream:
            if isinstance(item, Candidate) and item.id in first_seen:
                first = first_seen[item.id]
                item = Failure(
                    item.source,
                    item.record,
                    "candidates",
                    f"duplicate id {item.id!r}: already read from {first.source} ({first.record})",
                    id=item.id,
                )
            if isinstance(item, Failure):
                if strict:
                    where = f"{item.source}" + (f", {item.record}" if item.record else "")
                    raise InputError(f"{where}: {item.reason} (--strict stops at the first failure)")
                failures.append(item)
            else:
                first_seen[item.id] = item
                candidates.append(item)
    return candidates, failures


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


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


__all__ = [
    "expand_sources",
    "iter_file",
    "iter_generated",
    "generator_config",
    "read_candidates",
    "sha256_file",
    "file_kind",
    "display_path",
]
