"""Benchmark mi's featurization against matminer on the same inputs, in one run.

Inputs (read from ``../shared``, never copied into the project):

* compositions: a seeded sample of ``datasets/mp_composition/mp_e_form_dev.csv`` (default 10,000);
* structures: the OBELiX training CIFs (``datasets/obelix/train_cifs``; most are partially occupied).

What runs, one process, one core each (throughput = items per CPU second of this process, so other load on
the machine does not count against either side; wall seconds are printed too):

* composition, Magpie element statistics: mi's ``composition`` set (all 145 columns) against matminer's
  ``ElementProperty.from_preset("magpie")`` (132 of them);
* composition, all 145: against ``ElementProperty`` + ``Stoichiometry`` + ``ValenceOrbital(frac)`` +
  ``IonProperty(fast=True)`` on Magpie data; the largest relative difference over every value is printed;
* structure: mi's ``structure`` set (density, packing, coordination and bond-length statistics, space group)
  against ``DensityFeatures`` + ``SiteStatsFingerprint`` of ``CoordinationNumber`` and of
  ``AverageBondLength``, both with ``MinimumDistanceNN``. matminer refuses partial occupancies, so it gets
  each site's majority species (built outside the timing); differences are compared on the structures that
  are ordered to begin with (density, volume per atom, packing fraction, CN mean/std/min/max);
* mi ``structure`` + ``working_ion`` against the same matminer featurizers;
* the feature cache: the same candidates through ``featurize_candidates`` twice (empty cache, then full),
  and once through the worker pool.

    python experiments/benchmarks/featurize.py [--compositions 10000] [--structures 0 (= all)] [--workers 2]

Latest run (2 CPU cores shared with other jobs, load ~5; 10,000 compositions, 254 OBELiX CIFs, matminer 0.10.1):

    task                                                         n   mi /s/core  matminer /s/core  mi/matminer
    composition: Magpie element statistics                   10000        27338             683.6        40.0x
    composition: all 145 Magpie attributes                   10000        27338             534.3        51.2x
    structure: density, packing, CN, bonds (+ space group)     254          159               1.0       151.8x
    structure + working_ion sets                               254          119               1.0       113.4x
    largest relative difference, composition (10000 x 145 values): 4.1e-16; structure (59 ordered): 5.1e-15
    cache: first run 10.1 s, second run 0.94 s (every row from the cache): 10.7x faster
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Composition, Structure

from mi.candidates.base import Candidate, composition_hash, structure_hash
from mi.features import featurize_candidates
from mi.features.engine import warm_up
from mi.features.composition import composition_feature_names, composition_features
from mi.features.structure import StructureAnalysis, structure_row, working_ion_row

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
MP = SHARED / "datasets" / "mp_composition" / "mp_e_form_dev.csv"
OBELIX = SHARED / "datasets" / "obelix" / "train_cifs"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compositions", type=int, default=10_000, help="compositions sampled (default 10000)")
    parser.add_argument("--structures", type=int, default=0, help="OBELiX CIFs read (default 0 = all)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for the pool run (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def timed(function):
    """(result, CPU seconds of this process, wall seconds)."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = function()
    return result, time.process_time() - cpu, time.perf_counter() - wall


def matminer_composition_featurizers():
    from matminer.featurizers.composition import ElementProperty, IonProperty, Stoichiometry, ValenceOrbital
    from matminer.utils.data import MagpieData

    class MagpieX(MagpieData):
        """IonProperty asks its data source for "X"; Magpie calls it Electronegativity."""

        def get_elemental_property(self, elem, property_name):
            return super().get_elemental_property(elem, "Electronegativity" if property_name == "X" else property_name)

    return [
        ElementProperty.from_preset("magpie"),
        Stoichiometry(),
        ValenceOrbital(props=["frac"]),
        IonProperty(data_source=MagpieX(), fast=True),
    ]


def matminer_structure_featurizers():
    from matminer.featurizers.site import AverageBondLength, CoordinationNumber
    from matminer.featurizers.structure import DensityFeatures, SiteStatsFingerprint
    from pymatgen.analysis.local_env import MinimumDistanceNN

    stats = ("mean", "std_dev", "minimum", "maximum")
    return [
        DensityFeatures(),
        SiteStatsFingerprint(CoordinationNumber(MinimumDistanceNN(), use_weights="none"), stats=stats),
        SiteStatsFingerprint(AverageBondLength(MinimumDistanceNN()), stats=stats),
    ]


def majority_ordered(structure: Structure) -> Structure:
    """Each site's most occupied element at full occupancy: the ordered input matminer accepts."""
    species = [max(site.species.items(), key=lambda item: item[1])[0] for site in structure]
    return Structure(structure.lattice, species, structure.frac_coords)


def read_structures(limit: int) -> list[tuple[str, Structure]]:
    from pymatgen.io.cif import CifParser

    paths = sorted(OBELIX.glob("*.cif"))
    if limit:
        paths = paths[:limit]
    out = []
    for path in paths:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out.append((path.stem, CifParser(path).parse_structures(primitive=False)[0]))
            except Exception as exc:  # noqa: BLE001 - an unreadable CIF is reported and skipped
                print(f"  skipped {path.name}: {type(exc).__name__}: {exc}")
    return out


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not MP.is_file() or not OBELIX.is_dir():
        print(f"{SHARED} with the MP compositions and OBELiX CIFs is needed", file=sys.stderr)
        return 2
    try:
        comp_featurizers = matminer_composition_featurizers()
        struct_featurizers = matminer_structure_featurizers()
    except ImportError:
        print("matminer is needed for this benchmark (pip install matminer)", file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore")  # pymatgen/matminer warn per element without Pauling X, etc.

    formulas = pd.read_csv(MP)["formula"].sample(args.compositions, random_state=args.seed).tolist()
    compositions = [Composition(f) for f in formulas]
    print(f"{len(compositions)} compositions from {MP.name}; reading OBELiX CIFs ...")
    structures = read_structures(args.structures)
    n_ordered = sum(s.is_ordered for _, s in structures)
    print(f"{len(structures)} structures ({len(structures) - n_ordered} with partial occupancies)\n")
    rows = []

    # Warm up both sides (lazy imports, element tables) so that the timings measure featurizing.
    warm_up()
    composition_features(compositions[:1]), [f.featurize(compositions[0]) for f in comp_featurizers]
    if structures:
        structure_row(StructureAnalysis(structures[0][1]))
        [f.featurize(majority_ordered(structures[0][1])) for f in struct_featurizers]

    # --- compositions ---
    ours, ours_cpu, ours_wall = timed(lambda: composition_features(compositions))
    element_property = comp_featurizers[0]
    _, mm_ep_cpu, mm_ep_wall = timed(lambda: [element_property.featurize(c) for c in compositions])
    n_comp = len(compositions)
    rows.append(("composition: Magpie element statistics", n_comp, ours_cpu, ours_wall, mm_ep_cpu, mm_ep_wall))

    def matminer_all():
        out = np.full((len(compositions), len(composition_feature_names())), np.nan)
        for k, c in enumerate(compositions):
            try:
                out[k] = [float(v) for f in comp_featurizers for v in f.featurize(c)]
            except Exception:  # noqa: BLE001 - left NaN and left out of the comparison
                pass
        return out

    reference, mm_cpu, mm_wall = timed(matminer_all)
    rows.append(("composition: all 145 Magpie attributes", n_comp, ours_cpu, ours_wall, mm_cpu, mm_wall))
    both = ~np.isnan(reference).any(axis=1)
    # Species-decorated formulas do not occur here; matminer's IonProperty would read them differently.
    scale = np.maximum(np.abs(reference[both]), 1e-12)
    relative = np.abs(ours[both] - reference[both]) / scale
    worst = np.unravel_index(np.argmax(relative), relative.shape)

    # --- structures ---
    analyses_input = [s for _, s in structures]
    ordered_for_matminer = [majority_ordered(s) for s in analyses_input]

    def ours_structure():
        out, failed = [], 0
        for s in analyses_input:
            try:
                out.append(structure_row(StructureAnalysis(s)))
            except ValueError:
                out.append(np.full(12, np.nan))
                failed += 1
        return np.array(out), failed

    def ours_structure_and_ion():
        for s in analyses_input:
            try:
                analysis = StructureAnalysis(s)
                structure_row(analysis), working_ion_row(analysis, "Li")
            except ValueError:
                pass

    def matminer_structure():
        out, failed = [], 0
        for s in ordered_for_matminer:
            try:
                out.append([float(v) for f in struct_featurizers for v in f.featurize(s)])
            except Exception:  # noqa: BLE001 - counted
                out.append([np.nan] * 11)
                failed += 1
        return np.array(out), failed

    (ours_s, ours_failed), s_cpu, s_wall = timed(ours_structure)
    _, si_cpu, si_wall = timed(ours_structure_and_ion)
    (mm_s, mm_failed), mm_s_cpu, mm_s_wall = timed(matminer_structure)
    n = len(analyses_input)
    rows.append(("structure: density, packing, CN, bonds (+ space group)", n, s_cpu, s_wall, mm_s_cpu, mm_s_wall))
    rows.append(("structure + working_ion sets", n, si_cpu, si_wall, mm_s_cpu, mm_s_wall))
    ordered = np.array([s.is_ordered for s in analyses_input])
    ordered &= ~np.isnan(mm_s).any(axis=1) & ~np.isnan(ours_s).any(axis=1)
    # density, volume per atom, packing fraction, CN mean/std/min/max: the columns both compute alike
    mine, theirs = ours_s[ordered][:, :7], mm_s[ordered][:, :7]
    structure_diff = np.nan
    if ordered.any():
        structure_diff = float(np.max(np.abs(mine - theirs) / np.maximum(np.abs(theirs), 1e-12)))

    # --- the engine: cache and pool ---
    candidates = [Candidate(f"c{k}", "mp", str(k), c, None, composition_hash(c)) for k, c in enumerate(compositions)]
    candidates += [Candidate(name, "obelix", name, s.composition, s, structure_hash(s)) for name, s in structures]
    sets = ["composition", "structure", "working_ion"]
    def run(**options):
        return timed(lambda: featurize_candidates(candidates, sets, working_ion="Li", timeout_s=60, **options))

    with tempfile.TemporaryDirectory() as cache:
        first, _, first_wall = run(cache=cache)
        second, _, second_wall = run(cache=cache)
    pooled, _, pool_wall = run(workers=args.workers, chunk_size=16)

    # --- report ---
    header = ("task", "n", "mi /s/core", "matminer /s/core", "mi wall s", "mm wall s", "mi/matminer")
    print("{:<55} {:>6}  {:>11} {:>17}  {:>9} {:>9}  {:>11}".format(*header))
    for name, count, o_cpu, o_wall, m_cpu, m_wall in rows:
        ours_rate, mm_rate = rate(count, o_cpu), rate(count, m_cpu)
        ratio = f"{ours_rate / mm_rate:.1f}x"
        print(f"{name:<55} {count:>6}  {ours_rate:>11.0f} {mm_rate:>17.1f}  {o_wall:>9.2f} {m_wall:>9.2f}  {ratio:>11}")
    print()
    names = composition_feature_names()
    print(
        f"composition: largest relative difference mi vs matminer over {both.sum()} x {len(names)} values: "
        f"{relative.max():.2e} ({names[worst[1]]}); matminer failed on {len(compositions) - both.sum()}"
    )
    print(
        f"structure: largest relative difference on the shared features of {ordered.sum()} ordered structures: "
        f"{structure_diff:.2e}; mi refused {ours_failed}, matminer failed on {mm_failed} (of {n})"
    )
    print(
        f"cache ({len(candidates)} candidates x {len(sets)} sets): first run {first_wall:.2f} s "
        f"({first.computed} rows computed), second run {second_wall:.2f} s ({second.from_cache} from the cache, "
        f"{second.computed} computed): {first_wall / second_wall:.1f}x faster"
    )
    print(
        f"worker pool ({args.workers} workers, no cache): {pool_wall:.2f} s wall; "
        f"same features as in-process: {pooled.features.equals(first.features)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
