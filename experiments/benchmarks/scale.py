"""Benchmark chunked screening: candidates per second (local and Ray, 2 cores) and peak memory vs count.

Composition candidates (a synthetic stream of Li / transition-metal / anion formulas, written as CSV
shards of 10,000 rows, ids unique) are screened with the embedded default surrogate (Magpie composition
features, ensemble MLP) and raw-material cost, a constraint and two objectives (no capacity: its redox
count calls pymatgen's oxidation-state guesses, about 30-85 ms per distinct composition, which would
measure that and not the engine); no feature cache, no
report. Each measurement runs in its own process; peak memory is that process's peak resident set size
(getrusage), which covers numpy, torch and pymatgen as well as Python objects. The runs stream the merge
(`execution.max_rows_in_memory` below the row count), so nothing holds every row.

    python experiments/benchmarks/scale.py                    # rates at 20,000; memory at 100,000 and 1,000,000
    python experiments/benchmarks/scale.py --rate-n 5000 --sizes 20000 100000     # a quicker look

How it scales to N nodes. A chunk (``execution.chunk_size`` candidates) is the unit of work: features,
surrogate, properties and constraints need nothing from other chunks, so with ``backend: ray`` the chunks
spread over every CPU (or GPU, ``num_gpus``) of the cluster and throughput grows with the workers until
the driver saturates: it reads the candidates, checks ids, ships chunks and writes the shards (about
1 ms a chunk for the shard, plus the read, which is cheap next to the features for compositions).
The merge reads only the objective columns in its first two passes, so it is I/O-bound and linear in
the rows; the driver's memory is a few chunks in flight, the top-k and the Pareto front, plus 16 bytes a
candidate for the duplicate-id check and 8 bytes a row per ``rank``-normalised objective.

Latest run: see the table printed at the end and the README's "Scale" section.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROWS_PER_FILE = 10_000

_CATIONS = ["Fe", "Mn", "Co", "Ni", "V", "Ti", "Cr", "Cu", "Zn", "Mg", "Al", "Nb", "Mo", "W", "Zr"]
_ANIONS = ["O", "S", "F", "P", "Si", "B", "Se", "Cl", "N"]


def write_formulas(folder: Path, n: int) -> None:
    """n formula candidates as CSV shards in `folder`; formulas repeat (the features are per formula)."""
    folder.mkdir(parents=True, exist_ok=True)
    for start in range(0, n, ROWS_PER_FILE):
        lines = ["id,formula"]
        for i in range(start, min(start + ROWS_PER_FILE, n)):
            m1 = _CATIONS[i % len(_CATIONS)]
            m2 = _CATIONS[(i // len(_CATIONS)) % len(_CATIONS)]
            x = _ANIONS[(i // 225) % len(_ANIONS)]
            li, a, b, c = 1 + i % 3, 1 + (i // 7) % 2, 1 + (i // 11) % 3, 2 + (i // 13) % 5
            lines.append(f"c{i:08d},Li{li}{m1}{a}{m2}{b}{x}{c}")
        (folder / f"part-{start // ROWS_PER_FILE:05d}.csv").write_text("\n".join(lines) + "\n")


def config_text(sources: Path, out: Path, backend: str, chunk: int, in_memory: int) -> str:
    return f"""
name: scale
candidates: {{sources: [{sources}]}}
features: {{sets: [composition], cache_dir: null}}
model: {{checkpoint: "builtin:formation_enthalpy", device: cpu}}
properties: {{working_ion: Li, calculators: [cost]}}
ranking:
  constraints: [{{column: formation_enthalpy_eV_atom, max: 0.0}}]
  objectives:
    - {{column: formation_enthalpy_eV_atom, direction: min}}
    - {{column: cost_usd_kg, direction: min, weight: 0.5}}
  top_k: 20
export: {{out_dir: {out}, top_cif: false, write_json: false, report: false}}
execution: {{backend: {backend}, chunk_size: {chunk}, workers: 2, max_rows_in_memory: {in_memory}}}
"""


def run_one(n: int, backend: str, chunk: int, work: Path) -> dict:
    """Screen n candidates in this process; seconds and peak RSS."""
    import torch

    torch.set_num_threads(1)
    from mi.config import load_config
    from mi.pipeline import screen

    sources = work / f"formulas-{n}"
    if not sources.is_dir():
        write_formulas(sources, n)
    path = work / f"scale-{n}-{backend}.yaml"
    path.write_text(config_text(sources, work / "runs", backend, chunk, in_memory=50_000))
    cfg = load_config(path)
    if backend == "ray":
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    t0 = time.perf_counter()
    result = screen(cfg, out=work / "runs" / f"{backend}-{n}", progress=False)
    seconds = time.perf_counter() - t0
    if backend == "ray":
        ray.shutdown()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    # The pool's worker processes are children: the largest one's peak (Ray's workers are not).
    worker_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "n": n,
        "backend": backend,
        "seconds": round(seconds, 1),
        "per_s": round(n / seconds, 1),
        "peak_rss_mib": round(peak, 1),
        "worker_peak_rss_mib": round(worker_peak, 1) if backend == "local" else None,
        "ranked_rows": int(result.manifest["counts"]["after_constraints"]),
    }


def _child(n: int, backend: str, chunk: int, work: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, __file__, "--one", str(n), "--backend", backend, "--chunk", str(chunk), "--work", str(work)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate-n", type=int, default=20_000, help="candidates for the local vs Ray rates")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="counts for the memory curve")
    parser.add_argument("--chunk", type=int, default=10_000)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="local", help=argparse.SUPPRESS)
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.backend, args.chunk, args.work)))
        return 0
    work = args.work or Path(tempfile.mkdtemp(prefix="mi-scale-"))
    rows = [_child(args.rate_n, "local", args.chunk // 4, work)]
    if not args.skip_ray:
        rows.append(_child(args.rate_n, "ray", args.chunk // 4, work))
    for n in args.sizes:
        rows.append(_child(n, "local", args.chunk, work))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'backend':8} {'candidates':>11} {'seconds':>9} {'per s':>8} {'driver MiB':>11} {'worker MiB':>11} {'ranked rows':>12}")
    for r in rows:
        worker = f"{r['worker_peak_rss_mib']:.1f}" if r["worker_peak_rss_mib"] else "-"
        print(f"{r['backend']:8} {r['n']:>11,} {r['seconds']:>9.1f} {r['per_s']:>8.1f} {r['peak_rss_mib']:>11.1f} "
              f"{worker:>11} {r['ranked_rows']:>12,}")
    curve = [r for r in rows[2 if not args.skip_ray else 1:]]
    if len(curve) >= 2:
        print(f"\npeak RSS ratio {curve[-1]['n']:,} / {curve[0]['n']:,} candidates: "
              f"{curve[-1]['peak_rss_mib'] / curve[0]['peak_rss_mib']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
