"""Physics baselines: a target computed from another model's prediction, which a surrogate learns to correct.

A surrogate with a baseline (``train.baseline`` in a recipe) is trained on ``target - baseline`` and predicts
``baseline + its own output``. The baseline carries what the composition statistics cannot: a voltage is a
difference of two energies, and the energy model behind it (``builtin:mp_stability``, 150,000 Materials
Project formulas of every framework) has seen chemistry the project's own voltage labels (nine prototype
families) never will. On a held-out family (experiments/benchmarks/builtin_models.py --task voltage, 712
pairs) the baseline alone errs 0.30 V and baseline + forest 0.28 V, where a forest on the voltages errs 0.82 V.

``intercalation_voltage``: the average voltage against the working-ion metal of removing every extractable
ion (`mi.properties.redox.extractable_ions`, the rule `mi label` delithiates by) from the composition, from
the formation energies per atom E_f of the lithiated and delithiated compositions:
V = [E_f(host) N(host) - E_f(A_n host) N(A_n host)] / n per formula unit (the metal's formation energy is 0).
The working ion is Li where the composition holds Li, else Na; no value without one, or with nothing to
extract. The std of the result is the surrogate's own (calibrated on validation voltages, so it includes
the baseline's error); a row is in domain only where the energy model is, for both compositions.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
from pymatgen.core import Composition, Element

if TYPE_CHECKING:
    from mi.models.surrogate import Surrogate

BASELINE_KINDS = ("intercalation_voltage",)
WORKING_IONS = ("Li", "Na")  # in order of preference where a composition holds both


def working_ion(composition: Composition) -> str | None:
    """The intercalating ion a voltage of this composition is against: Li, else Na, else None."""
    return next((ion for ion in WORKING_IONS if composition[ion] > 0), None)


@lru_cache(maxsize=65536)
def _host(formula: str, ion: str) -> tuple[Composition, Composition, float] | None:
    """(composition, host composition, ions removed) of a reduced formula holding `ion`; None when nothing
    can be extracted. Memoised: a screen meets the same formula many times."""
    from mi.properties.calculators import ION_CHARGE
    from mi.properties.redox import extractable_ions

    composition = Composition(formula)
    n = extractable_ions(composition, ion, ION_CHARGE[ion])
    if not np.isfinite(n) or n <= 1e-9:
        return None
    left = composition[ion] - n
    host = Composition({el: a for el, a in composition.items() if el.symbol != ion}
                       | ({Element(ion): left} if left > 1e-9 else {}))
    return composition, host, float(n)


def intercalation_voltage(
    compositions: Sequence[Composition], energy: Surrogate, column: str
) -> tuple[np.ndarray, np.ndarray]:
    """(voltage in V, energy model in domain for both compositions) per composition; NaN / False without one."""
    from mi.candidates.base import Candidate, composition_hash

    ions = [working_ion(c) for c in compositions]  # cheap: most screened formulas hold neither ion
    hosts = [_host(c.reduced_formula, ion) if ion else None for c, ion in zip(compositions, ions)]
    unique = {c.formula: c for h in hosts if h is not None for c in h[:2]}
    voltage, in_domain = np.full(len(compositions), np.nan), np.zeros(len(compositions), dtype=bool)
    if not unique:
        return voltage, in_domain
    rows = [Candidate(f, "baseline", f, c, None, composition_hash(c)) for f, c in unique.items()]
    predicted = energy.predict(candidates=rows)
    e_form = dict(zip(unique, predicted[column].to_numpy(dtype=float)))
    flag_column = f"{column}_in_domain"
    flags = (dict(zip(unique, predicted[flag_column].fillna(False).to_numpy(dtype=bool)))
             if flag_column in predicted.columns else dict.fromkeys(unique, True))
    for i, h in enumerate(hosts):
        if h is not None:
            lithiated, host, n = h
            a, b = lithiated.formula, host.formula
            voltage[i] = (e_form[b] * host.num_atoms - e_form[a] * lithiated.num_atoms) / n
            in_domain[i] = flags[a] and flags[b]
    return voltage, in_domain


def baseline_values(baseline: dict[str, Any], energy: Surrogate, compositions: Sequence[Composition]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(values, in domain) of a surrogate's baseline (its checkpoint's ``baseline`` record, `energy` the model
    it names, loaded by `mi.models.checkpoint.baseline_energy_model`) per composition."""
    if baseline["kind"] != "intercalation_voltage":
        raise ValueError(f"unknown baseline kind {baseline['kind']!r} (this mi knows {', '.join(BASELINE_KINDS)})")
    return intercalation_voltage(compositions, energy, baseline["energy_column"])


__all__ = ["BASELINE_KINDS", "baseline_values", "intercalation_voltage", "working_ion"]
