"""The promotion gate, and rolling ``champion`` back: aliases move only on evidence.

    r1ov registry promote r1ov-qwen2.5-vl 7                 # through the gate
    r1ov registry promote r1ov-qwen2.5-vl 7 --force --reason "hotfix, eval rerun pending"
    r1ov registry rollback r1ov-qwen2.5-vl

The gate compares a given version (the one a pipeline run registered, never whoever holds
``challenger`` now) with the current champion, or with the base model when there is none,
item by item on the same benchmark items (:mod:`r1ov.scoring.paired`: McNemar's exact test and
a paired bootstrap interval). It refuses when the two were scored on different benchmarks or
items, when the candidate is not better, or when the gain could be chance. Its decision and
numbers are written on the candidate version (tag ``r1ov.gate.<alias>``). A refusal is a
normal outcome; an unknown model or version, or a registry that cannot be reached, raises.
Nothing moves an alias until every check has passed, so a failed call changes nothing.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from datetime import UTC, datetime
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from r1ov.config import EndpointConfig, PromoteConfig, TrackingConfig
from r1ov.errors import RegistryError
from r1ov.registry.models import METRIC_TAG_PREFIX, VERDICTS_ARTIFACT, get_version
from r1ov.registry.tracking import client_for, metric_key, start_run
from r1ov.scoring.paired import compare
from r1ov.scoring.verdicts import read_verdicts

log = logging.getLogger(__name__)

GATE_TAG = "r1ov.gate.{alias}"
PREVIOUS_TAG = "r1ov.previous.{alias}"  # on a promoted version: the version that held the alias before


def _by_alias(client: MlflowClient, name: str, alias: str) -> Any | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def version_metric(version: Any, metric: str, client: MlflowClient | None = None) -> float | None:
    """``metric`` of a version: its tag (headline metrics), else the metric logged on its run."""
    tag = (version.tags or {}).get(f"{METRIC_TAG_PREFIX}{metric_key(metric)}")
    if tag is None and client is not None and version.run_id:
        return client.get_run(version.run_id).data.metrics.get(metric_key(metric))
    try:
        return None if tag is None else float(tag)
    except ValueError:
        return None


def version_verdicts(client: MlflowClient, version: Any) -> dict[str, bool] | None:
    """The per-item verdicts registered with ``version`` (None when it has none)."""
    if not version.run_id:
        return None
    with tempfile.TemporaryDirectory(prefix="r1ov-verdicts-") as tmp:
        try:
            path = client.download_artifacts(version.run_id, VERDICTS_ARTIFACT, tmp)
        except (MlflowException, OSError):
            return None
        return read_verdicts(path)


def _benchmarks(verdicts: dict[str, bool]) -> set[str]:
    return {key.split("/", 1)[0] for key in verdicts}


def _judge(cfg: PromoteConfig, candidate: dict[str, bool], reference: dict[str, bool], against: str) -> dict:
    """The paired comparison and the gate's verdict on it: ``{"passed", "reasons", "comparison"}``."""
    if _benchmarks(candidate) != _benchmarks(reference):
        reason = (
            f"scored on other benchmarks than {against}: {sorted(_benchmarks(candidate))} vs "
            f"{sorted(_benchmarks(reference))}; compare like with like"
        )
        return {"passed": False, "reasons": [reason], "comparison": None}
    if set(candidate) != set(reference):
        only_c, only_r = len(set(candidate) - set(reference)), len(set(reference) - set(candidate))
        reason = (
            f"scored on other items than {against} ({only_c} items only in the candidate's set, {only_r} only in "
            f"{against}'s): evaluate both on the same items"
        )
        return {"passed": False, "reasons": [reason], "comparison": None}
    result = compare(reference, candidate, samples=cfg.bootstrap_samples, seed=0)
    numbers = (
        f"accuracy {result.accuracy_b:.4f} vs {against} {result.accuracy_a:.4f} on {result.n} items: "
        f"difference {result.difference:+.4f} (95% CI [{result.ci95[0]:+.4f}, {result.ci95[1]:+.4f}]), "
        f"McNemar p = {result.p_value:.4g} ({result.only_b_correct} items won, {result.only_a_correct} lost)"
    )
    if result.difference <= 0 or result.difference < cfg.min_improvement:
        reason = f"not better than {against} by {cfg.min_improvement:.4f}: {numbers}"
        return {"passed": False, "reasons": [reason], "comparison": result.to_dict()}
    if result.p_value >= cfg.alpha:
        reason = f"gain over {against} could be chance (p >= alpha {cfg.alpha}): {numbers}"
        return {"passed": False, "reasons": [reason], "comparison": result.to_dict()}
    return {"passed": True, "reasons": [f"beats {against}: {numbers}"], "comparison": result.to_dict()}


def _baseline(cfg: PromoteConfig) -> dict[str, bool] | None:
    return read_verdicts(cfg.baseline_verdicts_uri) if cfg.baseline_verdicts_uri else None


def decide(client: MlflowClient, cfg: PromoteConfig, candidate: Any, champion: Any | None) -> dict[str, Any]:
    """The gate's decision on ``candidate`` (no side effects)."""
    label = f"version {candidate.version}"
    # First: re-promoting the holder moves nothing, whatever its metrics say.
    if champion is not None and str(champion.version) == str(candidate.version):
        return {"passed": False, "reasons": [f"{label} already holds {cfg.target_alias!r}"]}
    value = version_metric(candidate, cfg.metric, client)
    if value is None or math.isnan(value):
        return {"passed": False, "reasons": [f"{label} has no {cfg.metric}; never promoted without it"]}
    if value < cfg.min_value:
        reason = f"{label}: {cfg.metric} = {value:.4f} is below the floor {cfg.min_value:.4f}"
        return {"passed": False, "reasons": [reason]}
    verdicts = version_verdicts(client, candidate)
    if verdicts is None:
        return {"passed": False, "reasons": [f"{label} has no per-item verdicts to compare; register them with it"]}
    if champion is not None:
        reference = version_verdicts(client, champion)
        against = f"{cfg.target_alias} version {champion.version}"
        if reference is None:
            return {"passed": False, "reasons": [f"{against} has no per-item verdicts to compare with"]}
    else:
        reference = _baseline(cfg)
        against = "the base model"
        if reference is None:
            reason = f"no {cfg.target_alias!r} yet and no base-model verdicts (baseline_verdicts_uri) to compare with"
            return {"passed": False, "reasons": [reason]}
    return _judge(cfg, verdicts, reference, against)


def promote(cfg: PromoteConfig) -> dict[str, Any]:
    """Move ``cfg.target_alias`` to ``cfg.version`` when the gate passes (or ``cfg.force``); say why."""
    client = client_for(cfg.tracking)
    candidate = get_version(client, cfg.model_name, cfg.version)
    champion = _by_alias(client, cfg.model_name, cfg.target_alias)
    decision = decide(client, cfg, candidate, champion)
    promoted = decision["passed"] or cfg.force
    reasons = list(decision["reasons"])
    if cfg.force and not decision["passed"]:
        reasons.append(f"forced: {cfg.reason}")
    record = {
        "promoted": promoted,
        "forced": bool(cfg.force and not decision["passed"]),
        "reasons": reasons,
        "comparison": decision.get("comparison"),
        "champion_before": None if champion is None else str(champion.version),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    run_id = _log_decision(client, cfg, candidate, record)
    # The decision stays on the version, for whoever audits the alias history later.
    client.set_model_version_tag(
        cfg.model_name, candidate.version, GATE_TAG.format(alias=cfg.target_alias), json.dumps(record)
    )
    already = champion is not None and str(champion.version) == str(candidate.version)
    if promoted and not already:  # a forced re-promotion of the champion moves nothing
        before = "" if champion is None else str(champion.version)
        # The endpoint first: its pods serve the version their template names, so a roll the API
        # refuses leaves alias and endpoint agreeing on the old champion instead of disagreeing.
        if cfg.endpoint is not None:
            record["endpoint"] = _roll(cfg.endpoint, str(candidate.version))
        client.set_model_version_tag(
            cfg.model_name, candidate.version, PREVIOUS_TAG.format(alias=cfg.target_alias), before
        )
        client.set_registered_model_alias(cfg.model_name, cfg.target_alias, candidate.version)
    log.info(
        "%s version %s %s %s: %s",
        cfg.model_name, candidate.version, "promoted to" if promoted else "not promoted to",
        cfg.target_alias, "; ".join(reasons),
    )  # fmt: skip
    return {
        "model_name": cfg.model_name,
        "version": str(candidate.version),
        "alias": cfg.target_alias,
        "champion_after": str(candidate.version) if promoted else record["champion_before"],
        "mlflow_run_id": run_id,
        **record,
    }


def _log_decision(client: MlflowClient, cfg: PromoteConfig, candidate: Any, record: dict[str, Any]) -> str | None:
    """A ``promote`` run (nested under the pipeline run when given) with the decision's numbers."""
    if not cfg.track:
        return None
    run_id = start_run(
        client, cfg.tracking, f"promote-{cfg.model_name}", {"r1ov.stage": "promote", "r1ov.version": candidate.version}
    )
    comparison = record.get("comparison") or {}
    metrics = {"promoted": float(record["promoted"])}
    metrics.update(
        {k: float(v) for k, v in comparison.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    )
    for key, value in metrics.items():
        client.log_metric(run_id, key, value)
    client.log_param(run_id, "version", candidate.version)
    client.log_param(run_id, "reasons", "; ".join(record["reasons"])[:6000])
    client.set_terminated(run_id)
    return run_id


def _roll(endpoint: EndpointConfig, version: str) -> dict[str, Any]:
    """Write ``version`` on the endpoint's pod template (r1ov.k8s.endpoint), which rolls its pods."""
    from r1ov.k8s.endpoint import roll_to_version

    return roll_to_version(endpoint, version)


def rollback(
    model_name: str, tracking: TrackingConfig, alias: str = "champion", endpoint: EndpointConfig | None = None
) -> dict[str, Any]:
    """Point ``alias`` back at the version that held it before the current one, and roll
    ``endpoint`` (when given) onto that version first, as :func:`promote` does."""
    client = client_for(tracking)
    current = _by_alias(client, model_name, alias)
    if current is None:
        get_version(client, model_name, None)  # raises for an unknown model
        raise RegistryError(f"{model_name} has no {alias!r} to roll back")
    previous = (current.tags or {}).get(PREVIOUS_TAG.format(alias=alias))
    if not previous:
        raise RegistryError(f"{model_name} version {current.version} was the first {alias!r}: nothing to roll back to")
    target = get_version(client, model_name, previous)
    result = {"model_name": model_name, "alias": alias, "from": str(current.version), "to": str(target.version)}
    if endpoint is not None:
        result["endpoint"] = _roll(endpoint, str(target.version))
    note = {"rolled_back_to": str(target.version), "at": datetime.now(UTC).isoformat(timespec="seconds")}
    client.set_model_version_tag(model_name, current.version, f"r1ov.rollback.{alias}", json.dumps(note))
    client.set_registered_model_alias(model_name, alias, target.version)
    log.info("%s: %s rolled back from version %s to %s", model_name, alias, current.version, target.version)
    return result


__all__ = ["decide", "promote", "rollback", "version_verdicts"]
