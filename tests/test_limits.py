"""Per-structure limits: memory (features.max_memory_mb), and candidates.max_atoms before any parsing."""

from __future__ import annotations

import time

import pytest
from pydantic import ValidationError
from pymatgen.core import Structure

from mi.candidates import read_candidates
from mi.candidates.base import Candidate, structure_hash
from mi.config import CandidatesConfig, FeaturesConfig
from mi.features import featurize_candidates, featurize_with_config


def _candidate(name: str, structure: Structure) -> Candidate:
    return Candidate(name, "test", "0", structure.composition, structure, structure_hash(structure))


@pytest.fixture(autouse=True)
def greedy_analysis(monkeypatch):
    """Large cells reserve 200 MB more (untouched, so free without a limit): how much memory a structure
    needs must not depend on how much freed heap this test process happens to hold."""
    import numpy as np

    import mi.features.engine as engine

    real = engine.StructureAnalysis

    def analysis(structure):
        if len(structure) > 1000:
            reserved = np.empty(25_000_000)  # 200 MB of address space
            del reserved
        return real(structure)

    monkeypatch.setattr(engine, "StructureAnalysis", analysis)


@pytest.fixture(scope="module")
def batch(li2s):
    big = li2s * (7, 7, 7)  # 4116 sites: its neighbour lists need tens of MB
    return [_candidate("small", li2s), _candidate("big", big), _candidate("small2", li2s.copy())]


def test_a_structure_over_the_memory_limit_is_reported_and_the_run_goes_on(batch, tmp_path):
    limited = featurize_candidates(batch, ["composition", "structure"], max_memory_mb=1, cache=tmp_path)
    assert list(limited.features.index) == ["small", "small2"]
    (failure,) = limited.failures
    assert failure.id == "big" and "exceeded the memory limit of 1 MB" in failure.reason
    # the limit is lifted afterwards, and a memory failure is not cached: without the limit it succeeds
    free = featurize_candidates(batch, ["composition", "structure"], max_memory_mb=None, cache=tmp_path)
    assert list(free.features.index) == ["small", "big", "small2"] and not free.failures
    assert free.features.loc["small"].equals(limited.features.loc["small"])


def test_memory_limit_comes_from_the_config(batch):
    assert FeaturesConfig().max_memory_mb == 4096
    with pytest.raises(ValidationError):
        FeaturesConfig(max_memory_mb=0)
    cfg = FeaturesConfig(sets=["structure"], max_memory_mb=1, cache_dir=None, workers=0)
    result = featurize_with_config(batch, ["structure"], cfg, working_ion="Li")
    assert [f.id for f in result.failures] == ["big"]


def test_huge_cells_are_refused_from_their_declared_size(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from malformed import write_corpus

    root = Path(__file__).resolve().parents[1]
    write_corpus(tmp_path, root / "datasets" / "demo" / "structures")
    started = time.perf_counter()
    candidates, failures = read_candidates(
        CandidatesConfig(sources=[str(tmp_path / "huge")], max_atoms=2000), lambda s: Path(s)
    )
    seconds = time.perf_counter() - started
    assert candidates == [] and len(failures) == 5  # CIF, POSCAR, extended XYZ, JSON, JSON lines
    assert all("24000" in f.reason and "candidates.max_atoms=2000" in f.reason for f in failures)
    assert seconds < 5.0, seconds  # refused from the count, not built into 24,000 sites and neighbour-searched
