"""Readers for every supported format, validation of unphysical entries, ids, hashes and failures."""

import json
from pathlib import Path

import pytest
from ase.io import write as ase_write
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor

from mi.candidates import read_candidates
from mi.candidates.readers import expand_sources
from mi.config import CandidatesConfig
from mi.errors import InputError


def read(folder: Path, **kw):
    cfg = CandidatesConfig(sources=[str(folder)], **kw)
    return read_candidates(cfg, lambda p: Path(p), strict=kw.pop("strict", False))


def test_every_format_reads_the_same_structure_with_the_same_hash(tmp_path, li2s):
    li2s.to(filename=str(tmp_path / "a.cif"))
    li2s.to(filename=str(tmp_path / "b.vasp"), fmt="poscar")
    (tmp_path / "c.json").write_text(json.dumps(li2s.as_dict()))
    ase_write(str(tmp_path / "d.extxyz"), AseAtomsAdaptor.get_atoms(li2s), format="extxyz")
    import ase.db

    with ase.db.connect(str(tmp_path / "e.db")) as db:
        db.write(AseAtomsAdaptor.get_atoms(li2s), name="li2s_from_db")
    candidates, failures = read(tmp_path)
    assert failures == []
    assert [c.id for c in candidates] == ["a", "b", "c", "d", "li2s_from_db"]
    assert {c.formula for c in candidates} == {"Li2S"}
    assert len({c.content_hash for c in candidates}) == 1
    assert all(c.structure is not None and len(c.structure) == 12 for c in candidates)


def test_formula_csv_gives_composition_only_candidates(tmp_path):
    (tmp_path / "f.csv").write_text("id,formula\nLFP,LiFePO4\n,LiCoO2\nNMC811,LiNi0.8Mn0.1Co0.1O2\n")
    candidates, failures = read(tmp_path)
    assert failures == []
    assert [c.id for c in candidates] == ["LFP", "f:3", "NMC811"]
    assert all(c.structure is None for c in candidates)
    assert candidates[2].composition["Ni"] == pytest.approx(0.8)


def test_formula_csv_read_line_by_line_gives_what_the_whole_text_gives(tmp_path, monkeypatch):
    """A clean CSV is read as a stream of lines (a million rows are never one string); whatever is not
    clean (a byte-order mark, CR line ends, bad bytes, a NUL, only white space) is read whole as before,
    with the same candidates, failures and reasons."""
    import gzip

    import mi.candidates.readers as readers
    import mi.candidates.textio as textio

    rows = "id,formula\nLFP,LiFePO4\n,LiCoO2\nbad,Xx2O\nq,\"Li2\nO\"\ncafé,Na3PS4\nlast,NaCl"  # no final newline
    files = {
        "plain.csv": rows.encode(), "crlf.csv": rows.replace("\n", "\r\n").encode(),
        "bom.csv": b"\xef\xbb\xbf" + rows.encode(), "utf16.csv": rows.encode("utf-16"),
        "latin1.csv": rows.encode("latin-1"), "nul.csv": rows.encode() + b"\x00", "blank.csv": b" \n\t\n",
        "packed.csv.gz": gzip.compress(rows.encode()), "broken.csv.gz": gzip.compress(rows.encode())[:-9],
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    monkeypatch.setattr(textio, "_BLOCK", 5)  # blocks split lines and the two bytes of "é"
    streamed = {name: textio.text_lines(tmp_path / name) is not None for name in files}
    assert streamed == {name: name in ("plain.csv", "packed.csv.gz") for name in files}
    cfg = CandidatesConfig(sources=[str(tmp_path)])

    def read_all():
        out = []
        for name in sorted(files):
            for item in readers.iter_file(tmp_path / name, cfg):
                out.append((item.id, item.record, getattr(item, "formula", None), getattr(item, "reason", None)))
        return out

    got = read_all()
    monkeypatch.setattr(readers, "text_lines", lambda path: None)  # every file read whole
    assert got == read_all()
    assert ("café", "line 7", "Na3PS4", None) in got and ("LFP", "line 2", "LiFePO4", None) in got


def test_bad_entries_become_failures_with_file_record_and_reason(tmp_path, li2s):
    li2s.to(filename=str(tmp_path / "good.cif"))
    (tmp_path / "empty.cif").write_bytes(b"")
    overlap = Structure(Lattice.cubic(4.0), ["Li", "O"], [[0, 0, 0], [0.01, 0, 0]])
    overlap.to(filename=str(tmp_path / "overlap.vasp"), fmt="poscar")
    collapsed = Structure(Lattice.cubic(0.9), ["Li"], [[0, 0, 0]])
    (tmp_path / "collapsed.json").write_text(json.dumps(collapsed.as_dict()))
    (tmp_path / "garbled.cif").write_text("data_x\n_cell_length_a 3\nloop_\n_atom_site_label\nfoo\n")
    (tmp_path / "latin1.cif").write_bytes("data_é\n_cell_length_a 3\n".encode("latin-1"))
    (tmp_path / "f.csv").write_text("id,formula\nok,LiFePO4\nbad,Xx2O\nempty,\nnum,Li2O-3\n")
    candidates, failures = read(tmp_path)
    assert {c.id for c in candidates} == {"ok", "good"}
    reasons = {(Path(f.source).name, f.record): f.reason for f in failures}
    assert reasons[("empty.cif", "")] == "empty file"
    assert "overlapping atoms" in reasons[("overlap.vasp", "0")]
    assert "collapsed cell" in reasons[("collapsed.json", "0")]
    assert "data_x" in {r for (name, r) in reasons if name == "garbled.cif"}
    assert "not UTF-8" in reasons[("latin1.cif", "")]
    assert reasons[("f.csv", "line 3")] == "unknown element 'Xx'"
    assert "is empty" in reasons[("f.csv", "line 4")]
    assert "cannot parse formula" in reasons[("f.csv", "line 5")]
    assert all(f.stage == "candidates" for f in failures)


def test_duplicate_ids_are_failures_and_first_one_wins(tmp_path, li2s, licoo2):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    li2s.to(filename=str(tmp_path / "a" / "X.cif"))
    licoo2.to(filename=str(tmp_path / "b" / "X.cif"))
    candidates, failures = read(tmp_path)
    assert [c.formula for c in candidates] == ["Li2S"]
    assert len(failures) == 1 and "duplicate id 'X'" in failures[0].reason


def test_max_atoms_and_multi_block_cif(tmp_path, li2s, licoo2):
    big = licoo2 * (2, 1, 1)  # 24 sites
    text = (li2s.to(fmt="cif") + "\n" + big.to(fmt="cif")).replace("data_Li2S", "data_first")
    (tmp_path / "two.cif").write_text(text)
    candidates, failures = read(tmp_path, max_atoms=12)
    assert [c.id for c in candidates] == ["two:first"]
    assert len(failures) == 1 and "max_atoms" in failures[0].reason
    assert failures[0].id == "two:LiCoO2"


def test_strict_stops_at_first_failure(tmp_path, li2s):
    li2s.to(filename=str(tmp_path / "good.cif"))
    (tmp_path / "empty.cif").write_bytes(b"")
    cfg = CandidatesConfig(sources=[str(tmp_path)])
    with pytest.raises(InputError, match="empty.cif: empty file"):
        read_candidates(cfg, lambda p: Path(p), strict=True)


def test_sources_that_match_nothing_are_fatal_and_named(tmp_path):
    with pytest.raises(InputError, match=r"candidates.sources\[0\]"):
        expand_sources([str(tmp_path / "nothing.cif")], lambda p: Path(p))
    with pytest.raises(InputError, match=r"candidates.sources\[1\].*matches no file"):
        (tmp_path / "a.cif").write_text("x")
        expand_sources([str(tmp_path / "a.cif"), str(tmp_path / "*.vasp")], lambda p: Path(p))


def test_glob_source(tmp_path, li2s, licoo2):
    li2s.to(filename=str(tmp_path / "a.cif"))
    licoo2.to(filename=str(tmp_path / "b.cif"))
    (tmp_path / "notes.txt").write_text("not a structure")
    files = expand_sources([str(tmp_path / "*.cif")], lambda p: Path(p))
    assert [f.name for f in files] == ["a.cif", "b.cif"]
    # folders skip files of unknown type silently; named files of unknown type are failures
    cfg = CandidatesConfig(sources=[str(tmp_path / "notes.txt")])
    candidates, failures = read_candidates(cfg, lambda p: Path(p))
    assert candidates == [] and "unsupported file type" in failures[0].reason


def test_composition_hash_is_the_hash_of_the_fractional_composition():
    """The fast path (amount / num_atoms) keys the same as pymatgen's fractional composition always did."""
    import hashlib
    import json

    from pymatgen.core import Composition

    from mi.candidates.base import composition_hash

    for formula in ("LiFePO4", "Li2Fe2P2O8", "Li3.001Cr0.999Mo3O12", "LiNi0.8Mn0.1Co0.1O2", "Li4Zn4Si12C64N16"):
        comp = Composition(formula)
        fractional = comp.fractional_composition
        payload = json.dumps(sorted((str(el), round(float(x), 8)) for el, x in fractional.items()))
        assert composition_hash(comp) == "sha256:" + hashlib.sha256(payload.encode()).hexdigest()
    assert composition_hash(Composition("LiFePO4")) == composition_hash(Composition("Li2Fe2P2O8"))
