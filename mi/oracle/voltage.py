"""Average voltages from oracle energies: the lithiated structure, its delithiated counterpart, the metal.

For A_x Host -> Host + x A (A the working ion, charge z), the average voltage against the A metal is

    V = -[E(A_x Host) - E(Host) - x E(A metal)] / (x z)        (energies in eV, V in volts)

with every energy from the same oracle after relaxation (Aydinol et al., Phys. Rev. B 56, 1354 (1997)).

The delithiated counterpart is made from the relaxed lithiated cell by removing the working ions that
its redox-active cations can release (`mi.properties.redox.extractable_ions`): all of them in LiFePO4,
LiCoO2 or LiMn2O4; a fraction where the redox headroom is smaller. When only some of the ions in a cell
leave, the removed sites are chosen far apart (farthest-point order), a cheap stand-in for an
electrostatic ordering; the voltage then averages over that one arrangement.
"""

from __future__ import annotations

import numpy as np
from pymatgen.core import Structure

from mi.properties.calculators import ION_CHARGE  # one table of working-ion charges


def ions_to_remove(structure: Structure, working_ion: str) -> int:
    """How many working-ion sites of this cell leave on full (redox-limited) charge; 0 if none can."""
    from mi.properties.redox import extractable_ions

    composition = structure.composition
    n_cell = int(round(composition[working_ion]))
    if n_cell == 0:
        return 0
    reduced, factor = composition.get_reduced_composition_and_factor()
    per_formula = extractable_ions(reduced, working_ion, ION_CHARGE[working_ion])
    if not np.isfinite(per_formula) or per_formula <= 0:
        return 0
    return min(n_cell, int(np.floor(per_formula * factor + 1e-6)))


def delithiate(structure: Structure, working_ion: str, n_remove: int) -> Structure:
    """`structure` without `n_remove` of its working-ion sites (farthest-point order when not all go)."""
    sites = [i for i, site in enumerate(structure) if site.specie.symbol == working_ion]
    if n_remove >= len(sites):
        chosen = sites
    else:
        chosen = [sites[0]]
        distances = structure.distance_matrix
        while len(chosen) < n_remove:
            rest = [i for i in sites if i not in chosen]
            chosen.append(max(rest, key=lambda i: min(distances[i][j] for j in chosen)))
    out = structure.copy()
    out.remove_sites(sorted(chosen))
    return out


def average_voltage(e_lithiated_eV: float, e_delithiated_eV: float, n_ions: int, mu_ion_eV: float,
                    working_ion: str = "Li") -> float:
    """Average voltage (V) from total energies of the two cells and the metal's energy per atom."""
    z = ION_CHARGE[working_ion]
    return -(e_lithiated_eV - e_delithiated_eV - n_ions * mu_ion_eV) / (n_ions * z)
