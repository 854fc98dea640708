"""Datasets for training and evaluation: formulas (and, where known, structures) with one column per target.

A `Dataset` is a frame with a ``formula`` column and one float column per target (NaN where unknown),
indexed by row id; ``structures`` holds a pymatgen Structure (or None) per row. Loaders:

* ``pymatgen_exp_formation_enthalpy``: the 2,135 experimental formation enthalpies pymatgen ships in
  ``pymatgen/analysis/compatibility/exp_compounds.json.gz``;
* ``table`` (alias ``csv``): one reader for CSV, JSON, extended XYZ and ASE databases (`read_table`);
* ``obelix``: OBELiX-format conductivity data (`load_obelix`);
* ``materials_project``: the Materials Project through ``mp-api`` (`load_materials_project`; the conversion
  is `mp_docs_to_dataset`, testable offline);
* ``matbench``: a Matbench task through matminer (`load_matbench`; conversion `matbench_frame_to_dataset`).

Rows that cannot be read become `Failure`s on the dataset (``failures``); the others go on.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import Composition, Structure

from mi.candidates.base import Candidate, Failure, composition_hash, structure_hash
from mi.candidates.formats import table_reader_for, table_suffixes
from mi.candidates.textio import too_many_sites
from mi.config import CandidatesConfig, DatasetConfig
from mi.errors import ConfigError, InputError

EXP_FORMATION_ENTHALPY = "formation_enthalpy_eV_atom"

EXP_FORMATION_ENTHALPY_INFO: dict[str, Any] = {
    "name": "pymatgen_exp_formation_enthalpy",
    "description": (
        "Experimental standard formation enthalpies at 298 K of 2,135 inorganic compounds, converted from "
        "eV per formula unit to eV/atom"
    ),
    "source": "pymatgen/analysis/compatibility/exp_compounds.json.gz (distributed with pymatgen, MIT license)",
    "provenance": (
        "the experimental set pymatgen uses to fit its MP2020 energy corrections (Wang, Kingsbury, McDermott, "
        "Horton, Jain, Ong, Dwaraknath, Persson, 'A framework for quantifying uncertainty in DFT energy "
        "corrections', Sci. Rep. 11, 15496 (2021), doi:10.1038/s41598-021-94550-5); enthalpies compiled there "
        "chiefly from standard thermochemical tables (Kubaschewski et al., NIST-JANAF)"
    ),
    "units": {EXP_FORMATION_ENTHALPY: "eV/atom"},
}

OBELIX_TARGET = "log10_conductivity_S_cm"
OBELIX_CENSORED = 1e-15  # OBELiX's convention for conductivities reported as "<1E-10" or "<1E-8" S/cm
OBELIX_INFO: dict[str, Any] = {
    "name": "obelix",
    "description": "room-temperature ionic conductivity of solid Li-ion conductors, as log10(S/cm)",
    "license": "CC BY 4.0",
    "attribution": (
        "Therrien et al., 'OBELiX: A Curated Dataset of Crystal Structures and Experimentally Measured Ionic "
        "Conductivities for Lithium Solid-State Electrolytes' (2025)"
    ),
    "convention": "conductivities given as '<1E-10' or '<1E-8' S/cm are 1e-15 S/cm (OBELiX's convention)",
}

# Units of the Materials Project summary fields a model is likely to learn.
MP_UNITS = {
    "formation_energy_per_atom": "eV/atom",
    "energy_above_hull": "eV/atom",
    "energy_per_atom": "eV/atom",
    "uncorrected_energy_per_atom": "eV/atom",
    "band_gap": "eV",
    "efermi": "eV",
    "density": "g/cm^3",
    "volume": "A^3",
    "total_magnetization": "muB/f.u.",
}


@dataclass(frozen=True)
class Dataset:
    """Formulas, one column per target (NaN where unknown), optional structures, units, provenance."""

    frame: pd.DataFrame  # index: row ids; columns: formula, <target>...
    units: dict[str, str]
    info: dict[str, Any] = field(default_factory=dict)
    structures: tuple[Structure | None, ...] | None = None  # one per row, or None for composition-only data
    failures: tuple[Failure, ...] = ()

    @property
    def targets(self) -> list[str]:
        return [c for c in self.frame.columns if c != "formula"]

    def __len__(self) -> int:
        return len(self.frame)

    def structure(self, i: int) -> Structure | None:
        return self.structures[i] if self.structures is not None else None

    def subset(self, rows: Sequence[int] | np.ndarray) -> Dataset:
        """The rows at these positions (structures, units and info kept)."""
        rows = np.asarray(rows, dtype=np.int64)
        structures = tuple(self.structures[i] for i in rows) if self.structures is not None else None
        return Dataset(self.frame.iloc[rows], dict(self.units), dict(self.info), structures, self.failures)

    def select(self, targets: Sequence[str]) -> Dataset:
        """Only these target columns (KeyError names the absent ones)."""
        absent = [t for t in targets if t not in self.frame.columns]
        if absent:
            raise InputError(f"the dataset lacks target column(s) {', '.join(absent)} (has: {', '.join(self.targets)})")
        frame = self.frame[["formula", *targets]]
        return Dataset(frame, {t: self.units.get(t, "") for t in targets}, dict(self.info), self.structures, self.failures)

    def candidates(self) -> tuple[list[Candidate], list[Failure]]:
        """A Candidate per readable row (id = the row id), and a Failure per row whose formula does not parse."""
        out, failures = [], []
        for i, (row_id, formula) in enumerate(zip(self.frame.index, self.frame["formula"])):
            structure = self.structure(i)
            try:
                composition = structure.composition if structure is not None else Composition(str(formula))
                if composition.num_atoms <= 0:
                    raise ValueError("no atoms")
            except Exception as exc:  # noqa: BLE001 - a bad row is reported, not fatal
                failures.append(Failure("dataset", str(row_id), "features", f"formula {formula!r}: {exc}", id=str(row_id)))
                continue
            digest = structure_hash(structure) if structure is not None else composition_hash(composition)
            out.append(Candidate(str(row_id), "dataset", str(row_id), composition, structure, digest))
        return out, failures


def _finish(
    ids: Sequence[str],
    formulas: Sequence[str],
    values: dict[str, Sequence[float]],
    structures: Sequence[Structure | None] | None,
    units: dict[str, str],
    info: dict[str, Any],
    failures: Iterable[Failure] = (),
) -> Dataset:
    frame = pd.DataFrame({"formula": [str(f) for f in formulas]}, index=pd.Index([str(i) for i in ids], name="id"))
    for target, column in values.items():
        frame[target] = pd.to_numeric(pd.Series(list(column), index=frame.index), errors="coerce").astype(float)
    if frame.index.has_duplicates:
        frame.index = pd.Index([str(i) for i in range(len(frame))], name="id")  # ids must identify rows
    keep_structures = structures is not None and any(s is not None for s in structures)
    return Dataset(
        frame,
        {t: units.get(t, "") for t in values},
        info,
        tuple(structures) if keep_structures else None,
        tuple(failures),
    )


# --- pymatgen's experimental formation enthalpies ---------------------------------------------------


def _exp_compounds_path() -> Path:
    import pymatgen.analysis

    # pymatgen.analysis is a namespace package in recent pymatgen (no __file__); use its path either way.
    folders = [Path(pymatgen.analysis.__file__).parent] if getattr(pymatgen.analysis, "__file__", None) else []
    folders += [Path(p) for p in getattr(pymatgen.analysis, "__path__", [])]
    for folder in folders:
        candidate = folder / "compatibility" / "exp_compounds.json.gz"
        if candidate.is_file():
            return candidate
    raise InputError("pymatgen's exp_compounds.json.gz was not found; is pymatgen installed completely?")


def load_exp_formation_enthalpy() -> pd.DataFrame:
    """DataFrame[formula, formation_enthalpy_eV_atom] from pymatgen's experimental compounds.

    The file gives 'exp energy' in eV per formula unit of the 'formula' as written (Ag2O: -0.32 eV for
    two Ag and one O); dividing by that formula's number of atoms gives eV/atom.
    """
    with gzip.open(_exp_compounds_path(), "rt", encoding="utf-8") as handle:
        entries = json.load(handle)
    rows = []
    for entry in entries:
        formula = entry["formula"]
        rows.append((formula, float(entry["exp energy"]) / Composition(formula).num_atoms))
    return pd.DataFrame(rows, columns=["formula", EXP_FORMATION_ENTHALPY])


# --- tables: CSV, JSON, extended XYZ, ASE databases, through the screens' readers (mi.candidates.formats) ---

# the screens' limit (candidates.max_atoms): a training structure larger than any screen reads is refused
MAX_ATOMS = CandidatesConfig.model_fields["max_atoms"].default


def _quiet_structure_from_file(path: Path) -> Structure:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns about harmless CIF quirks (rounded occupancies, ...)
        return Structure.from_file(str(path))


def _ase_structure(atoms) -> Structure:
    from pymatgen.io.ase import AseAtomsAdaptor

    if (refused := too_many_sites(len(atoms), MAX_ATOMS)) is not None:
        raise ValueError(refused)
    if not all(atoms.pbc) or abs(atoms.cell.volume) < 1e-8:
        raise ValueError("not a periodic crystal (no cell or pbc off)")
    return AseAtomsAdaptor.get_structure(atoms)


def read_table(
    path: str | Path,
    targets: dict[str, str],
    units: dict[str, str] | None = None,
    formula_column: str = "formula",
    structure_column: str | None = None,
    info: dict[str, Any] | None = None,
) -> Dataset:
    """Read a CSV, JSON, extended XYZ or ASE database of formulas or structures plus target columns.

    `targets` maps target name -> column (CSV/JSON column, extended-XYZ ``info`` key or calculator result,
    ASE-database key). Structures come from the frames of extended XYZ and ASE databases, or from
    `structure_column`: pymatgen Structure dicts (JSON) or structure file paths relative to the table (CSV).
    Without a structure, the formula comes from `formula_column`. Units: `units`, else those a JSON file
    declares at its top level (``{"data": [...], "units": {...}}``).
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"dataset.path: {path}: file not found")
    reader = table_reader_for(path)
    if reader is None:
        raise ConfigError(f"dataset.path: {path}: unknown table format (use {', '.join(table_suffixes())})")
    records, file_units = reader.rows(path)
    if records and records[0][2] is None:  # a table of columns (CSV, JSON), not of frames: check them first
        first = records[0][1]
        wanted = [*targets.values(), *([structure_column] if structure_column else [])]
        if not structure_column:
            wanted.append(formula_column)
        missing = [c for c in wanted if c not in first]
        if missing:
            raise InputError(f"{path}: missing column(s) {', '.join(missing)} (has: {', '.join(map(str, first))})")
    ids, formulas, structures, failures = [], [], [], []
    values: dict[str, list[float]] = {t: [] for t in targets}
    for row_id, columns, atoms in records:
        try:
            structure = None
            if atoms is not None:
                structure = _ase_structure(atoms)
            elif structure_column:
                item = columns.get(structure_column)
                if isinstance(item, dict):
                    if (refused := too_many_sites(len(item.get("sites", ())), MAX_ATOMS)) is not None:
                        raise ValueError(refused)
                    structure = Structure.from_dict(item)
                elif isinstance(item, str) and item.strip():
                    structure = _quiet_structure_from_file(path.parent / item.strip())
                    if (refused := too_many_sites(len(structure), MAX_ATOMS)) is not None:
                        raise ValueError(refused)
            formula = structure.composition.formula if structure is not None else str(columns[formula_column]).strip()
        except Exception as exc:  # noqa: BLE001 - a bad row is reported, not fatal
            failures.append(Failure(str(path), row_id, "dataset", f"{type(exc).__name__}: {exc}", id=row_id))
            continue
        ids.append(row_id)
        formulas.append(formula)
        structures.append(structure)
        for target, column in targets.items():
            value = columns.get(column)
            values[target].append(np.nan if value is None or value == "" else value)
    merged_units = {**file_units, **(units or {})}
    meta = {"name": path.stem, "source": str(path), "units": {t: merged_units.get(t, "") for t in targets}, **(info or {})}
    return _finish(ids, formulas, values, structures, merged_units, meta, failures)


# --- OBELiX -----------------------------------------------------------------------------------------


def obelix_conductivity(text: Any) -> float:
    """log10 of an OBELiX conductivity cell in S/cm: '<1E-10' and '<1E-8' are 1e-15 (OBELiX's convention)."""
    value = str(text).strip()
    if value.startswith("<"):
        return math.log10(OBELIX_CENSORED)
    try:
        number = float(value)
    except ValueError:
        return math.nan
    return math.log10(number) if number > 0 else math.nan


def load_obelix(path: str | Path) -> Dataset:
    """OBELiX-format data: a CSV (or a folder holding ``train.csv``) and CIFs in ``<csv stem>_cifs/<ID>.cif``.

    The target is ``log10_conductivity_S_cm``; a row's structure is its CIF where one exists (most have
    partial occupancies, kept as such), else None. A CIF that does not parse is reported and the row kept
    composition-only.
    """
    path = Path(path)
    csv_path = path / "train.csv" if path.is_dir() else path
    if not csv_path.is_file():
        raise ConfigError(f"dataset.path: {csv_path}: OBELiX CSV not found")
    cif_dir = csv_path.parent / f"{csv_path.stem}_cifs"
    table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    ids, formulas, structures, failures, values = [], [], [], [], []
    for row in table.to_dict("records"):
        row_id = row["ID"].strip()
        formula = row.get("Reduced Composition", "").strip() or row.get("True Composition", "").strip()
        try:
            Composition(formula)
        except Exception:  # noqa: BLE001 - OBELiX writes a few reduced formulas pymatgen does not parse
            formula = row.get("True Composition", "").strip()
        structure = None
        cif = cif_dir / f"{row_id}.cif"
        if cif.is_file():
            try:
                structure = _quiet_structure_from_file(cif)
            except Exception as exc:  # noqa: BLE001
                failures.append(Failure(str(cif), row_id, "dataset", f"CIF: {type(exc).__name__}: {exc}", id=row_id))
        ids.append(row_id)
        formulas.append(formula)
        structures.append(structure)
        values.append(obelix_conductivity(row["Ionic conductivity (S cm-1)"]))
    info = {**OBELIX_INFO, "source": str(csv_path), "cif_dir": str(cif_dir), "units": {OBELIX_TARGET: "log10(S/cm)"}}
    return _finish(ids, formulas, {OBELIX_TARGET: values}, structures, {OBELIX_TARGET: "log10(S/cm)"}, info, failures)


# --- Materials Project ------------------------------------------------------------------------------


def _doc_dict(doc: Any) -> dict[str, Any]:
    if isinstance(doc, dict):
        return doc
    if hasattr(doc, "model_dump"):
        return doc.model_dump()
    if hasattr(doc, "dict"):
        return doc.dict()
    return dict(vars(doc))


def mp_docs_to_dataset(docs: Iterable[Any], targets: dict[str, str], units: dict[str, str] | None = None) -> Dataset:
    """A Dataset from Materials Project summary documents (mp-api objects or their dicts).

    `targets` maps target name -> summary field (``formation_energy_per_atom``, ...); units default to
    `MP_UNITS`. Structures may be pymatgen objects or dicts; ids are the material ids.
    """
    ids, formulas, structures, failures = [], [], [], []
    values: dict[str, list[Any]] = {t: [] for t in targets}
    for i, raw in enumerate(docs):
        doc = _doc_dict(raw)
        row_id = str(doc.get("material_id") or i)
        try:
            structure = doc.get("structure")
            if isinstance(structure, dict):
                structure = Structure.from_dict(structure)
            formula = doc.get("formula_pretty") or (structure.composition.reduced_formula if structure else None)
            if not formula:
                raise ValueError("neither formula_pretty nor structure")
        except Exception as exc:  # noqa: BLE001
            failures.append(Failure("materials_project", row_id, "dataset", f"{type(exc).__name__}: {exc}", id=row_id))
            continue
        ids.append(row_id)
        formulas.append(formula)
        structures.append(structure)
        for target, column in targets.items():
            values[target].append(doc.get(column))
    merged = {t: (units or {}).get(t) or MP_UNITS.get(column, "") for t, column in targets.items()}
    info = {
        "name": "materials_project",
        "source": "Materials Project summary endpoint (mp-api)",
        "license": "CC BY 4.0",
        "attribution": "Jain et al., APL Mater. 1, 011002 (2013); cite the Materials Project database version used",
        "units": merged,
    }
    return _finish(ids, formulas, values, structures, merged, info, failures)


def load_materials_project(cfg: DatasetConfig) -> Dataset:
    """Query the Materials Project (extra ``mp``); the API key comes from ``MP_API_KEY``."""
    try:
        from mp_api.client import MPRester
    except ImportError:
        raise ConfigError("dataset.kind: materials_project needs mp-api: pip install 'mi[mp]'") from None
    key = os.environ.get("MP_API_KEY", "").strip()
    if not key:
        raise ConfigError("dataset.kind: materials_project needs an API key in the environment variable MP_API_KEY")
    fields = sorted({"material_id", "formula_pretty", "structure", *cfg.targets.values()})
    with MPRester(key) as rester:
        docs = rester.materials.summary.search(fields=fields, **cfg.query)
    dataset = mp_docs_to_dataset(docs, dict(cfg.targets), dict(cfg.units))
    return Dataset(dataset.frame, dataset.units, {**dataset.info, "query": dict(cfg.query)}, dataset.structures,
                   dataset.failures)


# --- Matbench ---------------------------------------------------------------------------------------


def matbench_frame_to_dataset(
    frame: pd.DataFrame, name: str, targets: dict[str, str] | None = None, units: dict[str, str] | None = None
) -> Dataset:
    """A Dataset from a Matbench frame (a ``structure`` or ``composition`` column plus the target column)."""
    inputs = [c for c in ("structure", "composition") if c in frame.columns]
    if not inputs:
        raise InputError(f"{name}: a Matbench frame has a 'structure' or 'composition' column")
    if not targets:
        others = [c for c in frame.columns if c not in inputs]
        if len(others) != 1:
            raise ConfigError(f"dataset.targets: {name} has columns {others}; name the target column")
        targets = {others[0]: others[0]}
    structures = list(frame["structure"]) if "structure" in frame.columns else None
    if structures is not None:
        structures = [Structure.from_dict(s) if isinstance(s, dict) else s for s in structures]
        formulas = [s.composition.formula for s in structures]
    else:
        formulas = [c.formula if isinstance(c, Composition) else str(c) for c in frame["composition"]]
    values = {t: frame[column].astype(float).tolist() for t, column in targets.items()}
    info = {"name": name, "source": f"Matbench {name} (matminer.datasets)", "units": dict(units or {})}
    return _finish([f"{name}-{i}" for i in range(len(frame))], formulas, values, structures, dict(units or {}), info)


def load_matbench(cfg: DatasetConfig) -> Dataset:
    """A Matbench task through matminer (downloaded by matminer on first use; not used in tests)."""
    try:
        from matminer.datasets import load_dataset as matminer_load
    except ImportError:
        raise ConfigError("dataset.kind: matbench needs matminer: pip install 'mi[matbench]'") from None
    assert cfg.name is not None  # the config guarantees it
    return matbench_frame_to_dataset(matminer_load(cfg.name), cfg.name, dict(cfg.targets) or None, dict(cfg.units))


# --- dispatch ---------------------------------------------------------------------------------------


def concat_datasets(parts: Sequence[Dataset]) -> Dataset:
    """The rows of `parts` stacked (ids ``<part>:<id>``); each part's missing targets are NaN."""
    targets = list(dict.fromkeys(t for part in parts for t in part.targets))
    frames = []
    for k, part in enumerate(parts):
        frame = part.frame.reindex(columns=["formula", *targets])
        frame.index = pd.Index([f"{k}:{i}" for i in frame.index], name="id")
        frames.append(frame)
    frame = pd.concat(frames) if frames else pd.DataFrame(columns=["formula", *targets])
    has_structures = any(part.structures is not None for part in parts)
    structures = (
        tuple(s for part in parts for s in (part.structures or (None,) * len(part))) if has_structures else None
    )
    units = {t: next((p.units[t] for p in parts if p.units.get(t)), "") for t in targets}
    info = {"name": "+".join(str(p.info.get("name", "?")) for p in parts), "parts": [dict(p.info) for p in parts]}
    return Dataset(frame, units, info, structures, tuple(f for p in parts for f in p.failures))


def load_dataset(
    cfg: DatasetConfig, path: str | Path | None = None, *, resolve: Callable[[str], Path] | None = None
) -> Dataset:
    """The dataset a `DatasetConfig` names; `path` is ``cfg.path`` resolved by the caller (config-relative).

    A ``concat`` dataset's parts have paths of their own: `resolve` (the config's resolver) turns them into
    files; without it they are read as given.
    """
    if cfg.kind == "concat":
        resolve = resolve or Path
        parts = [load_dataset(p, resolve(p.path) if p.path else None, resolve=resolve) for p in cfg.parts]
        dataset = concat_datasets(parts)
    elif cfg.kind == "pymatgen_exp_formation_enthalpy":
        frame = load_exp_formation_enthalpy()
        frame.index = pd.Index([str(i) for i in range(len(frame))], name="id")
        dataset = Dataset(frame, dict(EXP_FORMATION_ENTHALPY_INFO["units"]), dict(EXP_FORMATION_ENTHALPY_INFO))
    elif cfg.kind in ("table", "csv", "obelix"):
        if path is None:
            raise ConfigError(f"dataset.path: a {cfg.kind} dataset needs a path")
        if cfg.kind == "obelix":
            dataset = load_obelix(path)
        else:
            dataset = read_table(path, dict(cfg.targets), dict(cfg.units), cfg.formula_column, cfg.structure_column)
    elif cfg.kind == "materials_project":
        dataset = load_materials_project(cfg)
    elif cfg.kind == "matbench":
        dataset = load_matbench(cfg)
    else:
        raise ConfigError(f"dataset.kind: unknown dataset kind {cfg.kind!r}")
    if cfg.limit is not None and cfg.limit < len(dataset):
        dataset = dataset.subset(np.arange(cfg.limit))
    return dataset


def frame_hash(frame: pd.DataFrame, structures: Sequence[Structure | None] | None = None) -> str:
    """``sha256:<hex>`` of a dataset's content: column names, formulas, values to 10 significant digits, structures."""
    digest = hashlib.sha256()
    digest.update(json.dumps([str(c) for c in frame.columns]).encode())
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values):
            text = [None if np.isnan(v) else f"{v:.10g}" for v in values.to_numpy(dtype=float)]
        else:
            text = [str(v) for v in values]
        digest.update(json.dumps(text).encode())
    if structures is not None:
        digest.update(json.dumps([structure_hash(s) if s is not None else None for s in structures]).encode())
    return "sha256:" + digest.hexdigest()


def dataset_hash(dataset: Dataset) -> str:
    return frame_hash(dataset.frame[["formula", *dataset.targets]], dataset.structures)
