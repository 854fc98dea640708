"""Benchmark `mi generate`: about 100,000 candidates generated, filtered, deduplicated and written to shards.

Runs configs/generate_benchmark.yaml (substitution into every prototype family, data-mined substitution,
NMC-type mixing in supercells, one composition space) into a temporary folder and prints, per family, the
combinations considered, rejections by charge balance and radius, candidates generated, duplicates removed
and kept; then the dedupe ratio, candidates per second and peak memory (resident set size from
resource.getrusage, which covers numpy and pymatgen as well as Python objects).

    python experiments/benchmarks/generate.py                 # the full run (several minutes on 2 cores)
    python experiments/benchmarks/generate.py --set generate.max_candidates=2000   # a quick look

Latest full run (2026-11-30, 2 cores), with the Li3MX6 (Li3ErI6 frame), beta-Li3PS4 and Na3V2(PO4)3 families
added, cells rescaled by first-shell bond lengths, radii read in the charge-balanced oxidation states and Cu+
allowed on working-ion sites: 110,681 generated from 154,502 combinations considered (117,293 rejected by
charge balance, 4,430 by radius), 1,233 duplicates removed (dedupe ratio 0.011; the enumeration itself never
repeats an ordering, the duplicates come from overlapping requests), 109,448 kept in 7 shards (101 MiB);
110.6 s wall, 1,001 generated/s; peak RSS 326 MiB. (Before the new families, with a third of a core:
110,415 generated, 462 s, 239/s, 332 MiB.)
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "generate_benchmark.yaml"
TARGET = 100_000


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20  # KiB on Linux, bytes on macOS


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=CONFIG)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    ap.add_argument("--out", type=Path, default=None, help="keep the shards here (default: a temporary folder)")
    args = ap.parse_args(argv)

    from mi.candidates.generate import run, summary_table
    from mi.config import load_generate_config

    cfg = load_generate_config(args.config, args.overrides)
    rss_before = _peak_rss_mib()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        summary = run(cfg, args.out or Path(tmp) / "generated", progress=False)
    wall = time.perf_counter() - t0
    counts = summary["counts"]
    print(summary_table(summary))
    print()
    print(f"config:              {args.config}")
    print(f"generated:           {counts['generated']}  (target {TARGET})")
    print(f"kept:                {counts['kept']}")
    print(f"duplicates removed:  {counts['duplicates']}  (dedupe ratio {counts['dedupe_ratio']:.4f})")
    print(f"rejected:            charge balance {counts['rejected_charge']}, radius {counts['rejected_radius']}, "
          f"other {counts['rejected_other']}")
    print(f"wall time:           {wall:.1f} s ({counts['generated'] / wall:.0f} generated/s, "
          f"{counts['kept'] / wall:.0f} kept/s)")
    print(f"shards:              {len(summary['shards'])} files, {summary['shard_bytes'] / 2**20:.1f} MiB")
    print(f"peak memory (RSS):   {_peak_rss_mib():.0f} MiB (after imports: {rss_before:.0f} MiB)")
    if counts["generated"] < TARGET and not args.overrides:
        print(f"warning: fewer than {TARGET} candidates generated", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
