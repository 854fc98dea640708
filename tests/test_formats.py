"""Readers by registry: a format is one module in mi.candidates.formats, read by the screens and by training."""

import sys
import textwrap
from pathlib import Path

import pytest

from mi.candidates import formats
from mi.candidates.readers import expand_sources, file_kind, iter_file
from mi.config import CandidatesConfig
from mi.models.datasets import read_table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from registry_plugins import plugin_modules  # noqa: E402

TOY = textwrap.dedent(
    '''
    """A toy format: one ``id formula value`` per line."""
    from mi.candidates.formats import Reader
    from mi.candidates.textio import BadRecord, parse_formula, text_of


    def _lines(text):
        return [line.split() for line in text.splitlines() if line.strip()]


    def _records(source):
        for i, fields in enumerate(_lines(source.text)):
            if len(fields) != 3:
                yield str(i), f"{source.stem}:{i}", BadRecord(f"expected 3 fields, got {len(fields)}")
                continue
            yield str(i), fields[0], parse_formula(fields[1])


    def _rows(path):
        rows = [f for f in _lines(text_of(path)) if len(f) == 3]
        return [(f[0], {"formula": f[1], "y": float(f[2])}, None) for f in rows], {"y": "eV"}


    READER = Reader("toy", (".toy",), records=_records, rows=_rows)
    '''
)


@pytest.fixture
def toy_format(tmp_path):
    with plugin_modules(formats, formats.registry, tmp_path / "plugin", {"toy": TOY}):
        yield


def test_a_new_format_is_one_module_read_by_screens_and_by_training(tmp_path, toy_format):
    data = tmp_path / "data"
    data.mkdir()
    (data / "set.toy").write_bytes("a LiFePO4 1.5\nb Li2O 2.0\nc broken\n".encode("utf-8-sig"))  # with a BOM
    (data / "README").write_text("not a candidate file")
    assert file_kind(data / "set.toy") == "toy" and file_kind(data / "set.toy.gz") == "toy"
    assert expand_sources([str(data)], lambda s: data.parent / s) == [data / "set.toy"]  # the folder finds it
    read = list(iter_file(data / "set.toy", CandidatesConfig(sources=["x"])))
    assert [getattr(r, "id", None) for r in read[:2]] == ["a", "b"]
    assert read[0].composition.reduced_formula == "LiFePO4" and read[0].structure is None
    assert read[2].record == "2" and "expected 3 fields" in read[2].reason  # a bad record is a failure row
    table = read_table(data / "set.toy", {"y": "y"})  # the training side reads the same module
    assert table.frame["y"].tolist() == [1.5, 2.0] and list(table.frame.index) == ["a", "b"]
    assert table.units["y"] == "eV"


def test_two_readers_may_not_claim_one_suffix(tmp_path):
    other = "from mi.candidates.formats import Reader\nREADER = Reader('cif2', ('.cif',), records=lambda s: iter(()))\n"
    with plugin_modules(formats, formats.registry, tmp_path / "plugin", {"other_cif": other}):
        with pytest.raises(RuntimeError, match="'.cif' is claimed by the readers 'cif' and 'cif2'"):
            formats.registry()


def test_every_shipped_reader_has_a_unique_kind_and_the_table_readers_are_the_training_formats():
    readers = formats.registry()
    assert set(readers) == {"ase_db", "cif", "csv", "extxyz", "json", "jsonl", "poscar"}
    assert sorted(formats.table_suffixes()) == [".csv", ".db", ".extxyz", ".json", ".xyz"]
