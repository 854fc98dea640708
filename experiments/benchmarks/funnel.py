"""The funnel on known cathodes: surrogate voltage vs CHGNet voltage vs the measured one.

    OMP_NUM_THREADS=1 python experiments/benchmarks/funnel.py [--out DIR] [--fractions 1.0 0.5]

Eight known cathodes go through the cathode preset (`configs/cathode.yaml`, constraints dropped so that
all eight reach the oracle) with ``refine: {top_k: 8}``: the Li ones in one screen, olivine NaFePO4 in a
second screen with ``working_ion: Na``. For each ``refine.extract_fraction`` given (1.0: every
redox-extractable ion leaves; 0.5: half of them, e.g. Li0.5CoO2) the script prints, per material, the
surrogate's voltage (the preset's, ``builtin:voltage``), the oracle's, the measured one, the oracle's wall time
and the rank before and after refinement; then the voltage MAEs. "accessible" picks, per material, the
fraction cycled in practice: half for the layered oxides LiCoO2 and LiNiO2 (they are cycled to about
Li0.5), all for the others (olivines, spinel LiMn2O4 on its 4 V plateau, LiTiS2).

Structures: the demo set's LiFePO4, LiMnPO4, LiCoO2, LiNiO2, LiMn2O4, LiTiS2 (conventional cells built from
published crystallography, datasets/demo/README.md); LiCoPO4 and NaFePO4 by the generator, olivine
substitution into LiFePO4 (`mi.candidates.generate`, prototype ``olivine_LiFePO4``, cell rescaled by
bond lengths).

Measured average voltages (vs the working-ion metal, rounded):

* LiFePO4 3.45 V, LiMnPO4 4.1 V: A. K. Padhi, K. S. Nanjundaswamy, J. B. Goodenough, J. Electrochem. Soc.
  144, 1188 (1997)
* LiCoPO4 4.8 V: K. Amine, H. Yasuda, M. Yamachi, Electrochem. Solid-State Lett. 3, 178 (2000)
* LiCoO2 3.9 V: K. Mizushima, P. C. Jones, P. J. Wiseman, J. B. Goodenough, Mater. Res. Bull. 15, 783 (1980)
* LiNiO2 3.8 V: J. R. Dahn, U. von Sacken, M. W. Juzkow, H. Al-Janaby, J. Electrochem. Soc. 138, 2207 (1991)
* LiMn2O4 4.1 V: J. M. Tarascon, E. Wang, F. K. Shokoohi, W. R. McKinnon, S. Colson, J. Electrochem. Soc.
  138, 2859 (1991)
* LiTiS2 2.1 V: M. S. Whittingham, Science 192, 1126 (1976)
* NaFePO4 (olivine) 2.9 V vs Na: P. Moreau, D. Guyomard, J. Gaubicher, F. Boucher, Chem. Mater. 22, 4126
  (2010)

Output of the last run: see README.md, "Funnel".
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "datasets" / "demo" / "structures"
PRESET = ROOT / "configs" / "cathode.yaml"

MEASURED_V = {
    "LiFePO4": 3.45, "LiMnPO4": 4.1, "LiCoPO4": 4.8, "LiCoO2": 3.9, "LiNiO2": 3.8, "LiMn2O4": 4.1,
    "LiTiS2": 2.1, "NaFePO4": 2.9,
}
DEMO_FILES = ("LiFePO4.cif", "LiMnPO4.cif", "LiCoO2.vasp", "LiNiO2.cif", "LiMn2O4.cif", "LiTiS2.cif")
OLIVINES = {"LiCoPO4": {"M": ["Co"]}, "NaFePO4": {"A": ["Na"]}}  # substitutions into olivine LiFePO4
ACCESSIBLE = {"LiCoO2": 0.5, "LiNiO2": 0.5}  # else 1.0


def olivine(name: str, sites: dict) -> "Structure":  # noqa: F821
    from mi.candidates.generate import generate
    from mi.config import GenerateConfig

    cfg = GenerateConfig.model_validate({"prototypes": [{"prototype": "olivine_LiFePO4", "sites": sites}]})
    for g in generate(cfg):
        if g.structure is not None and g.composition.reduced_formula == name:
            return g.structure
    raise SystemExit(f"the generator made no {name}")


def candidate_folders(work: Path) -> dict[str, Path]:
    """One folder of structures per working ion (file stem = candidate id)."""
    li, na = work / "Li", work / "Na"
    li.mkdir(parents=True, exist_ok=True)
    na.mkdir(parents=True, exist_ok=True)
    for name in DEMO_FILES:
        shutil.copy(DEMO / name, li / name)
    olivine("LiCoPO4", OLIVINES["LiCoPO4"]).to(filename=str(li / "LiCoPO4.json"))
    olivine("NaFePO4", OLIVINES["NaFePO4"]).to(filename=str(na / "NaFePO4.json"))
    return {"Li": li, "Na": na}


def run_screen(folder: Path, ion: str, fraction: float, out: Path, extra: list[str] = ()) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    from mi.config import load_config
    from mi.pipeline import screen

    overrides = [
        f"candidates.sources=[{folder}]",
        "ranking.constraints=[]",  # every known cathode reaches the oracle
        f"properties.working_ion={ion}",
        "refine.top_k=8",
        f"refine.extract_fraction={fraction}",
        "export.top_cif=false",
        "features.cache_dir=null",
        *extra,
    ]
    cfg = load_config(PRESET, overrides)
    result = screen(cfg, out=out, progress=False, overwrite=True)
    refined = pd.read_csv(result.run_dir / "refined.csv")
    funnel = next((n for n in result.manifest["notes"] if n.startswith("refine:") and " of " in n), "")
    return result.ranked, refined, {"note": funnel, "wall_time_s": result.manifest.get("wall_time_s")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="keep the run folders here (default: a temp dir)")
    parser.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.5])
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="more screen overrides, e.g. refine.fmax=0.05")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    work = args.out or Path(tempfile.mkdtemp(prefix="mi-funnel-"))
    folders = candidate_folders(work / "structures")
    print(f"load at start: {os.getloadavg()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"overrides {args.overrides}", flush=True)

    rows = []
    for fraction in args.fractions:
        for ion, folder in folders.items():
            t0 = time.perf_counter()
            ranked, refined, info = run_screen(folder, ion, fraction, work / f"run-{ion}-{fraction:g}",
                                                args.overrides)
            print(f"[{ion}, extract_fraction {fraction:g}] {time.perf_counter() - t0:.0f} s, load "
                  f"{os.getloadavg()[0]:.2f}: {info['note']}", flush=True)
            for _, r in refined.iterrows():
                rows.append({
                    "material": r["id"], "ion": ion, "fraction": fraction, "status": r["status"],
                    "measured_V": MEASURED_V.get(r["id"], np.nan),
                    "surrogate_V": r.get("surrogate_voltage_V", np.nan),
                    "surrogate_V_std": r.get("surrogate_voltage_V_std", np.nan),
                    "oracle_V": r.get("oracle_voltage_V", np.nan),
                    "delithiated": r.get("delithiated_formula", ""),
                    "converged": f"{r.get('converged')}/{r.get('delithiated_converged')}",
                    "oracle_s": r.get("oracle_seconds", np.nan),
                    "rank_before": r["surrogate_rank"], "rank_after": r["rank"],
                    "reason": r.get("reason", "") if isinstance(r.get("reason", ""), str) else "",
                })
    table = pd.DataFrame(rows)
    table.to_csv(work / "funnel.csv", index=False)

    def fmt(x, spec=".2f"):
        return "–" if not isinstance(x, (int, float, np.floating)) or not np.isfinite(x) else format(x, spec)

    print("\n| material | extract | delithiated | measured V | surrogate V | oracle V | oracle s | rank before -> after | status |")
    print("|---|---|---|---|---|---|---|---|---|")
    for _, r in table.iterrows():
        print(f"| {r['material']} | {r['fraction']:g} | {r['delithiated'] or '–'} | {r['measured_V']:.2f} | "
              f"{fmt(r['surrogate_V'])} ± {fmt(r['surrogate_V_std'])} | {fmt(r['oracle_V'])} | {fmt(r['oracle_s'], '.0f')} | "
              f"{r['rank_before']} -> {fmt(r['rank_after'], '.0f')} | {r['status']}{(': ' + r['reason']) if r['reason'] else ''} |")

    print("\n| delithiation | finished | surrogate V MAE | oracle V MAE | oracle s per candidate | ranks moved |")
    print("|---|---|---|---|---|---|")
    summary = {}
    choices = {f"{f:g} of the extractable ions": table[table["fraction"] == f] for f in args.fractions}
    if {1.0, 0.5} <= set(args.fractions):
        pick = table.apply(lambda r: r["fraction"] == ACCESSIBLE.get(r["material"], 1.0), axis=1)
        choices["accessible (0.5 for LiCoO2, LiNiO2)"] = table[pick]
    for label, part in choices.items():
        done = part[np.isfinite(part["oracle_V"].astype(float))]
        s_mae = float(np.nanmean(np.abs(part["surrogate_V"] - part["measured_V"])))
        o_mae = float(np.mean(np.abs(done["oracle_V"] - done["measured_V"]))) if len(done) else float("nan")
        moved = int((part["rank_before"] != part["rank_after"]).sum())
        seconds = float(part["oracle_s"].mean())
        summary[label] = {"finished": f"{len(done)}/{len(part)}", "surrogate_mae_V": s_mae, "oracle_mae_V": o_mae,
                          "oracle_s": seconds, "ranks_moved": moved}
        print(f"| {label} | {len(done)}/{len(part)} | {s_mae:.2f} | {o_mae:.2f} | {seconds:.0f} | {moved} |")
    (work / "funnel_summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nload at end: {os.getloadavg()}; runs in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
