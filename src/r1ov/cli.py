"""The ``r1ov`` command: one subcommand per stage, plus tools around them.

    r1ov synth --out data/train --n 64 --seed 0
    r1ov tiny-model --out models/tiny
    r1ov <stage> --config recipe.yaml [--set key=value ...]     stage in: formalize distill
                                                                filter sft grpo eval register promote
    r1ov demo [--workdir DIR]
    r1ov compile

Each stage subcommand validates its config (errors name the field), runs the library
function and prints a JSON summary on stdout; logs go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from r1ov import config as cfg

TRAINING_STAGES = ("sft", "grpo")
# stage -> (config class, "module:function"); imported lazily so `r1ov --help` stays fast.
STAGES: dict[str, tuple[type, str]] = {
    "synth": (cfg.SynthConfig, "r1ov.synthetic:run"),
    "formalize": (cfg.FormalizeConfig, "r1ov.formalize:run"),
    "distill": (cfg.DistillConfig, "r1ov.distill:run"),
    "filter": (cfg.FilterConfig, "r1ov.filtering:run"),
    "sft": (cfg.SFTConfig, "r1ov.train.sft:run"),
    "grpo": (cfg.GRPOConfig, "r1ov.train.grpo:run"),
    "eval": (cfg.EvalConfig, "r1ov.eval:run"),
    "register": (cfg.RegisterConfig, "r1ov.registry:register"),
    "promote": (cfg.PromoteConfig, "r1ov.promotion:promote"),
}


def resolve(target: str) -> Callable[..., Any]:
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


def run_stage(stage: str, config_path: str | None, overrides: list[str]) -> dict[str, Any]:
    """Load and validate the stage's config, then run it; used by the CLI and components."""
    config_class, target = STAGES[stage]
    stage_config = cfg.load(config_class, config_path, overrides, name=stage)
    from r1ov import inputs
    from r1ov.lengths import preflight

    inputs.check(stage, stage_config)
    preflight(stage, stage_config)
    summary = resolve(target)(stage_config)
    inputs.check_output(stage, stage_config, summary)
    return summary


def _add_stage_parsers(sub: argparse._SubParsersAction) -> None:
    for stage, (config_class, _) in STAGES.items():
        if stage == "synth":
            continue
        parser = sub.add_parser(
            stage,
            help=(config_class.__doc__ or stage).strip().splitlines()[0],
            epilog=cfg.fields_help(config_class),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.add_argument("--config", help="YAML recipe for this stage")
        parser.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a field (dotted keys for nested fields); repeatable",
        )
        if stage in TRAINING_STAGES:
            parser.add_argument(
                "--dry-run",
                action="store_true",
                help="print the torchrun commands or Kubernetes objects a launch would start, start nothing",
            )


def _add_registry_parser(sub: argparse._SubParsersAction) -> None:
    registry = sub.add_parser("registry", help="list, fetch, promote and roll back registered models")
    registry.add_argument(
        "--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else ~/.cache/r1ov)"
    )
    actions = registry.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="models, versions, aliases and gate decisions")
    listing.add_argument("name", nargs="?", help="only this registered model")
    fetch = actions.add_parser("fetch", help="download models:/NAME@ALIAS (or /VERSION) into a directory")
    fetch.add_argument("model_uri", help="models:/NAME@ALIAS or models:/NAME/VERSION")
    fetch.add_argument("dir", help="directory to write (from_pretrained loads it)")
    promote = actions.add_parser("promote", help="promote a version through the gate (or --force with a reason)")
    promote.add_argument("name", help="registered model name")
    promote.add_argument("version", help="model version")
    promote.add_argument("--alias", default="champion", help="alias to move")
    promote.add_argument("--baseline-verdicts", help="base model's verdicts.jsonl, when there is no champion yet")
    promote.add_argument("--min-improvement", type=float, default=0.0, help="required accuracy gain")
    promote.add_argument("--force", action="store_true", help="move the alias even if the gate refuses")
    promote.add_argument("--reason", help="why --force was needed (required with it; recorded on the version)")
    rollback = actions.add_parser("rollback", help="point champion back at the previous champion")
    rollback.add_argument("name", help="registered model name")
    rollback.add_argument("--alias", default="champion", help="alias to roll back")


def _registry(args: argparse.Namespace) -> Any:
    from r1ov import promotion, registry

    tracking = cfg.TrackingConfig(**({"tracking_uri": args.tracking_uri} if args.tracking_uri else {}))
    if args.action == "list":
        return registry.list_models(tracking, args.name)
    if args.action == "fetch":
        name, alias, version = registry.parse_models_uri(args.model_uri)
        return {"model_dir": str(registry.fetch(name, alias, args.dir, tracking, version=version))}
    if args.action == "rollback":
        return promotion.rollback(args.name, tracking, args.alias)
    decision = promotion.promote(
        cfg.build(
            cfg.PromoteConfig,
            {
                "model_name": args.name,
                "version": args.version,
                "target_alias": args.alias,
                "baseline_verdicts_uri": args.baseline_verdicts,
                "min_improvement": args.min_improvement,
                "force": args.force,
                "reason": args.reason,
                "tracking": tracking.model_dump(),
            },
            name="promote",
        )
    )
    verb = "promoted to" if decision["promoted"] else "NOT promoted to"
    print(f"{args.name} version {args.version} {verb} {args.alias}: {'; '.join(decision['reasons'])}", file=sys.stderr)
    return decision


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="r1ov", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.set_defaults(dry_run=False)
    sub = parser.add_subparsers(dest="command", required=True)

    synth = sub.add_parser("synth", help="write seeded synthetic records with ground truth")
    synth.add_argument("--out", required=True, help="dataset URI (local path or s3://)")
    synth.add_argument("--n", type=int, default=64, help="number of records")
    synth.add_argument("--seed", type=int, default=0, help="RNG seed")
    synth.add_argument("--kinds", default=None, help="comma-separated generators (default: all but clevr)")

    tiny = sub.add_parser("tiny-model", help="build a tiny random Qwen2.5-VL offline")
    tiny.add_argument("--out", required=True, help="directory to write")
    tiny.add_argument("--seed", type=int, default=0, help="weight init seed")

    _add_stage_parsers(sub)

    demo = sub.add_parser("demo", help="run the whole pipeline locally with kfp.local")
    demo.add_argument("--workdir", default="demo-run", help="where data, models, MLflow and reports go")
    demo.add_argument("--fresh", action="store_true", help="delete the workdir first")

    _add_registry_parser(sub)

    compile_ = sub.add_parser("compile", help="compile pipelines/r1ov.yaml and every component.yaml")
    compile_.add_argument("--root", default=".", help="repository root")
    return parser


def _dispatch(args: argparse.Namespace) -> dict[str, Any]:
    if args.command == "synth":
        overrides = [f"output_uri={args.out}", f"n={args.n}", f"seed={args.seed}"]
        if args.kinds:
            overrides.append(f"kinds=[{args.kinds}]")
        return run_stage("synth", None, overrides)
    elif args.command == "tiny-model":
        from r1ov.testing.tiny_model import build_tiny_model

        return {"model_dir": str(build_tiny_model(args.out, seed=args.seed))}
    elif args.command == "demo":
        from r1ov.demo import run_demo

        return run_demo(args.workdir, fresh=args.fresh, verbose=args.verbose)
    elif args.command == "registry":
        return _registry(args)
    elif args.command == "compile":
        from r1ov.compile import compile_all

        return compile_all(args.root)
    elif args.dry_run:
        from r1ov.train.launch import plan

        config_class, _ = STAGES[args.command]
        return plan(args.command, cfg.load(config_class, args.config, args.overrides, name=args.command))
    else:
        return run_stage(args.command, args.config, args.overrides)


def user_error(exc: BaseException) -> str | None:
    """One line for errors a user can fix; None for bugs (those keep their traceback)."""
    from r1ov.errors import explain

    return explain(exc)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # One line per HTTP request from the teacher clients drowns the stage's own progress.
    for noisy in ("httpx", "httpx2", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # stdout carries only the JSON summary: libraries that print (DeepSpeed logs to stdout) go to stderr.
    try:
        with contextlib.redirect_stdout(sys.stderr):
            result = _dispatch(args)
    except cfg.ConfigError as exc:
        print(f"r1ov {args.command}: invalid config\n{exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        message = user_error(exc)
        if message is None or args.verbose:
            raise
        print(f"r1ov {args.command}: {message}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
