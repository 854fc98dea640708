"""The bytes and text of candidate and table files, shared by every reader (`mi.candidates.formats`).

Compressed files (``.gz``, ``.bz2``, ``.xz``) are decompressed on the fly, up to a limit; text is UTF-8 or
carries a byte-order mark, anything else is refused with the offending byte; a cell larger than
``candidates.max_atoms`` is refused from the count its file declares; library exceptions are put in a user's
words (`reason`). A reader reports a bad record as a `BadRecord` item and a whole bad file as a `BadFile`.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import math
import re
import unicodedata
import zlib
from pathlib import Path

from pymatgen.core import Composition

from mi.errors import InputError

COMPRESSED_SUFFIXES = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
# A compressed file may expand a thousandfold: stop reading past this (a structure file is never near it).
MAX_DECOMPRESSED_BYTES = 1 << 30


class BadRecord(Exception):
    """One record of a file is unusable; the reason is the message."""


class BadFile(Exception):
    """A whole file is unusable; the reason is the message (already in a user's words)."""


class NoStructure(Exception):
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
    """The whole file, decompressed; a damaged or oversized compressed file is a `BadFile`."""
    if path.suffix.lower() not in COMPRESSED_SUFFIXES:
        return path.read_bytes()
    try:
        with open_binary(path) as fh:
            data = fh.read(MAX_DECOMPRESSED_BYTES + 1)
    except Exception as exc:  # noqa: BLE001 - every codec has its own error types
        raise BadFile(reason(exc)) from None
    if len(data) > MAX_DECOMPRESSED_BYTES:
        raise BadFile(f"decompresses to more than {MAX_DECOMPRESSED_BYTES >> 20} MiB (refused)")
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
                raise BadFile(
                    f"starts with a {encoding} byte-order mark but is not {encoding} text "
                    f"(bad bytes at offset {exc.start + len(bom)})"
                ) from None
    nul = data.find(b"\x00")
    if nul >= 0:
        raise BadFile(f"binary data, not a text file (NUL byte at offset {nul}; UTF-16 text needs a byte-order mark)")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        raise BadFile(
            f"not UTF-8 text (byte 0x{data[exc.start]:02X} at offset {exc.start}, e.g. Latin-1 accents or binary "
            "data); save it as UTF-8"
        ) from None


_BLOCK = 1 << 20


class Lines:
    """The lines of a clean text file (`text_lines`), ends kept, read from the file as they are iterated:
    a table of a million rows is never in memory as one string."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __iter__(self):
        import io

        with io.TextIOWrapper(open_binary(self.path), encoding="utf-8", newline="\n") as text:
            yield from text  # split at "\n" only, as `read_text`'s text would be


def text_lines(path: Path) -> Lines | None:
    """The file's lines, streamed, when its text is what `read_text` would return as it is: UTF-8 without
    a byte-order mark, no NUL, no carriage return, not only white space, within the decompression limit.
    None otherwise (rare): the caller reads the whole text, with `read_text`'s refusals and its line
    endings made ``\\n``. One pass over the file checks it, in blocks."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    size, content = 0, False
    limit = MAX_DECOMPRESSED_BYTES if path.suffix.lower() in COMPRESSED_SUFFIXES else math.inf
    try:
        with open_binary(path) as fh:
            while block := fh.read(_BLOCK):
                if size == 0 and any(block.startswith(bom) for bom, _ in _BOMS):
                    return None
                size += len(block)
                if size > limit or b"\x00" in block or b"\r" in block:
                    return None
                text = decoder.decode(block)
                content = content or bool(text.strip())
            decoder.decode(b"", final=True)
    except Exception:  # noqa: BLE001 - bad bytes, damaged compression: `read_text` says what is wrong
        return None
    return Lines(path) if content else None


def display_path(path: Path) -> str:
    """A path as users will recognise it: relative to the working directory when below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


def text_of(path: Path) -> str:
    """`read_text` for readers outside this module (training datasets): the text, or an InputError naming the
    file and what is wrong with its bytes."""
    try:
        return read_text(path)[0]
    except BadFile as exc:
        raise InputError(f"{display_path(path)}: {exc}") from None


# --- refusals and reasons ---------------------------------------------------------------------------


def too_many_sites(n: int, max_atoms: int) -> str | None:
    """Why a cell of `n` sites is refused (more than `max_atoms`), or None."""
    refused = too_many(n, max_atoms)
    return str(refused) if refused is not None else None


def too_many(n: int, max_atoms: int, what: str = "sites") -> BadRecord | None:
    if n > max_atoms:
        return BadRecord(f"{n} {what} is more than candidates.max_atoms={max_atoms} (refused before parsing)")
    return None


# Library errors whose own text means nothing to a user: what they mean in a structure file.
_PLAIN = {
    IndexError: "the file ends early or a line has too few fields (truncated or garbled?)",
    StopIteration: "the file ends early (truncated?)",
    ZeroDivisionError: "a zero where a length, count or scale is needed",
    OverflowError: "a number is too large",
    RecursionError: "nested too deeply",
    MemoryError: "too large to read into memory",
}


def reason(exc: BaseException, context: str = "cannot be read") -> str:
    """A library exception in a user's words: what went wrong, never just a Python message on its own;
    `context` (a reader's ``context``, e.g. "CIF not understood") leads a message that has no plainer words."""
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
    return f"{context}: {text}" if text else f"{context} ({type(exc).__name__})"


# --- formulas ---------------------------------------------------------------------------------------


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


def parse_formula(formula: str) -> Composition:
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
