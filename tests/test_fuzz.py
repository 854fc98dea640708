"""Fuzzing: random bytes and text into every reader, random YAML mappings into the config loaders.

A reader must return candidates and failures (or raise InputError), never anything else and never hang; a
config loader must return a valid config or raise ConfigError.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mi.candidates.base import Candidate, Failure
from mi.candidates.readers import iter_file
from mi.config import CandidatesConfig, load_config, load_generate_config, load_train_config
from mi.errors import ConfigError, InputError

SUFFIXES = [".cif", ".vasp", ".json", ".jsonl", ".extxyz", ".csv"]
CFG = CandidatesConfig(sources=["x"], max_atoms=200)
FUZZ = settings(max_examples=60, deadline=5000, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

# Text that looks a little like the formats, so the fuzzing gets past the first line of each parser.
fragments = st.sampled_from([
    "data_x\n", "_cell_length_a 4.0\n", "_cell_angle_alpha 90\n", "loop_\n", " _atom_site_fract_x\n",
    " _atom_site_type_symbol\n", "Li 0.5 0.5 0.5\n", "1.0\n", "4 0 0\n", "Li O\n", "1 1\n", "direct\n",
    '{"lattice": ', '"sites": [', "]}", "nan", "-1e999", "2\n", 'Lattice="4 0 0 0 4 0 0 0 4" pbc="T T T"\n',
    "id,formula\n", "a,LiCoO2\n", "b,Xx\n", ",,,\n", '"', "\x00", "é", "\ufeff",
])
texty = st.lists(fragments | st.text(max_size=20), max_size=30).map("".join)


def _read(suffix: str, data: bytes) -> list:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz{suffix}"
        path.write_bytes(data)
        try:
            items = list(iter_file(path, CFG))
        except InputError:
            return []
    assert all(isinstance(i, (Candidate, Failure)) for i in items)
    assert all(isinstance(i.reason, str) and i.reason for i in items if isinstance(i, Failure))
    return items


@FUZZ
@given(suffix=st.sampled_from(SUFFIXES), data=st.binary(max_size=2000))
def test_readers_survive_random_bytes(suffix, data):
    _read(suffix, data)


@FUZZ
@given(suffix=st.sampled_from(SUFFIXES), text=texty)
def test_readers_survive_format_like_text(suffix, text):
    _read(suffix, text.encode("utf-8", errors="surrogatepass") if "\ud800" not in text else b"")


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(
        ["lattice", "sites", "species", "coords", "abc", "occu", "element", "matrix", "id", "formula", "structure"]
    ) | st.text(max_size=5), inner, max_size=5),
    max_leaves=25,
)


@FUZZ
@given(value=json_values, suffix=st.sampled_from([".json", ".jsonl"]))
def test_readers_survive_random_json(value, suffix):
    _read(suffix, json.dumps(value).encode())


sections = {
    "screen": ["name", "candidates", "features", "model", "properties", "ranking", "export"],
    "train": ["name", "train", "checkpoint", "run_dir"],
    "generate": ["name", "generate", "output"],
}
keys = st.sampled_from(sorted({k for v in sections.values() for k in v} | {
    "sources", "sets", "objectives", "column", "direction", "weight", "epochs", "model", "kind", "prototypes",
    "top_k", "working_ion", "max_atoms", "timeout_s", "max_memory_mb", "dataset", "path", "targets", "constraints",
}))
yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys | st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


@FUZZ
@given(mapping=st.dictionaries(keys, yaml_values, max_size=6), which=st.sampled_from(sorted(sections)))
def test_config_loaders_give_a_config_or_a_config_error(mapping, which):
    loader = {"screen": load_config, "train": load_train_config, "generate": load_generate_config}[which]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        path.write_text(yaml.safe_dump(mapping))
        try:
            loader(path)
        except ConfigError as exc:
            assert str(exc)


@FUZZ
@given(text=st.text(max_size=300))
def test_config_loaders_survive_random_text(text):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass") if "\ud800" not in text else None
        if path.exists():
            try:
                load_config(path)
            except ConfigError:
                pass
