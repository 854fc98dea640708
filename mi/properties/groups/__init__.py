"""Calculator groups by registry: the names ``properties.calculators`` may list.

The built-in groups are `mi.properties.calculators.CALCULATORS` (per candidate) and
`mi.properties.derived.DERIVED` (from table columns, after the surrogate). A new per-candidate group is a
one-file addition: a module in this package, named as the group, with ``CALCULATORS = (Calculator(...), ...)``,
one column each (`mi.properties.calculators.Calculator`: column, unit, compute(candidate, context),
why_missing). Nothing registers itself on import: `calculator_groups()` imports the package's modules when a
screen first computes properties. Config (the ground layer) cannot know the names: `check_names` checks them,
with file and key path, in `mi validate` and before a screen starts, from the names alone (no pandas, no
pymatgen: validating stays light).
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mi.properties.calculators import Calculator

# The names of CALCULATORS and DERIVED, known without importing them (tests/test_calculator_groups.py keeps
# the two in step).
BUILT_IN = ("density", "capacity", "cost", "supply", "co2", "circularity", "energy", "demand", "stability_window")


def group_names() -> list[str]:
    """Every name ``properties.calculators`` may list: the built-ins, then this package's modules."""
    added = [info.name for info in pkgutil.iter_modules(__path__)]
    taken = [name for name in added if name in BUILT_IN]
    if taken:
        raise RuntimeError(f"{__name__}: calculator group(s) {', '.join(map(repr, taken))} exist already")
    return [*BUILT_IN, *added]


@functools.cache
def calculator_groups() -> dict[str, tuple[Calculator, ...]]:
    """Per-candidate groups by name: the built-ins, then this package's modules."""
    from mi.properties.calculators import CALCULATORS

    groups = dict(CALCULATORS)
    for name in group_names()[len(BUILT_IN):]:
        groups[name] = tuple(importlib.import_module(f"{__name__}.{name}").CALCULATORS)
    return groups


def check_names(cfg) -> None:
    """Refuse a config (any kind) whose ``properties.calculators`` names an unknown group, with file and key path."""
    from mi.config import PropertiesConfig, invalid_config, sections

    known = group_names()
    problems = [
        (f"{path}.calculators[{i}]", f"unknown calculator group {name!r} (known: {', '.join(known)})")
        for path, section in sections(cfg)
        if isinstance(section, PropertiesConfig)
        for i, name in enumerate(section.calculators)
        if name not in known
    ]
    if problems:
        raise invalid_config(cfg, problems)


__all__ = ["BUILT_IN", "calculator_groups", "check_names", "group_names"]
