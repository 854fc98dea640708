"""One candidate as one oracle task: its relaxation and, for a voltage, that of its delithiated counterpart.

`run_task` relaxes the candidate's cell (or takes a single point, ``relax=False``), derives formation
energy, energy above the reference hull, relaxed volume and density, and then relaxes the delithiated
cell made from the relaxed one, so a voltage is either whole (both cells from this task) or missing with
the reason. A failed lithiated relaxation fails the whole task; a failed delithiated one leaves the other
labels and reports the voltage's failure. The formation energy is taken against the hull reference set's
own elemental entries where it has them (MP2020-corrected for ``mp_bundled``), the voltage against the
oracle's own metal.

Time limits scale with the cell: ``time_limit_s`` is meant for a cell of ``atoms_per_limit`` atoms and a
larger cell gets proportionally more (the cost of a CHGNet step grows with the atoms and their
neighbours), times ``load_factor`` on a machine busier than its cores. The limit a failure hit is in its
reason.

With ``extract_fraction`` below 1, only that share of the redox-extractable working ions leaves (e.g.
Li0.5CoO2 for LiCoO2, the range cycled in practice); the cell is repeated along its shortest axis until
that share is a whole number of ions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pymatgen.core import Structure

from mi.candidates.base import Candidate, Failure, structure_hash
from mi.oracle.base import TIME_LIMIT, EnergyOracle, Relaxation
from mi.oracle.label import relaxation_row
from mi.oracle.references import ElementalReferences, HullReferences
from mi.oracle.voltage import average_voltage, delithiate, ions_to_remove

STAGE = "oracle"
MAX_REPEAT = 4  # a partial delithiation that needs a bigger cell than this is left out, with a note


@dataclass(frozen=True)
class TaskSettings:
    relax: bool = True
    voltage: bool = True
    working_ion: str = "Li"
    extract_fraction: float = 1.0
    time_limit_s: float | None = 300.0
    atoms_per_limit: int = 32
    load_factor: float = 1.0


def time_limit(n_atoms: int, settings: TaskSettings) -> float | None:
    """Wall-time limit of one relaxation of a cell of `n_atoms` atoms (None: no limit)."""
    if settings.time_limit_s is None:
        return None
    return settings.time_limit_s * max(1.0, n_atoms / settings.atoms_per_limit) * max(1.0, settings.load_factor)


def delithiated_pair(structure: Structure, ion: str, fraction: float) -> tuple[Structure, Structure, int] | str:
    """(lithiated cell, delithiated cell, ions removed), or the reason there is none.

    The lithiated cell is `structure` or, for a partial delithiation, its repetition along the shortest
    axis (up to MAX_REPEAT times) so that `fraction` of the extractable ions is a whole number.
    """
    n = ions_to_remove(structure, ion)
    if n == 0:
        return f"no {ion} can leave (none, or no redox headroom)"
    for repeat in range(1, MAX_REPEAT + 1):
        want = n * repeat * fraction
        if want >= 1 - 1e-9 and abs(want - round(want)) < 1e-6:
            break
    else:
        return f"{fraction:g} of {n} extractable {ion} needs a cell over {MAX_REPEAT} times this one"
    cell = structure
    if repeat > 1:
        scale = [1, 1, 1]
        scale[min(range(3), key=lambda i: structure.lattice.abc[i])] = repeat
        cell = structure * scale
    n_remove = int(round(n * repeat * fraction))
    host = delithiate(cell, ion, n_remove)
    if len(host) == 0:
        return "nothing left after delithiation"
    return cell, host, n_remove


def reference_elements(hull: HullReferences, elements: set[str]) -> dict[str, float]:
    """Energy per atom of each element's lowest entry in the hull's reference set (none for oracle_elements)."""
    if hull.kind == "oracle_elements":
        return {}
    out: dict[str, float] = {}
    for entry in hull.entries():
        if len(entry.composition.elements) == 1:
            symbol = entry.composition.elements[0].symbol
            if symbol in elements:
                out[symbol] = min(out.get(symbol, math.inf), entry.energy_per_atom)
    return out


def _limited(oracle: EnergyOracle, seconds: float | None) -> EnergyOracle:
    # an oracle without a settable limit runs under its own
    return oracle.with_time_limit(seconds) if hasattr(oracle, "with_time_limit") else oracle


def _calculate(oracle: EnergyOracle, cand: Candidate, settings: TaskSettings):
    limited = _limited(oracle, time_limit(len(cand.structure), settings))
    return limited.relax([cand]) if settings.relax else limited.single_point([cand])


def _with_limit(reason: str, n_atoms: int, settings: TaskSettings) -> str:
    if TIME_LIMIT not in reason or settings.time_limit_s is None:
        return reason
    return (f"{reason} (limit {settings.time_limit_s:g} s per {settings.atoms_per_limit} atoms, scaled to "
            f"{n_atoms} atoms and load x{max(1.0, settings.load_factor):.2g})")


def run_task(
    oracle: EnergyOracle,
    cand: Candidate,
    settings: TaskSettings,
    elemental: ElementalReferences,
    hull: HullReferences,
) -> tuple[dict | None, Relaxation | None, list[Failure]]:
    """Oracle labels of one candidate: (row, the lithiated relaxation, failures); row is None when the
    candidate's own relaxation failed. The row holds ``formation_energy_eV_atom``, ``e_hull_eV_atom``
    (reference hull only), ``relaxed_volume_per_atom_A3``, ``relaxed_density_g_cm3``, ``voltage_V`` and
    what the oracle did (steps, convergence, seconds, limits, the delithiated formula, a voltage note)."""
    ion = settings.working_ion
    results, failures = _calculate(oracle, cand, settings)
    if not results:
        n = len(cand.structure) if cand.structure is not None else 0
        return None, None, [Failure(f.source, f.record, f.stage, _with_limit(f.reason, n, settings), id=f.id)
                            for f in failures]
    r = results[0]
    s = r.structure
    comp = s.composition
    elements = {el.symbol for el in comp.elements} | ({ion} if settings.voltage else set())
    mu = elemental.energies(elements)
    # Formation energy on the hull references' own elements where they have them (MP2020 for mp_bundled, the
    # scale CHGNet is trained on, so it compares with MP-trained surrogates); else the oracle's elements.
    mu_formation = {**mu, **reference_elements(hull, {el.symbol for el in comp.elements})}
    row = relaxation_row(r, mu_formation, hull)
    row.update(time_limit_s=time_limit(len(cand.structure), settings), delithiated_n_steps=None,
               delithiated_converged=None)
    if not settings.voltage:
        return row, r, []
    pair = delithiated_pair(s, ion, settings.extract_fraction)
    if isinstance(pair, str):
        row["voltage_note"] = pair
        return row, r, []
    cell, host, n_removed = pair
    if ion not in mu:
        row["voltage_note"] = f"no {ion} metal reference"
        return row, r, []
    partner = Candidate(cand.id, cand.source, cand.record, host.composition, host, structure_hash(host))
    hosts, host_failures = _calculate(oracle, partner, settings)
    if not hosts:
        reason = _with_limit(host_failures[0].reason if host_failures else "no result", len(host), settings)
        row["voltage_note"] = f"delithiated cell failed: {reason}"
        return row, r, [Failure(cand.source, cand.record, STAGE, f"voltage: delithiated cell "
                                f"{host.composition.reduced_formula} failed: {reason}", id=cand.id)]
    h = hosts[0]
    v = average_voltage(r.energy_eV_atom * len(cell), h.energy_eV_atom * len(h.structure), n_removed, mu[ion], ion)
    row.update(
        voltage_V=v if math.isfinite(v) else math.nan,
        delithiated_formula=h.structure.composition.formula.replace(" ", ""),
        delithiated_n_steps=h.n_steps,
        delithiated_converged=h.converged,
        oracle_seconds=round(r.seconds + h.seconds, 3),
    )
    return row, r, []


__all__ = ["TaskSettings", "delithiated_pair", "run_task", "time_limit"]
