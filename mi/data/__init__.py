"""Data packaged with mi: the element facts behind cost, supply-risk, CO2 and circularity figures.

The packaged table is versioned (`ELEMENT_FACTS_VERSION`) and cited (``SOURCES.md`` next to it, with how
it was built by ``build_element_facts.py``). A user's CSV replaces it through ``properties.element_table``.
Blanks mean unknown: they load as NaN, never as zero.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import pandas as pd

from mi.errors import InputError

ELEMENT_FACTS_VERSION = "2026.12.1"
PACKAGED_ELEMENT_FACTS = "element_facts.csv"

REQUIRED_COLUMNS = ("element", "price_usd_per_kg")
# Numeric columns (when present) and their allowed range.
NUMERIC_COLUMNS = {
    "price_usd_per_kg": (0.0, math.inf),
    "top_mine_share_pct": (0.0, 100.0),
    "china_refining_share_pct": (0.0, 100.0),
    "world_mine_production_t": (0.0, math.inf),
    "co2_kg_per_kg": (0.0, math.inf),
    "hhi_production": (0.0, 10000.0),
    "hhi_reserve": (0.0, 10000.0),
}
MISSING_MARKERS = frozenset({"", "na", "n/a", "nan", "none"})


def load_element_facts(path: str | Path | None = None) -> pd.DataFrame:
    """The element table, indexed by element symbol.

    With ``path=None`` the packaged table (element-facts `ELEMENT_FACTS_VERSION`); otherwise the user's CSV,
    which needs at least the columns ``element`` and ``price_usd_per_kg``. Numeric columns come back as
    floats with NaN for unknown; text columns as str with NaN for blank. ``df.attrs`` holds ``source`` (a
    description of where the table came from) and ``version`` (None for a user's table).

    Raises InputError naming the file, row (the header is row 1, as in a spreadsheet) and column for a
    missing column, a value that is not a number or out of range, an unknown or repeated element symbol.
    """
    if path is None:
        ref = resources.files(__name__).joinpath(PACKAGED_ELEMENT_FACTS)
        with resources.as_file(ref) as packaged:
            df = _read(Path(packaged), name=f"packaged {PACKAGED_ELEMENT_FACTS}")
        df.attrs.update(source=f"packaged element-facts {ELEMENT_FACTS_VERSION}", version=ELEMENT_FACTS_VERSION)
        return df
    path = Path(path).expanduser()
    df = _read(path, name=str(path))
    df.attrs.update(source=str(path), version=None)
    return df


def _read(path: Path, name: str) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"{name}: element table not found")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")  # -sig: Excel's BOM
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{name}: not a readable CSV element table: {exc}") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    absent = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if absent:
        needs = ", ".join(REQUIRED_COLUMNS)
        raise InputError(f"{name}: missing column(s) {', '.join(absent)} (an element table needs {needs})")
    if len(set(raw.columns)) != len(raw.columns):
        raise InputError(f"{name}: repeated column names in the header")
    raw = raw.apply(lambda col: col.str.strip())

    df = pd.DataFrame(index=raw.index)
    df["element"] = _element_symbols(raw["element"], name)
    for column in raw.columns:
        if column == "element":
            continue
        if column in NUMERIC_COLUMNS:
            df[column] = _numbers(raw[column], df["element"], column, name)
        else:
            df[column] = raw[column].mask(raw[column] == "")
    return df.set_index("element")


def _row(i: int) -> int:
    """0-based data index -> spreadsheet row number (header is row 1)."""
    return i + 2


def _element_symbols(column: pd.Series, name: str) -> pd.Series:
    from pymatgen.core import Element  # only when a table is read

    seen: dict[str, int] = {}
    for i, symbol in column.items():
        if not Element.is_valid_symbol(symbol):
            raise InputError(f"{name}: row {_row(i)}, column element: {symbol!r} is not an element symbol")
        if symbol in seen:
            first = _row(seen[symbol])
            raise InputError(f"{name}: row {_row(i)}, column element: {symbol} already given in row {first}")
        seen[symbol] = i
    return column


def _numbers(column: pd.Series, elements: pd.Series, column_name: str, name: str) -> pd.Series:
    low, high = NUMERIC_COLUMNS[column_name]
    out = []
    for i, text in column.items():
        if text.lower() in MISSING_MARKERS:
            out.append(math.nan)
            continue
        where = f"{name}: row {_row(i)} ({elements[i]}), column {column_name}"
        try:
            value = float(text)
        except ValueError:
            raise InputError(f"{where}: {text!r} is not a number (leave it blank if unknown)") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise InputError(f"{where}: {text!r} is outside [{low:g}, {high:g}]")
        out.append(value)
    return pd.Series(out, index=column.index, dtype=float)
