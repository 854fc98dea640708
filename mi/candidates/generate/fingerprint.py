"""A content fingerprint of a generator, for run manifests.

A screening config that names its generator by path (``candidates: {generate: gen.yaml}``) hashes only the
path; the candidates depend on what the file says and on the prototype table it points into. The
fingerprint covers both: the resolved ``generate`` section (defaults filled in) and every prototype it
uses, so editing the file or a prototype's coordinates changes it, and moving or reformatting the file
(comments, key order, ``name``, ``output``) does not.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mi.config import GenerateConfig, GenerateRunConfig

FINGERPRINT_VERSION = 1  # bump when what goes into the fingerprint changes


def _prototype_digest(prototype_id: str) -> str:
    from mi.candidates.generate.prototypes import get

    # frozen dataclasses of tuples and floats: repr is stable and covers every crystallographic number
    return hashlib.sha256(repr(get(prototype_id)).encode()).hexdigest()


def generator_fingerprint(path_or_cfg: str | Path | GenerateConfig | GenerateRunConfig) -> str:
    """sha256 (hex) of a generator: its resolved ``generate`` section and the prototypes it substitutes into.

    Takes the path of a `mi generate` config (read with `load_generate_config`, so a bad file fails with its
    key path), a `GenerateRunConfig`, or a `GenerateConfig` (the inline form of ``candidates.generate``).
    """
    from mi.config import GenerateConfig, GenerateRunConfig, load_generate_config

    cfg = path_or_cfg
    if isinstance(cfg, (str, Path)):
        cfg = load_generate_config(cfg)
    if isinstance(cfg, GenerateRunConfig):
        cfg = cfg.generate
    if not isinstance(cfg, GenerateConfig):
        raise TypeError(f"generator_fingerprint takes a path or a generate config, not {type(path_or_cfg).__name__}")
    payload = {
        "version": FINGERPRINT_VERSION,
        "generate": cfg.model_dump(mode="json"),
        "prototypes": {pid: _prototype_digest(pid) for pid in sorted({job.prototype for job in cfg.prototypes})},
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()
