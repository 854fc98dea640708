"""Electrochemical stability window of a candidate against the working-ion metal, from grand-potential
phase diagrams (the approach of Richards, Miara, Wang, Kim, Ceder, Chem. Mater. 28 (2016) 266, and of Zhu,
He, Mo, ACS Appl. Mater. Interfaces 7 (2015) 23685).

Method
------
1. Reference phases: the 423 Materials Project GGA/GGA+U entries that ship with pymatgen
   (``pymatgen/analysis/compatibility/calc_compounds.json.gz``, ComputedEntry dicts with MP ids), made
   mutually compatible with ``MaterialsProject2020Compatibility`` (anion and U corrections fitted to
   experimental formation enthalpies).
2. The candidate's energy: E = N * dH_f + sum_e n_e mu_e, with dH_f the surrogate's
   ``formation_enthalpy_eV_atom`` and mu_e the energy per atom of each element's reference phase. Putting
   a predicted (experiment-trained) formation enthalpy next to corrected DFT energies is an approximation;
   the MP2020 corrections are fitted to experimental enthalpies, which is what keeps the two close.
3. `PhaseDiagram.get_element_profile(ion, composition)` walks the working ion's chemical potential mu
   from the metal (mu = mu0) downwards and gives, between critical values, the phases the composition
   equilibrates to and how many working ions it takes up (reduction) or gives off (oxidation). The window
   is the interval in which it neither takes up nor gives off any: ``esw_reduction_V = -(mu_hi - mu0) / z``
   to ``esw_oxidation_V = -(mu_lo - mu0) / z`` (z the ion's charge; volts against the metal, V vs Li/Li+
   for Li). A candidate above the reference hull (``esw_e_above_ref_hull_eV_atom`` > 0) may split into
   other phases inside that interval without exchanging the ion; the window then is that of the
   composition, its intrinsic limit against reduction and oxidation, as in Zhu et al. for metastable LGPS.

Limits
------
The bundled set is a small slice of the Materials Project: a competing phase it lacks (Li3P, Li-Ge
alloys, La2O3, ...) cannot bound the window, so windows come out too wide, never too narrow. Where the
set holds no compound containing one of the candidate's elements (besides the element itself), or no
reference for an element, the window is NaN with a note rather than a number built on nothing.
Decomposition kinetics, interphases and the surrogate's error (``formation_enthalpy_eV_atom_std``) are
not propagated.
"""

from __future__ import annotations

import gzip
import json
import math
import warnings
from functools import lru_cache
from pathlib import Path

from pymatgen.core import Composition, Element

REFERENCE_FILE = "calc_compounds.json.gz"


def reference_path() -> Path:
    """pymatgen's bundled Materials Project entries."""
    import pymatgen.analysis.compatibility as compatibility

    return Path(compatibility.__file__).with_name(REFERENCE_FILE)


@lru_cache(maxsize=1)
def reference_entries() -> tuple:
    """The bundled entries, MP2020-corrected (loaded once per process, on first use)."""
    from pymatgen.entries.compatibility import MaterialsProject2020Compatibility
    from pymatgen.entries.computed_entries import ComputedEntry

    with gzip.open(reference_path(), "rt", encoding="utf-8") as handle:
        raw = json.load(handle)
    with warnings.catch_warnings():
        # pymatgen warns about noble gases without electronegativity and entries it cannot correct
        warnings.simplefilter("ignore")
        entries = [ComputedEntry.from_dict(d) for d in raw.values()]
        corrected = MaterialsProject2020Compatibility(check_potcar=False).process_entries(entries, verbose=False)
    return tuple(corrected)


class NoWindow(Exception):
    """The window cannot be computed; the message says why."""


def stability_window(
    composition: Composition, formation_enthalpy_eV_atom: float, working_ion: str, charge: int, references=None
) -> dict[str, float]:
    """``{"esw_reduction_V", "esw_oxidation_V", "esw_e_above_ref_hull_eV_atom"}`` for one composition.

    Raises NoWindow naming what is missing (no formation enthalpy, no working ion in the formula, an
    element without a reference phase or without any reference compound).
    """
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram

    if not math.isfinite(formation_enthalpy_eV_atom):
        raise NoWindow("no formation_enthalpy_eV_atom")
    comp = composition.element_composition
    ion = Element(working_ion)
    if comp[ion] == 0:
        raise NoWindow(f"no {working_ion} in the formula (the window is read from {working_ion} exchange)")
    chemsys = {el.symbol for el in comp}
    refs = [e for e in (references or reference_entries()) if {el.symbol for el in e.composition} <= chemsys]
    elemental = {e.composition.elements[0].symbol for e in refs if len(e.composition) == 1}
    absent = sorted(chemsys - elemental)
    if absent:
        raise NoWindow(f"no elemental reference phase for {', '.join(absent)} in the bundled MP entries")
    in_compounds = {el.symbol for e in refs if len(e.composition) > 1 for el in e.composition}
    lonely = sorted(el.symbol for el in comp if el.symbol != working_ion and el.symbol not in in_compounds)
    if lonely:
        raise NoWindow(f"no reference compound containing {', '.join(lonely)} in the bundled MP entries")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns about elements without electronegativity data
        references_only = PhaseDiagram(refs)
        mu0 = {el: references_only.el_refs[el].energy_per_atom for el in references_only.elements}
        energy = formation_enthalpy_eV_atom * comp.num_atoms + sum(n * mu0[el] for el, n in comp.items())
        candidate = PDEntry(comp, energy, name="candidate")
        e_above = float(references_only.get_e_above_hull(candidate, allow_negative=True))
        profile = PhaseDiagram([*refs, candidate]).get_element_profile(ion, comp)
    # Steps run from the metal (highest mu) down; step i holds between its chempot and the next one's.
    tolerance = 1e-6 * max(1.0, float(comp[ion]))
    for i, step in enumerate(profile):
        if abs(step["evolution"]) <= tolerance:
            mu_hi = float(step["chempot"])
            if i + 1 == len(profile):
                raise NoWindow("no oxidation limit: the composition never gives off the working ion")
            mu_lo = float(profile[i + 1]["chempot"])
            break
    else:
        raise NoWindow(
            f"no voltage without {working_ion} uptake or release: {e_above:.3f} eV/atom above the reference hull, "
            "its decomposition products exchange the ion everywhere"
        )
    mu_ion = mu0[ion]
    return {
        "esw_reduction_V": max(-(mu_hi - mu_ion) / charge, 0.0) + 0.0,  # + 0.0: no -0.0 at the metal itself
        "esw_oxidation_V": -(mu_lo - mu_ion) / charge,
        "esw_e_above_ref_hull_eV_atom": e_above,
    }
