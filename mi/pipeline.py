"""One stage after another: candidates -> features -> surrogate + exact properties -> ranking -> export.

Each stage takes plain inputs and returns a table plus failures; this module only wires them together and
writes the run directory. Nothing here imports the CLI.
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
from mi.candidates import Candidate, Failure, expand_sources, read_candidates, sha256_file
from mi.config import ScreenConfig
from mi.errors import InputError

log = logging.getLogger(__name__)

# Descriptor columns worth a researcher's eye in ranked.csv; the rest of the feature matrix stays internal.
_REPORTED_STRUCTURE_FEATURES = ("volume_per_atom_A3", "packing_fraction")


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
    if cfg.model.checkpoint and not cfg.model.checkpoint.startswith("builtin:"):
        data["model"]["checkpoint"] = str(cfg.resolve(cfg.model.checkpoint).resolve())
    if cfg.properties.element_table:
        data["properties"]["element_table"] = str(cfg.resolve(cfg.properties.element_table).resolve())
    if cfg.model.train and cfg.model.train.dataset.path:
        data["model"]["train"]["dataset"]["path"] = str(cfg.resolve(cfg.model.train.dataset.path).resolve())
    data["export"]["out_dir"] = str(cfg.resolve(cfg.export.out_dir).resolve())
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def _load_surrogate(cfg: ScreenConfig, run_dir: Path):
    """The configured surrogate, a label for its checkpoint, and the checkpoint's sha256."""
    from mi.models.checkpoint import file_sha256, load_checkpoint, save_checkpoint

    if cfg.model.train is not None:
        from mi.models.datasets import load_dataset
        from mi.models.train import train

        dataset_cfg = cfg.model.train.dataset
        dataset = load_dataset(dataset_cfg, cfg.resolve(dataset_cfg.path) if dataset_cfg.path else None)
        log.info("training the surrogate on %d rows (model.train)", len(dataset.frame))
        surrogate, _ = train(cfg.model.train, dataset, run_dir=run_dir / "train")
        path = save_checkpoint(surrogate, run_dir / "model.pt")
        return load_checkpoint(path), str(path), file_sha256(path)
    spec = cfg.model.checkpoint
    assert spec is not None  # the config guarantees one of checkpoint/train
    label = spec if spec.startswith("builtin:") else str(cfg.resolve(spec))
    surrogate = load_checkpoint(label)
    from mi.models.checkpoint import checkpoint_card

    return surrogate, label, checkpoint_card(label)["sha256"]


def _strict_check(strict: bool, failures: list[Failure]) -> None:
    if strict and failures:
        f = failures[0]
        where = f.source + (f", {f.record}" if f.record else "")
        raise InputError(f"{where}: {f.stage}: {f.reason} (--strict stops at the first failure)")


def screen(
    cfg: ScreenConfig,
    *,
    out: Path | None = None,
    strict: bool = False,
    progress: bool = True,
) -> ScreenResult:
    """Run a screening from a validated config and write its run directory."""
    from mi.data import load_element_facts
    from mi.export.rundir import (
        build_manifest,
        new_run_dir,
        prepare_out_dir,
        write_config,
        write_failures,
        write_manifest,
        write_ranked,
        write_top_cifs,
    )
    from mi.features import featurize_with_config
    from mi.properties import compute_properties, derive_properties
    from mi.ranking import rank

    started = _now()
    t0 = time.perf_counter()
    run_dir = prepare_out_dir(Path(out)) if out is not None else new_run_dir(cfg.resolve(cfg.export.out_dir), cfg.name)
    # A manifest from the start marks the folder as an mi run, so a crashed run's --out can be reused.
    write_manifest(run_dir, {"mi_version": __version__, "status": "running", "started_at": started})
    write_config(run_dir, resolved_config_yaml(cfg))
    log.info("run directory: %s", run_dir)

    # 1. candidates
    files = expand_sources(cfg.candidates.sources, cfg.resolve)
    file_iter = tqdm(files, desc="read", unit="file", disable=not progress, leave=False)
    candidates, failures = read_candidates(cfg.candidates, cfg.resolve, strict=strict, files=file_iter)
    counts = {"files": len(files), "read": len(candidates), "failed_to_read": len(failures)}
    log.info("read %d candidates from %d files (%d failures)", len(candidates), len(files), len(failures))

    def finish(ranked: pd.DataFrame, checkpoint: tuple[str, str] | None, notes: list[str], status: str = "complete") -> dict:
        write_failures(run_dir, failures)
        manifest = build_manifest(
            config_hash=cfg.hash(),
            input_hashes={str(p.resolve()): sha256_file(p) for p in files},
            checkpoint=checkpoint[0] if checkpoint else None,
            checkpoint_hash=checkpoint[1] if checkpoint else None,
            started=started,
            ended=_now(),
            counts={**counts, "failed": len(failures), "ranked": len(ranked)},
            notes=notes,
            extra={"status": status, "wall_time_s": round(time.perf_counter() - t0, 2), "run_dir": str(run_dir)},
        )
        write_manifest(run_dir, manifest)
        return manifest

    if not candidates:
        finish(pd.DataFrame(), None, ["no usable candidates"], status="failed")
        raise InputError(
            f"no usable candidates in candidates.sources ({len(failures)} failures, see {run_dir / 'failures.csv'})"
        )

    # 2. surrogate (its checkpoint names the feature sets it needs)
    surrogate, checkpoint_label, checkpoint_hash = _load_surrogate(cfg, run_dir)
    from mi.models.device import resolve_device

    surrogate.to(resolve_device(cfg.model.device))  # checkpoints load on the CPU; predict where the config says
    sets = list(dict.fromkeys([*cfg.features.sets, *surrogate.spec.feature_sets]))

    # 3. features (cached by content hash; structures in worker processes under a time limit)
    featurized = featurize_with_config(
        candidates, sets, cfg.features, working_ion=cfg.properties.working_ion, resolve=cfg.resolve, progress=progress
    )
    features, feature_failures = featurized.features, featurized.failures
    counts.update({"features_computed": featurized.computed, "features_from_cache": featurized.from_cache})
    log.info(
        "features (%s): %d rows computed, %d from the cache, %d candidates failed, %.1f s",
        ", ".join(sets), featurized.computed, featurized.from_cache, len(feature_failures), featurized.seconds,
    )
    failures += feature_failures
    _strict_check(strict, feature_failures)
    survivors = [c for c in candidates if c.id in features.index]

    # 4. predictions and exact properties
    predictions = surrogate.predict(features, survivors)  # element and graph models read the candidates
    predicted = surrogate.targets
    element_table = (
        load_element_facts(cfg.resolve(cfg.properties.element_table)) if cfg.properties.element_table else None
    )
    properties, property_failures, notes = compute_properties(survivors, cfg.properties, element_table)
    failures += property_failures
    _strict_check(strict, property_failures)

    # 5. one table, ranked
    base = pd.DataFrame(
        {"id": [c.id for c in survivors], "formula": [c.formula for c in survivors], "source": [c.source for c in survivors]}
    ).set_index("id", drop=False)
    reported = [f"structure.{n}" for n in _REPORTED_STRUCTURE_FEATURES if f"structure.{n}" in features.columns]
    descriptors = features[reported].rename(columns=lambda c: c.split(".", 1)[1])
    # Working-ion conduction proxies (feature set 'working_ion') go into the table as they are, for ranking.
    conduction = features[[c for c in features.columns if str(c).startswith("working_ion.")]]
    table = base.join(properties, how="inner").join(predictions, how="left").join(descriptors, how="left")
    table = table.join(conduction, how="left")
    # Energy and stability windows read the surrogate's columns, so they come after the join.
    table, derived_notes = derive_properties(table, cfg.properties, element_table)
    notes = [*notes, *derived_notes]
    table = table.reset_index(drop=True)
    ranked, summary = rank(table, cfg.ranking)
    counts.update({"featurized": len(features), "after_constraints": summary["rows_kept"]})
    notes = [*notes, *(f"constraint {k} removed {v} candidates" for k, v in summary.get("removed", {}).items())]
    notes = [*notes, *summary.get("skipped", [])]

    # 6. export
    structures = {c.id: c.structure for c in survivors if c.structure is not None}
    write_ranked(run_dir, ranked, predicted, cfg.export.write_json)
    if cfg.export.top_cif:
        _, cif_failures = write_top_cifs(run_dir, ranked, structures, cfg.ranking.top_k)
        failures += cif_failures
    if cfg.export.report:
        from mi.export.report import export_report

        failures += export_report(
            run_dir, ranked, cfg, element_table=element_table, notes=notes, summary=summary, counts=counts,
            failures=failures,
        )
    manifest = finish(ranked, (checkpoint_label, checkpoint_hash), notes)
    return ScreenResult(run_dir=run_dir, ranked=ranked, failures=failures, manifest=manifest, predicted=predicted)


__all__ = ["ScreenResult", "screen", "resolved_config_yaml", "Candidate"]
