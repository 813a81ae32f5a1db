"""``r1ov demo``: the compiled pipeline, end to end, on this machine.

What runs is ``pipelines/r1ov.yaml`` itself, under ``kfp.local`` (one subprocess per task, no
venv per task), with arguments from ``pipelines/recipes/demo.yaml``: synthetic data, a tiny
random Qwen2.5-VL built offline, an offline teacher behind a local OpenAI-compatible endpoint,
SFT and GRPO as two torch.distributed processes with DeepSpeed ZeRO over gloo, and MLflow on
``WORKDIR/mlflow.db``. Only backends differ from a cluster run, never the stage code.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress, TaskID
from rich.table import Table

from r1ov import config as cfg
from r1ov.pipeline.compile import repo_root

log = logging.getLogger(__name__)
console = Console(stderr=True)

# Sizes: enough records that every stage has real work and every kind of rejection shows up,
# few enough that the demo stays within minutes on 2 cores.
# GRPO sees each CLEVR record once (300 steps x 2 prompts): on a few dozen records repeated for
# epochs, the tiny model learns their answers instead of the question types' and falls below SFT.
TRAIN_RECORDS, CLEVR_RECORDS, BENCH_RECORDS = 192, 600, 96
# Image types whose answers a tiny random model can learn from the question alone (counts, yes/no,
# sizes): so SFT measurably beats the base model on held-out items within minutes. The paper's
# data has every type; the demo shapes its data for a 0.3M-parameter model.
DEMO_KINDS = ["natural", "clevr"]
# The held-out items are mini-CLEVR, the kind both SFT and GRPO train on. A model this small
# cannot carry RL on one scene type over to another: GRPO on CLEVR trades natural-scene answers
# for CLEVR ones, so a mixed bench would measure that trade instead of what RL adds.
BENCH_KINDS = ["clevr"]
TEACHER_NOISE = 0.25  # share of teacher answers made wrong or malformed, for the filter to catch
FORMALIZE_NOISE = 0.1  # share of formalizations the teacher botches, for the parser checks to catch
# Short chains (no observation: the instruction's lead, then the answer): a tiny model learns the
# format from them within a few hundred steps, and they fit the demo's max_reasoning_tokens.
CHAIN_OBSERVATIONS = 0
EXPERIMENT, MODEL_NAME = "r1ov", "r1ov-demo"  # as in pipelines/recipes/demo.yaml


def _fill(value: Any, slots: dict[str, str]) -> Any:
    if isinstance(value, dict):  # list and mapping parameters (benchmarks, *_extra_config)
        return {key: _fill(item, slots) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, slots) for item in value]
    if isinstance(value, str):
        for key, replacement in slots.items():
            value = value.replace("{" + key + "}", replacement)
    return value


def pipeline_arguments(recipe: Path, slots: dict[str, str]) -> dict[str, Any]:
    data = cfg.read_recipe(recipe)
    return {key: _fill(value, slots) for key, value in data.items()}


def prepare_inputs(workdir: Path) -> dict[str, str]:
    """Synthetic data (three seeds, three roles) and the tiny model; reused when present."""
    from r1ov.data import records
    from r1ov.synthetic import run as synthesize
    from r1ov.testing.tiny_model import build_tiny_model

    data = workdir / "data"
    plan = {
        "train": (TRAIN_RECORDS, 1, DEMO_KINDS),
        "clevr": (CLEVR_RECORDS, 2, ["clevr"]),
        "bench": (BENCH_RECORDS, 3, BENCH_KINDS),
    }
    for name, (n, seed, kinds) in plan.items():
        uri = str(data / name)
        if not (data / name / "manifest.json").exists():
            synthesize(cfg.SynthConfig(output_uri=uri, n=n, seed=seed, kinds=kinds))
            if name == "train":
                _add_corrupt_record(uri)
        console.log(f"data/{name}: {records.read_manifest(uri)['records']} synthetic records")
    model_dir = workdir / "models" / "tiny-qwen2.5-vl"
    if not (model_dir / "config.json").exists():
        build_tiny_model(model_dir)
    console.log(f"tiny Qwen2.5-VL at {model_dir}")
    return {"train": str(data / "train"), "model": str(model_dir)}


def _add_corrupt_record(uri: str) -> None:
    """One record whose image bytes are cut short: set aside with a reason, the run goes on."""
    from r1ov.data import records

    rows = records.read_records(uri)
    broken = records.new_record(
        source="synthetic/corrupt-example",
        question=rows[0]["question"],
        image_type=rows[0]["image_type"],
        image=rows[0]["image"][:64],
        answer=rows[0]["answer"],
    )
    records.write_dataset(uri, [*rows, broken])


def _prepare_mlflow(workdir: Path, experiment: str) -> str:
    """Create the experiment with its artifacts under the workdir (not ./mlruns)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from r1ov.registry.tracking import client_for, experiment_id

    tracking = cfg.TrackingConfig(
        tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}",
        experiment=experiment,
        artifact_location=(workdir / "mlartifacts").as_uri(),
    )
    experiment_id(client_for(tracking), tracking)
    return tracking.tracking_uri


def _find_outputs(pipeline_root: Path) -> dict[str, Path]:
    """The newest run's artifacts worth pointing at."""
    runs = sorted((p for p in pipeline_root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    if not runs:
        return {}
    run = runs[-1]
    found: dict[str, Path] = {"run": run}
    patterns = {
        "formalized": "formalize/formalized",
        "distilled": "distill/distilled",
        "filtered": "merge-shards/filtered",
        "sft_model": "sft/model",
        "grpo_model": "grpo/model",
    }
    for name, pattern in patterns.items():
        matches = list(run.glob(pattern))
        if matches:
            found[name] = matches[0]
    return found


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TASK_EVENT = re.compile(
    r"Task '(?P<task>[^']+)' finished with status (?P<status>\w+)|Executing task '(?P<start>[^']+)'"
)
PIPELINE_TASKS = 11  # cleanup, formalize, distill, filter, sft, grpo, 3 x evaluate, register, promote


class StageLog(io.TextIOBase):
    """Where KFP's output goes during the demo: all of it into the log file, one line per task to the console."""

    def __init__(self, path: Path, progress: Progress, bar: TaskID) -> None:
        self.file = path.open("a", encoding="utf-8")
        self.progress, self.bar = progress, bar
        self.started: dict[str, float] = {}
        self._partial = ""

    def write(self, text: str) -> int:
        self.file.write(text)
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            match = _TASK_EVENT.search(_ANSI.sub("", line))
            if match and match["start"]:
                self.started[match["start"]] = time.monotonic()
                self.progress.update(self.bar, description=f"running {match['start']}")
            elif match:
                seconds = time.monotonic() - self.started.get(match["task"], time.monotonic())
                mark = "[green]done[/]" if match["status"] == "SUCCESS" else f"[red]{match['status']}[/]"
                self.progress.console.log(f"{match['task']:<22} {mark} in {seconds:5.1f} s")
                self.progress.advance(self.bar)
        return len(text)

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        if not self.closed:
            super().close()  # flushes first
            self.file.close()


@contextlib.contextmanager
def quiet_pipeline(workdir: Path, verbose: bool) -> Iterator[None]:
    """KFP's task inputs, streamed logs and warnings go to WORKDIR/demo.log (to the terminal with -v)."""
    if verbose:
        yield
        return
    log_path = workdir / "demo.log"
    console.log(f"task logs: {log_path} (r1ov -v demo shows them here)")
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("pipeline", total=PIPELINE_TASKS)
        sink = StageLog(log_path, progress, bar)
        try:
            with contextlib.redirect_stdout(sink), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # KFP warns once per task about the base image
                yield
        finally:
            sink.close()


def run_demo(workdir: str | Path = "demo-run", fresh: bool = False, verbose: bool = False) -> dict[str, Any]:
    from kfp import components, local

    from r1ov.synthetic.offline_teacher import serve

    started = time.monotonic()
    workdir = Path(workdir).resolve()
    if fresh and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    root = repo_root(Path(__file__).parent)
    # DeepSpeed JIT-builds ops once per machine (and torch/DeepSpeed versions), not once per workdir.
    from r1ov.train import extensions_dir

    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(extensions_dir()))

    console.rule("[bold]r1ov demo: inputs")
    inputs = prepare_inputs(workdir)
    tracking_uri = _prepare_mlflow(workdir, EXPERIMENT)

    console.rule("[bold]r1ov demo: pipeline (kfp.local, pipelines/r1ov.yaml)")
    pipeline_root = workdir / "pipeline_root"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root))
    pipeline = components.load_component_from_file(str(root / "pipelines" / "r1ov.yaml"))
    short = {"max_observations": CHAIN_OBSERVATIONS}
    with serve([inputs["train"]], noise=TEACHER_NOISE, formalize_noise=FORMALIZE_NOISE, **short) as teacher_url:
        console.log(f"offline teacher listening at {teacher_url}")
        arguments = pipeline_arguments(
            root / "pipelines" / "recipes" / "demo.yaml",
            {"workdir": str(workdir), "teacher_url": teacher_url, "tiny_model": inputs["model"]},
        )
        with quiet_pipeline(workdir, verbose):
            pipeline(**arguments)

    outputs = _find_outputs(pipeline_root)
    summary = _summarize(workdir, tracking_uri, outputs, time.monotonic() - started)
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    _print_summary(summary)
    return summary


def changed_tensors(before: Path, after: Path) -> int:
    """How many weight tensors differ between two checkpoints (GRPO must move the SFT model)."""
    from safetensors.torch import load_file

    old, new = load_file(str(before / "model.safetensors")), load_file(str(after / "model.safetensors"))
    return sum(1 for name, tensor in new.items() if name not in old or not old[name].equal(tensor))


def _pipeline_children(client: Any, experiment: str) -> tuple[Any, list[Any]]:
    """The newest pipeline run of the experiment and its nested stage runs."""
    found = client.get_experiment_by_name(experiment)
    parents = client.search_runs(
        [found.experiment_id], "tags.`r1ov.stage` = 'pipeline'", order_by=["attributes.start_time DESC"], max_results=1
    )
    if not parents:
        return None, []
    parent = parents[0]
    children = client.search_runs([found.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    return parent, children


def _summarize(workdir: Path, tracking_uri: str, outputs: dict[str, Path], seconds: float) -> dict[str, Any]:
    import mlflow

    from r1ov.data import records
    from r1ov.eval.ablation import collect, render_html

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    versions = client.search_model_versions(f"name='{MODEL_NAME}'")
    model = client.get_registered_model(MODEL_NAME) if versions else None
    data = {
        stage: records.read_manifest(str(outputs[stage])) for stage in ("formalized", "distilled", "filtered")
        if stage in outputs
    }  # fmt: skip
    # The data stages ran per shard; the merged manifest sums each stage over the shards.
    for stage, name in (("formalized", "formalize"), ("distilled", "distill")):
        if name in data.get("filtered", {}).get("stages", {}):
            data.setdefault(stage, data["filtered"]["stages"][name])
    parent, children = _pipeline_children(client, EXPERIMENT)
    story = collect(client, children)
    report = workdir / "report.html"
    report.write_text(render_html(story))
    gate = {}
    if versions:
        newest = max(versions, key=lambda v: int(v.version))
        gate = json.loads((newest.tags or {}).get("r1ov.gate.champion", "{}"))
    return {
        "workdir": str(workdir),
        "seconds": round(seconds, 1),
        "data": data,
        "filter": data.get("filtered", {}),
        "ablation": story["ablation"],
        "comparisons": story["comparisons"],
        "sft_loss": story["sft_loss"],
        "grpo_reward": story["grpo_reward"],
        "grpo_changed_tensors": changed_tensors(outputs["sft_model"], outputs["grpo_model"])
        if {"sft_model", "grpo_model"} <= outputs.keys()
        else None,
        "gate": {"promoted": gate.get("promoted"), "reasons": gate.get("reasons", [])},
        "registered_versions": sorted(int(v.version) for v in versions),
        "aliases": {alias: str(version) for alias, version in (model.aliases if model else {}).items()},
        "mlflow_pipeline_run": parent.info.run_id if parent else None,
        "mlflow_stage_runs": sorted(r.info.run_name for r in children),
        "report": str(report),
        "pipeline_root": str(outputs.get("run", "")),
        "mlflow_ui": f"mlflow ui --backend-store-uri {tracking_uri}",
    }


def _fmt(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "n/a"


def _print_summary(summary: dict[str, Any]) -> None:
    from r1ov.scoring.paired import format_p
    from r1ov.scoring.paired import format_percent as pct

    ablation = Table(title="base -> SFT -> SFT+GRPO on the same held-out items")
    for column in ("model", "accuracy (%)", "95% interval", "format rate (%)", "n"):
        ablation.add_column(column, justify="left" if column == "model" else "right")
    for row in summary["ablation"]:
        low, high = row["ci95"]
        ablation.add_row(
            row["model"], pct(row["accuracy"]), f"[{pct(low)}, {pct(high)}]", pct(row["format_rate"]), str(row["n"])
        )
    console.print(ablation)
    table = Table(title="r1ov demo: done", show_header=False)
    table.add_row("time", f"{summary['seconds']} s")
    for stage, manifest in summary["data"].items():
        reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(manifest.get("reject_reasons", {}).items()))
        table.add_row(stage, f"{manifest['records']} accepted, {manifest['rejected']} set aside ({reasons or 'none'})")
    loss, reward = summary["sft_loss"], summary["grpo_reward"]
    table.add_row("SFT loss", f"{_fmt(loss['first'])} -> {_fmt(loss['last'])} over {loss['steps']} logged steps")
    spread = reward.get("groups_with_advantage")
    table.add_row(
        "GRPO reward",
        f"{_fmt(reward['first'])} (first quarter) -> {_fmt(reward['last'])} (last quarter) over {reward['steps']} "
        f"steps; {pct(spread)}% of prompt groups had an advantage (completions scored differently)",
    )
    for name, c in summary["comparisons"].items():
        table.add_row(
            name,
            f"{pct(c['difference'], signed=True)} points of accuracy, 95% CI "
            f"[{pct(c['ci95'][0], signed=True)}, {pct(c['ci95'][1], signed=True)}], McNemar p {format_p(c['p_value'])}",
        )
    decision = "promoted" if summary["gate"].get("promoted") else "not promoted"
    table.add_row("promotion", f"{decision}: {'; '.join(summary['gate'].get('reasons') or []) or 'no decision'}")
    table.add_row("aliases", json.dumps(summary["aliases"]))
    table.add_row("report", summary["report"])
    table.add_row("summary", str(Path(summary["workdir"]) / "summary.json"))
    table.add_row("task outputs", summary["pipeline_root"])
    table.add_row("browse runs", summary["mlflow_ui"])
    console.print(table)
