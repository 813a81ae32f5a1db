"""Promotion reaches the endpoint: roll the inference Deployment when the champion alias moves.

The r1ov-inference chart serves ``models:/NAME@champion``: its init container resolves the alias
when a pod starts, so moving the alias alone changes nothing until pods restart. After the
registry moves the alias, :func:`roll_to_version` writes the resolved version into a pod-template
annotation of the chart's Deployment; a changed template is a new ReplicaSet, so Kubernetes
replaces the replicas with the chart's rolling-update settings (new pods ready before old ones
go). The same version leaves the template, and the serving pods, untouched.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from kubernetes.client import ApiClient, AppsV1Api

from r1ov.config import EndpointConfig

log = logging.getLogger(__name__)

# The chart's Deployment template carries the same key (charts/r1ov-inference, deployment.yaml).
VERSION_ANNOTATION = "r1ov.io/model-version"


def served_version(deployment: dict[str, Any]) -> str | None:
    """The model version a Deployment's pod template was last rolled to (None before the first roll)."""
    template = (deployment.get("spec") or {}).get("template") or {}
    return ((template.get("metadata") or {}).get("annotations") or {}).get(VERSION_ANNOTATION)


def roll_to_version(endpoint: EndpointConfig, version: str, *, api_client: ApiClient | None = None) -> dict[str, Any]:
    """Set the Deployment's pod-template annotation to ``version`` unless it is there already.

    Server-side apply of that one field: the chart (Helm) keeps owning everything else, and a
    later ``helm upgrade`` leaves the annotation alone because the chart does not render it.
    """
    from r1ov.k8s import client

    api_client = api_client or client.load_api_client()
    # Raw JSON: only one annotation matters, and the typed model would reject partial test doubles.
    response = AppsV1Api(api_client).read_namespaced_deployment(
        endpoint.deployment, endpoint.namespace, _preload_content=False
    )
    before = served_version(json.loads(response.data))
    result = {"deployment": f"{endpoint.namespace}/{endpoint.deployment}", "before": before, "version": str(version)}
    if before == str(version):
        log.info("endpoint %s already serves version %s", result["deployment"], version)
        return {**result, "rolled": False}
    client.apply([version_patch(endpoint.deployment, version)], endpoint.namespace, api_client=api_client)
    log.info("endpoint %s rolls from version %s to %s", result["deployment"], before, version)
    return {**result, "rolled": True}


def version_patch(deployment: str, version: str) -> dict[str, Any]:
    """The apply configuration that holds only the version annotation of the pod template."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": deployment},
        "spec": {"template": {"metadata": {"annotations": {VERSION_ANNOTATION: str(version)}}}},
    }
