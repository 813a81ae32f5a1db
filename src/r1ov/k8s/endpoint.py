"""Promotion reaches the endpoint: roll the inference chart's serving pods when the champion alias moves.

The r1ov-inference chart serves ``models:/NAME@champion``: its init container (or, with KServe,
the storage initializer) resolves the alias when a pod starts, so moving the alias alone changes
nothing until pods restart. After the registry moves the alias, :func:`roll_to_version` writes the
resolved version into an annotation of the serving pods' template:

- the chart's own Deployment: ``spec.template.metadata.annotations``; a changed template is a new
  ReplicaSet, so Kubernetes replaces the replicas with the chart's rolling-update settings (new
  pods ready before old ones go);
- KServe's InferenceService: ``spec.predictor.annotations``, which KServe copies onto the
  predictor's pod template; a changed template is a new revision (Serverless: a new Knative
  revision that takes the traffic once ready; RawDeployment/Standard: a rolling update of the
  predictor's Deployment).

The same version leaves the template, and the serving pods, untouched.
"""

from __future__ import annotations

import logging
from typing import Any

from kubernetes.client import ApiClient

from r1ov.config import EndpointConfig

log = logging.getLogger(__name__)

# The chart's templates carry the same key (charts/r1ov-inference, deployment.yaml).
VERSION_ANNOTATION = "r1ov.io/model-version"

# kind -> (apiVersion, path from the object to the annotations that reach the serving pods)
TARGETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Deployment": ("apps/v1", ("spec", "template", "metadata", "annotations")),
    "InferenceService": ("serving.kserve.io/v1beta1", ("spec", "predictor", "annotations")),
}


def served_version(obj: dict[str, Any]) -> str | None:
    """The model version an endpoint's serving pods were last rolled to (None before the first roll)."""
    _, path = TARGETS[obj.get("kind", "Deployment")]
    node: Any = obj
    for key in path:
        node = (node or {}).get(key)
    return (node or {}).get(VERSION_ANNOTATION)


def roll_to_version(endpoint: EndpointConfig, version: str, *, api_client: ApiClient | None = None) -> dict[str, Any]:
    """Set the endpoint's pod-template annotation to ``version`` unless it is there already.

    Server-side apply of that one field: the chart (Helm) keeps owning everything else, and a
    later ``helm upgrade`` leaves the annotation alone because the chart does not render it.
    """
    from r1ov.k8s import client, kinds

    api_client = api_client or client.load_api_client()
    target = version_patch(endpoint.deployment, version, kind=endpoint.kind)
    # Raw JSON: only one annotation matters, and a typed model would reject partial objects.
    current = client._call(
        api_client,
        kinds.object_path(target, endpoint.namespace),
        "GET",
        header_params={"Accept": "application/json"},
    )
    before = served_version({**current, "kind": endpoint.kind})
    name = f"{endpoint.namespace}/{endpoint.deployment}"
    result = {"deployment": name, "before": before, "version": str(version)}
    if endpoint.kind != "Deployment":
        result["kind"] = endpoint.kind
    if before == str(version):
        log.info("endpoint %s %s already serves version %s", endpoint.kind, name, version)
        return {**result, "rolled": False}
    client.apply([target], endpoint.namespace, api_client=api_client)
    log.info("endpoint %s %s rolls from version %s to %s", endpoint.kind, name, before, version)
    return {**result, "rolled": True}


def version_patch(name: str, version: str, *, kind: str = "Deployment") -> dict[str, Any]:
    """The apply configuration that holds only the version annotation of the serving pods' template."""
    api_version, path = TARGETS[kind]
    node: dict[str, Any] = {VERSION_ANNOTATION: str(version)}
    for key in reversed(path[1:]):
        node = {key: node}
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}, "spec": node}
