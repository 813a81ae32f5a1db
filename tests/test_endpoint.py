"""Promotion reaches the endpoint: moving ``champion`` rolls the inference Deployment (or KServe's
InferenceService when the chart renders one), nothing else does.

A real MLflow registry (SQLite) decides; the inference chart's Deployment, rendered with Helm,
lives in the Kubernetes API stand-in (r1ov.testing.kube_api), which the promotion reaches over
HTTP through the kubernetes client, as it reaches the API server from its pod. The stand-in
replaces an applied object's spec rather than merging field ownership (see its docstring), so
the test reads only the pod-template annotation and counts the writes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from kubernetes.client import ApiClient, Configuration
from test_charts import validate
from test_registry import aliases, register_version, verdicts_file

from r1ov.config import EndpointConfig, PromoteConfig, TrackingConfig
from r1ov.k8s import client
from r1ov.k8s.endpoint import VERSION_ANNOTATION, served_version, version_patch
from r1ov.registry.promotion import promote, rollback
from r1ov.testing.kube_api import StandInAPI, serve

ROOT = Path(__file__).resolve().parents[1]
NS = "r1ov"


def inference_deployment(values_file: str = "minimal-values.yaml", kind: str = "Deployment") -> dict[str, Any]:
    values = yaml.safe_load((ROOT / "charts/r1ov-inference/ci" / values_file).read_text())
    rendered = helm.Chart.load(str(ROOT / "charts/r1ov-inference")).render(values, name="serve", namespace=NS)
    docs = [
        doc
        for template, text in rendered.items()
        if not template.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if isinstance(doc, dict)
    ]
    (deployment,) = [doc for doc in docs if doc.get("kind") == kind]
    return deployment


def inference_service() -> dict[str, Any]:
    return inference_deployment("kserve-values.yaml", "InferenceService")


def test_the_chart_does_not_render_the_annotation_promotion_owns() -> None:
    """Otherwise every `helm upgrade` would roll the endpoint back to the chart's value."""
    assert served_version(inference_deployment()) is None
    assert served_version(inference_service()) is None


def _merged(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in patch.items():
        out[key] = _merged(base.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def test_the_version_patch_is_a_field_kserve_copies_onto_the_predictor_pods() -> None:
    """``spec.predictor.annotations`` (KServe's component extension: annotations added to the
    component's pods) exists in KServe's CRD, so the API server keeps it and the pod template changes."""
    service = inference_service()
    patch = version_patch(service["metadata"]["name"], "3", kind="InferenceService")
    assert patch["spec"] == {"predictor": {"annotations": {VERSION_ANNOTATION: "3"}}}
    rolled = _merged(service, patch)
    validate(rolled)  # against the vendored KServe v1beta1 CRD, unknown fields refused
    assert served_version(rolled) == "3"
    assert rolled["spec"]["predictor"]["model"] == service["spec"]["predictor"]["model"]


@dataclass
class Promotions:
    """The registry and the endpoint object that promotions of ``model`` roll, in the stand-in API."""

    api: StandInAPI
    key: tuple[str, str, str]  # (resource, namespace, name) of the endpoint object in the stand-in
    tracking: TrackingConfig
    model: str
    baseline: str
    endpoint: EndpointConfig

    def gate(self, version: str) -> PromoteConfig:
        return PromoteConfig(
            model_name=self.model,
            version=version,
            baseline_verdicts_uri=self.baseline,
            tracking=self.tracking,
            endpoint=self.endpoint,
        )

    def writes(self) -> int:
        return sum(1 for method, path, _ in self.api.requests if method == "PATCH" and path.endswith(self.key[2]))

    def stored(self) -> dict[str, Any]:
        return self.api.objects[self.key]


@contextlib.contextmanager
def promotions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, endpoint_object: dict[str, Any], resource: str,
    model: str, experiment: str, kind: str = "Deployment",
) -> Iterator[Promotions]:  # fmt: skip
    tracking = TrackingConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment=experiment)
    tracking.artifact_location = str(tmp_path / "artifacts")
    api = StandInAPI()
    with serve(api) as url:
        configuration = Configuration()
        configuration.host = url
        kube = ApiClient(configuration)
        monkeypatch.setattr(client, "load_api_client", lambda *a, **k: kube)  # in a pod: the in-cluster config
        client.apply([endpoint_object], NS, api_client=kube)
        name = endpoint_object["metadata"]["name"]
        yield Promotions(
            api=api,
            key=(resource, NS, name),
            tracking=tracking,
            model=model,
            baseline=verdicts_file(tmp_path, "base", correct=0),
            endpoint=EndpointConfig(deployment=name, namespace=NS, kind=kind),
        )


def test_promotion_rolls_the_deployment_only_when_champion_moves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with promotions(tmp_path, monkeypatch, inference_deployment(), "deployments", "r1ov-endpoint", "endpoint") as p:

        def template() -> dict[str, Any]:
            return p.stored()["spec"]["template"]

        before = p.writes()
        register_version(tmp_path, p.tracking, p.model, "first", 0.5)
        decision = promote(p.gate("1"))
        assert decision["promoted"] and decision["endpoint"]["rolled"]
        assert template()["metadata"]["annotations"][VERSION_ANNOTATION] == "1"
        assert p.writes() == before + 1
        rolled = template()

        # The champion does not move: a second gate on the same version, then a worse candidate.
        assert not promote(p.gate("1"))["promoted"]
        register_version(tmp_path, p.tracking, p.model, "worse", 0.4)
        assert not promote(p.gate("2"))["promoted"]
        assert template() == rolled and p.writes() == before + 1

        register_version(tmp_path, p.tracking, p.model, "better", 0.7)
        decision = promote(p.gate("3"))
        assert decision["promoted"] and decision["endpoint"] == {
            "deployment": f"{NS}/{p.key[2]}", "before": "1", "version": "3", "rolled": True,
        }  # fmt: skip
        assert template()["metadata"]["annotations"][VERSION_ANNOTATION] == "3"
        assert p.writes() == before + 2
    assert {("apps", "deployments", "get"), ("apps", "deployments", "patch")} <= p.api.calls()


def test_promotion_rolls_the_kserve_predictor_only_when_champion_moves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with promotions(
        tmp_path, monkeypatch, inference_service(), "inferenceservices", "r1ov-kserve", "kserve", "InferenceService"
    ) as p:

        def predictor() -> dict[str, Any]:
            return p.stored()["spec"]["predictor"]

        before = p.writes()
        register_version(tmp_path, p.tracking, p.model, "first", 0.5)
        decision = promote(p.gate("1"))
        assert decision["promoted"] and decision["endpoint"]["rolled"]
        assert predictor()["annotations"][VERSION_ANNOTATION] == "1"
        assert p.writes() == before + 1
        generation = p.stored()["metadata"]["generation"]
        rolled = predictor()

        # The champion does not move: the predictor, its pods' annotations and the generation stay.
        assert not promote(p.gate("1"))["promoted"]
        register_version(tmp_path, p.tracking, p.model, "worse", 0.4)
        assert not promote(p.gate("2"))["promoted"]
        assert predictor() == rolled and p.writes() == before + 1
        assert p.stored()["metadata"]["generation"] == generation

        register_version(tmp_path, p.tracking, p.model, "better", 0.7)
        decision = promote(p.gate("3"))
        assert decision["promoted"] and decision["endpoint"] == {
            "deployment": f"{NS}/{p.key[2]}", "kind": "InferenceService", "before": "1", "version": "3", "rolled": True,
        }  # fmt: skip
        assert predictor()["annotations"][VERSION_ANNOTATION] == "3"
        assert p.stored()["metadata"]["generation"] == generation + 1
        assert p.writes() == before + 2
    assert {("serving.kserve.io", "inferenceservices", "get"), ("serving.kserve.io", "inferenceservices", "patch")} <= (
        p.api.calls()
    )


@pytest.mark.parametrize(
    ("values_file", "resource", "kind"),
    [
        ("minimal-values.yaml", "deployments", "Deployment"),
        ("kserve-values.yaml", "inferenceservices", "InferenceService"),
    ],
    ids=["deployment", "kserve"],
)
def test_rollback_moves_the_alias_and_rolls_the_endpoint_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, values_file: str, resource: str, kind: str
) -> None:
    """Undoing a promotion is one step: champion returns to the previous version and the serving
    pods' template names that version again (the pods serve what it names: test_charts)."""
    endpoint_object = inference_deployment(values_file, kind)
    with promotions(tmp_path, monkeypatch, endpoint_object, resource, "r1ov-undo", "undo", kind) as p:
        register_version(tmp_path, p.tracking, p.model, "first", 0.5)
        assert promote(p.gate("1"))["promoted"]
        register_version(tmp_path, p.tracking, p.model, "better", 0.7)
        assert promote(p.gate("2"))["promoted"]
        assert served_version({**p.stored(), "kind": kind}) == "2"
        writes = p.writes()
        undone = rollback(p.model, p.tracking, endpoint=p.endpoint)
        assert undone["to"] == "1" and undone["endpoint"]["before"] == "2" and undone["endpoint"]["rolled"]
        assert aliases(p.tracking, p.model)["champion"] == "1"
        assert served_version({**p.stored(), "kind": kind}) == "1" and p.writes() == writes + 1


def test_a_roll_the_api_refuses_leaves_the_alias_where_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The endpoint rolls before the alias moves: when the roll fails (here the named Deployment does
    not exist), champion still names the version the endpoint serves, for promotion and rollback."""
    from kubernetes.client.exceptions import ApiException

    with promotions(tmp_path, monkeypatch, inference_deployment(), "deployments", "r1ov-refused", "refused") as p:
        register_version(tmp_path, p.tracking, p.model, "first", 0.5)
        assert promote(p.gate("1"))["promoted"]
        register_version(tmp_path, p.tracking, p.model, "better", 0.7)
        missing = EndpointConfig(deployment="no-such-endpoint", namespace=NS)
        with pytest.raises(ApiException):
            promote(p.gate("2").model_copy(update={"endpoint": missing}))
        assert aliases(p.tracking, p.model)["champion"] == "1"
        assert promote(p.gate("2"))["promoted"]
        with pytest.raises(ApiException):
            rollback(p.model, p.tracking, endpoint=missing)
        assert aliases(p.tracking, p.model)["champion"] == "2"


def test_rollback_from_the_command_line_rolls_the_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`r1ov registry rollback NAME --endpoint NAMESPACE/NAME`, as the chart's NOTES print it."""
    from r1ov.cli import main

    with promotions(tmp_path, monkeypatch, inference_deployment(), "deployments", "r1ov-cli-undo", "cli-undo") as p:
        register_version(tmp_path, p.tracking, p.model, "first", 0.5)
        assert promote(p.gate("1"))["promoted"]
        register_version(tmp_path, p.tracking, p.model, "better", 0.7)
        assert promote(p.gate("2"))["promoted"]
        uri = ["registry", "--tracking-uri", p.tracking.tracking_uri]
        capsys.readouterr()
        assert main([*uri, "rollback", p.model, "--endpoint", "no-namespace"]) == 1
        err = capsys.readouterr().err
        assert "expected NAMESPACE/NAME" in err and "Traceback" not in err
        assert aliases(p.tracking, p.model)["champion"] == "2"
        assert main([*uri, "rollback", p.model, "--endpoint", f"{NS}/{p.key[2]}"]) == 0
        assert aliases(p.tracking, p.model)["champion"] == "1"
        assert served_version(p.stored()) == "1"
