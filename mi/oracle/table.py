"""Labels read from a table computed elsewhere: DFT results, or a closed pool labelled in advance.

The table is any file `mi.models.datasets.read_table` reads (CSV, JSON, extended XYZ, ASE db). A candidate
is looked up by its id (the table's ``id`` column, or the row position where it has none), or by its
reduced formula (``match="formula"``); a candidate the table lacks, or whose row has no value for any
target, is a Failure that says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Composition

from mi.candidates.base import Candidate, Failure
from mi.oracle.base import Labeller


class TableLabeller(Labeller):
    """Labels from a precomputed table.

    `targets` maps target name -> column. With ``match="formula"`` several rows may share a reduced
    formula (polymorphs); ``duplicates`` decides: ``min`` (each target's lowest value: the ground state
    for energies), ``mean`` or ``first``.
    """

    def __init__(
        self,
        path: str | Path,
        targets: dict[str, str],
        units: dict[str, str] | None = None,
        *,
        match: str = "id",
        formula_column: str = "formula",
        duplicates: str = "min",
    ) -> None:
        self.path = Path(path)
        self.target_columns = dict(targets)
        self.given_units = dict(units or {})
        self.match = match
        self.formula_column = formula_column
        self.duplicates = duplicates
        self._lookup: pd.DataFrame | None = None
        self._units: dict[str, str] | None = None

    def _table(self) -> pd.DataFrame:
        """The lookup frame, read once: index = id or reduced formula, one column per target."""
        if self._lookup is not None:
            return self._lookup
        from mi.models.datasets import read_table

        if self.match not in ("id", "formula"):
            raise ValueError(f"labeller.match: expected 'id' or 'formula', got {self.match!r}")
        if self.duplicates not in ("min", "mean", "first"):
            raise ValueError(f"labeller.duplicates: expected 'min', 'mean' or 'first', got {self.duplicates!r}")
        dataset = read_table(self.path, self.target_columns, self.given_units, self.formula_column)
        frame = dataset.frame
        if self.match == "formula":
            keys = []
            for formula in frame["formula"]:
                try:
                    keys.append(Composition(str(formula)).reduced_formula)
                except Exception:  # noqa: BLE001 - an unreadable formula cannot match any candidate
                    keys.append(None)
            frame = frame.assign(_key=keys).dropna(subset=["_key"])
            grouped = frame.groupby("_key", sort=False)[list(self.target_columns)]
            frame = getattr(grouped, self.duplicates)()
        else:
            frame = frame[~frame.index.duplicated(keep="first")][list(self.target_columns)]
        self._lookup = frame
        self._units = {t: dataset.units.get(t, "") for t in self.target_columns}
        return frame

    @property
    def targets(self) -> list[str]:
        return list(self.target_columns)

    @property
    def units(self) -> dict[str, str]:
        self._table()
        return dict(self._units or {})

    def provenance(self) -> dict:
        from mi.files import sha256_file

        return {
            "labeller": "table",
            "path": str(self.path.resolve()),
            "sha256": sha256_file(self.path) if self.path.is_file() else None,
            "match": self.match,
            "duplicates": self.duplicates if self.match == "formula" else None,
            "targets": dict(self.target_columns),
        }

    def label(self, candidates: Sequence[Candidate]) -> tuple[pd.DataFrame, list[Failure]]:
        table = self._table()
        rows, ids, failures = [], [], []
        for c in candidates:
            key = c.id if self.match == "id" else c.composition.reduced_formula
            if key not in table.index:
                what = f"id {c.id!r}" if self.match == "id" else f"formula {key} (candidate {c.id!r})"
                failures.append(Failure(str(self.path), c.id, "label", f"{what} is not in the label table", id=c.id))
                continue
            values = table.loc[key].to_numpy(dtype=float)
            if np.isnan(values).all():
                reason = f"the table has no value for {', '.join(self.targets)}"
                failures.append(Failure(str(self.path), c.id, "label", reason, id=c.id))
                continue
            rows.append(values)
            ids.append(c.id)
        frame = pd.DataFrame(
            np.array(rows, dtype=float).reshape(len(rows), len(self.targets)),
            index=pd.Index(ids, name="id", dtype=object),
            columns=self.targets,
        )
        return frame, failures


__all__ = ["TableLabeller"]
