"""Promotion reaches the endpoint: moving ``champion`` rolls the inference Deployment, nothing else does.

A real MLflow registry (SQLite) decides; the inference chart's Deployment, rendered with Helm,
lives in the Kubernetes API stand-in (r1ov.testing.kube_api), which the promotion reaches over
HTTP through the kubernetes client, as it reaches the API server from its pod. The stand-in
replaces an applied object's spec rather than merging field ownership (see its docstring), so
the test reads only the pod-template annotation and counts the writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from kubernetes.client import ApiClient, Configuration
from test_registry import register_version, verdicts_file

from r1ov.config import EndpointConfig, PromoteConfig, TrackingConfig
from r1ov.k8s import client
from r1ov.k8s.endpoint import VERSION_ANNOTATION, served_version
from r1ov.promotion import promote
from r1ov.testing.kube_api import StandInAPI, serve

ROOT = Path(__file__).resolve().parents[1]
NS = "r1ov"


def inference_deployment() -> dict[str, Any]:
    values = yaml.safe_load((ROOT / "charts/r1ov-inference/ci/minimal-values.yaml").read_text())
    rendered = helm.Chart.load(str(ROOT / "charts/r1ov-inference")).render(values, name="serve", namespace=NS)
    docs = [
        doc
        for template, text in rendered.items()
        if not template.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if isinstance(doc, dict)
    ]
    (deployment,) = [doc for doc in docs if doc.get("kind") == "Deployment"]
    return deployment


def test_the_chart_does_not_render_the_annotation_promotion_owns() -> None:
    """Otherwise every `helm upgrade` would roll the endpoint back to the chart's value."""
    assert served_version(inference_deployment()) is None


def test_promotion_rolls_the_deployment_only_when_champion_moves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracking = TrackingConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="endpoint")
    tracking.artifact_location = str(tmp_path / "artifacts")
    model = "r1ov-endpoint"
    api = StandInAPI()
    with serve(api) as url:
        configuration = Configuration()
        configuration.host = url
        kube = ApiClient(configuration)
        monkeypatch.setattr(client, "load_api_client", lambda *a, **k: kube)  # in a pod: the in-cluster config
        deployment = inference_deployment()
        client.apply([deployment], NS, api_client=kube)
        key = ("deployments", NS, deployment["metadata"]["name"])
        endpoint = EndpointConfig(deployment=deployment["metadata"]["name"], namespace=NS)
        base = verdicts_file(tmp_path, "base", correct=0)

        def gate(version: str) -> PromoteConfig:
            return PromoteConfig(
                model_name=model, version=version, baseline_verdicts_uri=base, tracking=tracking, endpoint=endpoint
            )

        def writes() -> int:
            return sum(1 for method, path, _ in api.requests if method == "PATCH" and path.endswith(key[2]))

        def template() -> dict[str, Any]:
            return api.objects[key]["spec"]["template"]

        before = writes()
        register_version(tmp_path, tracking, model, "first", 0.5)
        decision = promote(gate("1"))
        assert decision["promoted"] and decision["endpoint"]["rolled"]
        assert template()["metadata"]["annotations"][VERSION_ANNOTATION] == "1"
        assert writes() == before + 1
        rolled = template()

        # The champion does not move: a second gate on the same version, then a worse candidate.
        assert not promote(gate("1"))["promoted"]
        register_version(tmp_path, tracking, model, "worse", 0.4)
        assert not promote(gate("2"))["promoted"]
        assert template() == rolled and writes() == before + 1

        register_version(tmp_path, tracking, model, "better", 0.7)
        decision = promote(gate("3"))
        assert decision["promoted"] and decision["endpoint"] == {
            "deployment": f"{NS}/{key[2]}", "before": "1", "version": "3", "rolled": True,
        }  # fmt: skip
        assert template()["metadata"]["annotations"][VERSION_ANNOTATION] == "3"
        assert writes() == before + 2
    assert {("apps", "deployments", "get"), ("apps", "deployments", "patch")} <= api.calls()
