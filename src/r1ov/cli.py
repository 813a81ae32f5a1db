"""The ``r1ov`` command: one subcommand per stage, plus tools around them.

    r1ov synth --out data/train --n 64 --seed 0
    r1ov tiny-model --out models/tiny
    r1ov <stage> --config recipe.yaml [--set key=value ...]
        stage: formalize distill filter sft grpo eval register promote
    r1ov eval score --benchmark NAME --data PATH --predictions FILE --out FILE
    r1ov eval compare A.json B.json
    r1ov import --format parquet|jsonl|hub --source URI --out URI
    r1ov export --format trl|sharegpt --data URI --out DIR
    r1ov demo [--workdir DIR]
    r1ov compile
    r1ov submit [-e EXPERIMENT] [-f pipelines/r1ov.yaml] key=value ...

Each stage subcommand validates its config (errors name the field), runs the library
function and prints a JSON summary on stdout; logs go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from r1ov import config as cfg
from r1ov import errors
from r1ov.data.outcome import StageFailed
from r1ov.errors import UserError
from r1ov.stages import STAGES, TRAINING_STAGES, run_stage

# One line per stage for `r1ov --help`: what it does, in the paper's order.
STAGE_HELP = {
    "formalize": "images -> formal text by type (SPICE, PlantUML, HTML, CSV/JSON, boxes, OCR), parser-checked",
    "distill": "role-played <think> reasoning chains from a teacher LLM over the formal text",
    "filter": "keep chains that pass the rules (format, answer, length, repetition) and the judge",
    "sft": "supervised fine-tuning of Qwen2.5-VL on the filtered chains (TRL, DeepSpeed)",
    "grpo": "reinforcement learning with accuracy and format rewards (TRL GRPOTrainer)",
    "eval": "generate and score on benchmarks (MathVista, MathVerse, MathVision, WeMath, ...)",
    "register": "register a trained model in MLflow with its lineage and eval metrics (alias challenger)",
    "promote": "the pipeline's gate on the version it registered (by hand: `r1ov registry promote`)",
}


def _add_stage_parsers(sub: argparse._SubParsersAction) -> None:
    for stage, (config_class, _) in STAGES.items():
        if stage == "synth":
            continue
        parser = sub.add_parser(
            stage,
            help=STAGE_HELP[stage],
            description=(config_class.__doc__ or "").strip() or None,
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
        if stage == "eval":
            _add_eval_tools(parser)
        if stage in TRAINING_STAGES:
            parser.add_argument(
                "--dry-run",
                action="store_true",
                help="print the torchrun commands or Kubernetes objects a launch would start, start nothing",
            )
            parser.add_argument(
                "--plan",
                action="store_true",
                help="estimate per-GPU memory (weights, gradients, optimizer, activations, vLLM) and refuse a plan "
                "that cannot fit, naming the setting to change; starts nothing",
            )
            parser.add_argument(
                "--gpu-gib", type=float, default=80.0, help="GPU memory to plan for with --plan (default: 80, an H100)"
            )


def _add_eval_tools(parser: argparse.ArgumentParser) -> None:
    """``r1ov eval score|compare``: beside ``r1ov eval --config``, which generates and scores."""
    tools = parser.add_subparsers(dest="eval_tool", required=False, metavar="{score,compare}")
    score = tools.add_parser("score", help="score a predictions JSONL ({id, response} per line) without generating")
    score.add_argument("--benchmark", required=True, help="benchmark name (mathvista, mathverse, mathvision, ...)")
    score.add_argument("--data", required=True, help="benchmark file or directory in its published layout")
    score.add_argument("--predictions", required=True, help='JSONL, one {"id": ..., "response": ...} per line')
    score.add_argument("--out", required=True, help="score file (JSON); verdicts go beside it as .verdicts.jsonl")
    score.add_argument(
        "--missing", default="error", choices=["error", "wrong", "skip"], help="items without a prediction"
    )
    score.add_argument("--bootstrap-samples", type=int, default=2000, help="resamples for the 95%% intervals")
    score.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    score.add_argument("--judge-url", help="OpenAI-compatible endpoint of an LLM judge scored beside the rules")
    score.add_argument("--judge-model", help="the judge's model name (with --judge-url)")
    score.add_argument("--judge-key-env", default="OPENAI_API_KEY", help="variable holding the judge's API key")
    score.add_argument("--judge-concurrency", type=int, default=8, help="judge requests in flight at once")
    score.add_argument("--judge-retries", type=int, default=3, help="retries per judge request on 429/5xx")
    score.add_argument(
        "--extractor-url", help="OpenAI-compatible endpoint of an LLM asked for the answer where no rule finds one"
    )
    score.add_argument("--extractor-model", help="the extractor's model name (with --extractor-url)")
    score.add_argument("--extractor-key-env", default="OPENAI_API_KEY", help="variable holding the extractor's key")
    score.add_argument("--extractor-concurrency", type=int, default=8, help="extractor requests in flight at once")
    score.add_argument("--extractor-retries", type=int, default=3, help="retries per extractor request on 429/5xx")
    compare = tools.add_parser("compare", help="paired comparison of two score files (McNemar, bootstrap)")
    compare.add_argument("a", help="score file A (from `r1ov eval score`)")
    compare.add_argument("b", help="score file B")
    compare.add_argument("--bootstrap-samples", type=int, default=2000, help="resamples for the interval")
    compare.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    compare.add_argument(
        "--allow-manifest-mismatch",
        action="store_true",
        help="compare even when the two scores' manifests differ in more than the model (warns)",
    )


def _eval_tool(args: argparse.Namespace) -> dict[str, Any]:
    from r1ov.eval import offline
    from r1ov.eval.chat import EndpointSettings

    def endpoint(kind: str) -> EndpointSettings | None:
        url, model = getattr(args, f"{kind}_url"), getattr(args, f"{kind}_model")
        if not (url or model):
            return None
        if not (url and model):
            raise offline.ScoreError(f"--{kind}-url and --{kind}-model go together")
        return EndpointSettings(
            url,
            model,
            getattr(args, f"{kind}_key_env"),
            max_concurrency=getattr(args, f"{kind}_concurrency"),
            max_retries=getattr(args, f"{kind}_retries"),
        )

    if args.eval_tool == "score":
        result = offline.score_predictions(
            args.benchmark,
            args.data,
            args.predictions,
            args.out,
            missing=args.missing,
            bootstrap_samples=args.bootstrap_samples,
            seed=args.seed,
            judge_settings=endpoint("judge"),
            extractor_settings=endpoint("extractor"),
        )
        keys = ("benchmark", "overall", "by_category", "by_level", "extra", "extractor", "judge")
        return {k: result[k] for k in keys} | {"out": args.out}
    return offline.compare_files(
        args.a,
        args.b,
        samples=args.bootstrap_samples,
        seed=args.seed,
        allow_manifest_mismatch=args.allow_manifest_mismatch,
    )


def _add_registry_parser(sub: argparse._SubParsersAction) -> None:
    registry = sub.add_parser(
        "registry",
        help="list, fetch, promote and roll back registered models by hand",
        description="The model registry by hand. `registry promote` runs the same gate as the pipeline's "
        "`promote` stage, on any registered version, from the command line (with --force and a --reason "
        "when overriding it); the `promote` stage takes a recipe and runs inside a pipeline.",
    )
    registry.add_argument(
        "--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else ~/.cache/r1ov)"
    )
    actions = registry.add_subparsers(dest="action", required=True, metavar="ACTION")
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
    rollback.add_argument(
        "--endpoint", metavar="NAMESPACE/NAME", help="the r1ov-inference endpoint to roll onto the restored version"
    )
    rollback.add_argument(
        "--endpoint-kind", choices=["Deployment", "InferenceService"], default="Deployment",
        help="what the inference chart renders: its Deployment, or KServe's InferenceService",
    )  # fmt: skip


def _doctor(args: argparse.Namespace) -> dict[str, Any]:
    from r1ov.k8s import doctor
    from r1ov.k8s.client import load_api_client

    target = doctor.Target(
        namespace=args.namespace, service_account=args.service_account, kfp_endpoint=args.kfp_endpoint,
        mlflow_uri=args.mlflow_uri, endpoint=args.endpoint,
    )  # fmt: skip
    checks = doctor.run(target, api_client=load_api_client(args.kubeconfig, args.context))
    return {"table": doctor.table(checks), "ok": all(c.ok for c in checks)}


def _registry_store(tracking_uri: str | None) -> tuple[cfg.TrackingConfig, str]:
    """The store the registry commands read, and why that one. Every registry command reads (promote
    and rollback move an alias among versions already there), so a missing SQLite file is an
    answer, found before MLflow is imported, and never created by looking."""
    if tracking_uri:
        why = "--tracking-uri"
    elif os.environ.get("MLFLOW_TRACKING_URI"):
        why = "$MLFLOW_TRACKING_URI"
    else:
        why = "the default: no --tracking-uri, MLFLOW_TRACKING_URI unset"
    tracking = cfg.TrackingConfig(**({"tracking_uri": tracking_uri} if tracking_uri else {}))
    uri = tracking.tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise UserError(
            f"no MLflow store at {uri.removeprefix('sqlite:///')} ({why}); nothing is registered there. "
            "Point --tracking-uri or MLFLOW_TRACKING_URI at the store your runs used "
            "(r1ov demo: sqlite:///WORKDIR/mlflow.db)"
        )
    if not tracking_uri and not os.environ.get("MLFLOW_TRACKING_URI"):
        print(f"r1ov registry: reading the MLflow store {uri} ({why})", file=sys.stderr)
    return tracking, f"{uri} ({why})"


def _registry(args: argparse.Namespace) -> Any:
    tracking, store = _registry_store(args.tracking_uri)
    from r1ov.errors import RegistryError

    if args.action == "fetch":  # a malformed URI is the reader's typo, not a miss in the store
        from r1ov.registry.models import parse_models_uri

        parse_models_uri(args.model_uri)
    try:
        return _registry_action(args, tracking)
    except RegistryError as exc:  # name the store searched: the usual cause is looking in the wrong one
        raise RegistryError(f"{exc} in the MLflow store {store}") from exc


def _registry_action(args: argparse.Namespace, tracking: cfg.TrackingConfig) -> Any:
    from r1ov.registry import models as registry
    from r1ov.registry import promotion

    if args.action == "list":
        return registry.list_models(tracking, args.name)
    if args.action == "fetch":
        name, alias, version = registry.parse_models_uri(args.model_uri)
        return {"model_dir": str(registry.fetch(name, alias, args.dir, tracking, version=version))}
    if args.action == "rollback":
        endpoint = None
        if args.endpoint:
            namespace, _, name = args.endpoint.rpartition("/")
            if not namespace or not name:
                raise UserError(
                    f"--endpoint {args.endpoint!r}: expected NAMESPACE/NAME, e.g. r1ov/r1ov-serve-r1ov-inference"
                )
            endpoint = cfg.EndpointConfig(deployment=name, namespace=namespace, kind=args.endpoint_kind)
        return promotion.rollback(args.name, tracking, args.alias, endpoint)
    # The command prints the decision below; the library's own log line would say it twice.
    logging.getLogger(promotion.__name__).setLevel(logging.WARNING)
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
    if decision["champion_before"] == str(decision["version"]):
        line = f"{args.name} version {args.version} already holds {args.alias}: nothing changed"
    else:
        verb = "promoted to" if decision["promoted"] else "NOT promoted to"
        line = f"{args.name} version {args.version} {verb} {args.alias}: {'; '.join(decision['reasons'])}"
    print(line, file=sys.stderr)
    return decision


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="r1ov", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.set_defaults(dry_run=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    synth = sub.add_parser("synth", help="write seeded synthetic records with ground truth")
    synth.add_argument("--out", required=True, help="dataset URI (local path or s3://)")
    synth.add_argument("--n", type=int, default=64, help="number of records")
    synth.add_argument("--seed", type=int, default=0, help="RNG seed")
    synth.add_argument("--kinds", default=None, help="comma-separated generators (default: all but clevr)")

    tiny = sub.add_parser("tiny-model", help="build a tiny random Qwen2.5-VL offline")
    tiny.add_argument("--out", required=True, help="directory to write")
    tiny.add_argument("--seed", type=int, default=0, help="weight init seed")

    _add_stage_parsers(sub)

    importer = sub.add_parser("import", help="read a published dataset into records, with a report of skipped rows")
    importer.add_argument("--format", required=True, help="parquet (R1-Onevision, LLaVA-OneVision folders), jsonl, hub")
    importer.add_argument(
        "--source", required=True, help="folder, file or s3:// URI; for hub, a dataset name or folder"
    )
    importer.add_argument("--out", required=True, help="record dataset to write (local path or s3://)")
    importer.add_argument("--split", default="train", help="split to read (hub)")
    importer.add_argument("--limit", type=int, default=None, help="read at most this many rows")
    importer.add_argument(
        "--config",
        action="append",
        default=[],
        dest="configs",
        metavar="NAME",
        help="a named config (hub) or source folder (parquet) to read, repeatable; 'all' reads every one "
        "(LLaVA-OneVision-Data has named configs only)",
    )

    decontam = sub.add_parser(
        "decontaminate", help="set aside training rows that are benchmark items (same or similar image, question)"
    )
    decontam.add_argument("--data", required=True, help="record dataset to check (local path or s3://)")
    decontam.add_argument("--out", required=True, help="record dataset to write: clean rows, overlaps set aside")
    decontam.add_argument(
        "--benchmark",
        action="append",
        required=True,
        metavar="NAME=URI",
        help="a benchmark in its published file (mathvista, mathverse, mathvision, wemath, r1ov-bench, records), "
        "repeatable",
    )
    decontam.add_argument("--max-distance", type=int, default=6, help="perceptual image hash bits apart that match")

    exporter = sub.add_parser("export", help="write records for a trainer: TRL messages or LLaMA-Factory ShareGPT")
    exporter.add_argument("--format", required=True, help="trl (messages + images Parquet) or sharegpt (LLaMA-Factory)")
    exporter.add_argument("--data", required=True, help="record dataset (distilled or filtered)")
    exporter.add_argument("--out", required=True, help="folder to write")
    exporter.add_argument("--name", default="r1ov", help="dataset name in LLaMA-Factory's dataset_info.json")

    demo = sub.add_parser("demo", help="run the whole pipeline locally with kfp.local")
    demo.add_argument("--workdir", default="demo-run", help="where data, models, MLflow and reports go")
    demo.add_argument("--fresh", action="store_true", help="delete the workdir first")
    demo.add_argument("--json", action="store_true", help="also print the summary (WORKDIR/summary.json) on stdout")

    _add_registry_parser(sub)

    compile_ = sub.add_parser("compile", help="compile pipelines/r1ov.yaml and every component.yaml")
    compile_.add_argument("--root", default=".", help="repository root")

    from r1ov.pipeline.submit import SERVICE_ACCOUNT

    submit = sub.add_parser("submit", help="create a pipeline run as the r1ov-pipeline service account")
    submit.add_argument("-e", "--experiment", default="r1ov", help="experiment name (created if missing)")
    submit.add_argument("-f", "--package", default="pipelines/r1ov.yaml", help="compiled pipeline")
    submit.add_argument("-r", "--run-name", default=None, help="run name (default: the experiment's)")
    submit.add_argument("--endpoint", default=None, help="KFP API endpoint (default: KF_PIPELINES_ENDPOINT)")
    submit.add_argument("-n", "--namespace", default=None, help="profile namespace (multi-user Kubeflow)")
    submit.add_argument("--service-account", default=SERVICE_ACCOUNT, help="service account the run's pods use")
    submit.add_argument("arguments", nargs="*", metavar="KEY=VALUE", help="pipeline arguments, as for kfp run create")

    doctor = sub.add_parser("doctor", help="check the current kube context before the first submit (a table of fixes)")
    doctor.add_argument("-n", "--namespace", default="r1ov", help="namespace of the platform chart and the runs")
    doctor.add_argument("--service-account", default=SERVICE_ACCOUNT, help="service account the runs use")
    doctor.add_argument("--kfp-endpoint", default=os.environ.get("KF_PIPELINES_ENDPOINT"), help="KFP API endpoint")
    doctor.add_argument("--mlflow-uri", default=None, help="MLflow URL (default: the settings ConfigMap's)")
    doctor.add_argument(
        "--endpoint", default="r1ov-serve-r1ov-inference", help="the inference Deployment promotion rolls"
    )
    doctor.add_argument("--kubeconfig", default=None, help="kubeconfig (default: $KUBECONFIG or ~/.kube/config)")
    doctor.add_argument("--context", default=None, help="kube context (default: the current one)")
    return parser


def _decontaminate(args: argparse.Namespace) -> dict[str, Any]:
    from r1ov.pipeline.tasks import decontaminate_source

    benchmarks = []
    for spec in args.benchmark:
        name, sep, uri = spec.partition("=")
        if not sep or not name or not uri:
            raise cfg.ConfigError(f"--benchmark {spec!r}: expected NAME=URI, e.g. mathvista=data/testmini.parquet")
        benchmarks.append({"name": name, "uri": uri})
    return decontaminate_source(args.data, benchmarks, args.out, args.max_distance)


def _dispatch(args: argparse.Namespace) -> dict[str, Any]:
    if args.command == "synth":
        overrides = [f"output_uri={args.out}", f"n={args.n}", f"seed={args.seed}"]
        if args.kinds:
            overrides.append(f"kinds=[{args.kinds}]")
        return run_stage("synth", None, overrides)
    elif args.command == "tiny-model":
        from r1ov.testing.tiny_model import build_tiny_model

        return {"model_dir": str(build_tiny_model(args.out, seed=args.seed))}
    elif args.command == "import":
        from r1ov.data.importers import import_dataset

        return import_dataset(
            args.format, args.source, args.out, split=args.split, configs=args.configs, limit=args.limit
        )
    elif args.command == "decontaminate":
        return _decontaminate(args)
    elif args.command == "export":
        from r1ov.data.exporters import export_dataset

        return export_dataset(args.format, args.data, args.out, name=args.name)
    elif args.command == "demo":
        from r1ov.pipeline.demo import run_demo

        return run_demo(args.workdir, fresh=args.fresh, verbose=args.verbose)
    elif args.command == "registry":
        return _registry(args)
    elif args.command == "compile":
        from r1ov.pipeline.compile import compile_all

        return compile_all(args.root)
    elif getattr(args, "eval_tool", None):
        return _eval_tool(args)
    elif args.command == "doctor":
        return _doctor(args)
    elif args.command == "submit":
        from r1ov.pipeline.submit import Submission, parse_arguments, submit

        return submit(
            Submission(
                package=args.package,
                experiment=args.experiment,
                run_name=args.run_name,
                arguments=parse_arguments(args.arguments),
                endpoint=args.endpoint,
                namespace=args.namespace,
                service_account=args.service_account,
            )
        )
    elif getattr(args, "plan", False):
        from r1ov.train import memory

        config_class, _ = STAGES[args.command]
        stage_config = cfg.load(config_class, args.config, args.overrides, name=args.command)
        return memory.plan(args.command, stage_config, args.gpu_gib)
    elif args.dry_run:
        config_class, _ = STAGES[args.command]
        # The recipe first: a mistake in it is answered before the launcher's imports (torch).
        stage_config = cfg.load(config_class, args.config, args.overrides, name=args.command)
        from r1ov.train.launch import plan

        return plan(args.command, stage_config)
    else:
        return run_stage(args.command, args.config, args.overrides)


def user_error(exc: BaseException) -> str | None:
    """One line for errors a user can fix; None for bugs (those keep their traceback)."""
    from r1ov.errors import explain

    return explain(exc)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The command owns the process's logging: a handler left by an earlier caller is replaced.
    errors.configure_logging(logging.DEBUG if args.verbose else logging.INFO, force=True)
    # stdout carries only the JSON summary: libraries that print (DeepSpeed logs to stdout) go to stderr.
    try:
        with contextlib.redirect_stdout(sys.stderr):
            result = _dispatch(args)
    except cfg.ConfigError as exc:
        print(f"r1ov {args.command}: invalid config\n{exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C is a request, not a crash: no traceback. Training stages save a checkpoint first.
        print(f"r1ov {args.command}: interrupted", file=sys.stderr)
        return 130
    except StageFailed as exc:
        print(f"r1ov {args.command}: failed: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        # Only `r1ov eval score|compare` raise ScoreError, and they import its module: looking it
        # up instead of importing it keeps every other error's answer free of eval's imports.
        offline = sys.modules.get("r1ov.eval.offline")
        if offline is not None and isinstance(exc, offline.ScoreError):
            print(f"r1ov eval {args.eval_tool}: {exc}", file=sys.stderr)
            return 2
        message = user_error(exc)
        if message is None or args.verbose:
            raise
        print(f"r1ov {args.command}: {message}", file=sys.stderr)
        return 1
    if args.command == "doctor":  # a table for a person, and a status a script can test
        print(result["table"])
        return 0 if result["ok"] else 1
    if args.command == "demo" and not args.json:
        return 0  # the terminal ends with the demo's table and where to look; the JSON is in summary.json
    if args.dry_run and "objects" in result:
        # What `kubectl apply -f -` takes: the objects a launch would create, one YAML document each.
        print(yaml.safe_dump_all(result["objects"], sort_keys=False), end="")
        return 0
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
