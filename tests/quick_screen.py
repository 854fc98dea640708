"""A small, fast screen config for tests that run `mi screen` on their own files (the built-in formation
enthalpy model, composition and structure features, no feature cache, chunks in this process)."""

from __future__ import annotations

from pathlib import Path

GOOD = Path(__file__).resolve().parents[1] / "datasets" / "demo" / "structures"


def write_config(path: Path, sources: list[Path], *, report: bool = False, extra: str = "") -> Path:
    """`path` holding a screen of `sources` with one constraint (formation enthalpy <= 0) and three
    objectives; `extra` is appended under ``candidates:`` (e.g. a ``species:`` entry)."""
    listed = "".join(f"    - {s}\n" for s in sources)
    path.write_text(
        f"name: {path.stem}\n"
        f"candidates:\n  sources:\n{listed}{extra}"
        "features: {sets: [composition, structure], cache_dir: null, workers: 0}\n"
        "model: {checkpoint: 'builtin:formation_enthalpy', device: cpu}\n"
        "properties: {working_ion: Li, calculators: [density, capacity, cost]}\n"
        "ranking:\n"
        "  constraints: [{column: formation_enthalpy_eV_atom, max: 0.0}]\n"
        "  objectives:\n"
        "    - {column: capacity_mAh_g, direction: max, weight: 1.0}\n"
        "    - {column: formation_enthalpy_eV_atom, direction: min, weight: 1.0}\n"
        "    - {column: cost_usd_kg, direction: min, weight: 0.5}\n"
        "  top_k: 5\n"
        f"export: {{report: {'true' if report else 'false'}}}\n"
    )
    return path
