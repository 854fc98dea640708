"""Reference energies for labels: elemental references relaxed with the oracle, and hull reference sets.

Elemental references (chemical potentials of formation energies and of the working-ion metal) are built
offline and relaxed with the same oracle as the candidates, once: they are cached on disk, one JSON file
per oracle provenance (name, model, version, settings), under ``$XDG_CACHE_HOME/mi/oracle_references``
(or ``~/.cache/...``), or a folder the caller names. For each element several starting structures are
relaxed and the lowest energy per atom is taken:

* the element's reference state in ASE's table (``ase.data.reference_states``: crystal structure and
  lattice constant as tabulated in C. Kittel, *Introduction to Solid State Physics*), where
  ``ase.build.bulk`` can build it (bcc, fcc, hcp, diamond, rhombohedral, bct ...);
* bcc, fcc, hcp (ideal c/a) and simple cubic cells sized from pymatgen's atomic radius;
* for H, N, O, F, Cl, Br, I: the diatomic molecule in a 10 A box (experimental bond lengths);
* for S: the S8 crown ring in a 12 A box (alpha-S is a crystal of them).

Elements whose true ground state is complex (alpha-Mn, black P, alpha-S, alpha-B, Ga) get the lowest of
these simple polymorphs, an upper bound on the oracle's ground-state energy; `reference_report` shows
the difference to the Materials Project's energy for each, so the size of that error is visible.

Hull reference sets (`HullReferences`):

* ``mp_bundled``: the 423 Materials Project GGA/GGA+U entries that ship with pymatgen
  (``pymatgen/analysis/compatibility/calc_compounds.json.gz``), processed with
  ``MaterialsProject2020Compatibility``; oracle energies are read as MP2020-compatible (true for CHGNet
  0.3.0, trained on MPtrj corrected energies);
* ``entries``: a user's JSON list of pymatgen ``ComputedEntry``/``ComputedStructureEntry`` dicts, taken
  as they are (correction scheme: whatever the file's energies already include);
* ``oracle_elements``: only the oracle's own elemental references, so the hull is the elements' plane
  and e_hull is max(0, formation energy): a self-consistent but weak reference, for chemistries the other
  sets lack.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import warnings
from pathlib import Path

from pymatgen.core import Composition, Element, Lattice, Structure

from mi.candidates.base import Candidate, structure_hash
from mi.errors import ConfigError, InputError
from mi.files import atomic_write_json, user_cache_dir
from mi.oracle.base import EnergyOracle

log = logging.getLogger(__name__)

REFERENCES_VERSION = "1"  # bump when the starting structures change: the cache key includes it
MOLECULES = {"H": 0.741, "N": 1.098, "O": 1.208, "F": 1.412, "Cl": 1.988, "Br": 2.281, "I": 2.666}  # bond, A
MP_BUNDLED = "pymatgen/analysis/compatibility/calc_compounds.json.gz"


def default_reference_cache() -> Path:
    return user_cache_dir("oracle_references")


def _ase_reference(symbol: str) -> Structure | None:
    from ase.build import bulk
    from pymatgen.io.ase import AseAtomsAdaptor

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return AseAtomsAdaptor.get_structure(bulk(symbol))
    except Exception:  # noqa: BLE001 - ASE has no basis for this element's state (or no state at all)
        return None


def elemental_starts(symbol: str) -> dict[str, Structure]:
    """Starting structures of one element, by polymorph name (see the module docstring)."""
    out: dict[str, Structure] = {}
    if symbol in MOLECULES:
        d = MOLECULES[symbol]
        box = 10.0
        out["molecule"] = Structure(Lattice.cubic(box), [symbol, symbol], [[0, 0, 0], [d / box, 0, 0]])
        return out
    if symbol == "S":
        # alpha-S is a crystal of S8 crown rings; the ring alone (S-S 2.05 A, S-S-S 108 deg) in a box is far
        # closer to it than any simple lattice.
        box, radius, height = 12.0, 2.345, 0.495
        coords = [[0.5 + radius * math.cos(k * math.pi / 4) / box, 0.5 + radius * math.sin(k * math.pi / 4) / box,
                   0.5 + (height if k % 2 else -height) / box] for k in range(8)]
        out["s8_ring"] = Structure(Lattice.cubic(box), ["S"] * 8, coords)
    ase_state = _ase_reference(symbol)
    if ase_state is not None:
        out["ase_reference"] = ase_state
    radius = Element(symbol).atomic_radius or Element(symbol).atomic_radius_calculated or 1.5
    r = float(radius)
    out["bcc"] = Structure(Lattice.cubic(4 * r / math.sqrt(3)), [symbol] * 2, [[0, 0, 0], [0.5, 0.5, 0.5]])
    out["fcc"] = Structure(Lattice.cubic(2 * math.sqrt(2) * r), [symbol] * 4,
                           [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]).get_primitive_structure()
    out["hcp"] = Structure(Lattice.hexagonal(2 * r, 2 * r * math.sqrt(8 / 3)), [symbol] * 2,
                           [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]])
    out["sc"] = Structure(Lattice.cubic(2 * r), [symbol], [[0, 0, 0]])
    return out


class ElementalReferences:
    """Energy per atom of each element's reference state under one oracle, computed once and cached."""

    def __init__(self, oracle: EnergyOracle, cache_dir: str | Path | None = None) -> None:
        self.oracle = oracle
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._table: dict[str, dict] | None = None

    def key(self) -> str:
        payload = json.dumps({"oracle": self.oracle.provenance(), "references": REFERENCES_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def path(self) -> Path:
        folder = self.cache_dir if self.cache_dir is not None else default_reference_cache()
        return folder / f"{self.oracle.name}-{self.key()}.json"

    def _load(self) -> dict[str, dict]:
        if self._table is None:
            path = self.path()
            self._table = {}
            if path.is_file():
                try:
                    self._table = json.loads(path.read_text(encoding="utf-8"))["elements"]
                except (ValueError, KeyError) as exc:
                    log.warning("ignoring unreadable reference cache %s (%s)", path, exc)
        return self._table

    def energies(self, elements: list[str] | set[str]) -> dict[str, float]:
        """Energy per atom of each element that has a reference (absent: none could be computed)."""
        table = self._load()
        missing = sorted(set(elements) - set(table))
        if missing:
            for symbol in missing:
                table[symbol] = self._compute(symbol)
            path = self.path()
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, {"oracle": self.oracle.provenance(), "references_version": REFERENCES_VERSION,
                                     "elements": table})
        return {el: table[el]["energy_eV_atom"] for el in elements if table.get(el, {}).get("energy_eV_atom") is not None}

    def entry(self, symbol: str) -> dict:
        self.energies([symbol])
        return dict(self._load()[symbol])

    def _compute(self, symbol: str) -> dict:
        starts = elemental_starts(symbol)
        cands = [
            Candidate(f"{symbol}:{name}", "elemental_reference", name, s.composition, s, structure_hash(s))
            for name, s in starts.items()
        ]
        relaxed, failures = self.oracle.relax(cands)
        if not relaxed:
            reasons = "; ".join(f.reason for f in failures)
            log.warning("no elemental reference for %s: %s", symbol, reasons)
            return {"energy_eV_atom": None, "polymorph": None, "reason": reasons}
        best = min(relaxed, key=lambda r: r.energy_eV_atom)
        return {
            "energy_eV_atom": best.energy_eV_atom,
            "polymorph": best.id.split(":", 1)[1],
            "volume_per_atom_A3": best.structure.volume / len(best.structure),
            "converged": best.converged,
            "tried": {r.id.split(":", 1)[1]: r.energy_eV_atom for r in relaxed},
        }


# --- hull reference sets ----------------------------------------------------------------------------


def mp_bundled_entries() -> tuple:
    """pymatgen's 423 bundled Materials Project entries, MP2020-corrected: the stability windows' references
    (`mi.properties.stability.reference_entries`, once per process and cached between processes)."""
    from mi.properties.stability import reference_entries

    return reference_entries()


def read_entries_file(path: str | Path) -> tuple:
    from pymatgen.entries.computed_entries import ComputedEntry, ComputedStructureEntry

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"labels.entries_file: {path}: file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(f"{path}: not JSON: {exc}") from None
    if isinstance(data, dict):
        data = list(data.values())
    out = []
    for i, item in enumerate(data):
        try:
            cls = ComputedStructureEntry if "structure" in item else ComputedEntry
            out.append(cls.from_dict(item))
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"{path}: record {i}: not a pymatgen ComputedEntry: {type(exc).__name__}: {exc}") from None
    return tuple(out)


class HullReferences:
    """Energy above the convex hull of a reference set (see the module docstring for the sets)."""

    def __init__(self, kind: str = "mp_bundled", entries_file: str | Path | None = None,
                 elemental: ElementalReferences | None = None) -> None:
        if kind not in ("mp_bundled", "entries", "oracle_elements"):
            raise ConfigError(f"labels.references: unknown reference set {kind!r}")
        if kind == "entries" and entries_file is None:
            raise ConfigError("labels.references: 'entries' needs labels.entries_file")
        if kind == "oracle_elements" and elemental is None:
            raise ValueError("oracle_elements needs the elemental references")
        self.kind = kind
        self.entries_file = entries_file
        self.elemental = elemental
        self._entries: tuple | None = None

    def describe(self) -> dict:
        if self.kind == "mp_bundled":
            return {"reference_set": f"Materials Project entries bundled with pymatgen ({MP_BUNDLED}, 423 entries)",
                    "correction_scheme": "MaterialsProject2020Compatibility on the references; oracle energies "
                    "taken as MP2020-compatible"}
        if self.kind == "entries":
            return {"reference_set": f"user entries file {self.entries_file}",
                    "correction_scheme": "none applied (the file's energies as given)"}
        return {"reference_set": "the oracle's own elemental references",
                "correction_scheme": "none (all energies from the oracle)"}

    def entries(self) -> tuple:
        if self._entries is None:
            if self.kind == "mp_bundled":
                self._entries = mp_bundled_entries()
            elif self.kind == "entries":
                self._entries = read_entries_file(self.entries_file)
            else:
                self._entries = ()
        return self._entries

    def e_above_hull(self, composition: Composition, energy_eV_atom: float, extra: tuple = ()) -> float:
        """eV/atom above the hull of the references in the candidate's chemical system (NaN if they lack
        an element of it). `extra` entries (e.g. other candidates relaxed by the same oracle) join the
        references, so candidates compete with each other on the hull."""
        from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram

        elements = {el.symbol for el in composition.elements}
        if self.kind == "oracle_elements":
            mu = self.elemental.energies(elements)
            pool = [PDEntry(Composition(el), e) for el, e in mu.items()]
        else:
            pool = [e for e in self.entries() if {el.symbol for el in e.composition.elements} <= elements]
        pool += [e for e in extra if {el.symbol for el in e.composition.elements} <= elements]
        have = {e.composition.elements[0].symbol for e in pool if len(e.composition.elements) == 1}
        if not elements <= have:
            return math.nan
        candidate = PDEntry(composition, energy_eV_atom * composition.num_atoms, name="candidate")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            diagram = PhaseDiagram([*pool, candidate])
            return float(diagram.get_e_above_hull(candidate, allow_negative=True))


def reference_report(elemental: ElementalReferences, elements: list[str]) -> list[dict]:
    """Per element: the oracle's reference energy, the polymorph it came from, and MP's (bundled) energy."""
    mp = {e.composition.elements[0].symbol: e.energy_per_atom for e in mp_bundled_entries()
          if len(e.composition.elements) == 1}
    energies = elemental.energies(elements)
    rows = []
    for el in elements:
        entry = elemental.entry(el)
        rows.append({"element": el, "oracle_eV_atom": energies.get(el), "polymorph": entry.get("polymorph"),
                     "mp_eV_atom": mp.get(el)})
    return rows
