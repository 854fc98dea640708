"""Oracle benchmark: CHGNet average voltages of known cathodes against measured ones, and throughput.

Voltages: each cathode of the demo set (datasets/demo/structures, built from published crystallography) is
relaxed with CHGNet 0.3.0, its Li removed (`mi.oracle.voltage`: all the Li the redox can release), the
host relaxed, and V = -[E(LiHost) - E(Host) - x E(Li metal)] / x with the oracle's own Li metal. The
measured values are the usual plateau/average voltages vs Li/Li+ (LiFePO4 3.45 V, Padhi et al. 1997;
LiMnPO4 4.1 V; LiCoO2 about 3.9 V; LiMn2O4 about 4.1 V, Thackeray). LiCoO2 is taken to CoO2 here, the
full theoretical range, while 3.9 V is the average over the practical half.

Throughput: seconds per structure for single points (batched) and relaxations (FIRE, cell + positions)
of the same cells, with torch limited to --threads threads.

    python experiments/benchmarks/oracle.py [--threads 2] [--max-steps 300]

Latest run (2026-11-30, chgnet 0.4.2, `--threads 1`, the other core busy with a training job):

| cathode | delithiated | atoms | oracle V | measured V | error V |
|---|---|---|---|---|---|
| LiFePO4 | FePO4 | 28 | 3.43 | 3.45 | -0.02 |
| LiMnPO4 | MnPO4 | 28 | 3.69 | 4.10 | -0.41 |
| LiCoO2 | CoO2 | 12 | 3.49 | 3.90 | -0.41 |
| LiMn2O4 | MnO2 | 56 | 3.88 | 4.10 | -0.22 |
mean absolute error: 0.27 V

throughput on 1 thread, 4 cells of 12-56 atoms: single point 0.172 s per structure (batched);
relaxation 10.40 s per structure (25 FIRE steps on average, 0.416 s per step).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "datasets" / "demo" / "structures"
MEASURED = {"LiFePO4": 3.45, "LiMnPO4": 4.1, "LiCoO2": 3.9, "LiMn2O4": 4.1}
FILES = {"LiFePO4": "LiFePO4.cif", "LiMnPO4": "LiMnPO4.cif", "LiCoO2": "LiCoO2.vasp", "LiMn2O4": "LiMn2O4.cif"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--cache-dir", default=None, help="elemental-reference cache (default: the user cache)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import torch

    torch.set_num_threads(args.threads)
    from pymatgen.core import Structure

    from mi.candidates.base import Candidate, structure_hash
    from mi.oracle.label import chgnet_labeller

    cands = []
    for name, file in FILES.items():
        s = Structure.from_file(str(DEMO / file))
        cands.append(Candidate(name, str(DEMO / file), "", s.composition, s, structure_hash(s)))
    labeller = chgnet_labeller(max_steps=args.max_steps, time_limit_s=600, cache_dir=args.cache_dir)
    oracle = labeller.oracle
    labeller.elemental.energies(["Li", "Fe", "Mn", "Co", "P", "O"])  # references first: not in the timings

    print("elemental references ready", flush=True)
    t0 = time.perf_counter()
    points, _ = oracle.single_point(cands)
    sp = (time.perf_counter() - t0) / len(cands)
    t0 = time.perf_counter()
    relaxed, _ = oracle.relax(cands)
    rx = (time.perf_counter() - t0) / len(cands)
    steps = sum(r.n_steps for r in relaxed) / len(relaxed)
    print(f"timed: single point {sp:.3f} s, relaxation {rx:.2f} s per structure; labelling ...", flush=True)

    result = labeller.label_details(cands)
    print(f"\nCHGNet {oracle.model_name} average voltages vs Li/Li+ (fmax {oracle.fmax}, max {oracle.max_steps} steps)")
    print("| cathode | delithiated | atoms | oracle V | measured V | error V |")
    print("|---|---|---|---|---|---|")
    errors = []
    for c in cands:
        row = result.frame.loc[c.id]
        err = row.voltage_V - MEASURED[c.id]
        errors.append(abs(err))
        print(f"| {c.id} | {row.delithiated_formula} | {len(c.structure)} | {row.voltage_V:.2f} | "
              f"{MEASURED[c.id]:.2f} | {err:+.2f} |")
    print(f"mean absolute error: {sum(errors) / len(errors):.2f} V")
    print(f"\nthroughput on {args.threads} thread(s), {len(cands)} cells of "
          f"{min(len(c.structure) for c in cands)}-{max(len(c.structure) for c in cands)} atoms:")
    print(f"  single point: {sp:.3f} s per structure (batched)")
    print(f"  relaxation:   {rx:.2f} s per structure ({steps:.0f} FIRE steps on average, {rx / max(steps, 1):.3f} s per step)")


if __name__ == "__main__":
    main()
