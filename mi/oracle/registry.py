"""Energy oracles by name, so that a config can say `oracle: {name: chgnet}` and a user can plug another.

A factory is registered as ``"module:attribute"`` and imported on first use, so naming an oracle costs
nothing until it computes. `register_oracle` adds one at run time (e.g. a wrapper around DFT results).
SevenNet is not registered: its wheel pulls e3nn and a compiled extension, more than a default install
should carry; a user who has it can register a wrapper the same way.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from mi.errors import ConfigError
from mi.oracle.base import EnergyOracle

_ORACLES: dict[str, str | Callable[..., EnergyOracle]] = {
    "chgnet": "mi.oracle.chgnet:CHGNetOracle",
}


def register_oracle(name: str, factory: str | Callable[..., EnergyOracle]) -> None:
    """Make `get_oracle(name, ...)` call `factory(**settings)` ("module:attribute" or a callable)."""
    _ORACLES[name] = factory


def oracle_names() -> list[str]:
    return sorted(_ORACLES)


def get_oracle(name: str, **settings: Any) -> EnergyOracle:
    """An oracle by registered name, built with `settings` (its keyword arguments)."""
    factory = _ORACLES.get(name)
    if factory is None:
        raise ConfigError(f"oracle: unknown oracle {name!r}; known: {', '.join(oracle_names())}")
    if isinstance(factory, str):
        module, _, attribute = factory.partition(":")
        factory = getattr(importlib.import_module(module), attribute)
    try:
        return factory(**settings)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"oracle {name!r}: {exc}") from None
