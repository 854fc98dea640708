"""The funnel: after ranking, the oracle relaxes the best candidates and the ranking is redone on its values.

`refine_ranked` is one step of `mi.pipeline.screen`, run when the config has ``refine:``:

1. **Select** ``refine.top_k`` ranked rows by ``score``, ``ucb_score`` or Pareto rank (then rank), at most
   ``refine.max_per_formula`` per composition (default 1: a composition surrogate gives every ordering
   of one composition the same values, so the budget would go to one chemistry). Formula-only rows are
   skipped with a note: the oracle needs a structure.
2. **Oracle**, chunk by chunk (``refine.chunk_size``): each candidate is one task (`mi.oracle.task`): its
   relaxation and, for a voltage, that of its delithiated counterpart. Each chunk is written atomically to
   ``<run>/refine/chunk-<n>.json`` with its ids, structure hashes and the hash of the oracle settings; a
   ``--resume`` keeps the chunks that match and computes the rest, and runs again the candidates of a kept
   chunk that hit their time limit (a busy machine is no reason to give up on them). A task that fails is a row of
   failures.csv (stage ``oracle``) and the candidate keeps its surrogate values.
3. **Columns** beside the surrogate's: ``oracle_formation_energy_eV_atom``, ``oracle_e_hull_eV_atom``
   (above the hull of the reference entries *and the other refined candidates*, so candidates compete on
   the hull), ``oracle_voltage_V``, ``oracle_relaxed_density_g_cm3``. The ranked column (e.g.
   ``e_hull_eV_atom``) takes the oracle's value where there is one (std 0, in domain), the surrogate's
   stays in ``surrogate_<column>``; the derived figures (energy, demand, stability window) are recomputed
   for those rows; ``<column>_source`` says ``surrogate``, ``oracle`` or ``exact`` for each ranked column.
   ``oracle_disagrees`` flags a row whose oracle value lies beyond ``refine.disagreement_sigma`` std of the
   surrogate's, the surrogate's std and the oracle's own error (``refine.oracle_std``) taken in quadrature
   (``oracle_disagrees_on`` names the columns).
4. **Re-rank** with `mi.ranking.rank` on that table (a refined row the oracle puts outside a constraint
   leaves the ranking, with a note); ``surrogate_rank`` keeps the rank before.
5. **Outputs**: ``refined.csv`` (every selected row: status, both values, ranks, oracle time),
   ``refined_labels.json`` (the format of `mi label`'s labels.json, which `mi train` and `mi loop` read),
   and ``summary["funnel"]`` for the report's funnel section.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Composition, Structure
from tqdm.auto import tqdm

from mi.candidates.base import Candidate, Failure, composition_hash, structure_hash
from mi.config import RefineConfig, ScreenConfig
from mi.errors import ConfigError
from mi.export.atomic import atomic_write_csv, atomic_write_json
from mi.oracle.base import TIME_LIMIT

log = logging.getLogger(__name__)

REFINE_DIR = "refine"
REFINED_FILE = "refined.csv"
LABELS_FILE = "refined_labels.json"
CHUNK_FORMAT = 1
RANKING_COLUMNS = ("rank", "score", "ucb_score", "pareto_rank", "crowding_distance")
LABEL_UNITS = {
    "formation_energy_eV_atom": "eV/atom",
    "e_hull_eV_atom": "eV/atom",
    "relaxed_volume_per_atom_A3": "A^3/atom",
    "relaxed_density_g_cm3": "g/cm^3",
    "voltage_V": "V",
}


@dataclass(frozen=True)
class OracleColumn:
    surrogate: str  # the ranked table's column (surrogate values before refinement)
    oracle: str  # the column the oracle's value goes to
    label: str  # the oracle label it comes from


def oracle_columns(cfg: ScreenConfig, columns=()) -> list[OracleColumn]:
    """Which surrogate column each oracle label stands beside: the formation energy the table has
    (``formation_energy_eV_atom``, else ``properties.formation_energy_column``), ``e_hull_eV_atom``, and the
    voltage column the energy figures read."""
    from mi.properties.derived import VOLTAGE_COLUMNS

    p = cfg.properties
    formation = next((c for c in ("formation_energy_eV_atom", p.formation_energy_column) if c in columns),
                     p.formation_energy_column)
    out = [
        OracleColumn(formation, "oracle_formation_energy_eV_atom", "formation_energy_eV_atom"),
        OracleColumn("e_hull_eV_atom", "oracle_e_hull_eV_atom", "e_hull_with_candidates_eV_atom"),
    ]
    if cfg.refine is not None and cfg.refine.voltage:
        out.append(OracleColumn(p.voltage_column or VOLTAGE_COLUMNS[p.voltage_source], "oracle_voltage_V", "voltage_V"))
    return out


# --- selection --------------------------------------------------------------------------------------


def select(ranked: pd.DataFrame, refine: RefineConfig) -> pd.DataFrame:
    """The ``top_k`` rows to refine, best first."""
    if refine.select == "ucb_score":
        if "ucb_score" not in ranked.columns:
            raise ConfigError("refine.select: ucb_score needs ranking.ucb_kappa (the ranking has no ucb_score)")
        order = ranked.sort_values(["ucb_score", "rank"], ascending=[False, True], kind="stable")
    elif refine.select == "pareto":
        order = ranked.sort_values(["pareto_rank", "rank"], kind="stable")
    else:
        order = ranked.sort_values(["score", "rank"], ascending=[False, True], kind="stable")
    if refine.max_per_formula is None or "formula" not in order.columns:
        return order.head(refine.top_k)
    # walk down the order only as far as needed: parsing every formula of a 100k-row ranking would cost seconds
    taken: dict[str, int] = {}
    picks: list[int] = []
    for position, formula in enumerate(order["formula"]):
        key = _composition_key(formula)
        if taken.get(key, 0) < refine.max_per_formula:
            taken[key] = taken.get(key, 0) + 1
            picks.append(position)
            if len(picks) == refine.top_k:
                break
    return order.iloc[picks]


def _composition_key(formula) -> str:
    try:  # the same for Li4Mn2CoNiO8 and Li2MnCo0.5Ni0.5O4
        return composition_hash(Composition(str(formula)))
    except (ValueError, KeyError):
        return str(formula)  # an unparsable formula is its own group


# --- the oracle, chunk by chunk -----------------------------------------------------------------------


def _settings_hash(cfg: ScreenConfig) -> str:
    # what a refined chunk's values depend on: not top_k, select or the flag threshold (ids are checked apart)
    settings = cfg.refine.model_dump(mode="json", exclude={"top_k", "select", "disagreement_sigma", "oracle_std", "cache_dir"})
    settings["working_ion"] = cfg.properties.working_ion
    if settings["references"] not in ("mp_bundled", "oracle_elements"):
        from mi.candidates import sha256_file

        settings["references"] = sha256_file(cfg.resolve(cfg.refine.references))
    payload = json.dumps(settings, sort_keys=True)
    return "sha256:" + hashlib.sha256(payload.encode()).hexdigest()


def load_factor() -> float:
    """The machine's 1-minute load per core (1 on an idle or unknown machine)."""
    try:
        return max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
    except OSError:
        return 1.0


class _Oracle:
    """The oracle and its references, built on first use (a resumed run with every chunk done loads nothing)."""

    def __init__(self, cfg: ScreenConfig) -> None:
        self.cfg = cfg
        self._parts: tuple | None = None

    def parts(self):
        if self._parts is None:
            from mi.oracle.references import ElementalReferences

            r = self.cfg.refine
            oracle = check_refine(self.cfg)
            cache = None if r.cache_dir in (None, "auto") else self.cfg.resolve(r.cache_dir)
            elemental = ElementalReferences(oracle, cache)
            hull = _hull(self.cfg, elemental)
            self._parts = (oracle, elemental, hull)
        return self._parts


def check_refine(cfg: ScreenConfig):
    """The refine section's oracle, built (no model loaded) so that a bad name, model or reference set is an
    error at the start of a run and from `mi validate`, not after the ranking. None without ``refine:``."""
    if cfg.refine is None:
        return None
    from mi.oracle.registry import get_oracle

    r = cfg.refine
    try:
        oracle = get_oracle(r.oracle, model_name=r.model, fmax=r.fmax, max_steps=r.max_steps,
                            time_limit_s=r.time_limit_s, max_memory_mb=r.max_memory_mb, relax_cell=True,
                            device=r.device)
    except ConfigError as exc:
        raise ConfigError(f"{cfg.source}: refine: {exc}") from None
    known = {"formation_energy_eV_atom", *(m.surrogate for m in oracle_columns(cfg))}
    unknown = sorted(set(r.oracle_std) - known)
    if unknown:  # a misspelt key would silently leave that column's oracle error at 0
        raise ConfigError(f"{cfg.source}: refine.oracle_std: {', '.join(map(repr, unknown))} is no column the oracle "
                          f"stands beside (these are: {', '.join(sorted(known))})")
    scale = getattr(oracle, "energy_scale", "MP2020")
    if r.references == "mp_bundled" and scale != "MP2020":
        raise ConfigError(f"{cfg.source}: refine.references: mp_bundled holds MP2020-corrected GGA/GGA+U energies; "
                          f"{r.oracle} {r.model} gives {scale} energies: use oracle_elements or an entries file "
                          "on the same scale")
    return oracle


def _hull(cfg: ScreenConfig, elemental):
    from mi.oracle.references import HullReferences

    kind = cfg.refine.references
    if kind in ("mp_bundled", "oracle_elements"):
        return HullReferences(kind, None, elemental)
    path = cfg.resolve(kind)
    if not path.is_file():
        raise ConfigError(f"refine.references: {path}: no such entries file (or say mp_bundled / oracle_elements)")
    return HullReferences("entries", path, elemental)


def _compact(structure: Structure) -> dict:
    from mi.oracle.run import compact_structure

    return compact_structure(structure)


def _clean(value):
    if isinstance(value, (float, np.floating)) and not math.isfinite(float(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _run_chunk(oracle: _Oracle, chunk: list[Candidate], settings) -> tuple[list[dict], list[Failure]]:
    from mi.oracle.task import run_task

    records, failures = [], []
    model, elemental, hull = oracle.parts()
    for cand in chunk:
        row, relaxation, task_failures = run_task(model, cand, settings, elemental, hull)
        failures += task_failures
        if row is None:
            continue
        record = {"id": cand.id, "formula": cand.formula, "source": cand.source}
        record.update({k: _clean(v) for k, v in row.items()})
        record["composition"] = relaxation.structure.composition.formula.replace(" ", "")
        record["structure"] = _compact(cand.structure)
        record["relaxed_structure"] = _compact(relaxation.structure)
        records.append(record)
    return records, failures


def _oracle_runs(run_dir: Path, candidates: list[Candidate], cfg: ScreenConfig, *, resume: bool,
                 progress: bool) -> tuple[list[dict], list[Failure], dict]:
    """Oracle records and failures of every candidate, chunk by chunk, reusing a resumed run's chunks."""
    from mi.oracle.task import TaskSettings

    r = cfg.refine
    folder = Path(run_dir) / REFINE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    if not resume:
        for old in folder.glob("chunk-*.json"):
            old.unlink()
    factor = load_factor() if r.scale_with_load else 1.0
    settings = TaskSettings(relax=r.relax, voltage=r.voltage, working_ion=cfg.properties.working_ion,
                            extract_fraction=r.extract_fraction, time_limit_s=r.time_limit_s,
                            atoms_per_limit=r.atoms_per_limit, load_factor=factor)
    settings_hash = _settings_hash(cfg)
    oracle = _Oracle(cfg)
    size = r.chunk_size
    chunks = [candidates[i : i + size] for i in range(0, len(candidates), size)]
    records: list[dict] = []
    failures: list[Failure] = []
    reused = retried = 0
    for n, chunk in enumerate(tqdm(chunks, desc="refine", unit="chunk", disable=not progress, leave=False)):
        path = folder / f"chunk-{n:06d}.json"
        ids, hashes = [c.id for c in chunk], [c.content_hash for c in chunk]
        if resume and path.is_file():
            try:
                saved = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                saved = {}
            if (saved.get("format") == CHUNK_FORMAT and saved.get("settings_hash") == settings_hash
                    and saved.get("ids") == ids and saved.get("content_hashes") == hashes):
                kept_records, kept_failures, again = _kept(saved, chunk)
                if not again:
                    records += kept_records
                    failures += kept_failures
                    reused += 1
                    continue
                # only the timed-out candidates run again; the chunk is rewritten whole, in chunk order
                new_records, new_failures = _run_chunk(oracle, again, settings)
                retried += len(again)
                order = {cid: k for k, cid in enumerate(ids)}
                chunk_records = sorted(kept_records + new_records, key=lambda rec: order[rec["id"]])
                chunk_failures = sorted(kept_failures + new_failures, key=lambda f: order.get(f.id, len(order)))
                _write_chunk(path, settings_hash, ids, hashes, chunk_records, chunk_failures)
                records += chunk_records
                failures += chunk_failures
                continue
        chunk_records, chunk_failures = _run_chunk(oracle, chunk, settings)
        _write_chunk(path, settings_hash, ids, hashes, chunk_records, chunk_failures)
        records += chunk_records
        failures += chunk_failures
    for extra in sorted(folder.glob("chunk-*.json"))[len(chunks):]:
        extra.unlink()  # chunks of an earlier run that selected more
    info = {"chunks": len(chunks), "chunks_reused": reused, "retried_after_time_limit": retried, "load_factor": round(factor, 2),
            "provenance": oracle.parts()[0].provenance() if reused < len(chunks) else None}
    if records:  # the hull with the candidates needs the references even when every chunk was reused
        _, _, hull = oracle.parts()
        _compete_on_hull(records, hull)
        info["provenance"] = oracle.parts()[0].provenance()
        info["hull"] = hull.describe()
    return records, failures, info


def _kept(saved: dict, chunk: list[Candidate]) -> tuple[list[dict], list[Failure], list[Candidate]]:
    """A saved chunk's records and failures, less those of candidates that hit a time limit (returned to run)."""
    timed_out = {f["id"] for f in saved["failures"] if TIME_LIMIT in f["reason"]}
    records = [rec for rec in saved["records"] if rec["id"] not in timed_out]
    failures = [Failure(f["file"], f["record"], f["stage"], f["reason"], id=f["id"])
                for f in saved["failures"] if f["id"] not in timed_out]
    return records, failures, [c for c in chunk if c.id in timed_out]


def _write_chunk(path: Path, settings_hash: str, ids: list[str], hashes: list[str], records: list[dict],
                 failures: list[Failure]) -> None:
    atomic_write_json(path, {"format": CHUNK_FORMAT, "settings_hash": settings_hash, "ids": ids,
                             "content_hashes": hashes, "records": records,
                             "failures": [f.as_row() for f in failures]}, indent=None)


def _compete_on_hull(records: list[dict], hull) -> None:
    """``e_hull_with_candidates_eV_atom``: above the hull of the references and the other refined rows."""
    from pymatgen.analysis.phase_diagram import PDEntry

    entries = {}
    for rec in records:
        if rec.get("energy_eV_atom") is not None:
            comp = Composition(rec["composition"])
            entries[rec["id"]] = PDEntry(comp, rec["energy_eV_atom"] * comp.num_atoms, name=rec["id"])
    for rec in records:
        value = None
        if rec["id"] in entries:
            own = entries[rec["id"]]
            others = tuple(e for cid, e in entries.items() if cid != rec["id"])
            try:
                value = hull.e_above_hull(own.composition, rec["energy_eV_atom"], extra=others)
            except Exception as exc:  # noqa: BLE001 - a hull that cannot be built leaves the value missing
                log.debug("no hull for %s: %s", rec["id"], exc)
        rec["e_hull_with_candidates_eV_atom"] = _clean(value)


# --- the ranked table with oracle values ------------------------------------------------------------


def _numeric(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def ranked_columns(cfg: ScreenConfig, table: pd.DataFrame, mapped: list[OracleColumn]) -> list[str]:
    """The columns the ranking reads (objectives, constraints) and those the oracle stands beside."""
    names = [o.column for o in cfg.ranking.objectives] + [c.column for c in cfg.ranking.constraints]
    names += [m.surrogate for m in mapped]
    return [c for c in dict.fromkeys(names) if c in table.columns]


def substitute(table: pd.DataFrame, oracle: pd.DataFrame, cfg: ScreenConfig, element_table=None) -> pd.DataFrame:
    """`table` with the oracle's values in the ranked columns where it has them (see the module docstring).

    `oracle` is indexed by id with the oracle labels as columns. Adds the ``oracle_*`` columns,
    ``surrogate_<column>`` copies of changed columns, ``<column>_source`` and the disagreement flags.
    """
    from mi.properties import derive_properties

    mapped = oracle_columns(cfg, table.columns)
    out = table.copy()
    ids = out["id"].astype(str)
    before = out.copy()
    hit = np.zeros(len(out), dtype=bool)
    for m in mapped:
        values = ids.map(oracle[m.label]) if m.label in oracle.columns else pd.Series(np.nan, index=out.index)
        values = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        out[m.oracle] = values
        have = np.isfinite(values)
        if m.surrogate == m.oracle or not have.any():
            hit |= have
            continue
        if m.surrogate not in out.columns:
            out[m.surrogate] = np.nan
        out.loc[have, m.surrogate] = values[have]
        if f"{m.surrogate}_std" in out.columns:
            out.loc[have, f"{m.surrogate}_std"] = 0.0  # an oracle value is taken as exact by the ranking
        if f"{m.surrogate}_in_domain" in out.columns:
            out.loc[have, f"{m.surrogate}_in_domain"] = True
        hit |= have
    if "relaxed_density_g_cm3" in oracle.columns:
        out["oracle_relaxed_density_g_cm3"] = pd.to_numeric(ids.map(oracle["relaxed_density_g_cm3"]), errors="coerce")
    if hit.any():  # the figures made from the substituted columns (energy, demand, stability window)
        rows, _ = derive_properties(out.loc[hit].copy(), cfg.properties, element_table)
        for column in rows.columns:
            if column not in out.columns:
                out[column] = np.nan
            if out[column].dtype != rows[column].dtype and (out[column].dtype == bool or rows[column].dtype == object):
                out[column] = out[column].astype(object)
            out.loc[hit, column] = rows[column].to_numpy()

    # sources and the surrogate's own values
    for column in ranked_columns(cfg, out, mapped):
        new, old = _numeric(out, column), _numeric(before, column)
        changed = hit & ~((new == old) | (np.isnan(new) & np.isnan(old)))
        base = "surrogate" if f"{column}_std" in before.columns or column in {m.surrogate for m in mapped} else "exact"
        source = np.where(changed, "oracle", base)
        source = np.where(np.isnan(new), "missing", source)
        out[f"{column}_source"] = source
        if changed.any() and column in before.columns:
            out[f"surrogate_{column}"] = old
            if f"{column}_std" in before.columns:
                out[f"surrogate_{column}_std"] = _numeric(before, f"{column}_std")

    # disagreement beyond k std: the surrogate's and the oracle's own error (against the surrogate's data)
    r = cfg.refine if cfg.refine is not None else RefineConfig()
    on: list[list[str]] = [[] for _ in range(len(out))]
    for m in mapped:
        if m.surrogate == m.oracle or f"{m.surrogate}_std" not in before.columns:
            continue
        s, sd, o = _numeric(before, m.surrogate), _numeric(before, f"{m.surrogate}_std"), _numeric(out, m.oracle)
        both = np.hypot(sd, r.oracle_std.get(m.surrogate, 0.0))
        with np.errstate(invalid="ignore"):
            far = np.isfinite(s) & np.isfinite(o) & (both > 0) & (np.abs(o - s) > r.disagreement_sigma * both)
        for i in np.flatnonzero(far):
            on[i].append(m.surrogate)
    out["oracle_disagrees"] = [bool(x) for x in on]
    out["oracle_disagrees_on"] = [", ".join(x) for x in on]
    return out


def _place(table: pd.DataFrame, mapped: list[OracleColumn]) -> pd.DataFrame:
    """Oracle, surrogate and source columns right after the column they belong to (and its std, domain flag)."""
    columns = list(table.columns)
    groups: dict[str, list[str]] = {}

    def add(base: str, name: str) -> None:
        if name in columns and name not in groups.setdefault(base, []):
            groups[base].append(name)

    for m in mapped:
        if m.oracle != m.surrogate:
            add(m.surrogate, m.oracle)
    for c in columns:
        if c.endswith("_source"):
            add(c[: -len("_source")], c)
        elif c.startswith("surrogate_") and c != "surrogate_rank" and not c.endswith("_std"):
            add(c[len("surrogate_"):], c)
            add(c[len("surrogate_"):], f"{c}_std")
    taken = [x for group in groups.values() for x in group]
    rest = [c for c in columns if c not in taken]
    position = {c: i for i, c in enumerate(rest)}
    after: dict[str, list[str]] = {}
    for base, group in groups.items():
        members = [k for k in (base, f"{base}_std", f"{base}_in_domain") if k in position]
        if members:
            after.setdefault(max(members, key=position.get), []).extend(group)
    order: list[str] = []
    for c in rest:
        order.append(c)
        order += after.get(c, [])
    order += [c for c in taken if c not in order]  # companions of a column the table lacks
    return table[order]


# --- the step -------------------------------------------------------------------------------------------


def refine_ranked(
    run_dir: Path,
    ranked: pd.DataFrame,
    shards: list[Path],
    cfg: ScreenConfig,
    summary: dict,
    failures: list[Failure],
    notes: list[str],
    *,
    resume: bool = False,
    progress: bool = False,
    element_table=None,
) -> tuple[pd.DataFrame, dict]:
    """The refinement step of a screen: returns the re-ranked table and the summary with ``funnel``;
    appends the oracle's failures to `failures` and what happened to `notes`."""
    import time

    from mi.execution.merge import structures_of
    from mi.ranking import rank
    from mi.ranking.constraints import split_by_constraints

    r = cfg.refine
    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    mapped = oracle_columns(cfg, ranked.columns)
    if not len(ranked):
        notes.append("refine: no ranked candidate to refine")
        return ranked, summary
    chosen = select(ranked, r)
    structures = structures_of(shards, set(chosen["id"].astype(str)))
    candidates, formula_only = [], []
    for _, row in chosen.iterrows():
        cid = str(row["id"])
        s = structures.get(cid)
        if s is None:
            formula_only.append(cid)
            continue
        candidates.append(Candidate(cid, str(row.get("source", "")), cid, s.composition, s, structure_hash(s)))
    if formula_only:
        notes.append(f"refine: {len(formula_only)} selected candidates have no structure (formula only) and keep "
                     f"their surrogate values: {', '.join(formula_only)}")
    records, oracle_failures, info = _oracle_runs(run_dir, candidates, cfg, resume=resume, progress=progress)
    failures += oracle_failures
    oracle = pd.DataFrame.from_records(records).set_index("id") if records else pd.DataFrame()

    before = ranked.drop(columns=[c for c in RANKING_COLUMNS if c != "rank"], errors="ignore")
    before = before.rename(columns={"rank": "surrogate_rank"})
    table = substitute(before, oracle, cfg, element_table)
    kept, removed_counts, removed_rows = split_by_constraints(table, cfg.ranking.constraints)
    reranked, new_summary = rank(kept, cfg.ranking)
    reranked = _place(reranked, mapped)

    # what happened to each selected row
    failed = {f.id: f.reason for f in oracle_failures}
    removed_by = dict(zip(removed_rows["id"].astype(str), removed_rows["constraint"])) if len(removed_rows) else {}
    new_rank = dict(zip(reranked["id"].astype(str), reranked["rank"]))
    rows = []
    for _, row in chosen.iterrows():
        cid = str(row["id"])
        if cid in formula_only:
            status = "skipped: no structure"
        elif cid in oracle.index:
            status = "refined" if cid not in failed else "refined; voltage failed"
        else:
            status = "failed"
        rec = oracle.loc[cid] if cid in oracle.index else None
        out = {"id": cid, "formula": row.get("formula"), "status": status, "reason": failed.get(cid, ""),
               "surrogate_rank": int(row["rank"]), "rank": new_rank.get(cid),
               "removed_by": removed_by.get(cid, "")}
        for m in mapped:
            out[f"surrogate_{m.surrogate}"] = row.get(m.surrogate, np.nan)
            out[f"surrogate_{m.surrogate}_std"] = row.get(f"{m.surrogate}_std", np.nan)
            out[m.oracle] = rec[m.label] if rec is not None and m.label in rec.index else np.nan
        for k in ("e_hull_eV_atom", "relaxed_density_g_cm3", "n_steps", "converged", "delithiated_formula",
                  "delithiated_n_steps", "delithiated_converged", "voltage_note", "oracle_seconds", "time_limit_s"):
            name = "oracle_e_hull_references_eV_atom" if k == "e_hull_eV_atom" else k
            out[name] = rec[k] if rec is not None and k in rec.index else None
        match = table.loc[table["id"].astype(str) == cid]
        out["oracle_disagrees_on"] = match["oracle_disagrees_on"].iloc[0] if len(match) else ""
        rows.append(out)
    refined_frame = pd.DataFrame(rows)
    atomic_write_csv(run_dir / REFINED_FILE, refined_frame)
    _write_labels(run_dir, records, info)

    # notes and the funnel summary
    for cid, constraint in removed_by.items():
        notes.append(f"refine: {cid} fails {constraint} on the oracle's values and left the ranking")
    for key, n in removed_counts.items():
        if n:
            summary.setdefault("removed", {})
            summary["removed"][key] = summary["removed"].get(key, 0) + int(n)
    if summary.get("streamed"):
        notes.append("refine: the merge streamed, so the re-ranking orders only the rows in ranked.csv")
    if info["retried_after_time_limit"]:
        notes.append(f"refine: resumed; {info['retried_after_time_limit']} candidates that had hit their time limit "
                     "ran again")
    time_hits = sum(TIME_LIMIT in f.reason for f in oracle_failures)
    if time_hits:
        notes.append(f"refine: {time_hits} oracle relaxations hit their time limit (see failures.csv; "
                     f"refine.time_limit_s {r.time_limit_s:g} s per {r.atoms_per_limit} atoms, load x{info['load_factor']})")
    old_rank = dict(zip(ranked["id"].astype(str), ranked["rank"]))
    moved = {cid: int(old_rank[cid] - k) for cid, k in new_rank.items() if old_rank.get(cid) != k}
    seconds = [rec.get("oracle_seconds") or 0.0 for rec in records]
    disagree = {m.surrogate: int(table["oracle_disagrees_on"].str.split(", ").apply(lambda x, c=m.surrogate: c in x).sum())
                for m in mapped}
    funnel = {
        "ranked_in": int(len(ranked)),
        "selected": int(len(chosen)),
        "select": r.select,
        "skipped_no_structure": formula_only,
        "sent_to_oracle": len(candidates),
        "refined": int(len(records)),
        "failed": sorted({f.id for f in oracle_failures if f.id not in oracle.index}),
        "voltage_failed": sorted({f.id for f in oracle_failures if f.id in oracle.index}),
        "time_limit_hits": int(time_hits),
        "removed_by_constraints": removed_by,
        "moved": moved,
        "disagreements": disagree,
        "disagreeing_rows": int(table["oracle_disagrees"].sum()),
        "oracle_seconds": round(float(sum(seconds)), 1),
        "seconds_per_candidate": round(float(np.mean(seconds)), 1) if seconds else None,
        "wall_time_s": round(time.perf_counter() - t0, 1),
        "chunks": info["chunks"],
        "chunks_reused": info["chunks_reused"],
        "load_factor": info["load_factor"],
        "columns": [(m.surrogate, m.oracle) for m in mapped],
        "sigma": r.disagreement_sigma,
        "refined_file": REFINED_FILE,
        "labels_file": LABELS_FILE,
        "parity": refined_frame[refined_frame["status"].str.startswith("refined")].to_dict("records"),
    }
    notes.append(
        f"refine: {len(records)} of {len(chosen)} selected candidates refined by {r.oracle} "
        f"({len(funnel['failed'])} failed, {len(formula_only)} formula only, {len(removed_by)} left the ranking on "
        f"oracle values, {funnel['disagreeing_rows']} disagree with the surrogate beyond {r.disagreement_sigma:g} std); "
        f"{len(moved)} ranks moved"
    )
    summary = {**summary, "objectives": new_summary["objectives"], "funnel": funnel}
    return reranked, summary


def _write_labels(run_dir: Path, records: list[dict], info: dict) -> None:
    """``refined_labels.json`` in `mi label`'s format: `mi train` reads it as a table dataset."""
    data = []
    for rec in records:
        out = {k: v for k, v in rec.items() if k not in ("composition",)}
        data.append(out)
    provenance = {**(info.get("provenance") or {}), **(info.get("hull") or {}),
                  "made_by": "mi screen refine (mi.refine)",
                  "e_hull_eV_atom": "above the reference hull; e_hull_with_candidates_eV_atom adds the other refined "
                  "candidates"}
    atomic_write_json(run_dir / LABELS_FILE, {"units": LABEL_UNITS, "provenance": provenance, "data": data},
                      indent=None)


__all__ = ["LABELS_FILE", "REFINED_FILE", "oracle_columns", "refine_ranked", "select", "substitute"]
