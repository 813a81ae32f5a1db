"""What a KFP component does once its pod has started: build the stage config, run, report.

Components in ``components/`` stay a typed signature plus one call into this module, so the
same code runs under ``kfp.local``, on a cluster and in tests. Explicit component inputs
(dotted config keys) set their fields; ``extra_config``, a YAML/JSON mapping, sets any other
config field. An ``extra_config`` value that contradicts an input is refused, not dropped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import posixpath
from collections.abc import Iterator
from typing import Any, Protocol

import yaml

from r1ov import config as cfg
from r1ov import errors
from r1ov.data import inputs
from r1ov.k8s.bundle import RUN_LABEL
from r1ov.scoring import lengths
from r1ov.stages import STAGES, resolve

log = logging.getLogger(__name__)

PIPELINE_RUN_TAG = "r1ov.pipeline_run_id"
SHARD_TAG = "r1ov.shard"  # the fan-out shard a data stage's run covers


class MetricsArtifact(Protocol):
    def log_metric(self, metric: str, value: float) -> None: ...


def _set_dotted(data: dict[str, Any], dotted: str, value: Any, contradictions: list[str]) -> None:
    """Set ``dotted`` to an input's value over what extra_config holds, noting each value it contradicts."""
    node = data
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    _merge_input(node, leaf, value, dotted, contradictions)


def _merge_input(node: dict[str, Any], key: str, value: Any, path: str, contradictions: list[str]) -> None:
    """A mapping input (tracking tags, pod labels) adds its keys to the extra ones; any other value replaces
    the extra one, and a different extra value is a contradiction: the user asked for it, and would not get it."""
    if key not in node:
        node[key] = value
        return
    current = node[key]
    if isinstance(current, dict) and isinstance(value, dict):
        for sub_key, sub_value in value.items():
            _merge_input(current, sub_key, sub_value, f"{path}.{sub_key}", contradictions)
        return
    if current != value:
        contradictions.append(f"{path}: {current!r} in extra_config, {value!r} as the task's input")
    node[key] = value


def _restore_integers(value: Any) -> Any:
    """A pipeline STRUCT travels as protobuf Struct, whose one number type is a double: 100 -> 100.0."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _restore_integers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_restore_integers(item) for item in value]
    return value


def parse_extra(extra_config: dict[str, Any] | str | None) -> dict[str, Any]:
    """Further config fields: a mapping (the pipeline's STRUCT parameters) or YAML/JSON text."""
    if isinstance(extra_config, dict):
        return _restore_integers(extra_config)
    if not extra_config or not extra_config.strip():
        return {}
    try:
        data = yaml.safe_load(extra_config)
    except yaml.YAMLError as exc:
        raise cfg.ConfigError(f"extra_config is not valid YAML/JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise cfg.ConfigError(f"extra_config must be a mapping of config fields, not {type(data).__name__}")
    return data


def stage_config(stage: str, fields: dict[str, Any], extra_config: dict[str, Any] | str | None = None) -> Any:
    """The validated config for ``stage`` from explicit fields (dotted keys) and extras.

    Every input has a value (its default when the user gave none), so an extra_config value for an
    input's field would be silently lost: e.g. ``rewards`` in GRPO's extra_config, under the task's
    ``rewards`` input ("accuracy,format"), trained without the user's reward. Refused instead.
    """
    data = parse_extra(extra_config)
    contradictions: list[str] = []
    for key, value in fields.items():
        if value is not None:
            _set_dotted(data, key, value, contradictions)
    if contradictions:
        raise cfg.ConfigError(
            f"{stage}: extra_config sets field(s) that the task's inputs set: {'; '.join(contradictions)}. "
            "Set them through the inputs (the pipeline's parameters) and leave them out of extra_config."
        )
    return cfg.build(STAGES[stage][0], data, name=stage)


def tracking_fields(
    name: str, tracking_uri: str, experiment: str, run_id: str, tags: dict[str, str] | None = None
) -> dict[str, Any]:
    """Dotted ``tracking.*`` fields of a stage's MLflow run (none when no tracking URI is given)."""
    if not tracking_uri:
        return {}
    return {
        "tracking.tracking_uri": tracking_uri,
        "tracking.experiment": experiment,
        "tracking.run_name": f"{name}-{run_id}" if run_id else name,
        "tracking.tags": {
            **({PIPELINE_RUN_TAG: run_id} if run_id else {}),
            **{k: v for k, v in (tags or {}).items() if v},
        },
    }


def _nest_under_pipeline_run(config: Any) -> None:
    """Give a tracked stage the pipeline run's MLflow parent run (created by whichever stage comes first)."""
    tracking = getattr(config, "tracking", None)
    if getattr(config, "track", True) is False or tracking is None or tracking.parent_run_id:
        return
    pipeline_run_id = tracking.tags.get(PIPELINE_RUN_TAG)
    if pipeline_run_id:
        from r1ov.registry.tracking import pipeline_parent_run

        tracking.parent_run_id = pipeline_parent_run(tracking, pipeline_run_id)


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@contextlib.contextmanager
def _stage_run(
    stage: str, config: Any, track: tuple[str, str, str] | None, shard: str | None = None
) -> Iterator[dict[str, Any]]:
    """An MLflow child run for a stage that does not track itself (the data stages): settings and counts.

    One run per (pipeline run, stage, shard), named after all three so the shards' runs tell apart
    in the runs page. A retried task (KFP's set_retry, a pod restarted) takes its attempt's run
    back instead of opening a second one: the attempts are one stage's story.
    """
    holder: dict[str, Any] = {}
    if not track or not track[0] or getattr(config, "tracking", None) is not None:
        yield holder
        return
    from mlflow.entities import Param

    from r1ov.registry import tracking as registry

    tracking_uri, experiment, pipeline_run_id = track
    name = "-".join(part for part in (stage, shard, pipeline_run_id) if part)
    tags = {"r1ov.stage": stage, **({SHARD_TAG: shard} if shard else {})}
    tracking = cfg.TrackingConfig(
        tracking_uri=tracking_uri,
        experiment=experiment,
        run_name=name,
        tags={PIPELINE_RUN_TAG: pipeline_run_id} if pipeline_run_id else {},
    )
    client = registry.client_for(tracking)
    earlier = _earlier_attempt(client, tracking, pipeline_run_id, tags) if pipeline_run_id else None
    if earlier is not None:
        run_id = earlier
        client.update_run(run_id, status="RUNNING")
        log.info("%s: a retry; MLflow run %s continues", name, run_id)
    else:
        if pipeline_run_id:
            tracking.parent_run_id = registry.pipeline_parent_run(tracking, pipeline_run_id)
        run_id = registry.start_run(client, tracking, stage, tags)
    try:
        yield holder
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    settings = _flat(json.loads(config.model_dump_json()))
    params = [Param(k, str(v)[:500]) for k, v in sorted(settings.items()) if v is not None][:100]
    numbers = {k: v for k, v in _flat(holder.get("summary", {})).items() if isinstance(v, int | float)}
    client.log_batch(run_id, params=params)
    registry.log_metrics(client, run_id, {k: float(v) for k, v in numbers.items()})
    client.set_terminated(run_id)


def _earlier_attempt(
    client: Any, tracking: cfg.TrackingConfig, pipeline_run_id: str, tags: dict[str, str]
) -> str | None:
    """The run an earlier attempt of this task opened (same pipeline run, stage and shard), if any."""
    from r1ov.registry.tracking import experiment_id

    wanted = {PIPELINE_RUN_TAG: pipeline_run_id, **tags}
    query = " and ".join(f"tags.`{key}` = '{value}'" for key, value in wanted.items())
    runs = client.search_runs([experiment_id(client, tracking)], query, max_results=10)
    if SHARD_TAG not in tags:  # an unsharded task: not a shard's run that happens to match
        runs = [run for run in runs if SHARD_TAG not in run.data.tags]
    return min(runs, key=lambda r: r.info.start_time).info.run_id if runs else None


def _close_pipeline_run(config: Any) -> None:
    """Promotion is the last stage: the pipeline's MLflow run ends with it."""
    if config.track and config.tracking.parent_run_id:
        from r1ov.registry.tracking import client_for

        client_for(config.tracking).set_terminated(config.tracking.parent_run_id)


def run_task(
    stage: str,
    fields: dict[str, Any],
    extra_config: dict[str, Any] | str | None = None,
    track: tuple[str, str, str] | None = None,
    shard: str | None = None,
) -> dict[str, Any]:
    """Build ``stage``'s config from component inputs, check its inputs, run it, check its output.

    ``track`` = (tracking URI, experiment, pipeline run id) gives a stage without its own
    tracking an MLflow run nested under the pipeline's.
    """
    errors.configure_logging()
    config = stage_config(stage, fields, extra_config)
    _nest_under_pipeline_run(config)
    log.info("running %s with %s", stage, config.model_dump_json(exclude_none=True))
    inputs.check(stage, config)
    lengths.preflight(stage, config)
    with _stage_run(stage, config, track, shard) as run:
        summary = resolve(STAGES[stage][1])(config)
        run["summary"] = summary
    inputs.check_output(stage, config, summary)
    if stage == "promote":
        _close_pipeline_run(config)
    log.info("%s finished: %s", stage, json.dumps(summary, default=str))
    return summary


def log_metrics(metrics: MetricsArtifact, summary: dict[str, Any], prefix: str = "") -> None:
    """Numeric entries of a summary (nested dicts flattened with '/') into a KFP Metrics artifact."""
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, int | float):  # bool is an int: True logs as 1.0
            metrics.log_metric(name, float(value))
        elif isinstance(value, dict):
            log_metrics(metrics, value, prefix=f"{name}/")


def checkpoint_uri(checkpoint_root: str, run_id: str, stage: str) -> str | None:
    """Durable per-run location for a training stage's output, or None without a root."""
    if not checkpoint_root:
        return None
    return f"{checkpoint_root.rstrip('/')}/{run_id}/{stage}"


def training_fields(
    stage: str,
    *,
    launcher: str,
    nnodes: int,
    nproc_per_node: int,
    deepspeed: str,
    checkpoint_root: str,
    run_id: str,
    mlflow_tracking_uri: str,
    mlflow_experiment: str,
    namespace: str,
    task_gpus: int = 0,
) -> dict[str, Any]:
    """Config fields SFT and GRPO share: process layout, durable checkpoints, tracking."""
    if launcher == "local" and task_gpus and nnodes * nproc_per_node > task_gpus:
        raise cfg.ConfigError(
            f"{stage}: launcher=local runs {nnodes} x {nproc_per_node} processes in this pod, which holds "
            f"{task_gpus} GPU(s); set train_task_gpus to nnodes x nproc_per_node (or use a cluster launcher)"
        )
    return {
        "distributed.cluster.namespace": namespace,
        "distributed.cluster.labels": {RUN_LABEL: run_id} if run_id else None,
        "checkpoint_uri": checkpoint_uri(checkpoint_root, run_id, stage),
        "distributed.launcher": launcher,
        "distributed.nnodes": nnodes,
        "distributed.nproc_per_node": nproc_per_node,
        "distributed.deepspeed": deepspeed,
        "track": bool(mlflow_tracking_uri),
        "tracking.tracking_uri": mlflow_tracking_uri or None,
        "tracking.experiment": mlflow_experiment,
        "tracking.run_name": f"{stage}-{run_id}" if run_id else None,
        "tracking.tags": {PIPELINE_RUN_TAG: run_id} if run_id else None,
    }


def end_tracking(run_id: str, final_state: str, tracking_uri: str, experiment: str) -> list[str]:
    """End the pipeline's MLflow run in the pipeline's final state (the exit handler's part)."""
    if not tracking_uri or not run_id:
        return []
    from r1ov.registry.tracking import end_pipeline_run

    ended = end_pipeline_run(cfg.TrackingConfig(tracking_uri=tracking_uri, experiment=experiment), run_id, final_state)
    log.info("cleanup: pipeline %s ended %s; closed %d MLflow run(s)", run_id, final_state, len(ended))
    return ended


def cleanup_run(run_id: str, launcher: str, namespace: str) -> list[str]:
    """Delete what a run launched on the cluster and left behind (failed or cancelled runs)."""
    errors.configure_logging()
    if launcher == "local" or not run_id:
        log.info("cleanup: nothing launched on a cluster (launcher=%s)", launcher)
        return []
    from r1ov.k8s.client import delete_labelled

    deleted = delete_labelled(namespace, f"{RUN_LABEL}={run_id}")
    log.info("cleanup: deleted %s", deleted or "nothing (all objects already gone)")
    return deleted


def run_shard_stage(
    stage: str,
    shard_uri: str,
    fields: dict[str, Any],
    extra_config: dict[str, Any] | str | None = None,
    track: tuple[str, str, str] | None = None,
) -> dict[str, Any]:
    """One data stage on one shard of a fan-out: input and output folders come from the shard's
    layout (r1ov.data.fanout), on durable storage, so a retried pod resumes from what is there.
    ``track`` as for :func:`run_task`: the shard's run nests under the pipeline's MLflow run."""
    from r1ov.data.fanout import shared_cache_uri, stage_uris

    input_uri, output_uri = stage_uris(shard_uri, stage)
    # Teacher replies go to the cache every run and every shard count share (under the data root),
    # unless one is named: a re-submitted run pays for nothing answered before.
    key = "judge" if stage == "filter" else "teacher"
    extra = parse_extra(extra_config)
    asks_teacher = stage != "filter" or fields.get("judge.base_url") or extra.get("judge")
    named = fields.get(f"{key}.cache_uri") or (extra.get(key) or {}).get("cache_uri")
    defaults = {f"{key}.cache_uri": shared_cache_uri(shard_uri)} if asks_teacher and not named else {}
    fields = {**defaults, "input_uri": input_uri, "output_uri": output_uri, **fields}
    return run_task(stage, fields, extra, track=track, shard=posixpath.basename(shard_uri.rstrip("/")))


def teacher_fields(stage: str, base_url: str, model: str, max_concurrency: int) -> dict[str, Any]:
    """The explicit teacher inputs of a data task: the stage's teacher, or the filter's judge
    (only when a judge URL is given: the filter runs without one by default)."""
    key = "judge" if stage == "filter" else "teacher"
    if stage == "filter" and not base_url:
        return {}
    return {
        f"{key}.base_url": base_url or None,
        f"{key}.model": model or None,
        f"{key}.max_concurrency": max_concurrency,
    }


def decontaminate_source(
    source_uri: str, benchmarks: list[dict[str, Any]], output_uri: str, max_distance: int | None = None
) -> dict[str, Any]:
    """Set aside the source's rows that are items of ``benchmarks`` (``[{name, uri}, ...]``, read
    from their published files) into ``output_uri``; returns the manifest with the overlap report."""
    from r1ov.data.decontaminate import DEFAULT_MAX_DISTANCE, BenchmarkIndex, decontaminate
    from r1ov.eval.benchmarks import load

    index = BenchmarkIndex(max_distance=DEFAULT_MAX_DISTANCE if max_distance is None else max_distance)
    for entry in benchmarks:
        loaded = load(cfg.BenchmarkSpec(**entry))
        # Items the evaluation cannot score (no answer) are still items a model must not train on.
        index.add(loaded.label, [*loaded.records, *loaded.rejected])
    return decontaminate(source_uri, output_uri, index)
