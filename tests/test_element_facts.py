"""The packaged element table (mi/data) and user replacements of it."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pandas as pd
import pytest

from mi.data import ELEMENT_FACTS_VERSION, load_element_facts
from mi.data import build_element_facts as build
from mi.errors import InputError

SHARED = Path(__file__).resolve().parents[2] / "shared"
REFERENCE_CSV = SHARED / "reference" / "element_facts.csv"


def needs_shared(test):
    """Mark a test that reads ../shared; it is skipped where that folder is absent (a fresh clone)."""
    skip = pytest.mark.skipif(not REFERENCE_CSV.is_file(), reason="../shared/reference is absent")
    return pytest.mark.shared(skip(test))

PACKAGED_CSV = Path(build.__file__).with_name("element_facts.csv")
NUMERIC = (
    "price_usd_per_kg", "top_mine_share_pct", "china_refining_share_pct", "world_mine_production_t", "co2_kg_per_kg"
)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return load_element_facts()


# --- the packaged table -----------------------------------------------------------------------------


def test_packaged_table_is_indexed_by_element_and_versioned(table):
    assert table.index.name == "element"
    assert table.index.is_unique
    assert list(table.columns) == list(build.COLUMNS[1:])
    assert {"Li", "Co", "Ni", "Mn", "Fe", "P", "O", "C"} <= set(table.index)
    assert table.attrs["version"] == ELEMENT_FACTS_VERSION
    assert ELEMENT_FACTS_VERSION in table.attrs["source"]
    assert f"element-facts {ELEMENT_FACTS_VERSION}" in PACKAGED_CSV.with_name("SOURCES.md").read_text()


def test_numeric_columns_are_floats(table):
    for column in NUMERIC:
        assert table[column].dtype == float


def test_no_price_is_zero_and_each_price_has_provenance(table):
    price = table["price_usd_per_kg"]
    assert ((price > 0) | price.isna()).all()
    known = table[price.notna()]
    assert set(known["price_source"]) == {"S1", "S8"}
    assert known["price_year"].notna().all() and known["price_basis"].notna().all()
    assert table.loc[price.isna(), "price_source"].isna().all()
    for _, row in known.iterrows():
        assert row["price_source"] in row["source_ids"].split(";")


def test_prices_the_reference_lacks_come_from_pymatgen_2013(table):
    # pymatgen/analysis/costdb_elements.csv (S8), copied by hand from that file
    expected = {"O": 3.0, "S": 0.124009875, "N": 0.585106148, "Cl": 1.5}
    for element, price in expected.items():
        row = table.loc[element]
        assert row["price_usd_per_kg"] == price
        assert row["price_source"] == "S8"
        assert row["price_year"] == "2013"
        assert "pymatgen costdb" in row["price_basis"]
        assert "S8" in row["source_ids"].split(";")


def test_fe_and_na_are_priced_as_contained_in_ore_and_soda_ash(table):
    # element-facts 2026.12.1: the reference's estimates replace pymatgen's 2013 metal prices (Fe 0.030, Na 250)
    assert table.loc["Fe", "price_usd_per_kg"] == 0.16 and "62% Fe fines" in table.loc["Fe", "price_basis"]
    assert table.loc["Na", "price_usd_per_kg"] == 0.55 and "soda ash" in table.loc["Na", "price_basis"]
    assert set(table.loc[["Fe", "Na"], "price_source"]) == {"S1"}


def test_world_mine_production_is_known_for_li_co_ni_cu_only(table):
    # IEA GCMO 2024 (S5), 2023 mined totals, tonnes of contained metal
    production = table["world_mine_production_t"]
    assert production.dropna().to_dict() == {"Li": 194000.0, "Co": 240000.0, "Ni": 3451000.0, "Cu": 22508000.0}
    assert set(table.loc[["Li", "Co", "Ni", "Cu"], "production_year"]) == {"2023"}
    assert table.loc[production.notna(), "source_ids"].str.split(";").map(lambda ids: "S5" in ids).all()
    assert math.isnan(table.loc["Fe", "world_mine_production_t"])  # unknown, not zero


def test_co_and_mn_carry_china_refining_shares(table):
    assert table.loc["Co", "china_refining_share_pct"] == 70.0
    assert table.loc["Mn", "china_refining_share_pct"] == 90.0


def test_graphite_row_stands_for_carbon(table):
    carbon = table.loc["C"]
    assert carbon["price_usd_per_kg"] == 1.0
    assert "graphite" in carbon["notes"]
    assert carbon["price_source"] == "S1"


def test_a_price_citing_another_element_is_not_used(table):
    assert math.isnan(table.loc["Ne", "price_usd_per_kg"])
    assert "neptunium" in table.loc["Ne", "notes"]


def test_load_does_not_change_the_packaged_numbers(table):
    with open(PACKAGED_CSV, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            for column in NUMERIC:
                got = table.loc[row["element"], column]
                assert (math.isnan(got) and row[column] == "") or got == float(row[column])


# --- against the shared reference ---------------------------------------------------------------------


@needs_shared
def test_reference_numbers_are_copied_unchanged(table):
    with open(REFERENCE_CSV, newline="", encoding="utf-8") as f:
        reference = list(csv.DictReader(f))
    assert len(reference) > 30
    for ref in reference:
        element = "C" if ref["element"].startswith("graphite") else ref["element"]
        row = table.loc[element]
        for column in NUMERIC:
            if ref[column].strip():
                assert row[column] == float(ref[column]), (element, column)
            elif column != "price_usd_per_kg":  # a blank price may be filled from S8; nothing else is
                assert math.isnan(row[column]), (element, column)
        for column in ("top_mine_country", "eu_crm_2023", "us_critical_2022"):
            assert (row[column] if isinstance(row[column], str) else "") == ref[column].strip(), (element, column)
        if ref["price_usd_per_kg"].strip():
            assert row["price_basis"] == ref["price_basis"].strip()
            assert row["price_year"] == ref["price_year"].strip()


@needs_shared
@pytest.mark.parametrize(
    "element, price, co2", [("Li", 9.0, 7.1), ("Co", 46.3, 8.3), ("Ni", 15.0, 6.5), ("Ge", 4100.0, 170.0)]
)
def test_a_few_elements_equal_the_reference(table, element, price, co2):
    with open(REFERENCE_CSV, newline="", encoding="utf-8") as f:
        ref = {r["element"]: r for r in csv.DictReader(f)}[element]
    assert float(ref["price_usd_per_kg"]) == price == table.loc[element, "price_usd_per_kg"]
    assert float(ref["co2_kg_per_kg"]) == co2 == table.loc[element, "co2_kg_per_kg"]


@needs_shared
def test_build_script_reproduces_the_packaged_csv(tmp_path, capsys):
    out = tmp_path / "element_facts.csv"
    assert build.main(["--reference", str(REFERENCE_CSV.parent), "--out", str(out)]) == 0
    assert out.read_bytes() == PACKAGED_CSV.read_bytes()
    assert build.main(["--reference", str(REFERENCE_CSV.parent), "--out", str(PACKAGED_CSV), "--check"]) == 0
    out.write_text("element,price_usd_per_kg\n", encoding="utf-8")
    assert build.main(["--reference", str(REFERENCE_CSV.parent), "--out", str(out), "--check"]) == 1


def test_build_script_reports_a_missing_reference(tmp_path, capsys):
    assert build.main(["--reference", str(tmp_path), "--out", str(tmp_path / "x.csv")]) == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


# --- a user's table ------------------------------------------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prices.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_user_table_with_the_two_required_columns(tmp_path):
    path = _write(tmp_path, "element,price_usd_per_kg,notes\nLi, 10 ,mine\nO,,\nFe,NA,\n")
    table = load_element_facts(path)
    assert table.loc["Li", "price_usd_per_kg"] == 10.0
    assert math.isnan(table.loc["O", "price_usd_per_kg"])  # blank is unknown, not zero
    assert math.isnan(table.loc["Fe", "price_usd_per_kg"])
    assert table.loc["Li", "notes"] == "mine"
    assert table.attrs == {"source": str(path), "version": None}


def test_user_table_with_a_bad_price_names_file_row_and_column(tmp_path):
    path = _write(tmp_path, "element,price_usd_per_kg\nLi,10\nCo,cheap\n")
    with pytest.raises(InputError) as err:
        load_element_facts(path)
    message = str(err.value)
    assert str(path) in message and "row 3" in message and "price_usd_per_kg" in message and "'cheap'" in message


def test_user_table_with_a_negative_price(tmp_path):
    with pytest.raises(InputError, match=r"row 2 \(Li\), column price_usd_per_kg"):
        load_element_facts(_write(tmp_path, "element,price_usd_per_kg\nLi,-1\n"))


def test_user_table_without_a_price_column(tmp_path):
    path = _write(tmp_path, "element,cost\nLi,10\n")
    with pytest.raises(InputError, match="price_usd_per_kg") as err:
        load_element_facts(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("element,price_usd_per_kg\nLi,1\nXx,2\n", r"row 3, column element: 'Xx' is not an element symbol"),
        ("element,price_usd_per_kg\nLi,1\nLi,2\n", r"row 3, column element: Li already given in row 2"),
    ],
)
def test_user_table_with_bad_elements(tmp_path, text, expected):
    with pytest.raises(InputError, match=expected):
        load_element_facts(_write(tmp_path, text))


def test_user_table_that_does_not_exist(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_element_facts(tmp_path / "absent.csv")
