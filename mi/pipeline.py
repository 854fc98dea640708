"""One stage after another: candidates -> features -> surrogate + exact properties -> ranking -> export.

Each stage takes plain inputs and returns a table plus failures; this module only wires them together and
writes the run directory. The row-wise stages run chunk by chunk on a backend (`mi.execution`) and leave
Parquet shards; the ranking is merged from them. Nothing here imports the CLI.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from mi import __version__
from mi.candidates import Candidate, Failure, sha256_file
from mi.config import ScreenConfig
from mi.errors import InputError
from mi.export.rundir import releases_run_locks

log = logging.getLogger(__name__)



@dataclass
class ScreenResult:
    run_dir: Path
    ranked: pd.DataFrame
    failures: list[Failure]
    manifest: dict
    predicted: list[str] = field(default_factory=list)


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


def _model_refs(cfg: ScreenConfig, run_dir: Path):
    """Every surrogate of the screen as a checked checkpoint reference (`mi.models.screen_models`): recipes
    are trained first into the run folder; clashing or unknown columns are config errors."""
    from mi.models.screen_models import ModelRef, check_models

    refs = []
    for key, entry in cfg.model_entries():
        columns = tuple(entry.columns) if entry.columns is not None else None
        if entry.train is not None:
            name = "model.pt" if key == "model" else key.replace("[", "-").replace("]", "") + ".pt"
            label = str(_train_recipe(cfg, key, entry.train, run_dir / name))
        else:
            spec = entry.checkpoint
            label = spec if spec.startswith("builtin:") else str(cfg.resolve(spec).resolve())
        refs.append(ModelRef(key, label, entry.device, columns))
    return check_models(refs)


def _strict_check(strict: bool, failures: list[Failure]) -> None:
    if strict and failures:
        f = failures[0]
        where = f.source + (f", {f.record}" if f.record else "")
        raise InputError(f"{where}: {f.stage}: {f.reason} (--strict stops at the first failure)")


def _plan(cfg: ScreenConfig) -> dict:
    """What shards depend on: a resumed run must have the same, whatever backend or workers it uses."""
    import hashlib
    import json

    data = cfg.model_dump(mode="json", exclude={"execution", "export"})
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
    """
    from mi.candidates.stream import CandidateStream, chunked
    from mi.data import load_element_facts
    from mi.execution.chunk import chunk_key
    from mi.execution.merge import merge_shards, structures_of
    from mi.execution.shards import complete_shard, record_failures, shard_files, start_shards, write_shard
    from mi.export.rundir import (
        build_manifest,
        empty_ranked,
        open_run_dir,
        write_config,
        write_empty_outputs,
        write_failures,
        write_manifest,
        write_ranked,
        write_removed,
        write_top_cifs,
    )

    started = _now()
    t0 = time.perf_counter()
    execution = cfg.execution
    if resume and out is None:
        out = _resume_dir(cfg)
    run_dir, run_notes = open_run_dir(
        out, out_dir=cfg.resolve(cfg.export.out_dir), name=cfg.name, overwrite=overwrite, resume=resume
    )
    # A manifest from the start marks the folder as an mi run, so a crashed run can be resumed or overwritten.
    write_manifest(run_dir, {"mi_version": __version__, "status": "running", "started_at": started})
    write_config(run_dir, resolved_config_yaml(cfg))
    start_shards(run_dir, _plan(cfg), resume)
    log.info("run directory: %s (backend %s, chunks of %d)", run_dir, execution.backend, execution.chunk_size)

    # 1. candidates, streamed
    stream = CandidateStream(cfg.candidates, cfg.resolve, strict=strict)
    files = stream.files
    counts: dict = {"files": len(files)}
    loaded: dict = {}

    def surrogate():
        # Loaded at the first chunk: a run without candidates fails before any model work, as before.
        if not loaded:
            from mi.models.screen_models import ScreenModels

            refs = _model_refs(cfg, run_dir)
            loaded.update(models=ScreenModels.load(refs), refs=tuple(refs))
        return loaded

    records: dict[int, dict] = {}
    reused = 0

    def todo():
        nonlocal reused
        candidates = tqdm(stream, desc="screen", unit="candidate", disable=not progress, leave=False)
        for index, chunk in enumerate(chunked(candidates, execution.chunk_size)):
            surrogate()
            if resume:
                record = complete_shard(run_dir, index, chunk_key(chunk))
                if record is not None:
                    records[index] = record
                    reused += 1
                    continue
            yield index, chunk

    def results():
        if execution.backend == "ray":
            from mi.execution.ray_backend import import_ray, run_ray

            import_ray()  # a clear error before any reading when Ray is absent
            jobs = todo()
            first = next(jobs, None)
            if first is None:
                return
            refs = surrogate()["refs"]

            def chained():
                yield first
                yield from jobs

            yield from run_ray(chained(), cfg, refs)
        else:
            from mi.execution.local import run_local

            jobs = todo()
            first = next(jobs, None)
            if first is None:
                return

            def chained():
                yield first
                yield from jobs

            yield from run_local(
                chained(), cfg, surrogate()["models"], surrogate()["refs"],
                workers=execution.workers, progress=progress and execution.workers in (1, "auto"),
            )

    for result in results():
        records[result.index] = write_shard(run_dir, result)
        if strict:
            feature_failures, property_failures = record_failures(records[result.index])
            _strict_check(True, feature_failures)
            _strict_check(True, property_failures)
    failures = stream.finish()
    read_failures = len(failures)
    counts.update({"read": stream.read, "failed_to_read": read_failures, **stream.summary()})
    log.info("%s", stream.summary_line())
    indices = sorted(records)
    feature_failures, property_failures, notes = [], [], [*run_notes, *stream.notes]
    totals = {"features_computed": 0, "features_from_cache": 0, "featurized": 0, "rows": 0, "after_constraints": 0}
    removed: dict[str, int] = {}
    for i in indices:
        ff, pf = record_failures(records[i])
        feature_failures += ff
        property_failures += pf
        notes += records[i]["notes"]
        for k in totals:
            totals[k] += int(records[i]["counts"].get(k, 0))
        for k, v in records[i]["removed"].items():
            removed[k] = removed.get(k, 0) + int(v)
    failures += feature_failures + property_failures
    notes = _dedupe(notes)
    counts.update(
        {
            "features_computed": totals["features_computed"],
            "features_from_cache": totals["features_from_cache"],
            "chunks": len(indices),
            "chunks_reused": reused,
        }
    )

    def finish(ranked: pd.DataFrame, notes: list[str], status: str = "complete") -> dict:
        write_failures(run_dir, failures)
        refs = loaded.get("refs", ())
        manifest = build_manifest(
            config_hash=cfg.hash(),
            input_hashes={**{str(p.resolve()): sha256_file(p) for p in files}, **_generator_hashes(cfg)},
            checkpoint=refs[0].label if refs else None,
            checkpoint_hash=refs[0].sha256 if refs else None,
            started=started,
            ended=_now(),
            counts={**counts, "failed": len(failures), "ranked": len(ranked)},
            notes=notes,
            extra={
                "status": status,
                "wall_time_s": round(time.perf_counter() - t0, 2),
                "run_dir": str(run_dir),
                "execution": execution.model_dump(mode="json"),
                "checkpoints": [
                    {"key": r.key, "checkpoint": r.label, "sha256": r.sha256, "columns": list(r.columns or ())}
                    for r in refs
                ],
            },
        )
        write_manifest(run_dir, manifest)
        return manifest

    if stream.read == 0:
        write_empty_outputs(run_dir, cfg.export.write_json)
        finish(pd.DataFrame(), [*notes, "no usable candidates"], status="failed")
        raise InputError(
            f"no usable candidates in candidates.sources ({len(failures)} failures, see {run_dir / 'failures.csv'})"
        )
    log.info(
        "features: %d rows computed, %d from the cache, %d candidates failed",
        totals["features_computed"], totals["features_from_cache"], len(feature_failures),
    )

    # 2. one ranking, merged from the shards
    shards = shard_files(run_dir, indices)
    if totals["rows"] == 0:  # every chunk failed: nothing to rank, but every file is still written
        ranked, summary = empty_ranked(), {}
    else:
        ranked, summary = merge_shards(
            shards, cfg.ranking, rows=totals["after_constraints"], max_rows_in_memory=execution.max_rows_in_memory
        )
    summary["removed"], summary["rows_in"] = removed, totals["rows"]
    counts.update({"featurized": totals["featurized"], "after_constraints": totals["after_constraints"],
                   "removed_by_constraints": sum(removed.values())})
    notes = [*notes, *(f"constraint {k} removed {v} candidates" for k, v in removed.items())]
    notes = [*notes, *summary.get("skipped", [])]
    if summary.get("streamed"):
        notes.append(
            f"{totals['after_constraints']} ranked rows exceed execution.max_rows_in_memory "
            f"({execution.max_rows_in_memory}): ranked.csv holds the top {cfg.ranking.top_k} and the Pareto front "
            f"({summary['front_size']} rows), with their global ranks"
        )

    from mi.ranking.domain import out_of_domain_summary

    same_rows: dict[tuple, list[str]] = {}  # columns derived from one prediction share its flags: one note
    for column, ids in out_of_domain_summary(ranked).items():
        same_rows.setdefault(tuple(ids), []).append(column)
    for ids, columns in same_rows.items():
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        notes.append(
            f"{', '.join(columns)}: {len(ids)} ranked rows outside their model's domain ({shown}); "
            f"ranking.out_of_domain: {cfg.ranking.out_of_domain}"
        )

    # 3. export
    predicted = surrogate()["models"].targets
    element_table = (
        load_element_facts(cfg.resolve(cfg.properties.element_table)) if cfg.properties.element_table else None
    )
    write_ranked(run_dir, ranked, predicted, cfg.export.write_json)
    write_removed(run_dir, (records[i] for i in indices))
    if cfg.export.top_cif:
        top_ids = set(ranked["id"].astype(str).head(cfg.ranking.top_k)) if len(ranked) else set()
        structures = structures_of(shards, top_ids)
        _, cif_failures = write_top_cifs(run_dir, ranked, structures, cfg.ranking.top_k)
        failures += cif_failures
    if cfg.export.report:
        from mi.export.report import export_report

        failures += export_report(
            run_dir, ranked, cfg, element_table=element_table, notes=notes, summary=summary, counts=counts,
            failures=failures, models=surrogate()["models"].cards(),
        )
    manifest = finish(ranked, notes)
    return ScreenResult(run_dir=run_dir, ranked=ranked, failures=failures, manifest=manifest, predicted=predicted)


__all__ = ["ScreenResult", "screen", "resolved_config_yaml", "Candidate"]
