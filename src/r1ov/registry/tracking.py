"""MLflow tracking: the client for a configured store, experiments, stage and pipeline runs, metrics.

Every stage that records a run goes through these helpers, so a new experiment's artifacts land
beside a SQLite store and nested runs hang under the pipeline's parent run. Model versions,
aliases and lineage live in :mod:`r1ov.registry.models`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from r1ov.config import TrackingConfig
from r1ov.data import storage

# Must be set before mlflow is imported anywhere in the process: no usage pings from jobs.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

PARENT_RUN_TAG = "mlflow.parentRunId"
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")


def metric_key(name: str) -> str:
    """``name`` made safe as an MLflow metric or tag key (no odd characters, no path tricks)."""
    parts = [_UNSAFE.sub("_", p).strip() or "_" for p in name.split("/")]
    return "/".join("_" if p in {".", ".."} else p for p in parts)


def client_for(tracking: TrackingConfig) -> MlflowClient:
    if tracking.tracking_uri.startswith("sqlite:///"):
        Path(tracking.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=tracking.tracking_uri, registry_uri=tracking.tracking_uri)


def experiment_id(client: MlflowClient, tracking: TrackingConfig) -> str:
    """The experiment's id, created (with ``artifact_location`` when set) if missing."""
    experiment = client.get_experiment_by_name(tracking.experiment)
    if experiment is not None:
        return experiment.experiment_id
    location = tracking.artifact_location or _artifacts_beside_store(tracking.tracking_uri)
    try:
        return client.create_experiment(tracking.experiment, artifact_location=location)
    except MlflowException:
        # Another task created it between our look-up and our create.
        experiment = client.get_experiment_by_name(tracking.experiment)
        if experiment is None:
            raise
        return experiment.experiment_id


def _artifacts_beside_store(tracking_uri: str) -> str | None:
    """For a SQLite store, artifacts in ``mlartifacts`` beside the file (MLflow's default is ./mlruns)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return (Path(tracking_uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()


def start_run(client: MlflowClient, tracking: TrackingConfig, default_name: str, tags: dict[str, str]) -> str:
    """Create a run (nested under ``tracking.parent_run_id`` when given); returns its id."""
    run_tags = {**tracking.tags, **tags}
    if tracking.parent_run_id:
        run_tags[PARENT_RUN_TAG] = tracking.parent_run_id
    run = client.create_run(experiment_id(client, tracking), run_name=tracking.run_name or default_name, tags=run_tags)
    return run.info.run_id


def pipeline_parent_run(tracking: TrackingConfig, pipeline_run_id: str) -> str:
    """The MLflow run that stands for pipeline run ``pipeline_run_id``, created on first use.

    Stages nest their runs under it. Tasks that start at once may each create one; all then
    agree on the oldest and the others delete their own, so one pipeline run tells one story.
    """
    client = client_for(tracking)
    experiment = experiment_id(client, tracking)
    query = f"tags.`r1ov.pipeline_run_id` = '{pipeline_run_id}' and tags.`r1ov.stage` = 'pipeline'"

    def existing() -> list[Any]:
        runs = client.search_runs([experiment], query, max_results=50)
        return sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))

    found = existing()
    if found:
        return found[0].info.run_id
    tags = {"r1ov.pipeline_run_id": pipeline_run_id, "r1ov.stage": "pipeline"}
    mine = client.create_run(experiment, run_name=f"pipeline-{pipeline_run_id}", tags=tags).info.run_id
    winner = existing()[0].info.run_id
    if winner != mine:
        client.delete_run(mine)
    return winner


# KFP's final task states -> MLflow run states.
_END_STATES = {"SUCCEEDED": "FINISHED", "FAILED": "FAILED", "CANCELED": "KILLED", "CANCELLED": "KILLED"}


def end_pipeline_run(tracking: TrackingConfig, pipeline_run_id: str, final_state: str) -> list[str]:
    """End pipeline run ``pipeline_run_id``'s MLflow run, and any stage run still open under it, in
    the state the pipeline ended in (a stage whose pod was killed never closed its own run).
    Creates nothing: without a parent run (nothing was tracked) there is nothing to end. Returns
    the ids of the runs it ended."""
    client = client_for(tracking)
    found = client.get_experiment_by_name(tracking.experiment)
    if found is None:
        return []
    query = f"tags.`r1ov.pipeline_run_id` = '{pipeline_run_id}' and tags.`r1ov.stage` = 'pipeline'"
    status = _END_STATES.get(final_state.upper(), "FAILED")
    ended = []
    for parent in client.search_runs([found.experiment_id], query, max_results=50):
        children = client.search_runs(
            [found.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'", max_results=1000
        )
        for run in [*children, parent]:
            if run.info.status == "RUNNING":
                # A stage left open in a pipeline that succeeded still did not finish.
                child_status = "FAILED" if run is not parent and status == "FINISHED" else status
                client.set_terminated(run.info.run_id, status=child_status)
                ended.append(run.info.run_id)
    return ended


def log_metrics(client: MlflowClient, run_id: str, metrics: dict[str, float]) -> None:
    """Log a flat metrics dict in batches (MLflow caps one batch at 1000 metrics)."""
    stamp = int(datetime.now(UTC).timestamp() * 1000)
    entries = [Metric(metric_key(k), float(v), stamp, 0) for k, v in sorted(metrics.items())]
    for i in range(0, len(entries), 1000):
        client.log_batch(run_id, metrics=entries[i : i + 1000])


def read_metrics(uri: str) -> dict[str, float]:
    """The flat metrics of an eval ``metrics.json`` (its ``metrics`` mapping, or the file's numbers)."""
    data = json.loads(storage.read_text(uri))
    flat = data.get("metrics", data) if isinstance(data, dict) else {}
    return {k: float(v) for k, v in flat.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool | int | float):
            flat[name] = float(value)
        elif isinstance(value, dict):
            flat.update(_flatten(value, f"{name}/"))
    return flat


def log_summary_to_mlflow(
    manifest: dict[str, Any], markdown: str, *, tracking_uri: str, experiment: str, run_name: str, tags: dict[str, str]
) -> str:
    """The data stages' summary as an MLflow run: every count as a metric, the Markdown as an
    artifact. Returns the run id."""
    # The registry's helpers, so a new experiment's artifacts land beside a SQLite store
    # (MLflow's own default is ./mlruns in whatever directory the task runs in).
    tracking = TrackingConfig(tracking_uri=tracking_uri, experiment=experiment)
    client = client_for(tracking)
    pipeline_run_id = tags.get("r1ov.pipeline_run_id")
    if pipeline_run_id:  # nested under the pipeline's run, beside the stage runs it sums up
        tags = {**tags, PARENT_RUN_TAG: pipeline_parent_run(tracking, pipeline_run_id)}
    run = client.create_run(experiment_id(client, tracking), run_name=run_name, tags=tags)
    for name, value in _flatten(manifest).items():
        # MLflow metric names allow letters, digits, _ - . / and spaces: reasons are free text.
        client.log_metric(run.info.run_id, re.sub(r"[^\w\-./ ]", "_", name)[:250], value)
    client.log_text(run.info.run_id, markdown, "data_summary.md")
    client.set_terminated(run.info.run_id)
    return run.info.run_id
