"""Write ``magpie_matminer_reference.csv``: matminer's Magpie attributes of a small set of compositions.

    python tests/data/make_magpie_reference.py        # needs matminer (a test/benchmark dependency only)

The values come from matminer, never from mi, so the committed-sample test in
``tests/test_features_magpie.py`` checks mi against an independent implementation even where matminer is
not installed. Compositions: hand-picked battery materials and edge cases, and seeded random ones (several
elements, fractional amounts, ties for the mode). Columns are renamed to mi's names by `mi_name`.
Featurizers: ``ElementProperty.from_preset("magpie")``, ``Stoichiometry()``, ``ValenceOrbital(props=["frac"])``
and ``IonProperty(fast=True)`` on Magpie data (its electronegativity read as "X"; see `MagpieX`).
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

from pymatgen.core import Composition, Element

OUT = Path(__file__).with_name("magpie_matminer_reference.csv")

HAND_PICKED = [
    "Li", "O2", "LiF", "Li2O", "Li2S", "Li3N", "Li3P", "LiCoO2", "LiFePO4", "LiMn2O4", "LiNi0.8Co0.15Al0.05O2",
    "LiNi0.333Mn0.333Co0.334O2", "Li4Ti5O12", "Li7La3Zr2O12", "Li6.4La3Zr1.4Ta0.6O12", "Li10GeP2S12", "Li6PS5Cl",
    "Li3PS4", "Li3InCl6", "Li3YBr6", "LiTi2(PO4)3", "Li1.3Al0.3Ti1.7(PO4)3", "NaFePO4", "Na3V2(PO4)2F3",
    "Na2FePO4F", "KFeSO4F", "MgMo6S8", "CaCo2O4", "ZnMn2O4", "Al2O3", "LiBH4", "Li2B12H12", "H2O", "CO2",
    "NaClAr", "XeF2", "HeO", "Fe3O4", "UO2", "PuO2", "Ce0.9Gd0.1O1.95", "La0.6Sr0.4CoO3", "NaCl", "CsPbI3",
    "Fe0.5Ni0.5", "Si", "GaAs", "Fe2O3", "FeO1.000001",
]


def mi_name(label: str) -> str:
    """matminer's feature label -> mi's column name."""
    stats = {"minimum": "min", "maximum": "max", "range": "range", "mean": "mean", "avg_dev": "avg_dev", "mode": "mode"}
    if label.startswith("MagpieData "):
        _, stat, prop = label.split(" ", 2)
        return f"{stats[stat]}_{prop}"
    if label == "0-norm" or label.endswith("-norm"):
        return f"L{label.split('-')[0]}_norm"
    if label.startswith("frac ") and label.endswith(" valence electrons"):
        return f"frac_{label.split(' ')[1]}_valence"
    return label.replace(" ", "_")


def random_formulas(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    elements = [Element.from_Z(z).symbol for z in range(1, 95)]
    formulas = []
    for k in range(n):
        chosen = rng.sample(elements, rng.randint(2, 7))
        if k % 3 == 0:
            amounts = [rng.choice([1, 2, 3]) for _ in chosen]  # integer amounts: ties for the mode
        else:
            amounts = [round(rng.uniform(0.05, 4.0), 3) for _ in chosen]
        formulas.append("".join(f"{el}{amount}" for el, amount in zip(chosen, amounts)))
    return formulas


def featurizers():
    from matminer.featurizers.composition import ElementProperty, IonProperty, Stoichiometry, ValenceOrbital
    from matminer.utils.data import MagpieData

    class MagpieX(MagpieData):
        """Magpie data that also answers "X", the name IonProperty asks its data source for."""

        def get_elemental_property(self, elem, property_name):
            name = "Electronegativity" if property_name == "X" else property_name
            return super().get_elemental_property(elem, name)

    return [
        ElementProperty.from_preset("magpie"),
        Stoichiometry(),
        ValenceOrbital(props=["frac"]),
        IonProperty(data_source=MagpieX(), fast=True),
    ]


def main() -> int:
    formulas = HAND_PICKED + random_formulas(60)
    steps = featurizers()
    labels = [mi_name(label) for f in steps for label in f.feature_labels()]
    with open(OUT, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["formula", *labels])
        for formula in formulas:
            composition = Composition(formula)
            row = [float(v) for f in steps for v in f.featurize(composition)]
            writer.writerow([formula, *(repr(v) for v in row)])
    print(f"wrote {OUT} ({len(formulas)} compositions, {len(labels)} columns)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
