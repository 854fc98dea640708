"""Rebuild the packaged element table, ``mi/data/element_facts.csv``, from its three sources.

    python -m mi.data.build_element_facts                 # writes mi/data/element_facts.csv
    python -m mi.data.build_element_facts --check         # exit 1 if the packaged file is out of date
    python -m mi.data.build_element_facts --reference DIR --out FILE

Sources (ids as in SOURCES.md):

* ``<reference>/element_facts.csv`` (default ``../shared/reference`` from the repository root): prices,
  mine and refining shares, world mine production (t of contained element, with its year), EU/US
  critical-list status, CO2, with source ids S1-S7 per row. Its numbers are copied as text, unchanged. Its
  prices all come from USGS MCS 2026 (S1).
* pymatgen's ``costdb_elements.csv`` (S8): fills the price where the reference has none, and adds a
  price-only row for each element the reference does not list. Such prices carry ``price_source=S8`` and
  the year and source named in that file's own citation.
* pymatgen's ``hhi_data.csv`` (S9, Gaultois et al. 2013): production and reserve Herfindahl-Hirschman
  indices (0-10000) per element, copied unchanged into ``hhi_production`` and ``hhi_reserve``; ``S9`` is
  added to the row's ``source_ids``. An element it lists twice with the same numbers (Bi) is taken once.

Choices, applied deterministically:

* the reference's ``graphite (natural)`` row becomes the row for C (natural flake graphite is the price and
  supply proxy for carbon; the note says so);
* pymatgen's Ne price (660000 $/kg) cites a page about neptunium, so it is not used: Ne has no price;
* rows are ordered by atomic number; blanks stay blank (unknown, never zero).

The output depends only on the three input files, so the same inputs give the same bytes.
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import sys
from collections.abc import Sequence
from pathlib import Path

COLUMNS = (
    "element",
    "price_usd_per_kg",
    "price_basis",
    "price_year",
    "price_source",
    "top_mine_country",
    "top_mine_share_pct",
    "china_refining_share_pct",
    "world_mine_production_t",
    "production_year",
    "eu_crm_2023",
    "us_critical_2022",
    "co2_kg_per_kg",
    "hhi_production",
    "hhi_reserve",
    "source_ids",
    "notes",
)

# Reference rows that are not element symbols -> (element, note put in front of the row's notes).
ROW_ALIASES = {
    "graphite (natural)": (
        "C",
        "row 'graphite (natural)' of the reference, used for C: price, shares and list status are those of "
        "natural flake graphite",
    ),
}

# pymatgen costdb prices that are not used, with the reason.
COSTDB_EXCLUDED = {
    "Ne": "pymatgen costdb price for Ne (660000 $/kg) cites a page about neptunium; not used",
}

REFERENCE_PRICE_SOURCE = "S1"  # every price in the reference is from USGS MCS 2026
COSTDB_SOURCE = "S8"
HHI_SOURCE = "S9"

_REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REFERENCE = _REPO_ROOT.parent / "shared" / "reference"
DEFAULT_OUT = Path(__file__).resolve().with_name("element_facts.csv")


def default_costdb() -> Path:
    """pymatgen's element price table, next to ``pymatgen.analysis.cost`` (a module or a package)."""
    import pymatgen.analysis.cost as cost

    return Path(cost.__file__).with_name("costdb_elements.csv")


def default_hhi() -> Path:
    """pymatgen's HHI table, next to ``pymatgen.analysis.hhi`` (a module or a package)."""
    import pymatgen.analysis.hhi as hhi

    return Path(hhi.__file__).with_name("hhi_data.csv")


def _atomic_number(symbol: str) -> int:
    from pymatgen.core import Element

    if not Element.is_valid_symbol(symbol):
        raise ValueError(f"{symbol!r} is not an element symbol")
    return Element(symbol).Z


def read_costdb(path: Path) -> dict[str, dict[str, str]]:
    """symbol -> {price, basis, year, who}; the citation is a BibTeX entry quoted with '|'."""
    out: dict[str, dict[str, str]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for line_no, row in enumerate(csv.reader(f, quotechar="|"), start=1):
            if not row or not row[0].strip():
                continue
            if len(row) < 4:
                raise ValueError(f"{path}: line {line_no}: expected 4 fields, got {len(row)}")
            symbol, price, basis, citation = (field.strip() for field in row[:4])
            if symbol in out:
                raise ValueError(f"{path}: line {line_no}: {symbol} appears twice")
            float(price)  # a non-number stops the build
            year = re.search(r'year\s*=\s*"(\d{4})"', citation)
            who = re.search(r'title\s*=\s*"([^"]+)"', citation)
            if year is None or who is None:
                raise ValueError(f"{path}: line {line_no}: citation without a year or title: {citation!r}")
            out[symbol] = {"price": price, "basis": basis, "year": year.group(1), "who": who.group(1)}
    return out


def read_hhi(path: Path) -> dict[str, tuple[str, str]]:
    """symbol -> (HHI_production, HHI_reserve) as text; ``#`` lines are comments."""
    out: dict[str, tuple[str, str]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            if not row or row[0].lstrip().startswith("#"):
                continue
            if len(row) != 3:
                raise ValueError(f"{path}: line {line_no}: expected 3 fields, got {len(row)}")
            symbol, production, reserve = (field.strip() for field in row)
            for value in (production, reserve):
                if not 0 <= float(value) <= 10000:  # a non-number stops the build too
                    raise ValueError(f"{path}: line {line_no}: HHI {value} is outside [0, 10000]")
            if symbol in out and out[symbol] != (production, reserve):
                raise ValueError(f"{path}: line {line_no}: {symbol} appears twice with different numbers")
            out[symbol] = (production, reserve)
    return out


def read_reference(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        needed = set(COLUMNS) - {"price_source", "hhi_production", "hhi_reserve"}  # added here
        absent = needed - set(reader.fieldnames or ())
        if absent:
            raise ValueError(f"{path}: missing columns {sorted(absent)}")
        return [{k: (v or "").strip() for k, v in row.items()} for row in reader]


def _join_notes(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _add_source(ids: str, source: str) -> str:
    have = [s for s in ids.split(";") if s]
    return ";".join(have if source in have else [*have, source])


def _costdb_price(row: dict[str, str], entry: dict[str, str]) -> None:
    """Fill the price fields of `row` from a costdb entry, in place."""
    basis = entry["basis"] or "element, grade not stated"
    row["price_usd_per_kg"] = entry["price"]
    row["price_basis"] = f"{basis} ({entry['who']} via pymatgen costdb)"
    row["price_year"] = entry["year"]
    row["price_source"] = COSTDB_SOURCE
    row["source_ids"] = _add_source(row["source_ids"], COSTDB_SOURCE)


def build_rows(reference_csv: Path, costdb_csv: Path, hhi_csv: Path | None = None) -> list[dict[str, str]]:
    costdb = read_costdb(costdb_csv)
    hhi = read_hhi(hhi_csv if hhi_csv is not None else default_hhi())
    rows: dict[str, dict[str, str]] = {}
    for ref in read_reference(reference_csv):
        name = ref["element"]
        symbol, alias_note = ROW_ALIASES.get(name, (name, ""))
        _atomic_number(symbol)
        if symbol in rows:
            raise ValueError(f"{reference_csv}: {symbol} appears twice")
        row = {col: ref.get(col, "") for col in COLUMNS}
        row["element"] = symbol
        row["notes"] = _join_notes(alias_note, ref["notes"])
        if row["price_usd_per_kg"]:
            if REFERENCE_PRICE_SOURCE not in row["source_ids"].split(";"):
                raise ValueError(f"{reference_csv}: {name} has a price but no {REFERENCE_PRICE_SOURCE} source")
            row["price_source"] = REFERENCE_PRICE_SOURCE
        elif symbol in COSTDB_EXCLUDED:
            row["notes"] = _join_notes(row["notes"], COSTDB_EXCLUDED[symbol])
        elif symbol in costdb:
            _costdb_price(row, costdb[symbol])
            row["notes"] = _join_notes(row["notes"], f"price from {COSTDB_SOURCE} (reference has none)")
        rows[symbol] = row

    for symbol, entry in costdb.items():
        if symbol in rows:
            continue
        _atomic_number(symbol)
        row = dict.fromkeys(COLUMNS, "")
        row["element"] = symbol
        if symbol in COSTDB_EXCLUDED:
            row["notes"] = COSTDB_EXCLUDED[symbol]
        else:
            _costdb_price(row, entry)
            row["notes"] = f"not in the reference table: price only, from {COSTDB_SOURCE}"
        rows[symbol] = row

    for symbol, (production, reserve) in hhi.items():
        _atomic_number(symbol)
        if symbol not in rows:
            rows[symbol] = dict.fromkeys(COLUMNS, "")
            rows[symbol].update(element=symbol, notes=f"not in the reference table: HHI only, from {HHI_SOURCE}")
        row = rows[symbol]
        row["hhi_production"], row["hhi_reserve"] = production, reserve
        row["source_ids"] = _add_source(row["source_ids"], HHI_SOURCE)

    return [rows[s] for s in sorted(rows, key=_atomic_number)]


def render(rows: list[dict[str, str]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mi.data.build_element_facts", description=__doc__.split("\n")[0])
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE, help="folder with element_facts.csv")
    parser.add_argument("--costdb", type=Path, default=None, help="pymatgen's costdb_elements.csv")
    parser.add_argument("--hhi", type=Path, default=None, help="pymatgen's hhi_data.csv")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the CSV to write (or to check)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if --out differs")
    args = parser.parse_args(argv)

    reference_csv = args.reference / "element_facts.csv"
    costdb_csv = args.costdb or default_costdb()
    hhi_csv = args.hhi or default_hhi()
    for path in (reference_csv, costdb_csv, hhi_csv):
        if not path.is_file():
            print(f"error: {path}: not found", file=sys.stderr)
            return 2
    try:
        text = render(build_rows(reference_csv, costdb_csv, hhi_csv))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else None
        if current != text:
            print(f"{args.out} is out of date; rebuild it with python -m mi.data.build_element_facts", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({text.count(chr(10)) - 1} elements)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
