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
import hashlib
import json
import math
import warnings
from functools import lru_cache
from pathlib import Path

from pymatgen.core import Composition, Element

from mi.files import atomic_write_text, user_cache_dir

REFERENCE_FILE = "calc_compounds.json.gz"
CORRECTIONS_FILE = "MP2020Compatibility.yaml"  # beside it in pymatgen: the corrections applied to it
CACHE_FORMAT = 1  # of reference_cache_file: {"format", "entries": [{entry_id, composition, energy (corrected)}]}


def reference_path() -> Path:
    """pymatgen's bundled Materials Project entries (found without importing the module that holds them,
    which takes 1.5 s)."""
    from importlib.util import find_spec

    spec = find_spec("pymatgen.analysis.compatibility")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("pymatgen.analysis.compatibility is not installed: no bundled reference entries")
    return Path(next(iter(spec.submodule_search_locations))) / REFERENCE_FILE


def reference_cache_file() -> Path:
    """Where the corrected entries are kept between processes: named by the pymatgen version and the hash of
    the bundled entries and the MP2020 corrections, so another pymatgen never reads this one's."""
    from importlib.metadata import version

    source = reference_path()
    digest = hashlib.sha256(source.read_bytes() + source.with_name(CORRECTIONS_FILE).read_bytes()).hexdigest()
    name = f"mp2020-v{CACHE_FORMAT}-pymatgen{version('pymatgen')}-{digest[:16]}.json"
    return user_cache_dir("reference_entries") / name


@lru_cache(maxsize=1)
def reference_entries() -> tuple:
    """The bundled entries, MP2020-corrected, as phase-diagram entries (composition, corrected energy, the MP
    id as name): once per process, on first use. Correcting them needs pymatgen's compatibility module (1.3 s
    to import), so every process after the first reads them from `reference_cache_file` (0.02 s)."""
    cache = reference_cache_file()
    try:
        return _phase_entries(json.loads(cache.read_text(encoding="utf-8"))["entries"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # absent, or unreadable: correct them again and rewrite it
    rows = [{"entry_id": e.entry_id, "composition": e.composition.as_dict(), "energy": e.energy}
            for e in _corrected_entries()]
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cache, json.dumps({"format": CACHE_FORMAT, "entries": rows}))
    except OSError:
        pass  # a read-only cache costs each process the correction, nothing else
    return _phase_entries(rows)


def _phase_entries(rows: list[dict]) -> tuple:
    from pymatgen.analysis.phase_diagram import PDEntry

    return tuple(PDEntry(Composition(r["composition"]), float(r["energy"]), name=str(r["entry_id"])) for r in rows)


def _corrected_entries() -> tuple:
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


_ABOVE_HULL_eV_atom = 1e-6  # clearly above: not a vertex of the hull whatever qhull's rounding

class NoWindow(Exception):
    """The window cannot be computed; the message says why."""


def stability_window(
    composition: Composition, formation_enthalpy_eV_atom: float, working_ion: str, charge: int, references=None
) -> dict[str, float]:
    """``{"esw_reduction_V", "esw_oxidation_V", "esw_e_above_ref_hull_eV_atom"}`` for one composition.

    Raises NoWindow naming what is missing (no formation enthalpy, no working ion in the formula, an
    element without a reference phase or without any reference compound).

    With the bundled references (`references` None) the phase diagram of each chemical system is built once
    per process (`_system`), and a window is remembered by the exact composition and enthalpy: a chunk's
    candidates of one system share the diagram, repeated rows cost nothing, and every value is the one the
    computation from scratch gives (tests/test_stability_window.py).
    """
    if not math.isfinite(formation_enthalpy_eV_atom):
        raise NoWindow("no formation_enthalpy_eV_atom")
    comp = composition.element_composition
    ion = Element(working_ion)
    if comp[ion] == 0:
        raise NoWindow(f"no {working_ion} in the formula (the window is read from {working_ion} exchange)")
    if references is not None:
        return _window(comp, float(formation_enthalpy_eV_atom), working_ion, charge, _build_system(comp, working_ion, references))
    found = _remembered(
        tuple((el.symbol, float(n)) for el, n in comp.items()), float(formation_enthalpy_eV_atom), working_ion, charge
    )
    if isinstance(found, NoWindow):
        raise NoWindow(str(found))
    return dict(found)


@lru_cache(maxsize=65536)
def _remembered(amounts: tuple, enthalpy: float, working_ion: str, charge: int) -> dict[str, float] | NoWindow:
    comp = Composition(dict(amounts))  # the same element order, so the same sums
    system = _system(frozenset(el.symbol for el in comp), working_ion)
    if isinstance(system, NoWindow):
        return system
    try:
        return _window(comp, enthalpy, working_ion, charge, system)
    except NoWindow as exc:
        return exc.with_traceback(None)


@lru_cache(maxsize=256)
def _system(chemsys: frozenset[str], working_ion: str):
    """`_build_system` of a chemical system over the bundled entries, once per process (or its NoWindow)."""
    try:
        return _build_system(Composition({el: 1 for el in sorted(chemsys)}), working_ion, reference_entries())
    except NoWindow as exc:
        return exc.with_traceback(None)


def _build_system(comp: Composition, working_ion: str, references):
    """(reference entries of the composition's chemical system, their phase diagram, element energies mu0)."""
    from pymatgen.analysis.phase_diagram import PhaseDiagram

    chemsys = {el.symbol for el in comp}
    refs = [e for e in references if {el.symbol for el in e.composition} <= chemsys]
    elemental = {e.composition.elements[0].symbol for e in refs if len(e.composition) == 1}
    absent = sorted(chemsys - elemental)
    if absent:
        raise NoWindow(f"no elemental reference phase for {', '.join(absent)} in the bundled MP entries")
    in_compounds = {el.symbol for e in refs if len(e.composition) > 1 for el in e.composition}
    lonely = sorted(el for el in chemsys if el != working_ion and el not in in_compounds)
    if lonely:
        raise NoWindow(f"no reference compound containing {', '.join(lonely)} in the bundled MP entries")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns about elements without electronegativity data
        references_only = PhaseDiagram(refs)
    mu0 = {el: references_only.el_refs[el].energy_per_atom for el in references_only.elements}
    return refs, references_only, mu0


def _window(comp: Composition, formation_enthalpy_eV_atom: float, working_ion: str, charge: int, system):
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram

    refs, references_only, mu0 = system
    ion = Element(working_ion)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns about elements without electronegativity data
        energy = formation_enthalpy_eV_atom * comp.num_atoms + sum(n * mu0[el] for el, n in comp.items())
        candidate = PDEntry(comp, energy, name="candidate")
        e_above = float(references_only.get_e_above_hull(candidate, allow_negative=True))
        # a candidate above the hull leaves the hull as it is: the references' diagram gives its profile
        diagram = references_only if e_above > _ABOVE_HULL_eV_atom else PhaseDiagram([*refs, candidate])
        tolerance = 1e-6 * max(1.0, float(comp[ion]))
        profile = _profile(diagram, ion, comp, tolerance)
    # Steps run from the metal (highest mu) down; step i holds between its chempot and the next one's.
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


def _profile(diagram, ion: Element, comp: Composition, tolerance: float) -> list[dict[str, float]]:
    """``chempot`` and ``evolution`` of `PhaseDiagram.get_element_profile` without its reactions.

    At each critical composition cc (per atom) on the line from the composition to the ion, the
    decomposition holds the composition's other elements in proportion, lam atoms of cc per atom of them,
    so the ions it takes up are cc[ion] / lam - comp[ion]: what balancing pymatgen's `Reaction` gives, at a
    small part of its cost. Where that number is near the tolerance the window is read against, the
    reaction decides.
    """
    others = Composition({el: n for el, n in comp.items() if el != ion})
    ion_comp = Composition(ion.symbol)
    out = []
    for cc in diagram.get_critical_compositions(ion_comp, others)[1:]:
        fractions = cc.fractional_composition
        lam = (1.0 - fractions[ion]) / others.num_atoms
        evolution = fractions[ion] / lam - comp[ion] if lam > 0 else math.inf
        if not math.isfinite(evolution) or abs(abs(evolution) - tolerance) < 1e-3 * tolerance + 1e-9:
            evolution = _reaction_evolution(diagram, ion, comp, cc)
        out.append({"chempot": diagram.get_composition_chempots(cc + ion_comp * 1e-5)[ion], "evolution": evolution})
    return out


def _reaction_evolution(diagram, ion: Element, comp: Composition, cc: Composition) -> float:
    from pymatgen.analysis.reaction_calculator import Reaction

    ion_comp = Composition(ion.symbol)
    reaction = Reaction([comp], [*(e.composition for e in diagram.get_decomposition(cc)), ion_comp])
    reaction.normalize_to(comp)
    return -reaction.coeffs[reaction.all_comp.index(ion_comp)]
