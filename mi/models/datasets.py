"""Training datasets: tables of formulas with one column per target, plus units and provenance.

* ``pymatgen_exp_formation_enthalpy``: the 2,135 experimental formation enthalpies pymatgen ships in
  ``pymatgen/analysis/compatibility/exp_compounds.json.gz``;
* ``csv``: a user table named by a `DatasetConfig` (its path resolved by the caller against the config).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import Composition

from mi.config import DatasetConfig
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


@dataclass(frozen=True)
class Dataset:
    """A formula column, one column per target (NaN where unknown), units, and where it came from."""

    frame: pd.DataFrame
    units: dict[str, str]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def targets(self) -> list[str]:
        return [c for c in self.frame.columns if c != "formula"]


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


def load_csv_dataset(cfg: DatasetConfig, path: str | Path) -> pd.DataFrame:
    """DataFrame[formula, <target>...] from a CSV; `path` is ``cfg.path`` already resolved by the caller.

    Target columns are renamed from the file's column names (``cfg.targets`` values) to the target names
    (its keys); empty or non-numeric cells become NaN (a missing target, masked in training).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"train.dataset.path: {path}: file not found")
    table = pd.read_csv(path)
    wanted = [cfg.formula_column, *cfg.targets.values()]
    missing = [c for c in wanted if c not in table.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)} (has: {', '.join(map(str, table.columns))})")
    frame = pd.DataFrame({"formula": table[cfg.formula_column].astype(str).str.strip()})
    for target, column in cfg.targets.items():
        frame[target] = pd.to_numeric(table[column], errors="coerce")
    return frame.reset_index(drop=True)


def load_dataset(cfg: DatasetConfig, path: str | Path | None = None) -> Dataset:
    """The dataset a `DatasetConfig` names; `path` is the resolved ``cfg.path`` for csv datasets."""
    if cfg.kind == "pymatgen_exp_formation_enthalpy":
        frame = load_exp_formation_enthalpy()
        return Dataset(frame, dict(EXP_FORMATION_ENTHALPY_INFO["units"]), dict(EXP_FORMATION_ENTHALPY_INFO))
    if cfg.kind == "csv":
        if path is None:
            raise ConfigError("train.dataset.path: a csv dataset needs a path")
        frame = load_csv_dataset(cfg, path)
        units = {t: cfg.units.get(t, "") for t in cfg.targets}
        info = {"name": Path(path).stem, "source": str(path), "units": units}
        return Dataset(frame, units, info)
    raise ConfigError(f"train.dataset.kind: unknown dataset kind {cfg.kind!r}")


def frame_hash(frame: pd.DataFrame) -> str:
    """``sha256:<hex>`` of a dataset table's content (column names, formulas, values to 10 significant digits)."""
    digest = hashlib.sha256()
    digest.update(json.dumps([str(c) for c in frame.columns]).encode())
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values):
            text = [None if np.isnan(v) else f"{v:.10g}" for v in values.to_numpy(dtype=float)]
        else:
            text = [str(v) for v in values]
        digest.update(json.dumps(text).encode())
    return "sha256:" + digest.hexdigest()
