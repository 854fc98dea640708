"""A plug-in module added to a registry package for one test: the package's search path extended by a
temporary folder holding it, the registry's cache cleared before and after."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest


@contextmanager
def plugin_modules(package: ModuleType, registry: Callable, folder: Path, modules: dict[str, str]) -> Iterator[None]:
    """`package` (e.g. mi.candidates.formats) sees `modules` (name -> source) as its own while this runs."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in modules.items():
        (folder / f"{name}.py").write_text(source)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(package, "__path__", [*package.__path__, str(folder)])
        registry.cache_clear()
        try:
            yield
        finally:
            registry.cache_clear()
    registry.cache_clear()  # the package's own modules only, again
