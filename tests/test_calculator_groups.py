"""Calculator groups by registry: a new group is one module in mi.properties.groups; names are checked by
the properties stage (config cannot know them), with file and key path."""

import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from pymatgen.core import Composition

from mi.candidates.base import Candidate, composition_hash
from mi.cli import main
from mi.config import PropertiesConfig, load_config
from mi.errors import ConfigError
from mi.properties import compute_properties, groups
from mi.properties.calculators import CALCULATORS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from registry_plugins import plugin_modules  # noqa: E402

# electrons per formula unit: a toy column computed from the composition, NaN where it cannot be
TOY = textwrap.dedent(
    '''
    import math

    from mi.properties.calculators import Calculator


    def _electrons(candidate, ctx):
        if any(el.symbol == "Xe" for el in candidate.composition.elements):
            return math.nan
        return float(candidate.composition.total_electrons)


    CALCULATORS = (Calculator("electrons_per_formula", "e", _electrons, lambda c, ctx: "a noble gas in it"),)
    '''
)


@pytest.fixture
def toy_group(tmp_path):
    with plugin_modules(groups, groups.calculator_groups, tmp_path / "plugin", {"electron_count": TOY}):
        yield


def _candidate(formula: str) -> Candidate:
    composition = Composition(formula)
    return Candidate(formula, "test", "", composition, None, composition_hash(composition))


def test_a_new_group_is_one_module_and_runs_in_the_properties_stage(toy_group):
    assert set(CALCULATORS) < set(groups.calculator_groups()) and "electron_count" in groups.group_names()
    cfg = PropertiesConfig(calculators=["capacity", "electron_count"])
    frame, failures, notes = compute_properties([_candidate("LiFePO4"), _candidate("XeF2")], cfg)
    assert failures == []
    assert frame.loc["LiFePO4", "electrons_per_formula"] == Composition("LiFePO4").total_electrons
    assert frame.loc["LiFePO4", "capacity_mAh_g"] > 150  # the built-ins run beside it
    assert "electrons_per_formula is missing for 1 candidate: a noble gas in it (XeF2)" in notes


def test_unknown_group_is_refused_by_validate_with_file_and_key_path(tmp_path, capsys):
    demo = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    demo["properties"] = {**demo.get("properties", {}), "calculators": ["capacity", "electron_count"]}
    demo["candidates"]["sources"] = [str((tmp_path / "none.csv"))]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(demo))
    load_config(path)  # config loads it: the names are the stage's
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: properties.calculators[1]: unknown calculator group 'electron_count'" in err
    assert "known: density, capacity" in err
    with pytest.raises(ConfigError, match="properties.calculators\\[1\\]"):
        groups.check_names(load_config(path))


def test_a_group_may_not_take_a_built_in_name(tmp_path):
    with plugin_modules(groups, groups.calculator_groups, tmp_path / "plugin", {"cost": "CALCULATORS = ()\n"}):
        with pytest.raises(RuntimeError, match="'cost' exist already"):
            groups.calculator_groups()


def test_the_built_in_names_are_those_of_the_calculators_and_derived_groups():
    from mi.properties.derived import DERIVED

    assert set(groups.BUILT_IN) == set(CALCULATORS) | set(DERIVED)
