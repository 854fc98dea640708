"""Labels from an energy oracle: formation energy, energy above hull, relaxed volume and density, voltage.

`OracleLabeller` relaxes each candidate with an `EnergyOracle` and derives

* ``formation_energy_eV_atom``: against elemental references relaxed with the same oracle
  (`mi.oracle.references.ElementalReferences`, cached on disk);
* ``e_hull_eV_atom``: above the hull of a stated reference set (`HullReferences`), the correction scheme
  named in the provenance;
* ``relaxed_volume_per_atom_A3`` and ``relaxed_density_g_cm3``: of the relaxed cell (named apart from the
  calculators' ``density_g_cm3`` and the descriptor ``volume_per_atom_A3``, which read the input cell);
* ``voltage_V``: the average voltage against the working-ion metal, from the relaxed lithiated cell and
  its relaxed delithiated counterpart (`mi.oracle.voltage`); NaN where no working ion can leave.

A candidate the oracle cannot take (no structure, a failed relaxation) is a `Failure`; a label that does
not apply is NaN. `chgnet_labeller(**settings)` builds the CHGNet one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from mi.candidates.base import Candidate, Failure, structure_hash
from mi.oracle.base import EnergyOracle, Labeller, Relaxation
from mi.oracle.references import ElementalReferences, HullReferences
from mi.oracle.voltage import average_voltage, delithiate, ions_to_remove

log = logging.getLogger(__name__)

UNITS = {
    "formation_energy_eV_atom": "eV/atom",
    "e_hull_eV_atom": "eV/atom",
    "relaxed_volume_per_atom_A3": "A^3/atom",
    "relaxed_density_g_cm3": "g/cm^3",
    "voltage_V": "V",
}
# Written next to the targets: what the oracle did (not learned).
DETAILS = ["energy_eV_atom", "n_steps", "converged", "oracle_seconds", "delithiated_formula", "voltage_note"]


@dataclass
class LabelResult:
    frame: pd.DataFrame  # index: candidate id; targets, then DETAILS
    relaxed: dict[str, Structure] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)


class OracleLabeller(Labeller):
    """Targets of candidates from oracle relaxations (see the module docstring)."""

    def __init__(
        self,
        oracle: EnergyOracle,
        *,
        references: str = "mp_bundled",
        entries_file: str | Path | None = None,
        working_ion: str = "Li",
        voltage: bool = True,
        cache_dir: str | Path | None = None,
    ) -> None:
        self.oracle = oracle
        self.working_ion = working_ion
        self.voltage = voltage
        self.elemental = ElementalReferences(oracle, cache_dir)
        self.hull = HullReferences(references, entries_file, self.elemental)

    @property
    def targets(self) -> list[str]:
        return [t for t in UNITS if self.voltage or t != "voltage_V"]

    @property
    def units(self) -> dict[str, str]:
        return {t: UNITS[t] for t in self.targets}

    def provenance(self) -> dict:
        return {
            **self.oracle.provenance(),
            "formation_energy": "against elemental references relaxed with the same oracle "
            "(lowest of ASE/Kittel reference state, bcc, fcc, hcp, sc, or the diatomic molecule in a box)",
            "elemental_references_cache": self.elemental.key(),
            **self.hull.describe(),
            "voltage": f"average voltage vs {self.working_ion} metal (oracle-relaxed) from the relaxed cell and its "
            "delithiated counterpart (redox-limited ion removal)" if self.voltage else None,
            "units": self.units,
        }

    def label(self, candidates: Sequence[Candidate]) -> tuple[pd.DataFrame, list[Failure]]:
        result = self.label_details(candidates)
        return result.frame[self.targets], result.failures

    def label_details(self, candidates: Sequence[Candidate]) -> LabelResult:
        """Targets plus what the oracle did, the relaxed structures, and the failures."""
        relaxations, failures = self.oracle.relax(candidates)
        elements = {el.symbol for r in relaxations for el in r.structure.composition.elements}
        if self.voltage:
            elements.add(self.working_ion)
        mu = self.elemental.energies(elements)

        rows: dict[str, dict] = {}
        for r in relaxations:
            rows[r.id] = self._row(r, mu)
        if self.voltage:
            self._voltages(relaxations, mu, rows)
        columns = [*self.targets, *DETAILS]
        frame = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=columns)
        frame = frame.reindex([c.id for c in candidates if c.id in rows])
        frame.index.name = "id"
        for column in self.targets:
            frame[column] = frame[column].astype(float)
        relaxed = {r.id: r.structure for r in relaxations}
        return LabelResult(frame, relaxed, failures)

    def _row(self, r: Relaxation, mu: dict[str, float]) -> dict:
        return relaxation_row(r, mu, self.hull)

    def _voltages(self, relaxations: list[Relaxation], mu: dict[str, float], rows: dict[str, dict]) -> None:
        ion = self.working_ion
        partners, removed = [], {}
        for r in relaxations:
            n = ions_to_remove(r.structure, ion)
            if n == 0:
                rows[r.id]["voltage_note"] = f"no {ion} can leave (none, or no redox headroom)"
                continue
            host = delithiate(r.structure, ion, n)
            if len(host) == 0:
                rows[r.id]["voltage_note"] = "nothing left after delithiation"
                continue
            removed[r.id] = n
            partners.append(Candidate(r.id, "delithiated", r.id, host.composition, host, structure_hash(host)))
        if not partners:
            return
        if ion not in mu:
            for cid in removed:
                rows[cid]["voltage_note"] = f"no {ion} metal reference"
            return
        hosts, host_failures = self.oracle.relax(partners)
        for f in host_failures:
            rows[f.id]["voltage_note"] = f"delithiated cell failed: {f.reason}"
        lithiated = {r.id: r for r in relaxations}
        for h in hosts:
            li = lithiated[h.id]
            v = average_voltage(li.energy_eV_atom * len(li.structure), h.energy_eV_atom * len(h.structure),
                                removed[h.id], mu[ion], ion)
            rows[h.id]["voltage_V"] = v if np.isfinite(v) else math.nan
            rows[h.id]["delithiated_formula"] = h.structure.composition.reduced_formula


def relaxation_row(r: Relaxation, mu: dict[str, float], hull: HullReferences) -> dict:
    """The labels of one relaxation (formation energy against `mu`, e_hull above `hull`, relaxed volume and
    density) and what the oracle did; voltage NaN and its details empty, for the caller to fill in."""
    s = r.structure
    comp = s.composition
    formation = math.nan
    if all(el.symbol in mu for el in comp.elements):
        formation = r.energy_eV_atom - sum(n * mu[el.symbol] for el, n in comp.items()) / comp.num_atoms
    try:
        e_hull = hull.e_above_hull(comp, r.energy_eV_atom)
    except Exception as exc:  # noqa: BLE001 - a hull that cannot be built leaves the label missing
        log.debug("no hull for %s: %s", r.id, exc)
        e_hull = math.nan
    return {
        "formation_energy_eV_atom": formation,
        "e_hull_eV_atom": e_hull,
        "relaxed_volume_per_atom_A3": s.volume / len(s),
        "relaxed_density_g_cm3": float(s.density),
        "voltage_V": math.nan,
        "energy_eV_atom": r.energy_eV_atom,
        "n_steps": r.n_steps,
        "converged": r.converged,
        "oracle_seconds": r.seconds,
        "delithiated_formula": "",
        "voltage_note": "",
    }


def chgnet_labeller(
    *,
    model: str = "0.3.0",
    fmax: float = 0.1,
    max_steps: int = 300,
    time_limit_s: float | None = 120.0,
    max_memory_mb: float | None = 4096.0,
    relax_cell: bool = True,
    batch_size: int = 16,
    device: str = "cpu",
    references: str = "mp_bundled",
    entries_file: str | Path | None = None,
    working_ion: str = "Li",
    voltage: bool = True,
    cache_dir: str | Path | None = None,
) -> OracleLabeller:
    """An `OracleLabeller` on CHGNet (weights from the wheel, loaded on first use), from the oracle registry."""
    from mi.oracle.registry import get_oracle

    oracle = get_oracle("chgnet", model_name=model, fmax=fmax, max_steps=max_steps, time_limit_s=time_limit_s,
                        max_memory_mb=max_memory_mb, relax_cell=relax_cell, batch_size=batch_size, device=device)
    return OracleLabeller(oracle, references=references, entries_file=entries_file, working_ion=working_ion,
                          voltage=voltage, cache_dir=cache_dir)
