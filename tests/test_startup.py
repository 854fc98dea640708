"""A fast start: the command line and config loading import no heavy module until a command needs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "matplotlib", "chgnet", "ray")


def _imported_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(m for m in sys.modules if '.' not in m)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    return set(out.stdout.split())


def test_importing_the_command_line_imports_no_heavy_module():
    loaded = _imported_after("import mi.cli")
    assert "mi" in loaded
    assert not loaded & {*HEAVY, "pandas", "pymatgen"}


def test_loading_a_screen_config_imports_neither_torch_nor_pandas():
    loaded = _imported_after(f"from mi.config import load_config\nload_config({str(ROOT / 'configs/demo.yaml')!r})")
    assert not loaded & {*HEAVY, "pandas"}


def test_help_runs_without_heavy_modules():
    loaded = _imported_after("import sys\nfrom mi.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass")
    assert not loaded & {*HEAVY, "pandas", "pymatgen"}
