"""Candidate generation: prototype substitution and composition enumeration, lazy, filtered, deduplicated.

    generate(cfg)            a stream of `Generated` candidates (structures or compositions)
    run(run_cfg, out_dir)    `mi generate`: the stream written to shards, plus summary.json and config.yaml
    generator_fingerprint(x) sha256 of a generator (resolved config + the prototypes it uses), for manifests

A screening config takes a generator directly (``candidates: {generate: ...}``); `mi.candidates.readers`
then screens the stream without shards.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the package stays light to import: the prototype library loads on first use
    from mi.candidates.generate.substitution import FamilyStats, Generated
    from mi.config import GenerateConfig, GenerateRunConfig

__all__ = ["generate", "generator_fingerprint", "run", "summary_table"]


def generator_fingerprint(path_or_cfg: str | Path | GenerateConfig | GenerateRunConfig) -> str:
    """sha256 of a generator; see `mi.candidates.generate.fingerprint.generator_fingerprint`."""
    from mi.candidates.generate.fingerprint import generator_fingerprint as fingerprint

    return fingerprint(path_or_cfg)


def generate(cfg: GenerateConfig, stats: dict[str, FamilyStats] | None = None) -> Iterator[Generated]:
    """Every candidate `cfg` asks for, after the filters and deduplication, in a deterministic order.

    `stats` (family -> FamilyStats) is filled in as the stream is consumed.
    """
    from mi.candidates.generate.dedupe import Deduplicator
    from mi.candidates.generate.enumeration import enumerate_compositions
    from mi.candidates.generate.prototypes import check_jobs
    from mi.candidates.generate.substitution import FamilyStats, Generated, substitute

    check_jobs(cfg)  # a generator given by itself (run, a screen and `mi validate` check with the file first)
    stats = {} if stats is None else stats
    dedupe = Deduplicator() if cfg.dedupe else None
    seen: set[str] = set()  # formulas of composition-only candidates
    kept = 0
    for job in cfg.prototypes:
        family = job.name or job.prototype
        st = stats.setdefault(family, FamilyStats())
        for g in substitute(job, cfg.filters, st):
            formula = g.composition.reduced_formula
            if g.structure is None:
                duplicate = cfg.dedupe and formula in seen
                seen.add(formula)
            else:
                duplicate = dedupe is not None and not dedupe.is_new(g.structure, formula, g.group)
            if duplicate:
                st.duplicates += 1
                continue
            st.kept += 1
            kept += 1
            yield g
            if cfg.max_candidates is not None and kept >= cfg.max_candidates:
                return
    for space in cfg.compositions:
        family = f"compositions:{space.name}"
        st = stats.setdefault(family, FamilyStats())
        raw: dict = {}
        try:
            for comp, oxi in enumerate_compositions(
                list(space.elements),
                require=list(space.require),
                max_elements=space.max_elements,
                max_stoichiometry=space.max_stoichiometry,
                max_atoms=space.max_atoms,
                electronegativity_order=space.electronegativity_order,
                stats=raw,
            ):
                st.generated += 1
                formula = comp.reduced_formula
                if cfg.dedupe and formula in seen:
                    st.duplicates += 1
                    continue
                seen.add(formula)
                st.kept += 1
                kept += 1
                yield Generated(f"{space.name}:{formula}", family, comp, None, {"family": family, "oxidation_states": oxi})
                if cfg.max_candidates is not None and kept >= cfg.max_candidates:
                    return
        finally:
            st.considered += raw.get("examined", 0)
            st.rejected_charge += raw.get("rejected_charge", 0)
            st.duplicates += raw.get("duplicates", 0)
            if raw.get("rejected_electronegativity"):
                st.reasons["oxidation-state sets out of electronegativity order"] += raw["rejected_electronegativity"]


def run(run_cfg: GenerateRunConfig, out_dir: Path | None = None, *, progress: bool = False) -> dict:
    """`mi generate`: write shards under <out>/shards/, then <out>/summary.json and <out>/config.yaml."""
    import yaml
    from tqdm.auto import tqdm

    from mi.candidates.generate.prototypes import check_jobs
    from mi.candidates.generate.shards import ShardWriter
    from mi.candidates.generate.substitution import FamilyStats
    from mi.files import atomic_write_bytes

    check_jobs(run_cfg)
    out = Path(out_dir) if out_dir is not None else run_cfg.resolve(run_cfg.output.dir)
    shard_dir = out / "shards"
    out.mkdir(parents=True, exist_ok=True)
    for old in shard_dir.glob("*-[0-9][0-9][0-9][0-9][0-9].*") if shard_dir.is_dir() else []:
        old.unlink()  # a rerun replaces the shards of the last one, never mixes with them
    fmt = run_cfg.output.format
    structures = ShardWriter(shard_dir, "structures", fmt, run_cfg.output.shard_size)
    others = ShardWriter(shard_dir, "candidates", "jsonl", run_cfg.output.shard_size)  # compositions, disorder
    stats: dict[str, FamilyStats] = {}
    t0 = time.perf_counter()
    n = 0
    try:
        for g in tqdm(generate(run_cfg.generate, stats), desc="generate", unit="cand", disable=not progress):
            if g.structure is not None and (fmt == "jsonl" or g.structure.is_ordered):
                structures.write(g.id, g.structure, g.meta)
            else:
                others.write(g.id, g.structure if g.structure is not None else g.composition, g.meta)
            n += 1
    except BaseException:
        structures.abort()
        others.abort()
        raise
    paths = structures.close() + others.close()
    seconds = time.perf_counter() - t0
    totals = _totals(stats)
    summary = {
        "name": run_cfg.name,
        "counts": totals,
        "families": {k: v.as_dict() for k, v in stats.items()},
        "shards": [str(p.relative_to(out)) for p in paths],
        "shard_bytes": structures.bytes + others.bytes,
        "seconds": round(seconds, 2),
        "candidates_per_second": round(totals["generated"] / seconds, 1) if seconds > 0 else None,
    }
    atomic_write_bytes(out / "summary.json", (json.dumps(summary, indent=1) + "\n").encode())
    config = run_cfg.model_dump(mode="json")
    config["output"]["dir"] = str(out.resolve())
    atomic_write_bytes(out / "config.yaml", yaml.safe_dump(config, sort_keys=False).encode())
    summary["out_dir"] = str(out)
    return summary


def _totals(stats: dict[str, FamilyStats]) -> dict:
    keys = ("considered", "rejected_charge", "rejected_radius", "rejected_other", "generated", "duplicates", "kept")
    totals = {k: sum(getattr(s, k) for s in stats.values()) for k in keys}
    totals["dedupe_ratio"] = round(totals["duplicates"] / totals["generated"], 4) if totals["generated"] else 0.0
    return totals


def summary_table(summary: dict) -> str:
    cols = ("considered", "rejected_charge", "rejected_radius", "rejected_other", "generated", "duplicates", "kept")
    heads = ("considered", "charge", "radius", "other", "generated", "dupes", "kept")
    width = max([len("family"), *(len(k) for k in summary["families"])])
    lines = [f"{'family':<{width}} " + " ".join(f"{h:>10}" for h in heads)]
    for family, row in summary["families"].items():
        lines.append(f"{family:<{width}} " + " ".join(f"{row[c]:>10}" for c in cols))
    t = summary["counts"]
    lines.append(f"{'total':<{width}} " + " ".join(f"{t[c]:>10}" for c in cols))
    return "\n".join(lines)
