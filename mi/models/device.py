"""One place that decides where tensors live: the explicit argument, then ``MI_DEVICE``, then auto-detect."""

from __future__ import annotations

import os

import torch

from mi.errors import ConfigError

_KINDS = ("auto", "cpu", "cuda", "mps")


def _available(kind: str) -> bool:
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        backend = getattr(torch.backends, "mps", None)
        return bool(backend is not None and backend.is_available())
    return True


def resolve_device(requested: str | None = "auto") -> torch.device:
    """The torch device to use.

    `requested` ("cpu", "cuda", "cuda:1", "mps") wins; "auto" or None defers to the environment variable
    ``MI_DEVICE`` (read at call time), and then to the first available of cuda, mps, cpu. Asking for a
    device that is not available is an error, not a silent fallback to the CPU.
    """
    choice = (requested or "auto").strip().lower()
    source = "device"
    if choice == "auto":
        env = os.environ.get("MI_DEVICE", "").strip().lower()
        if env:
            choice, source = env, "MI_DEVICE"
    if choice == "auto":
        for kind in ("cuda", "mps"):
            if _available(kind):
                return torch.device(kind)
        return torch.device("cpu")
    kind = choice.split(":", 1)[0]
    if kind not in _KINDS:
        raise ConfigError(f"{source}: unknown device {choice!r} (use one of {', '.join(_KINDS)})")
    if not _available(kind):
        raise ConfigError(f"{source}: device {choice!r} was requested but is not available on this machine")
    try:
        return torch.device(choice)
    except RuntimeError as exc:
        raise ConfigError(f"{source}: invalid device {choice!r}: {exc}") from None
