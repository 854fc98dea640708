"""The `mi` command line: screen, validate, train, evaluate, generate, info, loop.

Handlers log, return exit codes, and never call sys.exit themselves, so tests run them in-process through
`main(argv)`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from mi import __version__
from mi.errors import ConfigError, MiError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_CONFIG = 2


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override one config value, e.g. --set ranking.top_k=20 (repeatable)",
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mi", description="Screen candidate battery materials.")
    parser.add_argument("--version", action="version", version=f"mi {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("screen", help="run a screening from an experiment config")
    p.add_argument("config", type=Path)
    _add_overrides(p)
    p.add_argument("--out", type=Path, default=None, help="run directory (default <export.out_dir>/<name>/<run-id>)")
    p.add_argument("--strict", action="store_true", help="stop with a non-zero exit at the first failure")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--backend", choices=["local", "ray"], default=None, help="where chunks run (execution.backend)")
    p.add_argument(
        "--resume", action="store_true",
        help="continue a killed run: reuse its complete shards (the --out folder, or the newest unfinished run)",
    )
    p.add_argument(
        "--overwrite", action="store_true",
        help="replace the run held in the --out folder (without it, a folder holding another run is refused)",
    )
    p.set_defaults(handler=_cmd_screen)

    p = sub.add_parser("validate", help="check an experiment config and exit")
    p.add_argument("config", type=Path)
    _add_overrides(p)
    p.set_defaults(handler=_cmd_validate)

    p = sub.add_parser("train", help="train a surrogate from a training config and save its checkpoint")
    p.add_argument("config", type=Path)
    _add_overrides(p)
    p.add_argument("--resume", action="store_true", help="continue from the run folder's resume.pt")
    p.add_argument(
        "--domain-only", action="store_true",
        help="no training: fit the domain of applicability of the recipe's existing checkpoint and re-save it",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_train)

    p = sub.add_parser("evaluate", help="metrics, parity and calibration plots of a checkpoint on a dataset")
    p.add_argument("checkpoint", help="a checkpoint file, or builtin:<name>")
    p.add_argument("dataset", help="a CSV/JSON/extended XYZ/ASE db table, an OBELiX folder, or a dataset YAML")
    p.add_argument("--out", type=Path, required=True, help="folder for metrics.json, predictions.csv and the PNGs")
    p.add_argument(
        "--threshold", action="append", default=[], metavar="TARGET<=VALUE",
        help='hit class for precision/recall/F1/DAF, e.g. "e_hull_eV_atom<=0.05" (repeatable)',
    )
    p.add_argument(
        "--column", action="append", default=[], metavar="TARGET=COLUMN",
        help="read a target from a differently named column of a table (repeatable)",
    )
    p.set_defaults(handler=_cmd_evaluate)

    p = sub.add_parser("generate", help="generate candidates (prototype substitution, compositions) into shards")
    p.add_argument("config", type=Path)
    _add_overrides(p)
    p.add_argument("--out", type=Path, default=None, help="output folder (default <output.dir>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_generate)

    p = sub.add_parser("label", help="label candidates with an oracle (CHGNet) into a dataset mi train reads")
    p.add_argument("config", type=Path)
    _add_overrides(p)
    p.add_argument("--out", type=Path, default=None, help="output folder (default <output.dir>)")
    p.add_argument("--resume", action="store_true", help="keep the finished chunks in the folder, label the rest")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_label)

    p = sub.add_parser("info", help="print a checkpoint's card")
    p.add_argument("checkpoint", help="a checkpoint file, or builtin:<name>")
    p.add_argument("--json", action="store_true", help="the whole card as JSON (feature names included)")
    p.set_defaults(handler=_cmd_info)

    p = sub.add_parser("loop", help="active learning: rank the pool, label a batch with the oracle, retrain, repeat")
    p.add_argument("config", type=Path)
    _add_overrides(p)
    p.add_argument("--out", type=Path, default=None, help="loop folder (default <out_dir>/<name>)")
    p.add_argument("--resume", action="store_true", help="continue after the last complete round in the folder")
    p.set_defaults(handler=_cmd_loop)
    return parser


def _checked(cfg):
    """`cfg` once the names only the stages know are checked: feature sets, prototypes and their sites,
    calculator groups."""
    from mi.config import PropertiesConfig, PrototypeJob, sections
    from mi.features.sets import check_names

    check_names(cfg)
    kinds = {type(section) for _path, section in sections(cfg)}
    if PrototypeJob in kinds:  # the library loads pymatgen
        from mi.candidates.generate.prototypes import check_jobs

        check_jobs(cfg)
    if PropertiesConfig in kinds:  # so do the calculators
        from mi.properties.groups import check_names as check_calculators

        check_calculators(cfg)
    if getattr(cfg, "refine", None) is not None:  # builds the oracle object (no model is loaded)
        from mi.refine import check_refine

        check_refine(cfg)
    return cfg


def _cmd_validate(args: argparse.Namespace) -> int:
    from mi.config import load_config, load_generate_config, load_train_config

    # A generate config has a top-level 'generate' key, a training config 'checkpoint'; the rest are screens.
    import yaml

    try:
        raw = yaml.safe_load(args.config.read_text(encoding="utf-8")) if args.config.is_file() else None
    except yaml.YAMLError:
        raw = None
    if isinstance(raw, dict) and "generate" in raw and "candidates" not in raw:
        gen = _checked(load_generate_config(args.config, args.overrides))
        print(f"{args.config}: valid generate config {gen.name!r}: {len(gen.generate.prototypes)} prototype job(s), "
              f"{len(gen.generate.compositions)} composition space(s)")
        return EXIT_OK
    if isinstance(raw, dict) and "pool" in raw and "labeller" in raw:
        from mi.config import load_loop_config

        loop = _checked(load_loop_config(args.config, args.overrides))
        print(f"{args.config}: valid loop config {loop.name!r}: {loop.acquisition.kind}, {loop.rounds} round(s) "
              f"of {loop.batch_size}, labeller {loop.labeller.kind}")
        return EXIT_OK
    if isinstance(raw, dict) and "candidates" in raw and "ranking" not in raw and {"oracle", "labels"} & set(raw):
        from mi.config import load_label_config

        label = _checked(load_label_config(args.config, args.overrides))
        print(f"{args.config}: valid label config {label.name!r}: oracle {label.oracle.name} {label.oracle.model}")
        return EXIT_OK
    if isinstance(raw, dict) and "checkpoint" in raw and "candidates" not in raw:
        cfg = _checked(load_train_config(args.config, args.overrides))
        print(f"{args.config}: valid training config {cfg.name!r}")
        return EXIT_OK
    cfg = _checked(load_config(args.config, args.overrides))
    if isinstance(cfg.candidates.generate, str):  # a generator named by path is checked too
        _checked(load_generate_config(cfg.resolve(cfg.candidates.generate)))
    from mi.models.screen_models import check_models, model_refs

    refs = check_models(model_refs(cfg))  # checkpoints readable, columns known, no column predicted twice
    predicted = ", ".join(f"{r.key}: {', '.join(r.columns or ())}{' (blended)' if r.blend else ''}" for r in refs)
    print(
        f"{args.config}: valid screening config {cfg.name!r}: {len(cfg.candidates.sources)} source(s), "
        f"{len(cfg.ranking.objectives)} objective(s), {len(cfg.ranking.constraints)} constraint(s)"
        + (f"; predicted columns {predicted}" if refs else "")
    )
    return EXIT_OK


def _cmd_screen(args: argparse.Namespace) -> int:
    from mi.config import load_config
    from mi.export.rundir import format_top_table
    from mi.pipeline import screen

    overrides = [*args.overrides, *([f"execution.backend={args.backend}"] if args.backend else [])]
    cfg = load_config(args.config, overrides)
    result = screen(
        cfg, out=args.out, strict=args.strict, progress=not args.no_progress, resume=args.resume,
        overwrite=args.overwrite,
    )
    top = result.top  # the top-k rows: the whole table is not read back for them
    counts = result.manifest.get("counts", {})
    n_ranked = counts.get("ranked", len(top))
    objectives = [o.column for o in cfg.ranking.objectives]
    columns = ["rank", "id", "formula", *dict.fromkeys(objectives), "score", "pareto_rank"]
    print()
    print(f"top {min(cfg.ranking.top_k, n_ranked)} of {n_ranked} ranked candidates ({cfg.name}):")
    print(format_top_table(top, [c for c in columns if c in top.columns], cfg.ranking.top_k))
    print()
    print(
        f"read {counts.get('read', '?')}, failed {len(result.failures)}, ranked {n_ranked}; "
        f"outputs in {result.run_dir}"
    )
    if not n_ranked and result.failures and not counts.get("removed_by_constraints"):
        print(f"error: every candidate failed; see {result.run_dir / 'failures.csv'}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _cmd_train(args: argparse.Namespace) -> int:
    from mi.config import load_train_config
    from mi.models.train import domain_from_config, train_from_config

    cfg = load_train_config(args.config, args.overrides)
    if args.domain_only:
        path = domain_from_config(cfg)
        print(f"domain of applicability written into {path}")
        return EXIT_OK
    path = train_from_config(cfg, progress=not args.no_progress, resume=args.resume)
    print(f"checkpoint written to {path}")
    return EXIT_OK


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from mi.models.checkpoint import load_checkpoint
    from mi.models.evaluate import evaluate, load_eval_dataset

    columns = {}
    for text in args.column:
        target, sep, column = text.partition("=")
        if not sep or not target or not column:
            raise ConfigError(f"--column {text!r}: expected TARGET=COLUMN")
        columns[target.strip()] = column.strip()
    surrogate = load_checkpoint(args.checkpoint)
    dataset = load_eval_dataset(args.dataset, surrogate.targets, columns)
    metrics = evaluate(surrogate, dataset, args.out, args.threshold)
    for target, values in metrics["targets"].items():
        unit = f" {values['unit']}" if values.get("unit") else ""
        print(
            f"{target}: n {values['n']}  MAE {values['mae']:.4g}{unit}  RMSE {values['rmse']:.4g}  "
            f"R2 {values['r2']:.3f}  Spearman {values['spearman']:.3f}  "
            f"within 1/2 std {values['within_1sigma']:.2f}/{values['within_2sigma']:.2f}"
        )
        for name, c in values.get("thresholds", {}).items():
            print(
                f"  {target}{name}: precision {c['precision']:.3f}  recall {c['recall']:.3f}  F1 {c['f1']:.3f}  "
                f"prevalence {c['prevalence']:.3f}  DAF {c['daf']:.2f}"
            )
    print(f"metrics, predictions, parity.png and calibration.png in {args.out}")
    return EXIT_OK


def _model_size(card: dict) -> str:
    """A forest's size is its tree nodes (split arrays, nothing trained by gradient); a network's its parameters."""
    if card.get("model_kind") == "forest":
        return f"{(card.get('model_config') or {}).get('n_nodes')} tree nodes"
    return f"{card.get('n_parameters')} parameters"


def format_card(card: dict) -> str:
    """A checkpoint card for people: what it predicts, from what, trained on what, how well."""
    training = card.get("training", {})
    dataset = training.get("dataset", {})
    metrics = training.get("metrics", {})
    lines = [
        f"checkpoint   {card.get('checkpoint')}  ({card.get('size_bytes', 0) / 1e6:.2f} MB, {card.get('sha256')})",
        f"format       {card.get('format')} v{card.get('format_version')}, created {card.get('created_utc')}",
        "targets      " + ", ".join(f"{t['name']} [{t['unit']}]" for t in card.get("targets", [])),
        "features     "
        + ", ".join(f"{f['name']} v{f['version']}" for f in card.get("feature_sets", []))
        + f" ({card.get('n_features')} columns)",
        f"model        {card.get('model_kind', 'mlp')} {card.get('model_config')}  ({_model_size(card)})",
        f"dataset      {dataset.get('name')}: {training.get('n_used')} of {training.get('n_rows')} rows used, "
        f"{training.get('data_sha256')}",
    ]
    for key in ("description", "source", "provenance", "license", "attribution"):
        if dataset.get(key):
            lines.append(f"  {key + ':':<12} {dataset[key]}")
    for key in ("description", "data", "licence", "attribution"):  # the recipe's card (TrainRunConfig.card)
        if training.get(key):
            lines.append(f"{key:<12} {training[key]}")
    baseline = card.get("baseline")
    if baseline:
        lines.append(f"baseline     {baseline['target']} = {baseline['kind']} from {baseline['energy_model']} "
                     f"{baseline['energy_column']} ({baseline.get('energy_sha256')}) + this model's correction")
    domain = card.get("domain")
    if domain:
        lines.append(
            f"domain       {domain['space']}, {domain['n_train']} training rows, {domain['elements_seen']} elements "
            f"(fewer than {domain['min_element_rows']} rows: {', '.join(domain['rare_elements']) or 'none'}); "
            f"out beyond the p{domain['percentile']:g} distance {domain['distance_threshold']} or std "
            + ", ".join(f"{k} {v}" for k, v in domain["std_threshold"].items())
        )
    else:
        lines.append("domain       none recorded: predictions are not flagged (mi train --domain-only adds one)")
    def flat(value) -> str:
        if isinstance(value, dict):
            return ", ".join(f"{k}=({flat(v)})" if isinstance(v, dict) else f"{k}={flat(v)}" for k, v in value.items())
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    for key, value in metrics.items():
        lines.append(f"metric       {key}: {flat(value)}")
    versions = card.get("versions", {})
    lines.append("versions     " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return "\n".join(lines)


def _cmd_generate(args: argparse.Namespace) -> int:
    from mi.candidates.generate import run, summary_table
    from mi.config import load_generate_config

    cfg = load_generate_config(args.config, args.overrides)
    summary = run(cfg, args.out, progress=not args.no_progress)
    counts = summary["counts"]
    print(summary_table(summary))
    print(
        f"\nkept {counts['kept']} of {counts['generated']} generated ({counts['duplicates']} duplicates, "
        f"{counts['rejected_charge']} rejected by charge balance, {counts['rejected_radius']} by radius) in "
        f"{summary['seconds']} s; shards in {Path(summary['out_dir']) / 'shards'}"
    )
    return EXIT_OK


def _cmd_loop(args: argparse.Namespace) -> int:
    from mi.active import run_loop
    from mi.config import load_loop_config

    cfg = load_loop_config(args.config, args.overrides)
    result = run_loop(cfg, args.out, resume=args.resume)
    columns = [c for c in ("round", "n_labelled", "n_calls", "n_good", "best_score", "seconds") if c in result.log]
    print(result.log[columns].to_string(index=False))
    print(f"\nlog, plot and labels in {result.out_dir}")
    return EXIT_OK


def _cmd_label(args: argparse.Namespace) -> int:
    from mi.config import load_label_config
    from mi.oracle.run import label_from_config

    cfg = load_label_config(args.config, args.overrides)
    manifest = label_from_config(cfg, args.out, resume=args.resume, progress=not args.no_progress)
    counts = manifest["counts"]
    print(
        f"labelled {counts['labelled']} of {counts['candidates']} candidates ({counts['failed']} failures, "
        f"{counts['chunks_reused']} of {counts['chunks']} chunks reused) in {manifest['wall_time_s']} s; "
        f"labels.json, failures.csv and manifest.json in {manifest['out_dir']}"
    )
    return EXIT_OK


def _cmd_info(args: argparse.Namespace) -> int:
    from mi.models.checkpoint import checkpoint_card

    card = checkpoint_card(args.checkpoint)
    print(json.dumps(card, indent=2, default=str) if args.json else format_card(card))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return args.handler(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    except MiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
