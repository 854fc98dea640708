"""Rebuild ``mi/features/data/magpie_elements.csv`` from the Magpie element tables as matminer ships them.

    python -m mi.features.data.build_magpie_elements            # needs matminer installed (not imported)
    python -m mi.features.data.build_magpie_elements --check    # exit 1 if the packaged file is out of date
    python -m mi.features.data.build_magpie_elements --tables DIR --out FILE

Source: ``matminer/utils/data_files/magpie_elementdata/<Property>.table`` (matminer, BSD-3-Clause, (c) 2015
The Regents of the University of California through LBNL), which reproduce the element tables of Magpie:
L. Ward, A. Agrawal, A. Choudhary, C. Wolverton, "A general-purpose machine learning framework for predicting
properties of inorganic materials", npj Comput. Mater. 2, 16028 (2016), doi:10.1038/npjcompumats.2016.28.
See README.md next to the output for what each column is.

Each table has one line per element from Z = 1; a line is read as matminer's ``MagpieData`` reads it
(``float(line)``, anything unreadable or absent is missing). Missing values stay blank here: the mean
imputation matminer applies (``impute_nan=True``) is done by `mi.features.composition` at load time, so the
file shows what the source holds. Values are written with Python's shortest round-trip repr, so they load
as the very same floats. matminer is located through its installed files; it is not imported.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from pymatgen.core import Element

from mi.features.composition import MAGPIE_PROPERTIES

MAX_Z = 118
# The element properties of matminer's ElementProperty.from_preset("magpie"), in its order.
OXIDATION_STATES = "OxidationStates"  # used by the "compound possible" feature
OUT = Path(__file__).with_name("magpie_elements.csv")


def default_tables() -> Path:
    try:
        dist = distribution("matminer")
    except PackageNotFoundError:
        raise SystemExit("matminer is not installed; give --tables DIR (its magpie_elementdata folder)") from None
    return Path(str(dist.locate_file("matminer/utils/data_files/magpie_elementdata")))


def _cell(line: str | None) -> str:
    """A table line as matminer reads it: a float, or blank when it is not one."""
    if line is None:
        return ""
    try:
        return repr(float(line))
    except ValueError:
        return ""


def _states(line: str | None) -> str:
    if line is None:
        return ""
    try:
        return " ".join(repr(float(token)) for token in line.split())
    except ValueError:
        return ""


def build(tables: Path) -> str:
    columns: dict[str, list[str | None]] = {}
    for name in (*MAGPIE_PROPERTIES, OXIDATION_STATES):
        path = tables / f"{name}.table"
        if not path.is_file():
            raise SystemExit(f"{path}: not found")
        lines = path.read_text(encoding="utf-8").splitlines()
        columns[name] = [lines[z - 1] if z <= len(lines) else None for z in range(1, MAX_Z + 1)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["Z", "element", *MAGPIE_PROPERTIES, OXIDATION_STATES])
    for z in range(1, MAX_Z + 1):
        row = [str(z), Element.from_Z(z).symbol]
        row += [_cell(columns[name][z - 1]) for name in MAGPIE_PROPERTIES]
        row.append(_states(columns[OXIDATION_STATES][z - 1]))
        writer.writerow(row)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=Path, default=None, help="matminer's magpie_elementdata folder")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--check", action="store_true", help="exit 1 if --out differs from a fresh build")
    args = parser.parse_args(argv)
    text = build(args.tables or default_tables())
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else ""
        if current != text:
            print(f"{args.out} is out of date; rebuild it", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    temp = args.out.with_name(f".{args.out.name}.tmp")
    temp.write_text(text, encoding="utf-8")
    temp.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
