"""Benchmark real screens end to end: the cathode and solid-electrolyte presets over Materials Project formulas
and over generated structures, against a hand-written pipeline.

For each (preset, input) it runs ``mi screen`` in a child process with the preset as it is (default
``execution.workers: auto``, report included, no feature cache) and prints wall time, CPU time (the child's
and its workers', from getrusage), candidates per wall second and per CPU second, and peak memory. A second,
in-process run of the same screen with one worker (``execution.workers: 1``, ``features.workers: 1``) on
at most ``--stage-rows`` candidates times each stage with the process clock: the CPU shares.

The baseline is what one writes by hand for the same cathode question: matminer's Magpie features
(ElementProperty "magpie"), oxidation states from pymatgen's ``Composition.oxi_state_guesses`` with a
1 s cap per formula (the redox-capacity rule of `mi.properties.redox`), and a scikit-learn random forest
(fitted beforehand, on other formulas, outside the timing) predicting formation energy; on ``--baseline-rows``
formulas of the same sample. The ratio compares candidates per CPU second.

    OMP_NUM_THREADS=1 python experiments/benchmarks/screen_speed.py                  # 100,000 formulas, 10,000 structures
    OMP_NUM_THREADS=1 python experiments/benchmarks/screen_speed.py --rows 20000 --structures 2000   # a quicker look

Needs ../shared/datasets/mp_composition (the formulas) and matminer and scikit-learn for the baseline.
"peak MiB" is the largest resident set of any child process so far (getrusage), not of one run alone.

Latest run (2026-12-05 07:09-07:13 UTC, 2 cores, load average 0.6-1.2 at start and end, OMP_NUM_THREADS=1),
``--rows 100000 --structures 2000 --stage-rows 10000`` (2,000 structures, not 10,000, for the time the
shared machine allowed), after the torch-free checkpoint cards, the CRMA words on the element matrix and
the stability windows with one phase diagram per chemical system and no reaction balancing:

    preset             input                      rows   wall s    CPU s   rows/s rows/CPU-s peak MiB  CPU shares (in-process, workers 1)
    cathode            MP formulas              100000     29.0     48.1     3446       2080      778  features 4%, models 5%, properties 11%, derived 13%, constraints 1%, rest of chunk 3%, outside chunks 63%
    cathode            generated structures       2000     13.8     15.7      145        127      778  features 44%, models 1%, properties 2%, derived 2%, constraints 0%, rest of chunk 1%, outside chunks 50%
    solid_electrolyte  MP formulas              100000     50.6     92.1     1977       1086      778  features 4%, models 23%, properties 7%, derived 34%, constraints 0%, rest of chunk 2%, outside chunks 29%
    solid_electrolyte  generated structures       2000     18.1     20.2      111         99      861  features 40%, models 4%, properties 2%, derived 13%, constraints 0%, rest of chunk 2%, outside chunks 41%
    baseline (by hand) MP formulas                2000     15.1     15.1      132        132           oxi_state_guesses capped at 1 s: 9 formulas
    ratio cathode / baseline, rows per CPU second: 15.7x; rows per wall second: 26.0x
    ratio solid_electrolyte / baseline, rows per CPU second: 8.2x; rows per wall second: 14.9x

(The stage shares come from 10,000 rows, where start-up, model loading and the report weigh more than at
100,000.) The run before these three changes (same arguments, load 6-7, so wall times are not comparable):
cathode 1,423 and 97, solid electrolyte 631 (windows 54% of its CPU) and 83 rows per CPU second. Between
the two runs the presets changed too (builtin:voltage for the cathode, a 10-member OBELiX model, hence
the solid electrolyte's larger model share). Issue 19 measured about 200 formulas per CPU second for the
cathode preset before any of these changes.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MP = ROOT.parent / "shared" / "datasets" / "mp_composition"
PRESETS = ("cathode", "solid_electrolyte")
STAGES = ("features", "models", "properties", "derived", "constraints")


def mp_formulas(n: int, seed: int = 0) -> list[str]:
    """n formulas from the Materials Project sets of ../shared (all three files; repeats allowed past them)."""
    formulas: list[str] = []
    for name in ("mp_e_form_dev.csv", "mp_e_hull_train.csv", "mp_e_hull_val.csv"):
        with open(MP / name, newline="") as handle:
            formulas += [row["formula"] for row in csv.DictReader(handle)]
    random.Random(seed).shuffle(formulas)
    return (formulas * (n // len(formulas) + 1))[:n]


def write_formulas(path: Path, formulas: list[str]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "formula"])
        writer.writerows((f"mp-{i:07d}", f) for i, f in enumerate(formulas))


def generate_structures(folder: Path, n: int) -> Path:
    """`mi generate configs/generate_benchmark.yaml` stopped at n kept candidates; its shards folder."""
    cmd = [sys.executable, "-m", "mi.cli", "generate", str(ROOT / "configs" / "generate_benchmark.yaml"),
           "--out", str(folder), "--no-progress", "--set", f"generate.max_candidates={n}"]
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return folder / "shards"


def preset_config(preset: str, source: Path, out_dir: Path, extra: dict | None = None) -> Path:
    """The preset with its sources replaced by `source` and outputs under `out_dir`; no feature cache."""
    import yaml

    path = Path(preset) if preset.endswith((".yaml", ".yml")) else ROOT / "configs" / f"{preset}.yaml"
    cfg = yaml.safe_load(path.read_text())
    preset = path.stem
    cfg["candidates"]["sources"] = [str(source)]
    cfg.setdefault("export", {})["out_dir"] = str(out_dir)
    cfg.setdefault("features", {})["cache_dir"] = None
    for section, values in (extra or {}).items():
        cfg.setdefault(section, {}).update(values)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{preset}-{source.stem}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _tree_cpu(root: int, seen: dict[int, float]) -> None:
    """CPU seconds so far of every process below `root`'s children (pool workers are the forkserver's
    children: getrusage never sees them), by pid, from /proc."""
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            pid = int(stat.parent.name)
            parent[pid] = int(fields[1])
            own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        except (OSError, ValueError, IndexError):
            continue
        parent[pid] = int(fields[1])
        seen.setdefault(pid, 0.0)
        seen[pid] = max(seen[pid], own)
    below = {root}
    changed = True
    while changed:
        changed = False
        for pid, ppid in parent.items():
            if ppid in below and pid not in below:
                below.add(pid)
                changed = True
    for pid in list(seen):
        if pid not in below and pid in parent:
            del seen[pid]  # not ours


def run_screen(config: Path, out: Path) -> dict:
    """`mi screen` in a child process: wall, CPU (the child from getrusage, its grandchildren - the pool
    workers - polled from /proc every 0.2 s), rows read and ranked."""
    cpu0, t0 = _children_cpu(), time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "mi.cli", "screen", str(config), "--out", str(out), "--no-progress"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: dict[int, float] = {}
    direct: dict[int, bool] = {}  # pid -> a child of the screen (getrusage counts it once it is waited for)
    while proc.poll() is None:
        _tree_cpu(proc.pid, seen)
        for pid in seen:
            if pid not in direct:
                direct[pid] = pid == proc.pid or _parent(pid) == proc.pid
        time.sleep(0.2)
    _, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    cpu = _children_cpu() - cpu0 + sum(c for pid, c in seen.items() if not direct.get(pid, True))
    if proc.returncode != 0:
        raise RuntimeError(f"mi screen {config} failed ({proc.returncode}):\n{stderr[-3000:]}")
    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest.get("counts", {})
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"wall_s": wall, "cpu_s": cpu, "counts": counts, "peak_rss_mib": peak_mib}


def _parent(pid: int) -> int | None:
    try:
        return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def stage_shares(config: Path, out: Path) -> dict[str, float]:
    """CPU seconds per stage of one in-process screen (workers 1): the chunk's stages, the rest of the
    chunk (joins, structure JSON), and everything outside the chunks (reading, shards, merge, report)."""
    import mi.features
    import mi.properties
    import mi.ranking
    from mi.config import load_config
    from mi.execution import chunk
    from mi.pipeline import screen

    spent = dict.fromkeys([*STAGES, "chunk"], 0.0)

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            start = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.process_time() - start

        return wrapper

    patches = [
        (mi.features, "featurize_with_config", "features"),
        (mi.properties, "compute_properties", "properties"),
        (mi.properties, "derive_properties", "derived"),
        (mi.ranking, "split_by_constraints", "constraints"),
        (chunk, "process_chunk", "chunk"),
    ]
    saved = [(module, name, getattr(module, name)) for module, name, _ in patches]
    models = None
    try:
        for module, name, stage in patches:
            setattr(module, name, timed(stage, getattr(module, name)))
        from mi.models.screen_models import ScreenModels

        models = ScreenModels.predict
        ScreenModels.predict = timed("models", ScreenModels.predict)
        cfg = load_config(config, ["execution.workers=1", "features.workers=1", "export.report=true"])
        start = time.process_time()
        screen(cfg, out=out, progress=False)
        total = time.process_time() - start
    finally:
        for module, name, fn in saved:
            setattr(module, name, fn)
        if models is not None:
            from mi.models.screen_models import ScreenModels

            ScreenModels.predict = models
    shares = {s: spent[s] / total for s in STAGES}
    shares["rest of chunk"] = (spent["chunk"] - sum(spent[s] for s in STAGES)) / total
    shares["outside chunks"] = (total - spent["chunk"]) / total
    shares["total_cpu_s"] = total
    return shares


# --- the hand-written baseline ---------------------------------------------------------------------------


class _Slow(Exception):
    pass


def baseline(formulas: list[str], train_formulas: list[str], targets: list[float], cap_s: float = 1.0) -> dict:
    """matminer Magpie + pymatgen oxi_state_guesses (capped) + a scikit-learn model, per CPU second."""
    import numpy as np
    from matminer.featurizers.composition import ElementProperty
    from pymatgen.core import Composition
    from sklearn.ensemble import RandomForestRegressor

    from mi.properties.redox import ACCESSIBLE_STATES

    magpie = ElementProperty.from_preset("magpie")
    forest = RandomForestRegressor(n_estimators=100, n_jobs=1, random_state=0)
    forest.fit(np.array([magpie.featurize(Composition(f)) for f in train_formulas]), targets)

    def alarm(signum, frame):
        raise _Slow

    previous = signal.signal(signal.SIGALRM, alarm)
    capped = 0
    start_cpu, start = time.process_time(), time.perf_counter()
    try:
        rows, capacities = [], []
        for formula in formulas:
            comp = Composition(formula)
            rows.append(magpie.featurize(comp))
            override = {el.symbol: ACCESSIBLE_STATES[el.symbol] for el in comp if el.symbol in ACCESSIBLE_STATES}
            signal.setitimer(signal.ITIMER_REAL, cap_s)
            try:
                guesses = comp.oxi_state_guesses(oxi_states_override=override) if "Li" in comp and override else ()
            except (_Slow, ValueError):
                guesses = ()
                capped += 1
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            capacities.append(len(guesses))
        forest.predict(np.nan_to_num(np.array(rows, dtype=float)))
    finally:
        signal.signal(signal.SIGALRM, previous)
    return {"rows": len(formulas), "wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - start_cpu,
            "capped": capped}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="Materials Project formulas per preset")
    parser.add_argument("--structures", type=int, default=10_000, help="generated structures per preset")
    parser.add_argument("--baseline-rows", type=int, default=2000)
    parser.add_argument("--stage-rows", type=int, default=20_000, help="candidates of the in-process stage timing")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), help="preset names, or YAML files")
    args = parser.parse_args(argv)
    if not MP.is_dir():
        print(f"{MP} is absent: the benchmark needs ../shared", file=sys.stderr)
        return 2

    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1, 5, 15 min); "
          f"{len(os.sched_getaffinity(0))} cores; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    results = []
    with tempfile.TemporaryDirectory(prefix="screen_speed_") as tmp:
        tmp = Path(tmp)
        formulas = mp_formulas(args.rows + 4000)
        inputs = {}
        if args.rows:
            write_formulas(tmp / "mp.csv", formulas[: args.rows])
            write_formulas(tmp / "mp_stage.csv", formulas[: min(args.rows, args.stage_rows)])
            inputs["MP formulas"] = (tmp / "mp.csv", tmp / "mp_stage.csv")
        if args.structures:
            t0 = time.perf_counter()
            shards = generate_structures(tmp / "generated", args.structures)
            print(f"generated {args.structures} structures in {time.perf_counter() - t0:.0f} s (not counted below)")
            inputs["generated structures"] = (shards, shards)
        for preset in args.presets:
            for label, (source, stage_source) in inputs.items():
                config = preset_config(preset, source, tmp / "runs")
                name = config.stem.split("-")[0]
                try:
                    run = run_screen(config, tmp / "runs" / config.stem)
                    shares = stage_shares(preset_config(preset, stage_source, tmp / "stage"), tmp / "stage" / config.stem)
                except Exception as exc:  # a preset that does not run is reported, the others go on
                    print(f"  {name} / {label}: FAILED: {str(exc).strip().splitlines()[-1]}", flush=True)
                    continue
                n = run["counts"].get("read", run["counts"].get("candidates", 0))
                results.append((name, label, n, run, shares))
                print(f"  {name} / {label}: {n} read in {run['wall_s']:.1f} s wall, {run['cpu_s']:.1f} CPU-s", flush=True)
        sample = formulas[:: max(1, len(formulas) // args.baseline_rows)][: args.baseline_rows]
        base = baseline(sample, *training_set(2000))

    print()
    print(f"{'preset':18s} {'input':22s} {'rows':>8s} {'wall s':>8s} {'CPU s':>8s} {'rows/s':>8s} {'rows/CPU-s':>10s} "
          f"{'peak MiB':>8s}  CPU shares (in-process, workers 1)")
    for preset, label, n, run, shares in results:
        share_text = ", ".join(f"{k} {100 * v:.0f}%" for k, v in shares.items() if k != "total_cpu_s")
        print(f"{preset:18s} {label:22s} {n:8d} {run['wall_s']:8.1f} {run['cpu_s']:8.1f} {n / run['wall_s']:8.0f} "
              f"{n / run['cpu_s']:10.0f} {run['peak_rss_mib']:8.0f}  {share_text}")
    base_rate = base["rows"] / base["cpu_s"]
    print(f"{'baseline (by hand)':18s} {'MP formulas':22s} {base['rows']:8d} {base['wall_s']:8.1f} {base['cpu_s']:8.1f} "
          f"{base['rows'] / base['wall_s']:8.0f} {base_rate:10.0f} {'':8s}  oxi_state_guesses capped at 1 s: "
          f"{base['capped']} formulas")
    for preset, label, n, run, _ in results:
        if label == "MP formulas":
            print(f"ratio {preset} / baseline, rows per CPU second: {n / run['cpu_s'] / base_rate:.1f}x; "
                  f"rows per wall second: {n / run['wall_s'] / (base['rows'] / base['wall_s']):.1f}x")
    print(f"load at the end: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    return 0


def training_set(n: int, seed: int = 1) -> tuple[list[str], list[float]]:
    """n (formula, formation energy per atom) pairs of mp_e_form_dev.csv for the baseline's forest."""
    with open(MP / "mp_e_form_dev.csv", newline="") as handle:
        rows = [(r["formula"], float(r["e_form_per_atom"])) for r in csv.DictReader(handle)]
    picked = random.Random(seed).sample(rows, n)
    return [f for f, _ in picked], [e for _, e in picked]


if __name__ == "__main__":
    raise SystemExit(main())
