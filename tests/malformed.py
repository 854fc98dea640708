"""A corpus of malformed candidate files, generated from the demo set with a seeded RNG (no third-party files).

`write_corpus(root, good_dir)` writes the cases under `root` and returns one `Case` per bad record (or per
deliberately valid oddity). Every case knows the file (and record, for multi-record files) it lives in and
what must happen to it:

* ``fail``: the reader or a later stage reports it in failures.csv, naming the file and record;
* ``ok``: valid input in an unusual form, which must screen exactly like the good structure it is a twin of
  (``twin``): left-handed lattices (a valid choice of axes: the same crystal), a POSCAR whose negative scale
  gives the volume, a UTF-16 file with a byte-order mark, a UTF-8 BOM; and files as real workflows write
  them: selective dynamics, CONTCAR velocities, VASP 4 with a POTCAR beside it, gzip/bzip2/xz-compressed
  files, Windows line endings, a ``data_global`` block, symmetrised CIFs with uncertainties ``5.708(4)``.
  Valid oddities without a twin (under ``oddities/``) must read as the ``formula`` a chemist expects:
  oxidation-state labels ``Fe2+``, hydrate dots, Unicode subscripts, full-width letters.

Cases are built so that the expected outcome is certain by construction: a truncated file loses at least
one whole atom row (CIFs carry ``_chemical_formula_sum``, against which the reader checks the sites), a
garbled number gets a character no number can hold. Run ``python tests/malformed.py OUT`` to look at it.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pymatgen.core import Composition, Lattice, Structure
from pymatgen.io.cif import CifWriter
from pymatgen.io.vasp import Poscar

GOOD_SUFFIXES = (".cif", ".vasp", ".json", ".extxyz")
POISON = [b"Q", b"?", b"*", b"@", b"\xe9"]  # none of them can sit inside a number


@dataclass(frozen=True)
class Case:
    path: str  # relative to the corpus root
    record: str | None  # None: the whole file is the case; else its record ("line 3", "data_x", "2")
    kind: str
    expect: str = "fail"  # "fail" or "ok"
    twin: str | None = None  # for "ok": the id of the good structure it must screen like
    formula: str | None = None  # for "ok" without a twin: the reduced formula it must read as


def good_structures(good_dir: Path) -> dict[str, Structure]:
    """The demo structures by id (file stem), without the deliberately broken ones."""
    import warnings

    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in sorted(good_dir.iterdir()):
            if path.suffix in GOOD_SUFFIXES and not path.stem.startswith("broken"):
                if path.suffix == ".extxyz":
                    from ase.io import read
                    from pymatgen.io.ase import AseAtomsAdaptor

                    out[path.stem] = AseAtomsAdaptor.get_structure(read(str(path), format="extxyz"))
                else:
                    out[path.stem] = Structure.from_file(str(path))
    return out


def _poscar(s: Structure, title: str = "corpus") -> str:
    return Poscar(s, comment=title).get_str()


def _extxyz(s: Structure, lattice: np.ndarray | None = None, extra: str = "") -> str:
    lat = s.lattice.matrix if lattice is None else lattice
    head = " ".join(f"{x:.10f}" for x in np.asarray(lat).ravel())
    lines = [str(len(s)), f'Lattice="{head}" Properties=species:S:1:pos:R:3 pbc="T T T"{extra}']
    lines += [f"{site.specie.symbol} {x:.10f} {y:.10f} {z:.10f}" for site, (x, y, z) in zip(s, s.cart_coords)]
    return "\n".join(lines) + "\n"


def _left_handed(s: Structure) -> Structure:
    """The same atoms in a left-handed cell: c -> -c and z -> -z leave every Cartesian position where it was."""
    m = s.lattice.matrix.copy()
    m[2] *= -1
    frac = s.frac_coords.copy()
    frac[:, 2] *= -1
    return Structure(Lattice(m), s.species, frac)


def _poison_digits(text: str, rng: random.Random, lines: list[int], n: int = 1) -> bytes:
    """Replace `n` digits on the given line numbers by characters that cannot be part of a number."""
    rows = text.split("\n")
    spots = [(i, j) for i in lines if i < len(rows) for j, ch in enumerate(rows[i]) if ch.isdigit()]
    chosen = rng.sample(spots, min(n, len(spots)))
    data = [bytearray(r.encode()) for r in rows]
    for i, j in chosen:
        data[i][j : j + 1] = rng.choice(POISON)
    return b"\n".join(bytes(r) for r in data)


def write_corpus(root: Path, good_dir: Path, seed: int = 0) -> list[Case]:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    goods = good_structures(good_dir)
    cases: list[Case] = []

    def put(name: str, data: bytes | str, kind: str, expect: str = "fail", twin: str | None = None, record=None,
            formula: str | None = None):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        cases.append(Case(name, record, kind, expect, twin, formula))

    some = list(goods)[:4]  # enough for the per-structure variants that need no more

    # 1. truncated and garbled CIFs: P1 CIFs with _chemical_formula_sum, cut before the last atom row
    for sid, s in goods.items():
        text = str(CifWriter(s))
        last_row = text.rstrip("\n").rindex("\n") + 1
        for k, cut in enumerate(sorted(rng.sample(range(last_row), 12))):
            put(f"cif_trunc/{sid}_{k:02d}.cif", text[:cut], "truncated cif")
        rows = text.split("\n")
        numeric = [i for i, r in enumerate(rows) if r.startswith("_cell_length") or r.startswith("_cell_angle")]
        start = rows.index(" _atom_site_occupancy") + 1
        atom_rows = list(range(start, len(rows)))
        for k in range(8):
            # fractional coordinates only (columns 4-6), or the cell; never labels, comments or occupancies
            target = numeric if k % 3 == 0 else atom_rows
            if target is atom_rows:
                i = rng.choice([r for r in atom_rows if rows[r].strip()])
                parts = rows[i].split()
                col = rng.randrange(3, 6)
                value = bytearray(parts[col].encode())
                digit = rng.choice([j for j, ch in enumerate(parts[col]) if ch.isdigit()])
                value[digit : digit + 1] = rng.choice(POISON)
                parts[col] = value.decode("latin-1")
                rows2 = rows.copy()
                rows2[i] = "  " + "  ".join(parts)
                data = "\n".join(rows2).encode("latin-1")
            else:
                data = _poison_digits(text, rng, numeric)
            put(f"cif_garbled/{sid}_{k}.cif", data, "garbled cif")

    # 2. truncated and garbled POSCARs
    for sid, s in goods.items():
        text = _poscar(s, f"{sid} corpus")
        last_line = text.rstrip("\n").rindex("\n") + 1
        for k, cut in enumerate(sorted(rng.sample(range(last_line), 12))):
            put(f"poscar_trunc/{sid}_{k:02d}.vasp", text[:cut], "truncated poscar")
        n_lines = len(text.split("\n"))
        for k in range(6):
            lines = rng.choice([[2, 3, 4], [6], list(range(8, n_lines))])
            put(f"poscar_garbled/{sid}_{k}.vasp", _poison_digits(text, rng, lines), "garbled poscar")

    # 3. truncated JSON and extended XYZ
    for sid, s in goods.items():
        text = json.dumps(s.as_dict())
        for k, cut in enumerate(sorted(rng.sample(range(1, len(text) - 1), 5))):
            put(f"json_trunc/{sid}_{k}.json", text[:cut], "truncated json")
        text = _extxyz(s)
        last_line = text.rstrip("\n").rindex("\n") + 1
        for k, cut in enumerate(sorted(rng.sample(range(1, last_line), 4))):
            put(f"xyz_trunc/{sid}_{k}.extxyz", text[:cut], "truncated extxyz")

    # 4. NaN / infinite coordinates and lattices; overlapping atoms; zero, collapsed and impossible cells
    bad_numbers = ["nan", "inf", "-inf", "1e999"]
    for sid in some:
        s = goods[sid]
        for value in bad_numbers:
            rows = _poscar(s).split("\n")
            parts = rows[8].split()
            parts[1] = value
            rows[8] = " ".join(parts)
            put(f"nonfinite/{sid}_coord_{value}.vasp", "\n".join(rows), "non-finite coordinate")
            rows = _poscar(s).split("\n")
            rows[3] = f"0.0 {value} 0.0"
            put(f"nonfinite/{sid}_lattice_{value}.vasp", "\n".join(rows), "non-finite lattice")
            d = s.as_dict()
            d["sites"][0]["abc"][2] = float(value)
            put(f"nonfinite/{sid}_coord_{value}.json", json.dumps(d), "non-finite coordinate")
            d = s.as_dict()
            d["lattice"]["matrix"][1][1] = float(value)
            put(f"nonfinite/{sid}_lattice_{value}.json", json.dumps(d), "non-finite lattice")
            lattice = s.lattice.matrix.copy().ravel().astype(object)
            lattice[4] = value
            text = _extxyz(s).split("\n")
            text[1] = text[1].replace(text[1].split('"')[1], " ".join(str(x) for x in lattice))
            put(f"nonfinite/{sid}_lattice_{value}.extxyz", "\n".join(text), "non-finite lattice")
    for sid, s in goods.items():
        crowded = s.copy()
        crowded.append(s[0].species, s[0].coords + np.array([0.1, 0.0, 0.0]), coords_are_cartesian=True)
        put(f"overlap/{sid}.vasp", _poscar(crowded), "overlapping atoms")
        put(f"overlap/{sid}.json", json.dumps(crowded.as_dict()), "overlapping atoms")
        rows = _poscar(s).split("\n")
        rows[1] = "0.0"
        put(f"cell/{sid}_zero_scale.vasp", "\n".join(rows), "zero cell volume")
        rows[1] = "0.2"
        put(f"cell/{sid}_collapsed.vasp", "\n".join(rows), "collapsed cell")
        rows = _poscar(s).split("\n")
        rows[4] = rows[3]  # b = a: a flat cell
        put(f"cell/{sid}_flat.vasp", "\n".join(rows), "zero cell volume")
        d = s.as_dict()
        d["lattice"]["matrix"][2] = [0.0, 0.0, 0.0]
        put(f"cell/{sid}_flat.json", json.dumps(d), "zero cell volume")
    for sid in some:
        text = str(CifWriter(goods[sid]))
        angles = re.sub(r"(_cell_angle_(alpha|beta|gamma))\s+\S+", r"\1   170.0", text)
        put(f"cell/{sid}_angles.cif", angles, "impossible cell angles")
        put(f"cell/{sid}_zero_length.cif", re.sub(r"(_cell_length_a)\s+\S+", r"\1   0.0", text), "zero cell length")
        put(f"cell/{sid}_negative_length.cif", re.sub(r"(_cell_length_b)\s+\S+", r"\1   -5.0", text),
            "negative cell length")

    # 5. left-handed lattices and other valid oddities: twins of good structures
    for sid in some:
        s = goods[sid]
        lh = _left_handed(s)
        assert lh.lattice.volume < 0 or np.linalg.det(lh.lattice.matrix) < 0
        put(f"twins/lefthanded_{sid}_vasp.vasp", _poscar(lh), "left-handed lattice", "ok", sid)
        put(f"twins/lefthanded_{sid}_json.json", json.dumps(lh.as_dict()), "left-handed lattice", "ok", sid)
        put(f"twins/lefthanded_{sid}_xyz.extxyz", _extxyz(lh), "left-handed lattice", "ok", sid)
        rows = _poscar(s).split("\n")
        rows[1] = f"-{abs(s.volume):.10f}"  # VASP: a negative scale is the cell volume
        put(f"twins/negscale_{sid}.vasp", "\n".join(rows), "negative POSCAR scale (volume)", "ok", sid)
        put(f"twins/utf16_{sid}.vasp", _poscar(s).encode("utf-16"), "UTF-16 with BOM", "ok", sid)
        put(f"twins/bom_{sid}.cif", b"\xef\xbb\xbf" + str(CifWriter(s)).encode(), "UTF-8 BOM", "ok", sid)

    # 6. unknown or dummy elements
    for sid in some:
        s = goods[sid]
        text = str(CifWriter(s))
        first = s[0].specie.symbol
        for symbol in ["X", "Xx", "Q", "Dummy"]:
            row = next(r for r in text.split("\n") if r.startswith(f"  {first}  "))
            put(f"elements/{sid}_{symbol}.cif", text.replace(row, row.replace(f"  {first}  ", f"  {symbol}  ", 1), 1),
                "unknown element")
        rows = _poscar(s).split("\n")
        for symbol in ["Xx", "Qq"]:
            rows2 = rows.copy()
            rows2[5] = rows2[5].replace(first, symbol, 1)
            put(f"elements/{sid}_{symbol}.vasp", "\n".join(rows2), "unknown element")
        d = s.as_dict()
        d["sites"][0]["species"] = [{"element": "Xx", "occu": 1}]
        put(f"elements/{sid}_Xx.json", json.dumps(d), "unknown element")
        put(f"elements/{sid}_Xx.extxyz", _extxyz(s).replace(f"\n{first} ", "\nXx ", 1), "unknown element")

    # 7. huge cells: far more sites than candidates.max_atoms; must be refused from the declared count
    big = Structure(Lattice.cubic(60.0), ["Li"] * 2, [[0, 0, 0], [0.5, 0.5, 0.5]])
    n_big = 24000
    frac = np.random.default_rng(seed).random((n_big, 3))
    rows = [f"  Li  Li{i}  1  {x:.6f}  {y:.6f}  {z:.6f}  1" for i, (x, y, z) in enumerate(frac)]
    cif_head = str(CifWriter(big)).split(" _atom_site_occupancy\n")[0] + " _atom_site_occupancy\n"
    cif_head = cif_head.replace("'Li2'", f"'Li{n_big}'")
    put("huge/huge.cif", cif_head + "\n".join(rows) + "\n", "huge cell")
    poscar_rows = ["huge", "1.0", "60 0 0", "0 60 0", "0 0 60", "Li", str(n_big), "direct"]
    put("huge/huge.vasp", "\n".join(poscar_rows + [f"{x:.6f} {y:.6f} {z:.6f}" for x, y, z in frac]) + "\n", "huge cell")
    xyz = [str(n_big), 'Lattice="60 0 0 0 60 0 0 0 60" Properties=species:S:1:pos:R:3 pbc="T T T"']
    put("huge/huge.extxyz", "\n".join(xyz + [f"Li {60*x:.4f} {60*y:.4f} {60*z:.4f}" for x, y, z in frac]) + "\n",
        "huge cell")
    d = big.as_dict()
    d["sites"] = [{"species": [{"element": "Li", "occu": 1}], "abc": [float(v) for v in f], "label": "Li"}
                  for f in frac]
    put("huge/huge.json", json.dumps(d), "huge cell")
    put("huge/huge.jsonl", json.dumps({"id": "huge-line", "lattice": big.lattice.matrix.tolist(),
                                       "species": ["Li"] * n_big, "coords": frac.tolist()}) + "\n", "huge cell")

    # 8. encodings and binary junk
    for sid in some:
        s = goods[sid]
        cif = str(CifWriter(s)).replace("# generated using pymatgen", "# generated using pymatgen\n_publ_author_name 'Müller, Jörg'")
        put(f"encoding/{sid}_latin1.cif", cif.encode("latin-1"), "latin-1 text")
        put(f"encoding/{sid}_latin1.vasp", _poscar(s, "Structure de Müller é").encode("latin-1"), "latin-1 text")
        put(f"encoding/{sid}_utf16_nobom.vasp", _poscar(s).encode("utf-16-le"), "UTF-16 without BOM")
        put(f"encoding/{sid}_utf16_nobom.cif", str(CifWriter(s)).encode("utf-16-le"), "UTF-16 without BOM")
    junk = np.random.default_rng(seed + 1)
    for suffix in (".cif", ".vasp", ".json", ".extxyz", ".csv", ".jsonl"):
        for k in range(8):
            size = int(junk.integers(1, 4000))
            low = 0 if k % 2 == 0 else 1  # odd cases hold no NUL byte, so they reach the parsers
            data = junk.integers(low, 256, size=size, dtype=np.uint8).tobytes()
            if k % 4 == 3:
                data = bytes(b if 32 <= b < 127 else 0x20 + b % 90 for b in data)  # printable ASCII junk
            put(f"junk/junk{k}{suffix}", data, "binary junk")

    # 9. empty and blank files
    for suffix in (".cif", ".vasp", ".json", ".extxyz", ".csv", ".jsonl"):
        put(f"empty/empty{suffix}", b"", "empty file")
        put(f"empty/blank{suffix}", b"  \n\n\t\n", "blank file")
    put("empty/comment_only.cif", "# nothing but a comment\n", "no data block")

    # 10. partial occupancies summing above one
    for sid in some:
        s = goods[sid]
        text = str(CifWriter(s))
        row = next(r for r in text.split("\n") if r.startswith("  ") and r.split()[-1] in ("1", "1.0"))
        put(f"occupancy/{sid}_1.5.cif", text.replace(row, row[: row.rstrip().rindex(" ")] + " 1.5", 1), "occupancy > 1")
        d = s.as_dict()
        d["sites"][0]["species"] = [{"element": "Li", "occu": 0.8}, {"element": "Na", "occu": 0.7}]
        put(f"occupancy/{sid}_sum.json", json.dumps(d), "occupancy > 1")
        d = s.as_dict()
        d["sites"][0]["species"][0]["occu"] = 2.0
        put(f"occupancy/{sid}_two.json", json.dumps(d), "occupancy > 1")

    # 11. formula tables: charged, non-stoichiometric nonsense, missing and non-numeric fields
    bad_formulas = [
        "Li+", "O2-", "Fe3+", "LiCoO2+", "Fe2O3^2-", "Li-1CoO2", "Li0O", "Li0Co0O0", "Li1e999O", "LiFe(PO4",
        "Li2O)", "nan", "1.5", "12345", "Xx2O", "X", "Li2O;DROP", "Qq", "LiCoO2 extra words", "Li2 O2 +",
        "Li2O" + "2" * 400,
    ]
    lines = ["id,formula,note"]
    for k, formula in enumerate(bad_formulas):
        lines.append(f'f{k},"{formula}",x')
    lines += ["missing_field", "f_empty,,x", "f_blank,   ,x"]
    put("tables/formulas.csv", "\n".join(lines) + "\n", "formula table (file)")
    cases.pop()  # the file itself is not a case; its rows are
    for k in range(len(lines) - 1):
        cases.append(Case("tables/formulas.csv", f"line {k + 2}", "bad formula row"))
    put("tables/no_formula_column.csv", "id,composition\na,LiCoO2\n", "CSV without a formula column")
    put("tables/broken_quote.csv", 'id,formula\nq1,"LiCoO2\n', "CSV with an open quote")

    # 12. duplicate ids: a good structure's id again (the good one, read first, wins)
    for sid in some:
        put(f"dup/{sid}.json", json.dumps(goods[sid].as_dict()), "duplicate id")
    # 13. broken records inside multi-record files: JSON list, JSON lines, extended XYZ frames
    s = goods[some[0]]
    d = s.as_dict()
    broken_records = [
        {}, "a string", None, 42, [1, 2], {"lattice": d["lattice"]}, {"sites": d["sites"]},
        {**d, "lattice": {"matrix": [[1, 0, 0], [0, 1, 0]]}}, {**d, "sites": "not a list"},
        {**d, "sites": [{"species": [{"element": "Li", "occu": 1}]}]},
        {**d, "sites": [{"species": [{"element": "Li", "occu": "one"}], "abc": [0, 0, 0]}]},
        {**d, "lattice": {"matrix": "3x3"}}, {**d, "sites": [{"species": [], "abc": [0, 0, 0]}]},
    ]
    put("records/broken_list.json", json.dumps(broken_records), "broken JSON records")
    cases.pop()
    cases += [Case("records/broken_list.json", str(i), "broken JSON record") for i in range(len(broken_records))]
    lines = [
        "{not json", "[1, 2, 3]", "42", '"text"', "null", '{"id": "no-structure"}',
        json.dumps({"id": "bad-lattice", "lattice": [[1, 0], [0, 1]], "species": ["Li"], "coords": [[0, 0, 0]]}),
        json.dumps({"id": "count", "lattice": np.eye(3).tolist(), "species": ["Li", "O"], "coords": [[0, 0, 0]]}),
        json.dumps({"id": "elem", "lattice": (4 * np.eye(3)).tolist(), "species": ["Xx"], "coords": [[0, 0, 0]]}),
        json.dumps({"id": "nanc", "lattice": (4 * np.eye(3)).tolist(), "species": ["Li"],
                    "coords": [[float("nan"), 0, 0]]}),
        json.dumps({"id": "formula-bad", "formula": "Li+"}),
        json.dumps({"id": "occ", "structure": {**d, "sites": [{**d["sites"][0], "species": [
            {"element": "Li", "occu": 0.9}, {"element": "Na", "occu": 0.9}]}]}}),
        json.dumps({"id": "struct-junk", "structure": "LiCoO2"}),
        '{"id": "truncated", "lattice": [[4, 0, 0], [0, 4',
    ]
    put("records/broken.jsonl", "\n".join(lines) + "\n", "broken JSON lines")
    cases.pop()
    cases += [Case("records/broken.jsonl", f"line {i + 1}", "broken JSON line") for i in range(len(lines))]
    # JSON lines that reuse a good structure's id: the good file, read first, keeps it
    good_line = json.dumps({"id": some[1], "structure": goods[some[1]].as_dict()})
    put("records/dup.jsonl", "\n".join([good_line, good_line, good_line]) + "\n", "duplicate ids in JSON lines")
    cases.pop()
    cases += [Case("records/dup.jsonl", f"line {i}", "duplicate id") for i in (1, 2, 3)]
    frames = [
        re.sub(r'Lattice="[^"]*" ', "", _extxyz(s)).replace(' pbc="T T T"', ""),  # a molecule: no cell
        _extxyz(s).replace(' pbc="T T T"', ' pbc="F F F"'),
        _extxyz(s).replace(f"\n{s[0].specie.symbol} ", "\nXx ", 1),
        _extxyz(s).replace(f"\n{s[0].specie.symbol} ", f"\n{s[0].specie.symbol} abc ", 1),
        _extxyz(s, lattice=np.zeros((3, 3))),
        _extxyz(s).replace("Properties=species:S:1:pos:R:3", "Properties=species:S:1:pos:R:2"),
        "\n".join(_extxyz(s).split("\n")[:-3]) + "\n",  # declares more atoms than it has: the last frame
    ]
    put("records/broken_frames.extxyz", "".join(frames), "broken extxyz frames")
    cases.pop()
    cases += [Case("records/broken_frames.extxyz", str(i), "broken extxyz frame") for i in range(len(frames))]

    _real_world(root, goods, some, rng, put, cases)
    return cases


def vasp4_poscar(s: Structure, symbols_after: bool = False) -> str:
    """A VASP 4 POSCAR: no element line, and (unless `symbols_after`) no symbols after the coordinates."""
    rows = _poscar(s).split("\n")
    del rows[5]
    if not symbols_after:
        rows = [" ".join(r.split()[:3]) if i > 6 and r.strip() else r for i, r in enumerate(rows)]
    return "\n".join(rows)


def potcar_text(symbols: list[str]) -> str:
    """The lines of a POTCAR that name its species (the rest of a real one is data mi does not read)."""
    return "".join(
        f"  PAW_PBE {el} 08Apr2002\n   VRHFIN ={el}: s p\n   TITEL  = PAW_PBE {el} 08Apr2002\n End of Dataset\n"
        for el in symbols
    )


_DATA_GLOBAL = """data_global
_journal_name_full 'Journal of Battery Materials'
_journal_year 2024
loop_
 _publ_author_name
 'Doe, J.'
 'Roe, R.'

"""


def _real_world(root: Path, goods, some, rng: random.Random, put, cases: list[Case]) -> None:
    """14. Files as VASP, ASE, journals and databases write them (issue 14)."""
    compressors = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}
    for sid in some:
        s = goods[sid]
        symbols = [el.symbol for el in s.composition.elements]
        flags = [[bool(rng.getrandbits(1)) for _ in range(3)] for _ in s]
        put(f"twins/seldyn_{sid}.vasp", Poscar(s, selective_dynamics=flags).get_str(), "selective dynamics", "ok", sid)
        velocities = [[rng.uniform(-0.01, 0.01) for _ in range(3)] for _ in s]
        put(f"twins/contcar_{sid}/CONTCAR", Poscar(s, velocities=velocities).get_str(), "CONTCAR velocities", "ok", sid)
        vasp4 = vasp4_poscar(s)
        put(f"twins/vasp4_{sid}/POSCAR", vasp4, "VASP 4 with POTCAR", "ok", sid)
        (root / f"twins/vasp4_{sid}/POTCAR").write_text(potcar_text(Poscar(s).site_symbols))
        put(f"twins/vasp4sym_{sid}.vasp", vasp4_poscar(s, symbols_after=True),
            "VASP 4 with symbols after coordinates", "ok", sid)
        cif = str(CifWriter(s))
        for suffix, text, ext in ((".gz", cif, ".cif"), (".bz2", _poscar(s), ".vasp"), (".xz", _extxyz(s), ".extxyz"),
                                  (".gz", json.dumps(s.as_dict()), ".json")):
            packed = compressors[suffix](text.encode())
            put(f"twins/packed_{sid}_{ext[1:]}{ext}{suffix}", packed, "compressed", "ok", sid)
        put(f"twins/crlf_{sid}.cif", cif.replace("\n", "\r\n"), "CRLF line endings", "ok", sid)
        put(f"twins/crlf_{sid}_vasp.vasp", _poscar(s).replace("\n", "\r\n"), "CRLF line endings", "ok", sid)
        put(f"twins/global_{sid}.cif", _DATA_GLOBAL + cif, "data_global block", "ok", sid)
        symmetrised = str(CifWriter(s, symprec=0.01))
        esd = re.sub(r"(_cell_length_[abc]\s+)(\d+\.\d+)", r"\1\g<2>(4)", symmetrised)
        put(f"twins/esd_{sid}.cif", esd, "symmetrised CIF with uncertainties", "ok", sid)

        # the same files, broken
        put(f"realworld/vasp4_nospecies_{sid}.vasp", vasp4, "VASP 4 without species")
        put(f"realworld/potcar_mismatch_{sid}/POSCAR", vasp4, "VASP 4 with a POTCAR of other species")
        (root / f"realworld/potcar_mismatch_{sid}/POTCAR").write_text(potcar_text([*symbols, "Zr"]))
        packed = gzip.compress(cif.encode())
        put(f"realworld/damaged_{sid}.cif.gz", packed[: len(packed) // 2], "damaged compressed file")
        put(f"realworld/not_gzip_{sid}.cif.gz", cif, "damaged compressed file")
        put(f"realworld/global_only_{sid}.cif", _DATA_GLOBAL, "data_global block only")
    put("realworld/junk.vasp.xz", bytes(rng.getrandbits(8) for _ in range(300)), "damaged compressed file")
    bad = ["CuSO4·xH2O", "LiFePO4·", "Li₂O²⁺", "ＬｉＸｘ"]
    put("realworld/formulas_bad.csv", "id,formula\n" + "".join(f"b{k},{f}\n" for k, f in enumerate(bad)),
        "formula table (file)")
    cases.pop()
    cases += [Case("realworld/formulas_bad.csv", f"line {k + 2}", "bad unicode formula") for k in range(len(bad))]

    # valid oddities without a twin: they must read as the formula a chemist sees
    if "LiFePO4" in goods:
        s = goods["LiFePO4"].copy()
        s.add_oxidation_state_by_guess()
        put("oddities/oxidation_LiFePO4.cif", str(CifWriter(s)), "oxidation-state labels", "ok", formula="LiFePO4")
    rows = [("CuSO4·5H2O", "hydrate formula"), ("Na2SO4 · 10 H2O", "hydrate formula"),
            ("Li₂O", "unicode subscripts"), ("Li₃PS₄", "unicode subscripts"), ("ＬｉＦｅＰＯ４", "full-width formula")]
    put("oddities/formulas.csv", "id,formula\n" + "".join(f"u{k},{f}\n" for k, (f, _) in enumerate(rows)),
        "formula table (file)")
    cases.pop()
    plain = {"CuSO4·5H2O": "CuSO4(H2O)5", "Na2SO4 · 10 H2O": "Na2SO4(H2O)10", "Li₂O": "Li2O",
             "Li₃PS₄": "Li3PS4", "ＬｉＦｅＰＯ４": "LiFePO4"}
    cases += [
        Case("oddities/formulas.csv", f"line {k + 2}", kind, "ok", formula=Composition(plain[f]).reduced_formula)
        for k, (f, kind) in enumerate(rows)
    ]


if __name__ == "__main__":
    here = Path(__file__).resolve().parents[1]
    made = write_corpus(Path(sys.argv[1]), here / "datasets" / "demo" / "structures")
    print(f"{len(made)} cases ({sum(c.expect == 'fail' for c in made)} bad) written to {sys.argv[1]}")
