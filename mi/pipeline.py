"""One stage after another: candidates -> features -> surrogate + exact properties -> ranking -> export.

Each stage takes plain inputs and returns a table plus failures; this module only wires them together and
writes the run directory. The row-wise stages run chunk by chunk on a backend (`mi.execution`) and leave
Parquet shards; the ranking is merged from them. Nothing here imports the CLI.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from mi import __version__
from mi.candidates import Candidate, Failure
from mi.config import ScreenConfig
from mi.errors import InputError
from mi.files import sha256_file
from mi.export.rundir import releases_run_locks

log = logging.getLogger(__name__)



@dataclass
class ScreenResult:
    """A screen's run folder, failures and manifest, its top-k rows (every column) and, as `ranked`, every
    ranked row (what ranked.csv holds)."""

    run_dir: Path
    failures: list[Failure]
    manifest: dict
    top: pd.DataFrame
    predicted: list[str] = field(default_factory=list)
    # the ranked table, or how to read it back from the shards: a screen does not keep a table of millions
    # of rows once ranked.csv is written (the report and the top-k need only some of it)
    _ranked: pd.DataFrame | Callable[[], pd.DataFrame] = field(default_factory=pd.DataFrame, repr=False)

    @property
    def ranked(self) -> pd.DataFrame:
        if callable(self._ranked):
            self._ranked = self._ranked()
        return self._ranked


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def resolved_config_yaml(cfg: ScreenConfig) -> str:
    """The config as run: overrides applied, defaults filled in, paths made absolute."""
    data = cfg.model_dump(mode="json")
    data["candidates"]["sources"] = [str(cfg.resolve(s).resolve()) for s in cfg.candidates.sources]
    if isinstance(cfg.candidates.generate, str):
        data["candidates"]["generate"] = str(cfg.resolve(cfg.candidates.generate).resolve())
    for key, entry in cfg.model_entries():
        out = data["model"] if key == "model" else data["models"][int(key[7:-1])]
        if entry.checkpoint and not entry.checkpoint.startswith("builtin:"):
            out["checkpoint"] = str(cfg.resolve(entry.checkpoint).resolve())
        if entry.train and entry.train.dataset.path:
            out["train"]["dataset"]["path"] = str(cfg.resolve(entry.train.dataset.path).resolve())
    if cfg.properties.element_table:
        data["properties"]["element_table"] = str(cfg.resolve(cfg.properties.element_table).resolve())
    data["export"]["out_dir"] = str(cfg.resolve(cfg.export.out_dir).resolve())
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def _train_recipe(cfg: ScreenConfig, key: str, recipe, path: Path) -> Path:
    """A model entry that names a training recipe: trained as `mi train` would, saved to `path`."""
    from mi.models.checkpoint import save_checkpoint
    from mi.models.datasets import load_dataset
    from mi.models.train import train

    dataset_cfg = recipe.dataset
    dataset = load_dataset(dataset_cfg, cfg.resolve(dataset_cfg.path) if dataset_cfg.path else None, resolve=cfg.resolve)
    log.info("training the surrogate of %s on %d rows (%s.train)", key, len(dataset.frame), key)
    surrogate, _ = train(recipe, dataset, run_dir=path.with_suffix(".train"))
    return save_checkpoint(surrogate, path)


def _strict_check(strict: bool, failures: list[Failure]) -> None:
    if strict and failures:
        f = failures[0]
        where = f.source + (f", {f.record}" if f.record else "")
        raise InputError(f"{where}: {f.stage}: {f.reason} (--strict stops at the first failure)")


def _plan(cfg: ScreenConfig) -> dict:
    """What shards depend on: a resumed run must have the same, whatever backend or workers it uses."""
    import hashlib
    import json

    data = cfg.model_dump(mode="json", exclude={"execution", "export", "refine"})  # refine keeps its own chunks
    payload = json.dumps(data, sort_keys=True)
    plan = {
        "mi_version": __version__,
        "screen_hash": "sha256:" + hashlib.sha256(payload.encode()).hexdigest(),
        "chunk_size": cfg.execution.chunk_size,
    }
    from mi.models.screen_models import model_refs

    refs = model_refs(cfg)
    if refs:
        # the checkpoints' bytes, not their paths: a model retrained in place must not mix with the shards
        from mi.models.checkpoint import checkpoint_card

        plan["checkpoint_sha256"] = ",".join(checkpoint_card(r.label)["sha256"] for r in refs)
    return plan


def _resume_dir(cfg: ScreenConfig) -> Path:
    """The newest run folder of this experiment that did not finish (for --resume without --out)."""
    import json

    folder = cfg.resolve(cfg.export.out_dir) / cfg.name
    runs = sorted((p for p in folder.glob("*") if (p / "manifest.json").is_file()), reverse=True)
    for run in runs:
        try:
            status = json.loads((run / "manifest.json").read_text(encoding="utf-8")).get("status")
        except ValueError:
            continue
        if status != "complete":
            return run
    raise InputError(f"--resume: no unfinished run of {cfg.name!r} under {folder}; give the run folder with --out")


def _dedupe(notes: list[str]) -> list[str]:
    return list(dict.fromkeys(notes))


def _generator_hashes(cfg: ScreenConfig) -> dict[str, str]:
    """The generator's fingerprint: its file (or the inline section) and the prototypes it substitutes into."""
    generate = cfg.candidates.generate
    if generate is None:
        return {}
    from mi.candidates.generate import generator_fingerprint

    if isinstance(generate, str):
        path = cfg.resolve(generate).resolve()
        return {f"generate:{path}": "sha256:" + generator_fingerprint(path)}
    return {"generate:inline": "sha256:" + generator_fingerprint(generate)}


@dataclass
class _Run:
    """What the steps of one screen share: the config, its run folder and what has been gathered so far."""

    cfg: ScreenConfig
    dir: Path
    started: str
    t0: float
    notes: list[str]
    strict: bool
    progress: bool
    resume: bool
    files: list[Path] = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    records: dict[int, dict] = field(default_factory=dict)  # shard records by chunk index
    models: Any = None  # the loaded ScreenModels, once the first chunk is read (None: workers load them)
    refs: tuple = ()  # their ModelRefs
    reused: int = 0  # chunks whose shards a killed run completed
    chunk_notes: Any = None  # the shards' notes, merged as they come (`mi.execution.notes.NoteMerger`)


@dataclass
class _Tally:
    """The shards' records added up."""

    indices: list[int]
    totals: dict[str, int]
    removed: dict[str, int]
    feature_failures: int


def _start_run(cfg: ScreenConfig, *, out, strict: bool, progress: bool, resume: bool, overwrite: bool) -> _Run:
    """Plan: the run folder (refused if it holds another run), a manifest that marks it as an mi run from the
    start (so a crashed run can be resumed or overwritten), the config as run and the shard plan."""
    from mi.candidates.generate.prototypes import check_jobs
    from mi.execution.shards import start_shards
    from mi.export.rundir import open_run_dir, write_config, write_manifest
    from mi.features.sets import check_names
    from mi.properties.groups import check_names as check_calculators
    from mi.refine import check_refine

    check_names(cfg)  # names only the stages know (config cannot), before the run folder is touched
    check_jobs(cfg)
    check_calculators(cfg)
    check_refine(cfg)
    started = _now()
    t0 = time.perf_counter()
    if resume and out is None:
        out = _resume_dir(cfg)
    run_dir, notes = open_run_dir(
        out, out_dir=cfg.resolve(cfg.export.out_dir), name=cfg.name, overwrite=overwrite, resume=resume
    )
    write_manifest(run_dir, {"mi_version": __version__, "status": "running", "started_at": started})
    write_config(run_dir, resolved_config_yaml(cfg))
    start_shards(run_dir, _plan(cfg), resume)
    log.info("run directory: %s (backend %s, chunks of %d)", run_dir, cfg.execution.backend, cfg.execution.chunk_size)
    if cfg.execution.backend == "ray":
        from mi.execution.ray_backend import import_ray

        import_ray()  # a clear error before any reading when Ray is absent
    return _Run(cfg, run_dir, started, t0, list(notes), strict, progress, resume)


def _read_chunks(run: _Run, stream) -> Iterator[tuple[int, list[Candidate]]]:
    """Read: the candidates, ``execution.chunk_size`` at a time, numbered."""
    from mi.candidates.stream import chunked

    run.files = stream.files
    candidates = tqdm(stream, desc="screen", unit="candidate", disable=not run.progress, leave=False)
    return enumerate(chunked(candidates, run.cfg.execution.chunk_size))


def _train_models(run: _Run) -> dict[str, Path]:
    """Train: every model entry that names a recipe, trained as `mi train` would into the run folder."""
    trained = {}
    for key, entry in run.cfg.model_entries():
        if entry.train is not None:
            name = "model.pt" if key == "model" else key.replace("[", "-").replace("]", "") + ".pt"
            trained[key] = _train_recipe(run.cfg, key, entry.train, run.dir / name)
    return trained


def _model_refs(cfg: ScreenConfig, trained: dict[str, Path]):
    """Every surrogate of the screen as a checked checkpoint reference (`mi.models.screen_models`), trained
    ones from `trained`; clashing or unknown columns are config errors."""
    from mi.models.screen_models import ModelRef, check_models

    refs = []
    for key, entry in cfg.model_entries():
        columns = tuple(entry.columns) if entry.columns is not None else None
        if key in trained:
            label = str(trained[key])
        else:
            spec = entry.checkpoint
            label = spec if spec.startswith("builtin:") else str(cfg.resolve(spec).resolve())
        refs.append(ModelRef(key, label, entry.device, columns, blend=entry.blend))
    return check_models(refs)


def _load_models(run: _Run, in_process: bool) -> None:
    """Models: trained (where a recipe is named), checked (their cards, without torch) and, when the chunks
    run `in_process`, loaded, once the first chunk is read, so that a run without candidates fails before
    any model work. Worker processes load them themselves."""
    from mi.models.screen_models import ScreenModels

    refs = _model_refs(run.cfg, _train_models(run))
    run.refs = tuple(refs)
    if in_process:
        run.models = ScreenModels.load(refs)


def _pending_chunks(run: _Run, chunks) -> Iterator[tuple[int, list[Candidate]]]:
    """The chunks still to compute: with --resume, a chunk whose shard a killed run completed is reused."""
    from mi.execution.chunk import chunk_key
    from mi.execution.shards import complete_shard

    for index, chunk in chunks:
        record = complete_shard(run.dir, index, chunk_key(chunk)) if run.resume else None
        if record is None:
            yield index, chunk
        else:
            _keep_record(run, record)
            run.reused += 1


def _compute(run: _Run, jobs) -> Iterator:
    """The configured backend's ChunkResults of `jobs`."""
    execution = run.cfg.execution
    if execution.backend == "ray":
        from mi.execution.ray_backend import run_ray

        return run_ray(jobs, run.cfg, run.refs)
    from mi.execution.local import run_local

    return run_local(
        jobs, run.cfg, run.models if run.models is not None else run.refs, run.refs,
        workers=execution.workers, progress=run.progress and execution.workers in (1, "auto"),
    )


def _process_chunks(run: _Run, chunks) -> None:
    """Process: each chunk through features, surrogates, properties and constraints on the backend, its
    kept rows written as a Parquet shard (`mi.execution`)."""
    from mi.execution.shards import record_failures, write_shard

    first = next(chunks, None)
    if first is None:
        return
    second = next(chunks, None)
    from mi.execution.local import in_workers, start_workers_early

    if second is not None:  # more than one chunk: worker processes start while the models are checked here
        start_workers_early(run.cfg)
    _load_models(run, in_process=not in_workers(run.cfg, several_chunks=second is not None))
    pending = _pending_chunks(run, itertools.chain([first], [second] if second is not None else [], chunks))
    first_job = next(pending, None)
    if first_job is None:  # every chunk reused
        return
    for result in _compute(run, itertools.chain([first_job], pending)):
        _keep_record(run, write_shard(run.dir, result))
        if run.strict:
            feature_failures, property_failures = record_failures(run.records[result.index])
            _strict_check(True, feature_failures)
            _strict_check(True, property_failures)


def _keep_record(run: _Run, record: dict) -> None:
    """A shard's record, its notes merged into the run's (one note per kind, whatever the number of chunks)
    and dropped from the record held in memory."""
    from mi.execution.notes import NoteMerger

    if run.chunk_notes is None:
        run.chunk_notes = NoteMerger()
    run.chunk_notes.add(record["index"], record["notes"])
    run.records[record["index"]] = {**record, "notes": []}


def _tally(run: _Run, stream) -> _Tally:
    """Add up the reading and the shards' records: counts, failures and notes of the whole run."""
    from mi.execution.shards import record_failures

    run.failures = stream.finish()
    run.counts = {
        "files": len(run.files), "read": stream.read, "failed_to_read": len(run.failures), **stream.summary(),
    }
    log.info("%s", stream.summary_line())
    indices = sorted(run.records)
    feature_failures, property_failures = [], []
    notes = [*run.notes, *stream.notes, *(run.chunk_notes.notes() if run.chunk_notes else [])]
    totals = {"features_computed": 0, "features_from_cache": 0, "featurized": 0, "rows": 0, "after_constraints": 0}
    removed: dict[str, int] = {}
    for i in indices:
        ff, pf = record_failures(run.records[i])
        feature_failures += ff
        property_failures += pf
        for k in totals:
            totals[k] += int(run.records[i]["counts"].get(k, 0))
        for k, v in run.records[i]["removed"].items():
            removed[k] = removed.get(k, 0) + int(v)
    run.failures += feature_failures + property_failures
    run.notes = _dedupe(notes)
    run.counts.update({
        "features_computed": totals["features_computed"],
        "features_from_cache": totals["features_from_cache"],
        "chunks": len(indices),
        "chunks_reused": run.reused,
    })
    return _Tally(indices, totals, removed, len(feature_failures))


def _finish(run: _Run, ranked: int, status: str = "complete") -> dict:
    """failures.csv and the final manifest (`ranked`: the rows ranked)."""
    from mi.export.rundir import build_manifest, write_failures, write_manifest

    write_failures(run.dir, run.failures)
    refs = run.refs
    manifest = build_manifest(
        config_hash=run.cfg.hash(),
        input_hashes={**{str(p.resolve()): sha256_file(p) for p in run.files}, **_generator_hashes(run.cfg)},
        checkpoint=refs[0].label if refs else None,
        checkpoint_hash=refs[0].sha256 if refs else None,
        started=run.started,
        ended=_now(),
        counts={**run.counts, "failed": len(run.failures), "ranked": ranked},
        notes=run.notes,
        extra={
            "status": status,
            "wall_time_s": round(time.perf_counter() - run.t0, 2),
            "run_dir": str(run.dir),
            "execution": run.cfg.execution.model_dump(mode="json"),
            "checkpoints": [
                {"key": r.key, "checkpoint": r.label, "sha256": r.sha256, "columns": list(r.columns or ())}
                for r in refs
            ],
        },
    )
    write_manifest(run.dir, manifest)
    return manifest


def _refuse_without_candidates(run: _Run) -> None:
    """Nothing was read: every output is still written, then an InputError."""
    from mi.export.rundir import write_empty_outputs

    write_empty_outputs(run.dir, run.cfg.export.write_json)
    run.notes = [*run.notes, "no usable candidates"]
    _finish(run, 0, status="failed")
    raise InputError(
        f"no usable candidates in candidates.sources ({len(run.failures)} failures, see {run.dir / 'failures.csv'})"
    )


def _merge(run: _Run, tally: _Tally) -> tuple[pd.DataFrame, dict, list[Path]]:
    """Merge: one ranking of every shard (`mi.execution.merge`), and the notes on what it removed or skipped."""
    from mi.execution.merge import merge_shards
    from mi.execution.shards import shard_files
    from mi.export.rundir import empty_ranked

    cfg, totals = run.cfg, tally.totals
    shards = shard_files(run.dir, tally.indices)
    if totals["rows"] == 0:  # every chunk failed: nothing to rank, but every file is still written
        ranked, summary = empty_ranked(), {}
    else:
        ranked, summary = merge_shards(
            shards, cfg.ranking, rows=totals["after_constraints"], max_rows_in_memory=cfg.execution.max_rows_in_memory
        )
    summary["removed"], summary["rows_in"] = tally.removed, totals["rows"]
    run.counts.update({"featurized": totals["featurized"], "after_constraints": totals["after_constraints"],
                       "removed_by_constraints": sum(tally.removed.values())})
    notes = [*run.notes, *(f"constraint {k} removed {v} candidates" for k, v in tally.removed.items())]
    notes += summary.get("skipped", [])
    if summary.get("streamed"):
        notes.append(
            f"{totals['after_constraints']} ranked rows exceed execution.max_rows_in_memory "
            f"({cfg.execution.max_rows_in_memory}): ranked.csv holds the top {cfg.ranking.top_k} and the Pareto "
            f"front ({summary['front_size']} rows), with their global ranks"
        )
    run.notes = notes + _out_of_domain_notes(ranked, cfg.ranking.out_of_domain)
    return ranked, summary, shards


def _out_of_domain_notes(ranked: pd.DataFrame, policy: str) -> list[str]:
    """One note per set of ranked rows outside their model's domain (columns derived from one prediction
    share its flags)."""
    from mi.ranking.domain import out_of_domain_summary

    same_rows: dict[tuple, list[str]] = {}
    for column, ids in out_of_domain_summary(ranked).items():
        same_rows.setdefault(tuple(ids), []).append(column)
    notes = []
    for ids, columns in same_rows.items():
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        notes.append(
            f"{', '.join(columns)}: {len(ids)} ranked rows outside their model's domain ({shown}); "
            f"ranking.out_of_domain: {policy}"
        )
    return notes


def _element_table(cfg: ScreenConfig):
    from mi.data import load_element_facts

    return load_element_facts(cfg.resolve(cfg.properties.element_table)) if cfg.properties.element_table else None


def _refine(run: _Run, ranked: pd.DataFrame, summary: dict, shards: list[Path]) -> tuple[pd.DataFrame, dict]:
    """Refine (with ``refine:``): the oracle relaxes the best and the ranking uses its values (`mi.refine`)."""
    if run.cfg.refine is None:
        return ranked, summary
    from mi.refine import refine_ranked

    return refine_ranked(run.dir, ranked, shards, run.cfg, summary, run.failures, run.notes, resume=run.resume,
                         progress=run.progress, element_table=_element_table(run.cfg))


def _export(run: _Run, ranked: pd.DataFrame, shards: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Export: ranked.csv/json, removed.csv and the top CIFs. Returns the top-k rows and (with a report)
    the columns of every row that the report reads: all the rest of the screen needs of the table."""
    from mi.execution.merge import structures_of
    from mi.execution.shards import removed_files
    from mi.export.rundir import top_ranked, write_ranked, write_removed, write_top_cifs

    cfg = run.cfg
    write_ranked(run.dir, ranked, _predicted(run), cfg.export.write_json)
    write_removed(run.dir, removed_files(run.dir, [run.records[i] for i in sorted(run.records)]))
    if cfg.export.top_cif:
        top_ids = set(ranked["id"].astype(str).head(cfg.ranking.top_k)) if len(ranked) else set()
        _, cif_failures = write_top_cifs(run.dir, ranked, structures_of(shards, top_ids), cfg.ranking.top_k)
        run.failures += cif_failures
    top = top_ranked(ranked, cfg.ranking.top_k)
    if not cfg.export.report:
        return top, None
    from mi.export.report import report_columns

    return top, ranked[report_columns(ranked.columns, cfg)]


def _report(run: _Run, ranked: pd.DataFrame, top: pd.DataFrame, summary: dict, pareto: Future | None) -> None:
    """The report with its passports (`mi.export.report`), from the top-k rows and `ranked`'s columns that
    it reads; `pareto`: its Pareto figure, drawn by a worker since the merge (or None: drawn here)."""
    from mi.export.report import export_report
    from mi.models.screen_models import model_cards

    cfg = run.cfg
    run.failures += export_report(
        run.dir, ranked, cfg, element_table=_element_table(cfg), notes=run.notes, summary=summary,
        counts=run.counts, failures=run.failures, models=model_cards(run.refs), top=top, pareto=pareto,
    )


def _return_freed_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's malloc_trim; nothing elsewhere): the
    ranked table's columns, freed in the middle of the heap, would otherwise stay resident under the
    report's figures."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _ranked_again(shards: list[Path], cfg: ScreenConfig, rows: int) -> Callable[[], pd.DataFrame]:
    """The ranked table, merged again from the shards when asked for (`ScreenResult.ranked`)."""
    from mi.execution.merge import merge_shards

    def load() -> pd.DataFrame:
        return merge_shards(shards, cfg.ranking, rows=rows, max_rows_in_memory=cfg.execution.max_rows_in_memory)[0]

    return load


def _predicted(run: _Run) -> list[str]:
    """The models' predicted columns, from the loaded models or (when workers load them) their cards."""
    from mi.models.screen_models import predicted_columns

    return run.models.targets if run.models is not None else predicted_columns(run.refs)


@releases_run_locks  # the run folder's lock, taken by open_run_dir, goes when the screen ends
def screen(
    cfg: ScreenConfig,
    *,
    out: Path | None = None,
    strict: bool = False,
    progress: bool = True,
    resume: bool = False,
    overwrite: bool = False,
) -> ScreenResult:
    """Run a screening from a validated config and write its run directory.

    Candidates stream through the row-wise stages in chunks of ``execution.chunk_size`` on the configured
    backend (`mi.execution`); each chunk's kept rows go to a Parquet shard in ``<run>/shards/``, and the
    ranking is merged from the shards. With `resume`, shards that a killed run completed are reused.
    An `out` folder holding another run is refused unless `overwrite` or `resume` (`open_run_dir`).
    The steps: plan, read, process chunks (training and loading the models at the first), merge, refine,
    export.
    """
    from mi.candidates.stream import CandidateStream

    run = _start_run(cfg, out=out, strict=strict, progress=progress, resume=resume, overwrite=overwrite)
    stream = CandidateStream(cfg.candidates, cfg.resolve, strict=strict)
    _process_chunks(run, _read_chunks(run, stream))
    tally = _tally(run, stream)
    if stream.read == 0:
        _refuse_without_candidates(run)
    log.info(
        "features: %d rows computed, %d from the cache, %d candidates failed",
        tally.totals["features_computed"], tally.totals["features_from_cache"], tally.feature_failures,
    )
    ranked, summary, shards = _merge(run, tally)
    ranked, summary = _refine(run, ranked, summary, shards)
    from mi.export.report import start_pareto_figure

    pareto = start_pareto_figure(ranked, run.cfg, summary)  # drawn while ranked.csv and the rest are written
    top, report_view = _export(run, ranked, shards)
    rows = len(ranked)
    if cfg.refine is None and tally.totals["rows"]:
        # the table goes before the report draws (a million candidates: 60,000 rows of 140 columns); the
        # caller that asks for it gets the same table merged again
        ranked = _ranked_again(shards, cfg, tally.totals["after_constraints"])
        _return_freed_memory()
    if report_view is not None:
        _report(run, report_view, top, summary, pareto)
        del report_view
    manifest = _finish(run, rows)
    return ScreenResult(run_dir=run.dir, failures=run.failures, manifest=manifest, top=top,
                        predicted=_predicted(run), _ranked=ranked)


__all__ = ["ScreenResult", "screen", "resolved_config_yaml", "Candidate"]
