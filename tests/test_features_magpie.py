"""The composition set equals matminer's Magpie featurizers.

* always: against ``tests/data/magpie_matminer_reference.csv``, values matminer computed
  (``tests/data/make_magpie_reference.py``), so the check runs where matminer is not installed;
* where matminer is installed: the packaged element table against matminer's own tables, and, where
  ``../shared`` exists, 1,200 Materials Project compositions featurized live by both.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Composition

from mi.features.composition import MAGPIE_PROPERTIES, composition_feature_names, composition_features, magpie_table

HERE = Path(__file__).resolve().parent
REFERENCE = HERE / "data" / "magpie_matminer_reference.csv"
MP_COMPOSITIONS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mp_composition" / "mp_e_form_dev.csv"
RTOL = 1e-9  # last-bit differences from summation order only


def assert_equal_features(ours: np.ndarray, reference: np.ndarray, formulas: list[str]) -> None:
    names = composition_feature_names()
    close = np.isclose(ours, reference, rtol=RTOL, atol=1e-12) | (np.isnan(ours) & np.isnan(reference))
    if not close.all():
        rows, cols = np.nonzero(~close)
        shown = [
            f"{formulas[r]} {names[c]}: mi {ours[r, c]!r}, matminer {reference[r, c]!r}"
            for r, c in zip(rows[:10], cols[:10])
        ]
        pytest.fail(f"{(~close).sum()} values differ from matminer:\n  " + "\n  ".join(shown))


def test_committed_matminer_sample():
    with open(REFERENCE, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header, rows = rows[0], rows[1:]
    assert header[1:] == composition_feature_names()
    assert len(rows) >= 100
    formulas = [r[0] for r in rows]
    reference = np.array([[float(v) for v in r[1:]] for r in rows])
    ours = composition_features([Composition(f) for f in formulas])
    assert_equal_features(ours, reference, formulas)


def _matminer_featurizers():
    pytest.importorskip("matminer", reason="matminer is a test/benchmark-only dependency")
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("make_magpie_reference", HERE / "data" / "make_magpie_reference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module.featurizers()


def test_packaged_table_is_matminers():
    pytest.importorskip("matminer", reason="matminer is a test/benchmark-only dependency")
    from matminer.utils.data import MagpieData
    from pymatgen.core import Element

    raw, imputed = MagpieData(impute_nan=False), MagpieData(impute_nan=True)
    table = magpie_table()
    for z in range(1, 113):
        element = Element.from_Z(z)
        for k, name in enumerate(MAGPIE_PROPERTIES):
            expected = raw.get_elemental_property(element, name)
            assert table.raw[z, k] == expected or (np.isnan(table.raw[z, k]) and np.isnan(expected)), (element, name)
            assert table.values[z, k] == imputed.get_elemental_property(element, name), (element, name)
        assert list(table.oxidation_states[z]) == list(imputed.get_oxidation_states(element)), element


@pytest.mark.slow
@pytest.mark.shared
def test_equals_matminer_on_materials_project_compositions():
    featurizers = _matminer_featurizers()
    import pandas as pd

    formulas = pd.read_csv(MP_COMPOSITIONS)["formula"].drop_duplicates().sample(1200, random_state=3).tolist()
    compositions = [Composition(f) for f in formulas]
    reference = np.array([[float(v) for f in featurizers for v in f.featurize(c)] for c in compositions])
    assert_equal_features(composition_features(compositions), reference, formulas)
