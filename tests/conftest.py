"""Shared fixtures: small real pymatgen objects, and paths to the project and to ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def pytest_collection_modifyitems(config, items):
    if SHARED.is_dir():
        return
    skip = pytest.mark.skip(reason=f"{SHARED} is absent (a fresh clone has no ../shared)")
    for item in items:
        if "shared" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Keep the feature cache of every test run out of the user's ~/.cache."""
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if saved is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = saved


@pytest.fixture(scope="session")
def li2s() -> Structure:
    """Antifluorite Li2S, a = 5.708 A."""
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.708), ["S", "Li"], [[0, 0, 0], [0.25, 0.25, 0.25]])


@pytest.fixture(scope="session")
def licoo2() -> Structure:
    """Layered LiCoO2 (R-3m, a = 2.816, c = 14.05 A, O z = 0.2396)."""
    return Structure.from_spacegroup(
        "R-3m", Lattice.hexagonal(2.816, 14.05), ["Li", "Co", "O"], [[0, 0, 0.5], [0, 0, 0], [0, 0, 0.2396]]
    )
