from pathlib import Path

import pytest
import yaml

from mi.config import ScreenConfig, load_config, load_train_config, parse_override
from mi.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

MINIMAL = {
    "name": "t",
    "candidates": {"sources": ["x.cif"]},
    "ranking": {"objectives": [{"column": "capacity_mAh_g", "direction": "max"}]},
}


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_minimal_config_fills_defaults_and_resolves_paths(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.model.checkpoint == "builtin:formation_enthalpy"
    assert cfg.features.sets == ["composition", "structure"]
    assert cfg.resolve("x.cif") == tmp_path.resolve() / "x.cif"
    with pytest.raises(Exception):
        cfg.name = "other"  # frozen


def test_unknown_key_names_file_and_key_path(tmp_path):
    data = {**MINIMAL, "ranking": {"objectives": [MINIMAL["ranking"]["objectives"][0], {"column": "c", "directoin": "min"}]}}
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert str(path) in text
    assert "ranking.objectives[1].directoin: unknown key" in text
    assert "ranking.objectives[1].direction: required key is missing" in text


def test_wrong_type_names_key_path(tmp_path):
    data = {**MINIMAL, "ranking": {**MINIMAL["ranking"], "top_k": "many"}}
    with pytest.raises(ConfigError, match=r"ranking\.top_k"):
        load_config(write(tmp_path, data))


def test_wrong_enum_names_key_path(tmp_path):
    data = {**MINIMAL, "ranking": {"objectives": [{"column": "a", "direction": "up"}]}}
    with pytest.raises(ConfigError, match=r"ranking\.objectives\[0\]\.direction"):
        load_config(write(tmp_path, data))


def test_unknown_feature_set_names_file_key_path_and_the_known_sets(tmp_path):
    # config (the ground layer) does not know the feature sets: the features stage checks the names, as
    # `mi validate` and a screen, training or loop do before they start (tests/test_cli.py)
    from mi.features.sets import check_names

    data = {**MINIMAL, "features": {"sets": ["composition", "magpie"]},
            "models": [{"train": {"dataset": {"kind": "table", "path": "t.csv", "targets": {"y": "y"}},
                                               "model": {"kind": "element_attention", "descriptor_sets": ["nope"]}}}]}
    path = write(tmp_path, data)
    cfg = load_config(path)
    with pytest.raises(ConfigError, match=r"features\.sets\[1\]: unknown feature set 'magpie'.*known: composition, element_fraction") as err:
        check_names(cfg)
    assert str(path) in str(err.value)
    assert "models[0].train.model.descriptor_sets[0]: unknown feature set 'nope'" in str(err.value)
    check_names(load_config(write(tmp_path, MINIMAL)))  # the defaults are known sets


def test_overrides_apply_and_are_validated(tmp_path):
    path = write(tmp_path, MINIMAL)
    cfg = load_config(path, ["ranking.top_k=20", "ranking.objectives[0].weight=2.5", "properties.working_ion=Na"])
    assert cfg.ranking.top_k == 20
    assert cfg.ranking.objectives[0].weight == 2.5
    assert cfg.properties.working_ion == "Na"
    with pytest.raises(ConfigError, match=r"ranking\.top_k"):
        load_config(path, ["ranking.top_k=0"])
    with pytest.raises(ConfigError, match="out of range"):
        load_config(path, ["ranking.objectives[3].weight=1"])
    with pytest.raises(ConfigError, match="KEY.PATH=VALUE"):
        parse_override("ranking.top_k")


def test_model_checkpoint_and_train_are_exclusive(tmp_path):
    data = {**MINIMAL, "model": {"checkpoint": "m.pt", "train": {}}}
    with pytest.raises(ConfigError, match="not both"):
        load_config(write(tmp_path, data))


def test_constraint_needs_a_bound(tmp_path):
    data = {**MINIMAL, "ranking": {**MINIMAL["ranking"], "constraints": [{"column": "a"}]}}
    with pytest.raises(ConfigError, match=r"ranking\.constraints\[0\]"):
        load_config(write(tmp_path, data))


def test_not_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad.write_text("- just a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_hash_is_stable_and_sensitive(tmp_path):
    path = write(tmp_path, MINIMAL)
    assert load_config(path).hash() == load_config(path).hash()
    assert load_config(path).hash() != load_config(path, ["ranking.top_k=3"]).hash()


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_is_valid(path):
    raw = yaml.safe_load(path.read_text())
    if "candidates" in raw and "ranking" not in raw:  # a `mi label` config
        from mi.config import load_label_config

        cfg = load_label_config(path)
        assert cfg.candidates.generate or cfg.candidates.sources
    elif "candidates" in raw:
        cfg = load_config(path)
        assert isinstance(cfg, ScreenConfig)
        for source in cfg.candidates.sources:
            assert cfg.resolve(source).exists(), source
    elif "generate" in raw:
        from mi.config import load_generate_config

        cfg = load_generate_config(path)
        assert cfg.name
    elif "pool" in raw:
        from mi.config import load_loop_config

        cfg = load_loop_config(path)
        assert cfg.name
    else:
        cfg = load_train_config(path)
        assert cfg.name
    # the names only the stages know (`mi validate` checks them too)
    from mi.candidates.generate.prototypes import check_jobs
    from mi.features.sets import check_names
    from mi.properties.groups import check_names as check_calculators

    check_names(cfg)
    check_jobs(cfg)
    check_calculators(cfg)
