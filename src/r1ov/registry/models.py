"""Model registration with lineage, version look-ups and downloads (MLflow model registry).

    r1ov register --set model_dir=out/grpo --set metrics_uri=out/eval/metrics.json
    r1ov promote --set metric=overall/accuracy --set min_improvement=0.01

A checkpoint is a ``save_pretrained`` directory. :func:`register` logs it as run artifacts
under ``model`` and creates a model version whose source is that artifact directory
(``MlflowClient.create_model_version``; ``mlflow.register_model`` refuses plain artifact
directories in MLflow 3), tagged with its lineage and eval metrics, then points an alias
(``challenger``) at it. :func:`r1ov.registry.promotion.promote` moves ``champion`` to the
challenger only when its metric clears the floor and beats the current champion, and always
says why. Serving resolves ``models:/NAME@champion`` (:func:`fetch`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from r1ov.config import RegisterConfig, TrackingConfig
from r1ov.data import storage
from r1ov.errors import RegistryError
from r1ov.registry.tracking import client_for, log_metrics, metric_key, read_metrics, start_run

# Must be set before mlflow is imported anywhere in the process: no usage pings from jobs.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

VERDICTS_ARTIFACT = "eval/verdicts.jsonl"  # on a register run: the per-item verdicts the gate compares
METRIC_TAG_PREFIX = "metric."
LINEAGE_ARTIFACT = "lineage.json"  # on the version's run: every lineage fact and metric
# The lineage facts that are also tags on the version: what someone auditing a version asks first.
KEY_LINEAGE = ("pipeline_run_id", "git_commit", "base_model", "sft_run_id", "grpo_run_id", "parent_run_id")


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


def dataset_fingerprint(uri: str) -> str:
    """SHA-256 of a dataset's record shards (names and bytes): the same data, the same fingerprint."""
    from r1ov.data.records import RECORDS

    digest = hashlib.sha256()
    for shard in storage.list_files(storage.join(uri, RECORDS), ".parquet"):
        digest.update(shard.rsplit("/", 1)[-1].encode())
        digest.update(hashlib.sha256(storage.read_bytes(shard)).digest())
    return digest.hexdigest()


def pipeline_lineage(
    pipeline_run_id: str, base_model: str, models: dict[str, str], data: dict[str, str]
) -> dict[str, str]:
    """Lineage tags of a pipeline's model: run id, base model, training run ids, data URIs and fingerprints."""
    lineage = {"pipeline_run_id": pipeline_run_id, "base_model": base_model}
    for stage, model_dir in models.items():
        summary = storage.join(model_dir, "train_summary.json")
        if storage.exists(summary):
            lineage[f"{stage}_run_id"] = json.loads(storage.read_text(summary)).get("mlflow_run_id") or ""
    for name, uri in data.items():
        if uri:
            lineage[name] = uri
            lineage[f"{name}_fingerprint"] = dataset_fingerprint(uri)
    return {k: v for k, v in lineage.items() if v}


def _verdicts_uri(cfg: RegisterConfig) -> str | None:
    if cfg.verdicts_uri:
        return cfg.verdicts_uri
    if cfg.metrics_uri:
        beside = cfg.metrics_uri.rsplit("/", 1)[0] + "/verdicts.jsonl" if "/" in cfg.metrics_uri else "verdicts.jsonl"
        return beside if storage.exists(beside) else None
    return None


def _log_verdicts(client: MlflowClient, run_id: str, uri: str) -> dict[str, str]:
    """Log the per-item verdicts with the version; returns tags naming the items they cover."""
    from r1ov.scoring.verdicts import read_verdicts

    text = storage.read_text(uri)
    with tempfile.TemporaryDirectory(prefix="r1ov-verdicts-") as tmp:
        Path(tmp, "verdicts.jsonl").write_text(text)
        client.log_artifact(run_id, str(Path(tmp, "verdicts.jsonl")), artifact_path=VERDICTS_ARTIFACT.rsplit("/", 1)[0])
    verdicts = read_verdicts(uri)
    items = hashlib.sha256("\n".join(sorted(verdicts)).encode()).hexdigest()[:16]
    benchmarks = sorted({key.split("/", 1)[0] for key in verdicts})
    return {"r1ov.eval.items": items, "r1ov.eval.n": str(len(verdicts)), "r1ov.eval.benchmarks": ",".join(benchmarks)}


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
    lineage = dict(sorted(cfg.lineage.items()))
    lineage["model_dir"] = cfg.model_dir
    if commit:
        lineage["git_commit"] = commit
    if cfg.metrics_uri:
        lineage["metrics_uri"] = cfg.metrics_uri
    if cfg.tracking.parent_run_id:
        lineage["parent_run_id"] = cfg.tracking.parent_run_id
    # The whole lineage is one JSON artifact; a few key facts are tags, short enough for the UI's
    # version page (dozens of long tags there are truncated and unreadable).
    key_tags = {f"lineage.{k}": str(lineage[k]) for k in KEY_LINEAGE if lineage.get(k)}
    key_tags["lineage.artifact"] = LINEAGE_ARTIFACT
    verdicts_uri = _verdicts_uri(cfg)
    run_id = start_run(client, cfg.tracking, f"register-{cfg.model_name}", {**key_tags, "r1ov.stage": "register"})
    try:
        _log_model_dir(client, run_id, cfg.model_dir)
        metrics = read_metrics(cfg.metrics_uri) if cfg.metrics_uri else {}
        log_metrics(client, run_id, metrics)
        if verdicts_uri:
            key_tags.update(_log_verdicts(client, run_id, verdicts_uri))
        client.log_dict(run_id, {"lineage": lineage, "metrics": metrics}, LINEAGE_ARTIFACT)
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id)

    _ensure_registered_model(client, cfg.model_name)
    source = f"{client.get_run(run_id).info.artifact_uri}/model"
    # Headline metrics as tags (the gate and `registry list` read them); every metric is on the run.
    headline = {k: v for k, v in metrics.items() if k.startswith("overall/")}
    version_tags = {**key_tags, **{f"{METRIC_TAG_PREFIX}{metric_key(k)}": repr(v) for k, v in headline.items()}}
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


# --------------------------------------------------------------------------- look-ups


def get_version(client: MlflowClient, name: str, version: str | None) -> Any:
    """Model version ``version`` of ``name`` (the model itself is checked when ``version`` is None)."""
    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise RegistryError(f"no registered model named {name!r}") from None
        raise
    if version is None:
        return model
    try:
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        if exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
            raise RegistryError(f"{name} has no version {version!r}") from None
        raise


def list_models(tracking: TrackingConfig, name: str | None = None) -> list[dict[str, Any]]:
    """Registered models with their versions, aliases, accuracy and gate decisions."""
    client = client_for(tracking)
    models = [get_version(client, name, None)] if name else client.search_registered_models()
    out = []
    for model in models:
        by_version: dict[str, list[str]] = {}
        for alias, version in (model.aliases or {}).items():
            by_version.setdefault(str(version), []).append(alias)
        versions = []
        for v in sorted(client.search_model_versions(f"name='{model.name}'"), key=lambda v: int(v.version)):
            tags = v.tags or {}
            gates = {k.removeprefix("r1ov.gate."): json.loads(t) for k, t in tags.items() if k.startswith("r1ov.gate.")}
            versions.append(
                {
                    "version": str(v.version),
                    "aliases": sorted(by_version.get(str(v.version), [])),
                    "accuracy": tags.get(f"{METRIC_TAG_PREFIX}overall/accuracy"),
                    "pipeline_run_id": tags.get("lineage.pipeline_run_id"),
                    "gate": {
                        alias: {"promoted": g.get("promoted"), "forced": g.get("forced"), "reasons": g.get("reasons")}
                        for alias, g in gates.items()
                    },
                }
            )
        aliases = {alias: str(version) for alias, version in (model.aliases or {}).items()}
        out.append({"name": model.name, "aliases": aliases, "versions": versions})
    return out


# --------------------------------------------------------------------------- fetch


_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


def parse_models_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` -> (name, alias, version)."""
    match = _MODELS_URI.match(uri.strip())
    if not match:
        raise RegistryError(f"{uri!r} is not a model URI: expected models:/NAME@ALIAS or models:/NAME/VERSION")
    return match["name"], match["alias"], match["version"]


def fetch(model_name: str, alias: str | None, dst: str | Path, tracking: TrackingConfig | None = None,
          version: str | None = None) -> Path:  # fmt: skip
    """Download the files of ``models:/NAME@ALIAS`` (or ``/VERSION``) into ``dst``; returns ``dst``.

    ``dst`` becomes the model directory itself (config.json at its top), ready for
    ``from_pretrained``. The alias is resolved with a client bound to ``tracking`` rather than
    through the ``models:/`` URI, which MLflow resolves against the process-global registry URI.
    """
    from mlflow.artifacts import download_artifacts

    tracking = tracking or TrackingConfig()
    client = client_for(tracking)
    if alias is not None:
        get_version(client, model_name, None)
        try:
            found = client.get_model_version_by_alias(model_name, alias)
        except MlflowException:
            raise RegistryError(f"{model_name} has no version with alias {alias!r}") from None
    else:
        found = get_version(client, model_name, version)
    source = client.get_model_version_download_uri(model_name, found.version)
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".r1ov-fetch-", dir=dst) as tmp:
        path = Path(
            download_artifacts(
                artifact_uri=source,
                dst_path=tmp,
                tracking_uri=tracking.tracking_uri,
                registry_uri=tracking.tracking_uri,
            )
        )
        for item in path.iterdir():
            target = dst / item.name
            if target.is_dir():
                shutil.rmtree(target)
            item.replace(target)
    log.info("fetched %s version %s into %s", model_name, found.version, dst)
    return dst
