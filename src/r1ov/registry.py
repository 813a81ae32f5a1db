"""MLflow tracking, model registration with lineage, and the promotion gate.

    r1ov register --set model_dir=out/grpo --set metrics_uri=out/eval/metrics.json
    r1ov promote --set metric=overall/accuracy --set min_improvement=0.01

A checkpoint is a ``save_pretrained`` directory. :func:`register` logs it as run artifacts
under ``model`` and creates a model version whose source is that artifact directory
(``MlflowClient.create_model_version``; ``mlflow.register_model`` refuses plain artifact
directories in MLflow 3), tagged with its lineage and eval metrics, then points an alias
(``challenger``) at it. :func:`promote` moves ``champion`` to the challenger only when its
metric clears the floor and beats the current champion, and always says why. Serving
resolves ``models:/NAME@champion`` (:func:`fetch`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from r1ov import storage
from r1ov.config import PromoteConfig, RegisterConfig, TrackingConfig

# Must be set before mlflow is imported anywhere in the process: no usage pings from jobs.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

PARENT_RUN_TAG = "mlflow.parentRunId"
METRIC_TAG_PREFIX = "metric."
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")


# --------------------------------------------------------------------------- tracking


def metric_key(name: str) -> str:
    """``name`` made safe as an MLflow metric or tag key (no odd characters, no path tricks)."""
    parts = [_UNSAFE.sub("_", p).strip() or "_" for p in name.split("/")]
    return "/".join("_" if p in {".", ".."} else p for p in parts)


def client_for(tracking: TrackingConfig) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking.tracking_uri, registry_uri=tracking.tracking_uri)


def experiment_id(client: MlflowClient, tracking: TrackingConfig) -> str:
    """The experiment's id, created (with ``artifact_location`` when set) if missing."""
    experiment = client.get_experiment_by_name(tracking.experiment)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(tracking.experiment, artifact_location=tracking.artifact_location)
    except MlflowException:
        # Another task created it between our look-up and our create.
        experiment = client.get_experiment_by_name(tracking.experiment)
        if experiment is None:
            raise
        return experiment.experiment_id


def start_run(client: MlflowClient, tracking: TrackingConfig, default_name: str, tags: dict[str, str]) -> str:
    """Create a run (nested under ``tracking.parent_run_id`` when given); returns its id."""
    run_tags = {**tracking.tags, **tags}
    if tracking.parent_run_id:
        run_tags[PARENT_RUN_TAG] = tracking.parent_run_id
    run = client.create_run(experiment_id(client, tracking), run_name=tracking.run_name or default_name, tags=run_tags)
    return run.info.run_id


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


def _git_commit(configured: str | None) -> str | None:
    if configured:
        return configured
    if os.environ.get("R1OV_GIT_COMMIT"):
        return os.environ["R1OV_GIT_COMMIT"]
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip() if result.returncode == 0 else ""
    return commit or None


# --------------------------------------------------------------------------- register


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(name, description="R1-Onevision reasoning VLM (r1ov)")
        except MlflowException:
            client.get_registered_model(name)  # created concurrently; anything else re-raises


def _log_model_dir(client: MlflowClient, run_id: str, model_dir: str) -> None:
    if storage.is_remote(model_dir):
        with tempfile.TemporaryDirectory(prefix="r1ov-model-") as tmp:
            storage.copy_tree(model_dir, tmp)
            client.log_artifacts(run_id, tmp, artifact_path="model")
        return
    path = storage.local_path(model_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"model_dir {model_dir} is not a directory")
    client.log_artifacts(run_id, str(path), artifact_path="model")


def register(cfg: RegisterConfig) -> dict[str, Any]:
    """Log ``cfg.model_dir`` as a run's artifacts, register it as a new version, set ``cfg.alias``."""
    client = client_for(cfg.tracking)
    commit = _git_commit(cfg.git_commit)
    lineage = {f"lineage.{k}": v for k, v in sorted(cfg.lineage.items())}
    lineage["lineage.model_dir"] = cfg.model_dir
    if commit:
        lineage["lineage.git_commit"] = commit
    if cfg.metrics_uri:
        lineage["lineage.metrics_uri"] = cfg.metrics_uri
    if cfg.tracking.parent_run_id:
        lineage["lineage.parent_run_id"] = cfg.tracking.parent_run_id
    run_id = start_run(client, cfg.tracking, f"register-{cfg.model_name}", {**lineage, "r1ov.stage": "register"})
    try:
        _log_model_dir(client, run_id, cfg.model_dir)
        metrics = read_metrics(cfg.metrics_uri) if cfg.metrics_uri else {}
        log_metrics(client, run_id, metrics)
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id)

    _ensure_registered_model(client, cfg.model_name)
    source = f"{client.get_run(run_id).info.artifact_uri}/model"
    version_tags = {**lineage, **{f"{METRIC_TAG_PREFIX}{metric_key(k)}": repr(v) for k, v in metrics.items()}}
    version = client.create_model_version(
        cfg.model_name, source=source, run_id=run_id, tags=version_tags, description=cfg.description
    )
    client.set_registered_model_alias(cfg.model_name, cfg.alias, version.version)
    log.info("registered %s version %s from %s as @%s", cfg.model_name, version.version, cfg.model_dir, cfg.alias)
    return {
        "model_name": cfg.model_name,
        "version": str(version.version),
        "alias": cfg.alias,
        "run_id": run_id,
        "source": source,
    }


# --------------------------------------------------------------------------- promote


def _by_alias(client: MlflowClient, name: str, alias: str) -> Any | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def version_metric(client: MlflowClient, version: Any, metric: str) -> float | None:
    """The version's metric: its ``metric.<name>`` tag, else the value logged on its run."""
    tag = (version.tags or {}).get(f"{METRIC_TAG_PREFIX}{metric_key(metric)}")
    if tag is not None:
        try:
            return float(tag)
        except ValueError:
            log.warning("version %s: tag for %s is not a number: %r", version.version, metric, tag)
    if version.run_id:
        try:
            value = client.get_run(version.run_id).data.metrics.get(metric_key(metric))
        except MlflowException:
            value = None
        if value is not None:
            return float(value)
    return None


def _describe(version: Any | None, value: float | None) -> dict[str, Any] | None:
    return None if version is None else {"version": str(version.version), "value": value}


def promote(cfg: PromoteConfig) -> dict[str, Any]:
    """Move ``cfg.target_alias`` to the ``cfg.candidate_alias`` version when the gate passes."""
    client = client_for(cfg.tracking)
    candidate = _by_alias(client, cfg.model_name, cfg.candidate_alias)
    champion = _by_alias(client, cfg.model_name, cfg.target_alias)
    champion_value = version_metric(client, champion, cfg.metric) if champion is not None else None
    result: dict[str, Any] = {
        "promoted": False,
        "reasons": [],
        "model_name": cfg.model_name,
        "metric": cfg.metric,
        "candidate": None,
        "champion_before": _describe(champion, champion_value),
        "champion_after": _describe(champion, champion_value),
    }
    reasons: list[str] = result["reasons"]
    if candidate is None:
        reasons.append(f"no version of {cfg.model_name!r} has alias {cfg.candidate_alias!r}; nothing to promote")
        return _finish(result)
    value = version_metric(client, candidate, cfg.metric)
    result["candidate"] = _describe(candidate, value)
    label = f"candidate version {candidate.version}"

    if value is None:
        reasons.append(f"{label} has no metric {cfg.metric!r}; never promoted without it")
    elif value != value:  # NaN: an empty benchmark
        reasons.append(f"{label} has {cfg.metric} = NaN; never promoted without a value")
    elif value < cfg.min_value:
        reasons.append(f"{label}: {cfg.metric} = {value:.4f} is below the floor {cfg.min_value:.4f}")
    elif champion is not None and str(champion.version) == str(candidate.version):
        reasons.append(f"{label} already holds {cfg.target_alias!r}")
    elif champion is not None and champion_value is not None and value < champion_value + cfg.min_improvement:
        reasons.append(
            f"{label}: {cfg.metric} = {value:.4f} does not beat {cfg.target_alias} version {champion.version} "
            f"({champion_value:.4f}) by {cfg.min_improvement:.4f}"
        )
    else:
        reasons.append(f"{label}: {cfg.metric} = {value:.4f} clears the floor {cfg.min_value:.4f}")
        if champion is None:
            reasons.append(f"no current {cfg.target_alias!r}")
        elif champion_value is None:
            reasons.append(f"{cfg.target_alias} version {champion.version} has no {cfg.metric}; compared on floor only")
        else:
            reasons.append(
                f"beats {cfg.target_alias} version {champion.version} ({champion_value:.4f}) "
                f"by {value - champion_value:+.4f} >= {cfg.min_improvement:.4f}"
            )
        client.set_registered_model_alias(cfg.model_name, cfg.target_alias, candidate.version)
        result["promoted"] = True
        result["champion_after"] = _describe(candidate, value)
        if cfg.endpoint is not None:  # the serving pods resolve the alias at start: restart them onto it
            from r1ov.k8s.endpoint import roll_to_version

            result["endpoint"] = roll_to_version(cfg.endpoint, str(candidate.version))

    # The decision stays on the candidate version, for whoever audits the alias history later.
    decision = {"promoted": result["promoted"], "reasons": reasons, "at": datetime.now(UTC).isoformat()}
    client.set_model_version_tag(
        cfg.model_name, candidate.version, f"r1ov.gate.{cfg.target_alias}", json.dumps(decision)
    )
    return _finish(result)


def _finish(result: dict[str, Any]) -> dict[str, Any]:
    log.info("promotion %s: %s", "passed" if result["promoted"] else "refused", "; ".join(result["reasons"]))
    return result


# --------------------------------------------------------------------------- fetch


def fetch(model_name: str, alias: str, dst: str | Path, tracking: TrackingConfig | None = None) -> Path:
    """Download the files of ``models:/NAME@ALIAS`` into ``dst``; returns the local model directory.

    The alias is resolved with a client bound to ``tracking`` rather than through the
    ``models:/`` URI, which MLflow resolves against the process-global registry URI.
    """
    from mlflow.artifacts import download_artifacts

    tracking = tracking or TrackingConfig()
    client = client_for(tracking)
    version = client.get_model_version_by_alias(model_name, alias)
    source = client.get_model_version_download_uri(model_name, version.version)
    Path(dst).mkdir(parents=True, exist_ok=True)
    path = download_artifacts(
        artifact_uri=source, dst_path=str(dst), tracking_uri=tracking.tracking_uri, registry_uri=tracking.tracking_uri
    )
    log.info("fetched models:/%s@%s (version %s) into %s", model_name, alias, version.version, path)
    return Path(path)
