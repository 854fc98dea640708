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
    OMP_NUM_THREADS=1 python experiments/benchmarks/screen_speed.py --presets cathode --rows 1000000 \
        --structures 0 --stage-rows 0 --baseline-rows 0                           # peak memory at a million

Needs ../shared/datasets/mp_composition (the formulas) and matminer and scikit-learn for the baseline.
"peak MiB" is the peak resident set (VmHWM, polled from /proc) of the ``mi screen`` process, "worker" the
largest of its pool workers' (and the forkserver's).

Latest run (2026-12-05 13:12-13:16 UTC, 2 cores, OMP_NUM_THREADS=1, load average 0.1 at the start and 1.1 at
the end, the machine otherwise idle), the default command, after the chunks began applying the leading
constraints on exact columns (the presets' capacity rules) before the models and the derived properties: of
5,000 MP formulas the cathode preset's capacity rule removes 4,810 and the electrolyte preset's first two rules
4,779, which now cost neither model nor stability-window time (removed.csv and failures.csv byte-identical to
a7086a2 on both presets with 5,000 MP formulas, the demo inputs in chunks of 4 and ``out_of_domain: drop``,
and on a file where the first constraint removes every row; ranked.csv within float32 noise of the models'
batch sizes, values to 5e-7 and stds to 1e-6 absolute, in the same order; the derived properties' notes now
count only the kept rows):

    preset             input                      rows   wall s    CPU s   rows/s rows/CPU-s peak MiB worker  CPU shares (in-process, workers 1)
    cathode            MP formulas              100000     14.1     21.3     7081       4692      286    423  features 6%, models 4%, properties 9%, derived 0%, constraints 1%, rest of chunk 8%, outside chunks 71%
    cathode            generated structures      10000     40.2     54.9      249        182      934    158  features 50%, models 1%, properties 2%, derived 0%, constraints 0%, rest of chunk 7%, outside chunks 40%
    solid_electrolyte  MP formulas              100000     28.0     43.7     3577       2286      289    525  features 5%, models 4%, properties 2%, derived 33%, constraints 0%, rest of chunk 6%, outside chunks 49%
    solid_electrolyte  generated structures      10000     38.7     52.9      258        189      894    158  features 59%, models 1%, properties 2%, derived 1%, constraints 0%, rest of chunk 2%, outside chunks 36%
    baseline (by hand) MP formulas                2000     16.3     16.3      122        123           oxi_state_guesses capped at 1 s: 9 formulas
    ratio cathode / baseline, rows per CPU second: 38.3x; rows per wall second: 57.8x
    ratio solid_electrolyte / baseline, rows per CPU second: 18.7x; rows per wall second: 29.2x

Right after (load 0.6 at the start, 2.1 at the end), ``--presets cathode --rows 1000000 --structures 0
--stage-rows 0 --baseline-rows 0``: 101.4 s wall, 180.2 CPU-s (9,866 rows/s), peak 331 MiB, workers 447 MiB:
1.16x the 100,000 run's 286 MiB (before: 117.5 s, 8,514 rows/s, 376 MiB); then the cathode on 100,000 again
(load 2.1): 18.9 s, 28.5 CPU-s, 5,293 rows/s, peak 285 MiB.

What the electrolyte's "derived" share is now: the stability windows of the rows the constraints keep, one
phase diagram per chemical system, and the bundled MP reference entries with their MP2020 corrections, loaded
once per process (1.3-1.6 s: pymatgen's compatibility module, then 423 entries through ``process_entries``;
measured in a fresh process after pymatgen's phase-diagram import, load 1). Since 2026-12-05 15:20 the
corrected entries (id, composition, energy) are kept in ``$XDG_CACHE_HOME/mi/reference_entries`` and a process
after the first reads them in 0.014 s without importing that module (`mi.properties.stability`): the
electrolyte preset on the demo inputs, one process, 5.4 and 6.4 s wall against 7.9 and 8.1 s for 277a336,
alternated (load 1.0-1.3); over 100,000 formulas (two workers) 20.1 s, 32.0 CPU-s against 18.6 s, 29.5 CPU-s,
within this machine's run-to-run spread. ranked.csv, removed.csv and failures.csv byte-identical to 277a336 on
5,000 MP formulas and on the demo inputs.

The round before (2026-12-05 11:22-11:27 UTC, 2 cores, OMP_NUM_THREADS=1, load average 2.2 at the start (the
previous benchmark) and 1.2 at the end; the machine otherwise idle), the default command, after the properties
went onto the chunk's composition matrix (capacities, demand and the CRMA text from one formula matrix, no
new Composition per row), the merge ranked a narrow table and placed each shard's rows at their ranks,
ranked.csv/json were written in one pass, the table was released before the report, the Pareto figure was
drawn by a worker process while the rest was written, and builtin:voltage ran only on the rows with a
working ion it can extract:

    preset             input                      rows   wall s    CPU s   rows/s rows/CPU-s peak MiB worker  CPU shares (in-process, workers 1)
    cathode            MP formulas              100000     17.1     27.7     5839       3616      323    660  features 7%, models 17%, properties 4%, derived 4%, constraints 1%, rest of chunk 6%, outside chunks 60%
    cathode            generated structures      10000     38.2     52.0      262        192     1063    199  features 55%, models 3%, properties 2%, derived 0%, constraints 0%, rest of chunk 6%, outside chunks 34%
    solid_electrolyte  MP formulas              100000     46.1     83.9     2169       1192      329    816  features 2%, models 37%, properties 2%, derived 37%, constraints 0%, rest of chunk 3%, outside chunks 18%
    solid_electrolyte  generated structures      10000     39.3     50.9      254        196     1041    199  features 50%, models 7%, properties 2%, derived 7%, constraints 0%, rest of chunk 1%, outside chunks 33%
    baseline (by hand) MP formulas                2000     15.7     15.7      127        127           oxi_state_guesses capped at 1 s: 9 formulas
    ratio cathode / baseline, rows per CPU second: 28.4x; rows per wall second: 45.9x
    ratio solid_electrolyte / baseline, rows per CPU second: 9.4x; rows per wall second: 17.1x

Cathode over 100,000 formulas, ``--presets cathode --structures 0 --baseline-rows 0 --stage-rows 0``, the same
tree, 11:14-11:22 (load 0.8-2.4): 17.0, 19.6 and 15.5 s wall (5,881, 5,098 and 6,468 rows/s; 25.0-31.8 CPU-s),
peak 321-324 MiB; ``--rows 1000000``: 117.5 s wall, 215.5 CPU-s (8,514 rows/s), peak 376 MiB, workers 773 MiB:
1.16x the 100,000 run (with the Pareto figure handed to a worker at that size too: 404 MiB, hence
``BACKGROUND_MAX_ROWS``). The screen's own process, 100,000 formulas (load 0.6): start 0.7 s, chunks 14.1 s
(4.9 CPU-s of it reading: CSV, formulas, composition hashes), merge 0.6, ranked.csv/json and the rest 0.9,
report 1.9 (was 2.4 with the Pareto figure drawn here), total 18.3 s. Worker CPU per 20,000 formulas
(in-process, load 2.8-4): 4.7 -> 3.0 CPU-s (properties 1.2 -> 0.4, features 0.95 -> 0.55, demand 0.24 ->
0.03, CRMA text 0.38 -> 0.27). ranked.csv, ranked.json, removed.csv and failures.csv byte-identical to
fd26989 on the demo, cathode and solid-electrolyte presets, 10,000 MP formulas, chunks of 3,000 (plain, with
``out_of_domain: drop``, and streamed), 300 generated structures and a resumed run, with the same checkpoints;
and the cathode (with the previous builtin:voltage) and solid-electrolyte presets on 10,000 formulas after the
models' change too. builtin:voltage itself changed after those comparisons (issue 18), so the cathode's
voltages and energy figures are the new model's.

The round before (2026-12-05 09:27-09:33 UTC, 2 cores, OMP_NUM_THREADS=1, load average 1.8-2.5), ``--presets cathode
--structures 0 --stage-rows 0 --baseline-rows 0``, after the chunks' notes were merged into one note per kind
(counts added up: 30 notes and a 15 kB manifest for 10,000 formulas, were 1,400 and 157 kB), the screen's own
process stopped loading the models when worker processes predict (cards only, no torch), the CSV reader
stopped copying the text into a StringIO, and the merge, passports and top CIFs made fewer copies of the
ranked table: 100,000 formulas in 23.2 s wall, 37.2 CPU-s (4,316 rows/s, 2,686 per CPU second), peak 343 MiB,
workers 704 MiB; commit 659aff3 right after, same load: 23.8 s, 39.1 CPU-s (4,205 rows/s), peak 594 MiB,
workers 719 MiB. ``--rows 1000000``: 198 s wall, 336 CPU-s (5,044 rows/s), peak 482 MiB (was 982), workers
753 MiB: 1.41x the 100,000 run (goal 1.2x). What still grows (steps' peaks in the ``mi screen`` process,
100,000 -> 1,000,000): reading and the chunks 280 -> 329 MiB (the CSV text, 22 MB, and the ids seen, 16 bytes
each), the merge -> 451 (the 57,490 kept rows of 143 columns, 76 MB as a table, ranked in memory as
``execution.max_rows_in_memory``, 500,000, asks; with it below the kept rows the merge streams: 105 MiB over
its start instead of 236, but ranked.csv then holds the top-k and the Pareto front only), ranked.csv/json -> 472,
the report -> 479. ranked.csv, ranked.json, removed.csv and failures.csv byte-identical to 659aff3 on the demo
and cathode presets, 10,000 formulas, and in chunks of 3,000 (with ``out_of_domain: drop``, and streamed).

The round before (2026-12-05 08:53-08:59 UTC, 2 cores, OMP_NUM_THREADS=1, load average 4.3-5.3 at the start and
4.2 at the end: two model trainings and other benchmarks shared the two cores, so every wall time here
is inflated), ``--rows 100000 --structures 10000 --stage-rows 10000``, after the removed rows
moved from the shard records to a CSV file beside each shard, ranked.json/csv written block by block, the
report's label placement on arrays and one draw, mass fractions and capacities without pymatgen's unit
objects (and the capacity once per candidate), the merge and ranking with fewer copies of the table, the
forkserver importing the chunk workers' modules once (started while the models load) and the structure
hash on arrays:

    preset             input                      rows   wall s    CPU s   rows/s rows/CPU-s peak MiB worker  CPU shares (in-process, workers 1)
    cathode            MP formulas              100000     37.6     35.7     2663       2804      599    703  features 9%, models 8%, properties 9%, derived 5%, constraints 1%, rest of chunk 4%, outside chunks 63%
    cathode            generated structures      10000     49.5     47.2      202        212     1100    778  features 54%, models 1%, properties 4%, derived 1%, constraints 0%, rest of chunk 7%, outside chunks 34%
    baseline (by hand) MP formulas                2000     15.6     15.6      128        129           oxi_state_guesses capped at 1 s: 9 formulas
    ratio cathode / baseline, rows per CPU second: 21.8x; rows per wall second: 20.7x

The solid-electrolyte preset did not run: the working tree's preset named ``builtin:obelix_attention``, a
model another change was still adding. 10,000 structures are one chunk, so they ran in the ``mi screen``
process itself (its peak is the structures' and the feature pool's). Same load, back to back, this tree
against commit ce8bd82 with the same checkpoints (``mi screen`` of the cathode preset over the same 100,000
formulas, twice each, 09:00-09:03, load 3-4): 38.1 against 53.7 CPU-s (2,626 against 1,865 rows per CPU
second), 40.3 against 55.3 s wall, peak 595 against 778 MiB (workers 727-751 against 748-749 MiB); ranked.csv,
ranked.json, removed.csv and failures.csv byte-identical on the demo, cathode and solid-electrolyte presets
as shipped, on 10,000 MP formulas and 2,000 generated structures (both presets), and for the cathode in
chunks of 3,000 (with ``out_of_domain: drop``, and streamed). ``--presets cathode --rows 1000000 --structures 0`` (08:45-08:53, load 4.6-5.3):
463 s wall, 320 CPU-s (3,121 rows per CPU second), peak 982 MiB, workers 798 MiB: 1.65x the 100,000 run's
595 MiB. What grows (the steps' peaks in the ``mi screen`` process, 100,000 -> 1,000,000): reading and
the chunks 528 -> 676 MiB (the whole CSV text is read at once; the shard records keep per-chunk notes:
13,900 at 100,000, a 1.5 MB manifest), the merge -> 858 (58,000 kept rows of 143 columns ranked in
memory), the report -> 980.

The run before (07:09-07:13, load 0.6-1.2, ``--structures 2000``): cathode 100,000 formulas 29.0 s wall,
48.1 CPU-s (3,446 rows/s, 2,080 per CPU second), 2,000 structures 145 rows/s; solid electrolyte 1,977 and
111 rows/s. Issue 19 measured about 200 formulas per CPU second for the cathode preset before any change.
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


def _peak_rss_mib(pid: int) -> float:
    """The process's peak resident set so far (VmHWM), MiB; 0 when it is gone."""
    try:
        for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def _tree_cpu(root: int, seen: dict[int, float], peaks: dict[int, float] | None = None) -> None:
    """CPU seconds so far of every process below `root`'s children (pool workers are the forkserver's
    children: getrusage never sees them), by pid, from /proc; with `peaks`, their peak resident sets too."""
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
        if peaks is not None and pid in peaks:
            peaks[pid] = max(peaks[pid], _peak_rss_mib(pid))
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
    if peaks is not None:
        for pid in below:
            peaks[pid] = max(peaks.get(pid, 0.0), _peak_rss_mib(pid))


def run_screen(config: Path, out: Path) -> dict:
    """`mi screen` in a child process: wall, CPU (the child from getrusage, its grandchildren - the pool
    workers - polled from /proc every 0.2 s), rows read and ranked."""
    cpu0, t0 = _children_cpu(), time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "mi.cli", "screen", str(config), "--out", str(out), "--no-progress"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: dict[int, float] = {}
    peaks: dict[int, float] = {}  # pid -> peak resident set (MiB): the screen, the forkserver, the workers
    direct: dict[int, bool] = {}  # pid -> a child of the screen (getrusage counts it once it is waited for)
    while proc.poll() is None:
        _tree_cpu(proc.pid, seen, peaks)
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
    main_peak = peaks.pop(proc.pid, 0.0)
    return {"wall_s": wall, "cpu_s": cpu, "counts": counts, "peak_rss_mib": main_peak,
            "worker_peak_rss_mib": max(peaks.values(), default=0.0)}


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
    parser.add_argument("--rows", type=int, default=100_000,
                        help="Materials Project formulas per preset (past the 154,669 of the files they repeat, "
                        "with distinct ids: --rows 1000000 for the memory check)")
    parser.add_argument("--structures", type=int, default=10_000, help="generated structures per preset")
    parser.add_argument("--baseline-rows", type=int, default=2000, help="formulas of the hand-written baseline (0: none)")
    parser.add_argument("--stage-rows", type=int, default=20_000,
                        help="candidates of the in-process stage timing (0: no stage timing)")
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
                    shares = stage_shares(
                        preset_config(preset, stage_source, tmp / "stage"), tmp / "stage" / config.stem
                    ) if args.stage_rows else {}
                except Exception as exc:  # a preset that does not run is reported, the others go on
                    print(f"  {name} / {label}: FAILED: {str(exc).strip().splitlines()[-1]}", flush=True)
                    continue
                n = run["counts"].get("read", run["counts"].get("candidates", 0))
                results.append((name, label, n, run, shares))
                print(f"  {name} / {label}: {n} read in {run['wall_s']:.1f} s wall, {run['cpu_s']:.1f} CPU-s", flush=True)
        base = None
        if args.baseline_rows:
            sample = formulas[:: max(1, len(formulas) // args.baseline_rows)][: args.baseline_rows]
            base = baseline(sample, *training_set(2000))

    print()
    print(f"{'preset':18s} {'input':22s} {'rows':>8s} {'wall s':>8s} {'CPU s':>8s} {'rows/s':>8s} {'rows/CPU-s':>10s} "
          f"{'peak MiB':>8s} {'worker':>6s}  CPU shares (in-process, workers 1)")
    for preset, label, n, run, shares in results:
        share_text = ", ".join(f"{k} {100 * v:.0f}%" for k, v in shares.items() if k != "total_cpu_s")
        print(f"{preset:18s} {label:22s} {n:8d} {run['wall_s']:8.1f} {run['cpu_s']:8.1f} {n / run['wall_s']:8.0f} "
              f"{n / run['cpu_s']:10.0f} {run['peak_rss_mib']:8.0f} {run['worker_peak_rss_mib']:6.0f}  {share_text}")
    if base is None:
        print(f"load at the end: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
        return 0
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
