"""Helm charts: render offline with the Helm v4 SDK and validate every object they produce.

Each chart is rendered with every ``ci/*-values.yaml`` (and with its defaults). Built-in kinds are
validated with kubernetes-validate (strict schemas of Kubernetes 1.31); custom resources with
jsonschema against the openAPIV3Schema of the CRDs vendored in ``tests/chart_crds`` (Karpenter
NodePool and EC2NodeClass, GKE ComputeClass, ServiceMonitor, KEDA ScaledObject), made strict the
way ``kubectl apply``'s server-side field validation is. jsonschema does not evaluate CEL rules;
the ones the charts could break are asserted directly below.

Where a chart's command meets a real program, the program runs: the model-download init container
runs its rendered command against a local MLflow registry, the MLflow server starts with its
rendered arguments and is probed with in-cluster Host headers, and the ``helm test`` script runs
against a local stand-in of the OpenAI ``/v1/models`` endpoint that checks the bearer key.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

from r1ov import __version__
from r1ov.k8s import bundle

ROOT = Path(__file__).resolve().parents[1]
CHARTS = ROOT / "charts"
CRDS = Path(__file__).resolve().parent / "chart_crds"
CHART_NAMES = ("r1ov-gpu-nodepools", "r1ov-inference", "r1ov-platform")
KUBE_VERSION = "1.31.0"
RELEASE, NAMESPACE = "r1ov", "r1ov"

# Custom resources the charts emit -> (vendored file, served version).
CRD_FILES = {
    ("karpenter.sh/v1", "NodePool"): "karpenter.sh_nodepools.yaml",
    ("karpenter.k8s.aws/v1", "EC2NodeClass"): "karpenter.k8s.aws_ec2nodeclasses.yaml",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitors.yaml",
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobjects.yaml",
    ("cloud.google.com/v1", "ComputeClass"): "cloud.google.com_computeclasses.v1.schema.json",
    ("serving.kserve.io/v1beta1", "InferenceService"): "serving.kserve.io_inferenceservices.yaml",
    ("serving.kserve.io/v1alpha1", "ClusterStorageContainer"): "serving.kserve.io_clusterstoragecontainers.yaml",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "serving.kserve.io_servingruntimes.yaml",
}


# --------------------------------------------------------------------------- helpers


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (PyYAML keeps the last one silently)."""


def _no_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    keys = [loader.construct_object(k, deep=deep) for k, _ in node.value]
    dupes = {k for k in keys if keys.count(k) > 1}
    if dupes:
        raise yaml.constructor.ConstructorError(None, None, f"duplicate keys {sorted(dupes)}", node.start_mark)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def ci_values(chart: str) -> list[Path]:
    return sorted((CHARTS / chart / "ci").glob("*-values.yaml"))


def deployment_values() -> list[Path]:
    """The inference chart's ci configurations that render its own Deployment (not KServe's)."""
    return [p for p in ci_values("r1ov-inference") if not load_values(p).get("kserve", {}).get("enabled")]


def load_values(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_StrictLoader) or {}


_loaded: dict[str, helm.Chart] = {}


def chart(name: str) -> helm.Chart:
    if name not in _loaded:
        _loaded[name] = helm.Chart.load(str(CHARTS / name))
    return _loaded[name]


def render(name: str, values: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Rendered objects as (template, object), NOTES.txt left out."""
    out = chart(name).render(values, name=RELEASE, namespace=NAMESPACE)
    objects = []
    for template, text in sorted(out.items()):
        if template.endswith("NOTES.txt"):
            continue
        for doc in yaml.load_all(text, Loader=_StrictLoader):
            if doc:
                objects.append((template, doc))
    return objects


def notes(name: str, values: dict[str, Any]) -> str:
    out = chart(name).render(values, name=RELEASE, namespace=NAMESPACE)
    return next(text for template, text in out.items() if template.endswith("NOTES.txt"))


def by_kind(objects: list[tuple[str, dict]], kind: str) -> list[dict]:
    return [obj for _, obj in objects if obj["kind"] == kind]


def one(objects: list[tuple[str, dict]], kind: str) -> dict:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def settings_map(objects: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The bundle's settings ConfigMap (the chart also renders MLflow's auth config in small mode)."""
    return next(o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"] == "r1ov-settings")


def pod_specs(objects: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """Every pod spec rendered: Deployments' templates, bare Pods (helm test) and the pod KServe
    makes from an InferenceService."""
    specs = []
    for template, obj in objects:
        if obj["kind"] == "Deployment":
            specs.append((template, obj["spec"]["template"]["spec"]))
        elif obj["kind"] == "Pod":
            specs.append((template, obj["spec"]))
        elif obj["kind"] == "InferenceService":
            specs.append((template, kserve_predictor_pod(objects)))
    return specs


KSERVE_MODEL_DIR = "/mnt/models"  # kserve/kserve v0.20.0 pkg/constants/constants.go DefaultModelLocalMountPath


def kserve_predictor_pod(objects: list[tuple[str, dict]]) -> dict[str, Any]:
    """The predictor pod spec KServe v0.20.0 builds from the rendered InferenceService, its named
    ServingRuntime and ClusterStorageContainer (kserve/kserve v0.20.0):

    - pkg/controller/v1beta1/inferenceservice/components/predictor.go reconcileModel takes the
      runtime the InferenceService names; utils.go MergeRuntimeContainers patches the runtime's
      ``kserve-container`` with the InferenceService's model container, args concatenated
      (runtime + isvc); MergePodSpec takes the runtime's volumes, node selector and tolerations
      under the predictor's pod fields.
    - pkg/webhook/admission/pod/storage_initializer_injector.go: the init container gets the args
      ``[storageUri, /mnt/models]`` and the storage container's spec patched over it
      (GetStorageContainerSpecByName when the predictor names one), and an emptyDir mounted at
      /mnt/models in it and, read-only, in kserve-container.

    Not modelled: the agent/batcher/logger containers, Knative's queue-proxy, Istio sidecars.
    """
    isvc = one(objects, "InferenceService")
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    runtime = next(o for o in by_kind(objects, "ServingRuntime") if o["metadata"]["name"] == model["runtime"])
    assert any(f["name"] == model["modelFormat"]["name"] for f in runtime["spec"]["supportedModelFormats"])
    server = copy.deepcopy(next(c for c in runtime["spec"]["containers"] if c["name"] == "kserve-container"))
    for key, value in model.items():
        if key not in ("modelFormat", "runtime", "storageUri", "args"):
            server[key] = value
    server["args"] = server.get("args", []) + model.get("args", [])
    storage_volume = {"name": "kserve-provision-location", "emptyDir": {}}
    server.setdefault("volumeMounts", []).append(
        {"name": storage_volume["name"], "mountPath": KSERVE_MODEL_DIR, "readOnly": True}
    )
    pod: dict[str, Any] = {
        key: predictor[key]
        for key in ("serviceAccountName", "automountServiceAccountToken", "securityContext", "nodeSelector",
                    "tolerations", "imagePullSecrets")
        if key in predictor
    }  # fmt: skip
    pod["volumes"] = [*copy.deepcopy(runtime["spec"].get("volumes", [])), storage_volume]
    pod["containers"] = [server]
    name = predictor.get("storageContainerName")
    storages = by_kind(objects, "ClusterStorageContainer")
    if name:
        (storage,) = [o for o in storages if o["metadata"]["name"] == name]
        init = copy.deepcopy(storage["spec"]["container"])
        init["args"] = [model["storageUri"], KSERVE_MODEL_DIR]
        init.setdefault("volumeMounts", []).append({"name": storage_volume["name"], "mountPath": KSERVE_MODEL_DIR})
        pod["initContainers"] = [init]
    return pod


def containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec["containers"]


def _strict(schema: Any) -> Any:
    """Forbid unknown fields wherever the CRD schema lists its fields, as strict field validation does."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


_validators: dict[tuple[str, str], jsonschema.protocols.Validator] = {}


def crd_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    key = (api_version, kind)
    if key not in _validators:
        path = CRDS / CRD_FILES[key]
        if path.suffix == ".json":
            schema = json.loads(path.read_text())
        else:
            crd = yaml.safe_load(path.read_text())
            version = api_version.split("/")[1]
            served = {v["name"]: v for v in crd["spec"]["versions"]}
            schema = served[version]["schema"]["openAPIV3Schema"]
        _validators[key] = jsonschema.Draft7Validator(_strict(schema))
    return _validators[key]


def validate(obj: dict[str, Any]) -> None:
    key = (obj["apiVersion"], obj["kind"])
    if key in CRD_FILES:
        errors = sorted(crd_validator(*key).iter_errors(obj), key=lambda e: list(e.absolute_path))
        assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    else:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def tolerates(toleration: dict[str, str], taint: dict[str, str]) -> bool:
    """Kubernetes' toleration-matches-taint rule."""
    if toleration.get("effect") and toleration["effect"] != taint["effect"]:
        return False
    if toleration.get("operator", "Equal") == "Exists":
        return toleration.get("key") in (None, taint["key"])
    return toleration.get("key") == taint["key"] and toleration.get("value", "") == taint.get("value", "")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def arg_after(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


CASES = [(name, path) for name in CHART_NAMES for path in ci_values(name)]


# --------------------------------------------------------------------------- render + validate


@pytest.mark.parametrize(("name", "values_file"), CASES, ids=[f"{n}/{p.name}" for n, p in CASES])
def test_ci_values_render_and_every_object_validates(name: str, values_file: Path) -> None:
    values = load_values(values_file)
    chart(name).validate_schema(values)
    objects = render(name, values)
    assert objects
    for template, obj in objects:
        try:
            validate(obj)
        except (AssertionError, kubernetes_validate.ValidationError) as exc:
            raise AssertionError(f"{template}: {obj['kind']}/{obj['metadata']['name']}: {exc}") from exc


def test_every_chart_has_ci_values_for_its_switches() -> None:
    assert {p.name for p in ci_values("r1ov-gpu-nodepools")} >= {"aws-values.yaml", "gke-values.yaml"}
    kinds = {
        obj["kind"] for path in ci_values("r1ov-inference") for _, obj in render("r1ov-inference", load_values(path))
    }
    assert {
        "HorizontalPodAutoscaler",
        "ScaledObject",
        "ServiceMonitor",
        "InferenceService",
        "ClusterStorageContainer",
        "ServingRuntime",
        "NetworkPolicy",
        "PodDisruptionBudget",
    } <= kinds


def test_platform_defaults_are_production_and_small_mode_is_labelled() -> None:
    """Defaults: PostgreSQL and an object store, so rendering names what to set; SQLite is the labelled small mode."""
    with pytest.raises(helm.HelmRenderError, match=r"mlflow\.artifactsDestination is required"):
        render("r1ov-platform", {})
    small = render("r1ov-platform", load_values(CHARTS / "r1ov-platform/ci/small-values.yaml"))
    for _, obj in small:
        validate(obj)
    assert {obj["kind"] for _, obj in small} == {
        "ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Deployment", "Service", "PersistentVolumeClaim",
        "NetworkPolicy", "Job",  # the Job: the pipeline's and the endpoint's MLflow users (a post-install hook)
    }  # fmt: skip
    for kind in ("Deployment", "PersistentVolumeClaim"):
        assert one(small, kind)["metadata"]["labels"]["r1ov.io/mode"] == "small"
    production = render("r1ov-platform", load_values(CHARTS / "r1ov-platform/ci/postgres-values.yaml"))
    assert "PersistentVolumeClaim" not in {obj["kind"] for _, obj in production}
    assert "r1ov.io/mode" not in one(production, "Deployment")["metadata"]["labels"]
    assert "small" not in notes("r1ov-platform", load_values(CHARTS / "r1ov-platform/ci/postgres-values.yaml")).lower()
    assert "SMALL MODE" in notes("r1ov-platform", load_values(CHARTS / "r1ov-platform/ci/small-values.yaml"))


def test_mlflow_guards_the_alias() -> None:
    """Basic auth on with credentials by Secret reference; only labelled clients reach the port."""
    for path in ("small-values.yaml", "postgres-values.yaml", "sqlite-s3-values.yaml"):
        objects = render("r1ov-platform", load_values(CHARTS / "r1ov-platform/ci" / path))
        container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
        assert container["args"][:2] == ["--app-name", "basic-auth"]
        env = {e["name"]: e for e in container["env"]}
        for name in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
            assert "secretKeyRef" in env[name]["valueFrom"], name
        policy = one(objects, "NetworkPolicy")
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        peers = policy["spec"]["ingress"][0]["from"]
        assert {"podSelector": {"matchLabels": {"r1ov.io/mlflow-client": "true"}}} in peers
        assert {"podSelector": {}} not in peers and {} not in peers  # never "every pod"
    # Who carries the admitted label: every pipeline task, the inference download and its helm test.
    admitted = {"r1ov.io/mlflow-client": "true"}
    _, platform = yaml.safe_load_all((ROOT / "pipelines/r1ov.yaml").read_text())
    for name, executor in platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].items():
        assert executor["podMetadata"]["labels"].items() >= admitted.items(), name
    inference = render("r1ov-inference", MINIMAL_INFERENCE)
    assert one(inference, "Deployment")["spec"]["template"]["metadata"]["labels"].items() >= admitted.items()
    assert one(inference, "Pod")["metadata"]["labels"].items() >= admitted.items()
    with pytest.raises(helm.HelmRenderError, match=r"mlflow\.auth\.existingSecret is required"):
        render("r1ov-platform", {"mlflow": {"backend": "sqlite", "auth": {"existingSecret": ""}}})
    values = load_values(CHARTS / "r1ov-platform/ci/postgres-values.yaml")
    values["mlflow"]["auth"]["configSecret"] = ""
    with pytest.raises(helm.HelmRenderError, match=r"mlflow\.auth\.configSecret is required"):
        render("r1ov-platform", values)


@pytest.mark.parametrize(("name", "values_file"), CASES, ids=[f"{n}/{p.name}" for n, p in CASES])
def test_helm_lint_finds_no_warnings(name: str, values_file: Path) -> None:
    report = helm.lint(str(CHARTS / name), load_values(values_file), namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], (problems, report["errors"])


def test_crd_copies_match_their_recorded_hashes() -> None:
    recorded = dict(re.findall(r"^\| (\S+) \|.*\| ([0-9a-f]{16}) \|$", (CRDS / "SOURCES.md").read_text(), re.M))
    assert set(recorded) == set(CRD_FILES.values())
    for name, digest in recorded.items():
        assert hashlib.sha256((CRDS / name).read_bytes()).hexdigest()[:16] == digest, name


def test_validation_catches_a_broken_object() -> None:
    """The validators are not vacuous: a misspelt field and a bad enum value both fail."""
    nodepool = next(
        p
        for p in by_kind(
            render("r1ov-gpu-nodepools", load_values(CHARTS / "r1ov-gpu-nodepools/ci/aws-values.yaml")), "NodePool"
        )
        if "taints" in p["spec"]["template"]["spec"]
    )
    typo = copy.deepcopy(nodepool)
    typo["spec"]["disruption"]["consolidateAftr"] = typo["spec"]["disruption"].pop("consolidateAfter")
    with pytest.raises(AssertionError, match="consolidateAftr"):
        validate(typo)
    bad = copy.deepcopy(nodepool)
    bad["spec"]["template"]["spec"]["taints"][0]["effect"] = "NoScheduel"
    with pytest.raises(AssertionError, match="NoScheduel"):
        validate(bad)
    deployment = one(
        render("r1ov-inference", load_values(CHARTS / "r1ov-inference/ci/minimal-values.yaml")), "Deployment"
    )
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)


# --------------------------------------------------------------------------- required values and schema

MINIMAL_INFERENCE = {
    "model": {"name": "r1ov-7b"},
    "mlflow": {"trackingUri": "http://mlflow:5000", "existingSecret": "creds"},
    "apiKey": {"existingSecret": "key"},
}


def _without(values: dict, dotted: str) -> dict:
    values = copy.deepcopy(values)
    *parents, leaf = dotted.split(".")
    node = values
    for part in parents:
        node = node[part]
    del node[leaf]
    return values


def _merged(values: dict, extra: dict) -> dict:
    out = copy.deepcopy(values)
    for key, value in extra.items():
        out[key] = _merged(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


SMALL_PLATFORM = {"mlflow": {"backend": "sqlite"}}  # the chart's small mode: renders with no site values

REQUIRED = [
    ("r1ov-gpu-nodepools", {}, "aws.clusterName is required with provider=aws: set it to your EKS cluster name"),
    ("r1ov-inference", {}, "model.name is required: set it to the MLflow registered model"),
    ("r1ov-inference", _without(MINIMAL_INFERENCE, "mlflow.trackingUri"), "mlflow.trackingUri is required: set it"),
    ("r1ov-inference", _without(MINIMAL_INFERENCE, "apiKey.existingSecret"), "apiKey.existingSecret is required"),
    ("r1ov-inference", _without(MINIMAL_INFERENCE, "mlflow.existingSecret"), "or set mlflow.workloadIdentity=true"),
    (
        "r1ov-inference",
        _merged(MINIMAL_INFERENCE, {"autoscaling": {"mode": "keda"}}),
        "autoscaling.keda.prometheusServerAddress is required with autoscaling.mode=keda: set it",
    ),
    (
        "r1ov-inference",
        _merged(MINIMAL_INFERENCE, {"modelStorage": {"type": "pvc"}}),
        "modelStorage.existingClaim is required with modelStorage.type=pvc",
    ),
    (
        "r1ov-platform",
        {"mlflow": {"enabled": False}},
        "settings.mlflowTrackingUri is required when mlflow.enabled=false",
    ),
    (
        "r1ov-platform",
        {"mlflow": {"backend": "postgres", "artifactsDestination": "s3://b/m", "postgres": {"existingSecret": ""}}},
        "mlflow.postgres.existingSecret is required with mlflow.backend=postgres",
    ),
    (
        "r1ov-platform",
        {"mlflow": {"backend": "postgres", "postgres": {"existingSecret": "db"}}},
        "mlflow.artifactsDestination is required with mlflow.backend=postgres: set it",
    ),
    (
        "r1ov-platform",
        {"mlflow": {"backend": "sqlite", "workers": 2}},
        "mlflow.workers must be 1 with mlflow.backend=sqlite",
    ),
]


@pytest.mark.parametrize(("name", "values", "message"), REQUIRED, ids=[m.split(" ")[0] for _, _, m in REQUIRED])
def test_missing_required_value_fails_render_with_instructions(name: str, values: dict, message: str) -> None:
    with pytest.raises(helm.HelmRenderError) as info:
        chart(name).render(values, name=RELEASE, namespace=NAMESPACE)
    assert message in str(info.value)


def test_minimal_inference_values_render() -> None:
    assert render("r1ov-inference", MINIMAL_INFERENCE)
    assert render(
        "r1ov-inference",
        _merged(_without(MINIMAL_INFERENCE, "mlflow.existingSecret"), {"mlflow": {"workloadIdentity": True}}),
    )


@pytest.mark.parametrize(
    ("name", "values", "fragment"),
    [
        ("r1ov-gpu-nodepools", {"provider": "azure"}, "provider"),
        ("r1ov-gpu-nodepools", {"pools": {"inference": {}}}, "inference"),
        ("r1ov-gpu-nodepools", {"aws": {"clusterName": "c", "amiAlias": "al2023"}}, "amiAlias"),
        ("r1ov-inference", _merged(MINIMAL_INFERENCE, {"image": {"tag": "latest"}}), "tag"),
        ("r1ov-inference", _merged(MINIMAL_INFERENCE, {"autoscaling": {"mode": "vpa"}}), "mode"),
        ("r1ov-inference", _merged(MINIMAL_INFERENCE, {"vllm": {"gpus": 0}}), "gpus"),
        ("r1ov-inference", _merged(MINIMAL_INFERENCE, {"modle": {"name": "x"}}), "modle"),
        ("r1ov-platform", {"mlflow": {"backend": "mysql"}}, "backend"),
        ("r1ov-platform", {"settings": {"imageTag": "latest"}}, "imageTag"),
    ],
)
def test_schema_rejects_bad_values(name: str, values: dict, fragment: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=fragment):
        chart(name).render(values, name=RELEASE, namespace=NAMESPACE)


# --------------------------------------------------------------------------- one vocabulary with r1ov.k8s.bundle


def test_nodepool_defaults_use_the_bundle_vocabulary() -> None:
    values = chart("r1ov-gpu-nodepools").values
    assert tuple(sorted(values["pools"])) == tuple(sorted(bundle.POOLS))
    assert values["poolLabel"] == bundle.POOL_LABEL
    assert values["gpuTaint"]["key"] == bundle.GPU_TAINT["key"]
    assert values["gpuTaint"]["effect"] == bundle.GPU_TAINT["effect"]
    assert all(values["pools"][pool]["enabled"] for pool in bundle.POOLS)


@pytest.mark.parametrize("values_file", ["aws-values.yaml", "gke-values.yaml"])
def test_every_pool_is_labelled_and_tainted_as_the_bundle_says(values_file: str) -> None:
    objects = render("r1ov-gpu-nodepools", load_values(CHARTS / "r1ov-gpu-nodepools/ci" / values_file))
    pools = {}
    for obj in by_kind(objects, "NodePool"):
        labels = obj["spec"]["template"]["metadata"]["labels"]
        assert labels.items() >= bundle.pool_selector(labels[bundle.POOL_LABEL]).items()  # both providers' selector
        pools[labels[bundle.POOL_LABEL]] = obj["spec"]["template"]["spec"].get("taints", [])
    for obj in by_kind(objects, "ComputeClass"):
        config = obj["spec"]["nodePoolConfig"]
        pool = config["nodeLabels"][bundle.POOL_LABEL]
        assert obj["metadata"]["name"] == bundle.pool_selector(pool)[bundle.COMPUTE_CLASS_LABEL]
        pools[pool] = config.get("taints", [])
    assert sorted(pools) == sorted(bundle.POOLS)
    for pool, taints in pools.items():
        if pool in bundle.GPU_POOLS:
            assert any(tolerates(bundle.GPU_TAINT, taint) for taint in taints), pool
            assert any(
                t["key"] == bundle.GPU_TAINT["key"] and t["effect"] == bundle.GPU_TAINT["effect"] for t in taints
            )
        else:
            assert taints == [], f"{pool}: a CPU pool carries no taint"


def test_inference_pods_land_on_the_serve_pool_and_tolerate_its_taint() -> None:
    pool_objects = render("r1ov-gpu-nodepools", load_values(CHARTS / "r1ov-gpu-nodepools/ci/aws-values.yaml"))
    serve = next(
        o
        for o in by_kind(pool_objects, "NodePool")
        if o["spec"]["template"]["metadata"]["labels"][bundle.POOL_LABEL] == "serve"
    )
    node_labels = serve["spec"]["template"]["metadata"]["labels"]
    for path in deployment_values():
        spec = one(render("r1ov-inference", load_values(path)), "Deployment")["spec"]["template"]["spec"]
        assert spec["nodeSelector"][bundle.POOL_LABEL] == node_labels[bundle.POOL_LABEL] == "serve"
        assert bundle.GPU_TAINT in spec["tolerations"]
        for taint in serve["spec"]["template"]["spec"]["taints"]:
            assert any(tolerates(t, taint) for t in spec["tolerations"]), taint
        vllm = spec["containers"][0]
        assert vllm["resources"]["limits"][bundle.GPU_RESOURCE] == vllm["resources"]["requests"][bundle.GPU_RESOURCE]


# --------------------------------------------------------------------------- versions and images


@pytest.mark.parametrize("name", CHART_NAMES)
def test_chart_versions_follow_the_package(name: str) -> None:
    meta = chart(name).metadata
    assert meta["appVersion"] == meta["version"] == __version__


def _images(objects: list[tuple[str, dict]]) -> list[str]:
    return [c["image"] for _, spec in pod_specs(objects) for c in containers(spec)]


@pytest.mark.parametrize(("name", "values_file"), CASES, ids=[f"{n}/{p.name}" for n, p in CASES])
def test_images_are_pinned_never_latest(name: str, values_file: Path) -> None:
    text = "\n".join(chart(name).render(load_values(values_file), name=RELEASE, namespace=NAMESPACE).values())
    assert ":latest" not in text
    for ref in _images(render(name, load_values(values_file))):
        assert re.search(r"(@sha256:[0-9a-f]{64}|:[0-9][\w.\-]*)$", ref), ref


def test_default_images_are_the_bundle_images_at_the_package_version() -> None:
    images = _images(render("r1ov-inference", MINIMAL_INFERENCE))
    assert bundle.image("vllm") in images and bundle.image("base") in images
    assert set(images) <= {bundle.image(kind) for kind in bundle.IMAGE_NAMES}
    mlflow_spec = one(render("r1ov-platform", SMALL_PLATFORM), "Deployment")["spec"]["template"]["spec"]
    assert mlflow_spec["containers"][0]["image"] == bundle.image("base")
    for name in ("r1ov-inference", "r1ov-platform"):
        for section in re.findall(
            r"registry: (\S+)\n\s+# --.*\n\s+repository: (\S+)", (CHARTS / name / "values.yaml").read_text()
        ):
            registry, repository = section
            assert registry == bundle.REGISTRY and repository in bundle.IMAGE_NAMES.values()


def test_platform_settings_carry_the_bundle_registry_and_tag() -> None:
    data = settings_map(render("r1ov-platform", SMALL_PLATFORM))["data"]
    assert data["R1OV_IMAGE_REGISTRY"] == bundle.REGISTRY
    assert data["R1OV_IMAGE_TAG"] == bundle.TAG == __version__
    # The node-pool chart's default namePrefix, which the launchers in pipeline pods read back.
    nodepools = yaml.safe_load((CHARTS / "r1ov-gpu-nodepools" / "values.yaml").read_text())
    assert data["R1OV_POOL_PREFIX"] == nodepools["namePrefix"] == bundle.DEFAULT_POOL_PREFIX


# --------------------------------------------------------------------------- secure defaults and wiring


@pytest.mark.parametrize(("name", "values_file"), CASES, ids=[f"{n}/{p.name}" for n, p in CASES])
def test_pods_run_non_root_read_only_without_privileges(name: str, values_file: Path) -> None:
    for template, spec in pod_specs(render(name, load_values(values_file))):
        assert spec["securityContext"]["runAsNonRoot"] is True, template
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", template
        for container in containers(spec):
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True, (template, container["name"])
            assert ctx["allowPrivilegeEscalation"] is False, (template, container["name"])
            assert ctx["capabilities"]["drop"] == ["ALL"], (template, container["name"])
            # A read-only root needs somewhere to write: /tmp is always a volume.
            assert (
                any(m["mountPath"] == "/tmp" for m in container.get("volumeMounts", []))
                or container["name"] == "list-models"
            )


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("values_file", deployment_values(), ids=lambda p: p.name)
def test_inference_objects_point_at_each_other(values_file: Path) -> None:
    objects = render("r1ov-inference", load_values(values_file))
    deployment = one(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = one(objects, "Service")
    assert _matches(service["spec"]["selector"], pod_labels)
    assert _matches(deployment["spec"]["selector"]["matchLabels"], pod_labels)
    test_pod = one(objects, "Pod")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    # The helm test pod must not become an endpoint of the Service or count against the PDB.
    assert not _matches(service["spec"]["selector"], test_pod["metadata"]["labels"])
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        for obj in by_kind(objects, kind):
            selector = obj["spec"]["selector" if kind == "PodDisruptionBudget" else "podSelector"]["matchLabels"]
            assert _matches(selector, pod_labels) and not _matches(selector, test_pod["metadata"]["labels"])
    for obj in by_kind(objects, "HorizontalPodAutoscaler") + by_kind(objects, "ScaledObject"):
        assert obj["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        assert "replicas" not in deployment["spec"]  # the autoscaler owns the count
    for monitor in by_kind(objects, "ServiceMonitor"):
        assert _matches(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
        assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    spec = deployment["spec"]["template"]["spec"]
    accounts = {o["metadata"]["name"] for o in by_kind(objects, "ServiceAccount")}
    assert spec["serviceAccountName"] in accounts | {"default"}
    # vLLM serves exactly the directory the init container fetched, named in a file on a shared volume.
    download, vllm = spec["initContainers"][0], spec["containers"][0]
    path_file = arg_after(download["command"], "--path-file")
    assert vllm["command"][:2] == ["sh", "-c"] and f'exec vllm serve "$(cat {path_file})" "$@"' == vllm["command"][2]
    mounts = {m["name"]: m["mountPath"] for m in vllm["volumeMounts"]}
    assert path_file.startswith(mounts["run"] + "/") and mounts["models"] == arg_after(
        download["command"], "--cache-dir"
    )
    assert arg_after(vllm["args"], "--tensor-parallel-size") == str(vllm["resources"]["limits"][bundle.GPU_RESOURCE])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert vllm[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert {v["name"]: v for v in spec["volumes"]}["dshm"]["emptyDir"]["medium"] == "Memory"
    assert vllm["env"][0]["name"] == "VLLM_API_KEY" and "secretKeyRef" in vllm["env"][0]["valueFrom"]
    assert not any("api-key" in arg for arg in vllm["args"])  # the key never sits on the command line
    test_container = test_pod["spec"]["containers"][0]
    test_env = {e["name"]: e for e in test_container["env"]}
    assert test_env["API_KEY"]["valueFrom"] == vllm["env"][0]["valueFrom"]
    assert arg_after(test_container["command"], "--endpoint").startswith(
        f"http://{service['metadata']['name']}.{NAMESPACE}.svc:"
    )
    assert arg_after(test_container["command"], "--served-model-name") == arg_after(vllm["args"], "--served-model-name")
    # A rollout has longer than the slowest start the startup probe allows.
    startup = vllm["startupProbe"]
    assert deployment["spec"]["progressDeadlineSeconds"] > startup["periodSeconds"] * startup["failureThreshold"]
    # Nothing in the chart pins the version promotion writes (a helm upgrade would roll it back).
    assert "r1ov.io/model-version" not in deployment["spec"]["template"]["metadata"]["annotations"]


def test_platform_roles_are_bound_to_the_pipeline_account() -> None:
    """What the Role grants is tests/test_rbac.py's business (derived from the code, both ways);
    here: each Role has its binding to the chart's account, and KFP's own needs can be left out."""
    objects = render("r1ov-platform", SMALL_PLATFORM)
    (account,) = [a for a in by_kind(objects, "ServiceAccount") if a["metadata"]["name"] == "r1ov-pipeline"]
    roles = {o["metadata"]["name"] for o in by_kind(objects, "Role")}
    assert roles == {"r1ov-r1ov-platform-pipeline", "r1ov-r1ov-platform-kfp-task"}
    bindings = by_kind(objects, "RoleBinding")
    assert {b["roleRef"]["name"] for b in bindings} == roles
    for binding in bindings:
        subject = {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
        assert subject in binding["subjects"]
    without = render("r1ov-platform", {**SMALL_PLATFORM, "rbac": {"kfpTaskRole": False}})
    assert [r["metadata"]["name"].endswith("-pipeline") for r in by_kind(without, "Role")] == [True]
    assert len(by_kind(without, "RoleBinding")) == 1
    pinned = render("r1ov-platform", {**SMALL_PLATFORM, "rbac": {"endpointDeployments": ["serve-r1ov-inference"]}})
    deployments = next(r for r in by_kind(pinned, "Role")[0]["rules"] if r["resources"] == ["deployments"])
    assert deployments["resourceNames"] == ["serve-r1ov-inference"]
    kserve = next(r for r in by_kind(pinned, "Role")[0]["rules"] if r["resources"] == ["inferenceservices"])
    assert kserve["resourceNames"] == ["serve-r1ov-inference"]


IRSA = {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/r1ov-mlflow"}
WORKLOAD_IDENTITY = {"iam.gke.io/gcp-service-account": "r1ov-mlflow@my-project.iam.gserviceaccount.com"}


@pytest.mark.parametrize("annotations", [IRSA, WORKLOAD_IDENTITY], ids=["irsa", "workload-identity"])
def test_mlflow_runs_as_its_own_account_with_the_cloud_identity(annotations: dict[str, str]) -> None:
    """The server's artifact access by cloud identity, apart from the pipeline's account: the
    annotation sits on the account the server's pod runs as, never on the pipeline's."""
    for values in (SMALL_PLATFORM, load_values(CHARTS / "r1ov-platform/ci/postgres-values.yaml")):
        objects = render("r1ov-platform", _merged(values, {"mlflow": {"serviceAccount": {"annotations": annotations}}}))
        accounts = {a["metadata"]["name"]: a for a in by_kind(objects, "ServiceAccount")}
        server = next(d for d in by_kind(objects, "Deployment") if d["metadata"]["name"] == "mlflow")
        spec = server["spec"]["template"]["spec"]
        account = accounts[spec["serviceAccountName"]]
        assert account["metadata"]["name"] != "r1ov-pipeline"
        assert account["metadata"]["annotations"] == annotations
        assert "annotations" not in accounts["r1ov-pipeline"]["metadata"]
        assert account["automountServiceAccountToken"] is False and spec["automountServiceAccountToken"] is False
        for obj in (account, server):
            validate(obj)
    # An existing account instead (e.g. made by eksctl or Config Connector).
    existing = render(
        "r1ov-platform",
        _merged(SMALL_PLATFORM, {"mlflow": {"serviceAccount": {"create": False, "name": "mlflow-irsa"}}}),
    )
    assert [a["metadata"]["name"] for a in by_kind(existing, "ServiceAccount")] == ["r1ov-pipeline"]
    assert one(existing, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "mlflow-irsa"


def test_schema_upgrade_runs_before_the_new_server() -> None:
    """postgres: a pre-upgrade hook Job (never on install); sqlite: an init container of the server,
    which Recreate starts after the old server stopped. Both run `mlflow db upgrade <uri>`."""
    production = render("r1ov-platform", load_values(CHARTS / "r1ov-platform/ci/postgres-values.yaml"))
    (job,) = [j for j in by_kind(production, "Job") if j["metadata"]["name"] == "mlflow-db-upgrade"]
    validate(job)
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-upgrade"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["sh", "-c", 'exec mlflow db upgrade "$MLFLOW_BACKEND_STORE_URI"']
    server = one(production, "Deployment")["spec"]["template"]["spec"]
    server_env = {e["name"]: e for e in server["containers"][0]["env"]}
    assert {e["name"]: e for e in container["env"]}["MLFLOW_BACKEND_STORE_URI"] == server_env[
        "MLFLOW_BACKEND_STORE_URI"
    ]
    assert "initContainers" not in server
    small = render("r1ov-platform", SMALL_PLATFORM)
    assert not [j for j in by_kind(small, "Job") if j["metadata"]["name"] == "mlflow-db-upgrade"]
    deployment = one(small, "Deployment")
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    init = deployment["spec"]["template"]["spec"]["initContainers"][0]
    server_args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert init["command"] == ["mlflow", "db", "upgrade", arg_after(server_args, "--backend-store-uri")]
    off = _merged(SMALL_PLATFORM, {"mlflow": {"dbUpgrade": {"enabled": False}}})
    assert "initContainers" not in one(render("r1ov-platform", off), "Deployment")["spec"]["template"]["spec"]


def test_schema_upgrade_command_migrates_a_database(tmp_path: Path) -> None:
    """The rendered migration, run with the real mlflow CLI against a database: an empty one gets
    the current schema, a second run is a no-op, and the result is what `mlflow server` accepts
    (alembic head of this MLflow: mlflow/store/db/utils.py _verify_schema)."""
    from mlflow.store.db.utils import _get_latest_schema_revision, _get_schema_version, create_sqlalchemy_engine

    production = render("r1ov-platform", load_values(CHARTS / "r1ov-platform/ci/postgres-values.yaml"))
    job = next(j for j in by_kind(production, "Job") if j["metadata"]["name"] == "mlflow-db-upgrade")
    container = job["spec"]["template"]["spec"]["containers"][0]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # the Secret's DSN; SQLite stands in for PostgreSQL here
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env.update(
        MLFLOW_BACKEND_STORE_URI=uri, HOME=str(tmp_path), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    )
    for _ in range(2):
        done = subprocess.run(container["command"], env=env, capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
    engine = create_sqlalchemy_engine(uri)
    assert _get_schema_version(engine) == _get_latest_schema_revision()


def test_platform_tracking_uri_is_a_host_the_mlflow_server_accepts() -> None:
    objects = render("r1ov-platform", SMALL_PLATFORM)
    uri = settings_map(objects)["data"]["MLFLOW_TRACKING_URI"]
    service = one(objects, "Service")
    host = uri.split("://", 1)[1].rstrip("/")
    assert host == f"{service['metadata']['name']}.{NAMESPACE}.svc.cluster.local:{service['spec']['ports'][0]['port']}"
    args = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert host in arg_after(args, "--allowed-hosts").split(",")


# --------------------------------------------------------------------------- CEL rules jsonschema skips


def test_karpenter_cel_rules_hold() -> None:
    restricted = ("karpenter.sh/nodepool", "kubernetes.io/hostname")
    for path in ci_values("r1ov-gpu-nodepools"):
        objects = render("r1ov-gpu-nodepools", load_values(path))
        for pool in by_kind(objects, "NodePool"):
            template = pool["spec"]["template"]
            for req in template["spec"]["requirements"]:
                if req["operator"] == "In":
                    assert req["values"], req
                if req["operator"] in ("Gt", "Lt", "Gte", "Lte"):
                    assert len(req["values"]) == 1 and int(req["values"][0]) >= 0, req
            for label in template["metadata"]["labels"]:
                assert label not in restricted and not label.split("/")[0].endswith("karpenter.sh"), label
            for budget in pool["spec"]["disruption"].get("budgets", []):
                assert ("schedule" in budget) == ("duration" in budget)
        for node_class in by_kind(objects, "EC2NodeClass"):
            spec = node_class["spec"]
            assert ("role" in spec) != ("instanceProfile" in spec)
            aliases = [t["alias"] for t in spec["amiSelectorTerms"] if "alias" in t]
            assert len(aliases) == len(spec["amiSelectorTerms"]) == 1  # an alias stands alone
            family, _, version = aliases[0].partition("@")
            assert family == "al2023" and version
            assert sum(1 for m in spec["blockDeviceMappings"] if m.get("rootVolume")) == 1
            assert all(term for term in spec["subnetSelectorTerms"] + spec["securityGroupSelectorTerms"])
            interfaces = spec.get("networkInterfaces", [])
            if interfaces:  # a primary interface; at most one EFA device per network card; no duplicates
                assert {"networkCardIndex": 0, "deviceIndex": 0, "interfaceType": "interface"} in interfaces
                pairs = [(i["networkCardIndex"], i["deviceIndex"]) for i in interfaces]
                assert len(pairs) == len(set(pairs))
                efa_cards = [i["networkCardIndex"] for i in interfaces if i["interfaceType"] == "efa-only"]
                assert len(efa_cards) == len(set(efa_cards))
            if "placementGroupSelector" in spec:
                assert len(spec["placementGroupSelector"]) == 1  # name and id are mutually exclusive
            for term in spec.get("capacityReservationSelectorTerms", []):
                assert term and ("id" not in term or len(term) == 1)


def test_train_pool_options_for_multi_node_training() -> None:
    """EFA on every network card, a placement group, reserved capacity only with reservations named."""
    objects = render("r1ov-gpu-nodepools", load_values(CHARTS / "r1ov-gpu-nodepools/ci/aws-pinned-values.yaml"))
    node_class = next(c for c in by_kind(objects, "EC2NodeClass") if c["metadata"]["name"] == "r1ov-prod-train")
    efa = [i for i in node_class["spec"]["networkInterfaces"] if i["interfaceType"] == "efa-only"]
    assert sorted(i["networkCardIndex"] for i in efa) == list(range(32))
    assert node_class["spec"]["placementGroupSelector"] == {"name": "r1ov-prod-train"}
    assert node_class["spec"]["capacityReservationSelectorTerms"][0] == {"id": "cr-0a1b2c3d4e5f60718"}
    pool = next(p for p in by_kind(objects, "NodePool") if p["metadata"]["name"] == "r1ov-prod-train")
    assert pool["spec"]["template"]["spec"]["nodeClassRef"]["name"] == "r1ov-prod-train"
    capacity = next(
        r for r in pool["spec"]["template"]["spec"]["requirements"] if r["key"] == "karpenter.sh/capacity-type"
    )
    assert "reserved" in capacity["values"]
    defaults = render("r1ov-gpu-nodepools", load_values(CHARTS / "r1ov-gpu-nodepools/ci/aws-values.yaml"))
    for node_class in by_kind(defaults, "EC2NodeClass"):
        assert not {"networkInterfaces", "placementGroupSelector", "capacityReservationSelectorTerms"} & set(
            node_class["spec"]
        )
    reserved = {"aws": {"clusterName": "c"}, "pools": {"serve": {"aws": {"capacityTypes": ["reserved"]}}}}
    with pytest.raises(helm.HelmRenderError, match="capacityReservationSelectorTerms is required"):
        render("r1ov-gpu-nodepools", reserved)


# Network cards of each family's 8-GPU size, from EC2 (NetworkInfo.MaximumNetworkCards; p5/p5e: 32,
# docs.aws.amazon.com/AWSEC2/latest/UserGuide/efa-acc-inst-types.html#efa-for-p5; p5en: 16; p4d/p4de: 4).
EFA_CARDS = {"p4d": 4, "p4de": 4, "p5": 32, "p5e": 32, "p5en": 16}


def test_efa_pools_are_one_per_network_card_count() -> None:
    """An EC2NodeClass lists one EFA interface per network card, and the default training families
    differ (p4d 4, p5en 16, p5 32): each card count gets its own NodePool and node class, every
    family lands in the one of its count, and all carry the pool's labels, so a training pod that
    selects the pool can land on any of them."""
    objects = render("r1ov-gpu-nodepools", load_values(CHARTS / "r1ov-gpu-nodepools/ci/aws-efa-values.yaml"))
    assert (
        yaml.safe_load((CHARTS / "r1ov-gpu-nodepools/values.yaml").read_text())["aws"]["efaNetworkCards"] == EFA_CARDS
    )
    classes = {c["metadata"]["name"]: c for c in by_kind(objects, "EC2NodeClass")}
    train = [
        p
        for p in by_kind(objects, "NodePool")
        if p["spec"]["template"]["metadata"]["labels"][bundle.POOL_LABEL] == "train"
    ]
    assert sorted(p["metadata"]["name"] for p in train) == ["r1ov-train-efa16", "r1ov-train-efa32", "r1ov-train-efa4"]
    covered = []
    for pool in train:
        template = pool["spec"]["template"]
        assert template["metadata"]["labels"].items() >= bundle.pool_selector("train").items()
        (families,) = [
            r["values"] for r in template["spec"]["requirements"] if r["key"] == "karpenter.k8s.aws/instance-family"
        ]
        node_class = classes[template["spec"]["nodeClassRef"]["name"]]
        efa = sorted(
            i["networkCardIndex"] for i in node_class["spec"]["networkInterfaces"] if i["interfaceType"] == "efa-only"
        )
        for family in families:
            assert efa == list(range(EFA_CARDS[family])), (pool["metadata"]["name"], family)
        assert node_class["spec"]["placementGroupSelector"] == {"name": "r1ov-train"}
        covered += families
    default_families = chart("r1ov-gpu-nodepools").values["pools"]["train"]["aws"]["instanceFamilies"]
    assert sorted(covered) == sorted(default_families)  # every family still offered, none twice
    # Exact types: grouped by their family; one card count keeps the pool's own name.
    pinned = render("r1ov-gpu-nodepools", load_values(CHARTS / "r1ov-gpu-nodepools/ci/aws-pinned-values.yaml"))
    assert [p["metadata"]["name"] for p in by_kind(pinned, "NodePool") if "train" in p["metadata"]["name"]] == [
        "r1ov-prod-train"
    ]
    efa_values = load_values(CHARTS / "r1ov-gpu-nodepools/ci/aws-efa-values.yaml")
    exact = {"instanceFamilies": [], "instanceTypes": ["p5.48xlarge", "p4d.24xlarge"]}
    types = {}
    for pool in by_kind(
        render("r1ov-gpu-nodepools", _merged(efa_values, {"pools": {"train": {"aws": exact}}})), "NodePool"
    ):
        requirements = pool["spec"]["template"]["spec"]["requirements"]
        if "train" in pool["metadata"]["name"]:
            types[pool["metadata"]["name"]] = next(
                r["values"] for r in requirements if r["key"] == "node.kubernetes.io/instance-type"
            )
    assert types == {"r1ov-train-efa4": ["p4d.24xlarge"], "r1ov-train-efa32": ["p5.48xlarge"]}
    unknown = _merged(load_values(CHARTS / "r1ov-gpu-nodepools/ci/aws-efa-values.yaml"),
                      {"pools": {"train": {"aws": {"instanceFamilies": ["p5", "p6-b200"]}}}})  # fmt: skip
    with pytest.raises(helm.HelmRenderError, match=r"aws.efaNetworkCards has no entry for p6-b200"):
        render("r1ov-gpu-nodepools", unknown)


def test_gke_capacity_options_for_training() -> None:
    """A reservation, flex-start and spot as ComputeClass priorities (validated against the schema
    with the other ci objects); the CEL rules jsonschema does not run are checked here: a Specific
    affinity names its reservations, and acceleratorNetworkProfile is auto or auto-*."""
    objects = render("r1ov-gpu-nodepools", load_values(CHARTS / "r1ov-gpu-nodepools/ci/gke-capacity-values.yaml"))
    train = next(c for c in by_kind(objects, "ComputeClass") if c["metadata"]["name"] == "r1ov-train")
    validate(train)
    priorities = train["spec"]["priorities"]
    kinds = [
        ("reservations" in p, p.get("flexStart", {}).get("enabled", False), p.get("spot", False)) for p in priorities
    ]
    assert kinds == [(True, False, False), (False, True, False), (False, False, True)]
    for priority in priorities:
        reservations = priority.get("reservations")
        if reservations:  # the CRD's x-kubernetes-validations on reservations
            assert (reservations["affinity"] == "Specific") == bool(reservations.get("specific"))
        profile = priority.get("acceleratorNetworkProfile")
        assert profile is None or profile == "auto" or profile.startswith("auto-")
        assert priority["gpu"]["count"] == 8


def test_training_pools_are_never_consolidated_mid_job() -> None:
    objects = render("r1ov-gpu-nodepools", load_values(CHARTS / "r1ov-gpu-nodepools/ci/aws-values.yaml"))
    for pool in by_kind(objects, "NodePool"):
        name = pool["spec"]["template"]["metadata"]["labels"][bundle.POOL_LABEL]
        disruption = pool["spec"]["disruption"]
        if name in ("train", "rollout"):
            assert disruption["consolidationPolicy"] == "WhenEmpty"
            assert {"nodes": "0", "reasons": ["Drifted"]} in disruption["budgets"]
            assert "terminationGracePeriod" not in pool["spec"]["template"]["spec"]


def test_notes_say_the_device_plugin_is_not_installed() -> None:
    for values_file in ("aws-values.yaml", "gke-values.yaml"):
        text = notes("r1ov-gpu-nodepools", load_values(CHARTS / "r1ov-gpu-nodepools/ci" / values_file))
        assert "device plugin" in text and "does NOT install" in text


# --------------------------------------------------------------------------- documented values


def _undocumented(path: Path) -> list[str]:
    """Keys of values.yaml (outside lists and flow-style maps) without a `# --` comment above them."""
    lines = path.read_text().splitlines()
    missing = []

    def visit(node: yaml.Node, prefix: str) -> None:
        if not isinstance(node, yaml.MappingNode) or node.flow_style:
            return
        for key, value in node.value:
            name = f"{prefix}{key.value}"
            row = key.start_mark.line
            above = row - 1
            while above >= 0 and lines[above].lstrip().startswith("#") and not lines[above].lstrip().startswith("# --"):
                above -= 1  # a `# --` comment may run over several lines
            if above < 0 or not lines[above].lstrip().startswith("# --"):
                missing.append(name)
            visit(value, name + ".")

    visit(yaml.compose(path.read_text()), "")
    return missing


@pytest.mark.parametrize("name", CHART_NAMES)
def test_every_value_is_documented(name: str) -> None:
    assert _undocumented(CHARTS / name / "values.yaml") == []


@pytest.mark.parametrize("name", CHART_NAMES)
def test_chart_has_schema_readme_and_notes(name: str) -> None:
    loaded = chart(name)
    assert loaded.schema is not None and loaded.schema.get("additionalProperties") is False
    loaded.validate_schema({})  # the defaults satisfy the schema
    assert (CHARTS / name / "README.md").is_file()
    assert any(t["name"].endswith("NOTES.txt") for t in loaded.templates)


# --------------------------------------------------------------------------- commands against real programs


MLFLOW_ADMIN = ("r1ov-admin", "a-long-admin-password-for-tests")
MLFLOW_CLIENT_ENV = {"MLFLOW_TRACKING_USERNAME": MLFLOW_ADMIN[0], "MLFLOW_TRACKING_PASSWORD": MLFLOW_ADMIN[1]}


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """`mlflow server` with the platform chart's rendered command and arguments.

    Only the port, the bind address and the volume paths move to this machine; every flag is the
    chart's. Yields the port.
    """
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    # The test's clients reach the server as 127.0.0.1:<port>: admitted the way an Ingress host would be.
    values = {"mlflow": {"backend": "sqlite", "extraAllowedHosts": [f"127.0.0.1:{port}"]}}
    objects = render("r1ov-platform", values)
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["mlflow", "server"]
    args = list(container["args"])
    args[args.index("--port") + 1] = str(port)
    args[args.index("--host") + 1] = "127.0.0.1"
    args[args.index("--backend-store-uri") + 1] = f"sqlite:///{root / 'mlflow.db'}"
    args[args.index("--artifacts-destination") + 1] = str(root / "artifacts")
    # The auth config the chart renders, its user store moved next to the database.
    ini = next(o for _, o in objects if o["kind"] == "ConfigMap" and "basic_auth.ini" in o.get("data", {}))
    (root / "basic_auth.ini").write_text(
        ini["data"]["basic_auth.ini"].replace("sqlite:////mlflow/basic_auth.db", f"sqlite:///{root / 'auth.db'}")
    )
    env = {
        **os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "HOME": str(root),
        "MLFLOW_AUTH_CONFIG_PATH": str(root / "basic_auth.ini"), "MLFLOW_AUTH_ADMIN_USERNAME": MLFLOW_ADMIN[0],
        "MLFLOW_AUTH_ADMIN_PASSWORD": MLFLOW_ADMIN[1], "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-flask-key",
    }  # fmt: skip
    for name in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        assert any(e["name"] == name for e in container["env"]), name
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", *args],
        env=env,
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the server and the workers it spawns stop together
    )
    try:
        deadline = time.monotonic() + 600  # a bound for a server that never starts, not a start time
        while True:
            try:
                if _get(port, "/health", "kubelet-probe") == 200:
                    break
            except OSError:
                pass
            assert server.poll() is None, "mlflow server exited"
            assert time.monotonic() < deadline, "mlflow server did not come up"
            time.sleep(0.25)
        with pytest.MonkeyPatch.context() as patch:  # the test's own MLflow clients log in as the pipeline does
            for name, value in MLFLOW_CLIENT_ENV.items():
                patch.setenv(name, value)
            yield port
    finally:
        _stop_group(server)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group, SIGKILL if it has not gone after a while: a busy
    machine may take longer than any fixed grace to wind down a server, and that is no failure."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=60)
            return
        except subprocess.TimeoutExpired:
            continue


# Only a bound for a hung server, never a speed expectation: on a loaded machine the first requests
# wait for the server's worker, its auth store and the SQLite schema to initialize.
REQUEST_TIMEOUT_S = 180


def _get(port: int, path: str, host: str) -> int:
    headers = {"Host": host, "Authorization": "Basic " + base64.b64encode(":".join(MLFLOW_ADMIN).encode()).decode()}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_mlflow_refuses_anonymous_writes(mlflow_server: int) -> None:
    """Any pod that reaches the server must still log in before it can move an alias."""
    body = json.dumps({"name": "anything", "alias": "champion", "version": "1"}).encode()
    for auth, expected in ((None, 401), (("intruder", "guess"), 401)):
        headers = {"Host": f"127.0.0.1:{mlflow_server}", "Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{mlflow_server}/api/2.0/mlflow/registered-models/alias", data=body, headers=headers,
            method="POST",
        )  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S)
        assert refused.value.code == expected


def test_mlflow_server_accepts_in_cluster_hosts_only(mlflow_server: int) -> None:
    port = mlflow_server
    search = "/api/2.0/mlflow/experiments/search?max_results=1"
    assert _get(port, search, f"mlflow.{NAMESPACE}.svc.cluster.local:5000") == 200
    assert _get(port, search, "mlflow:5000") == 200
    assert _get(port, search, "attacker.example.com") == 403


def _register_tiny(port: int, tmp_path: Path, name: str, versions: int = 1) -> None:
    """Register versions the way r1ov.registry.models does; the last one holds `champion`."""
    from mlflow import MlflowClient

    tracking = f"http://127.0.0.1:{port}"
    client = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    experiment = client.create_experiment(f"charts-{name}")
    client.create_registered_model(name)
    for index in range(versions):
        checkpoint = tmp_path / f"checkpoint-{index}"
        (checkpoint / "sub").mkdir(parents=True)
        (checkpoint / "config.json").write_text(json.dumps({"model_type": "tiny", "index": index}))
        (checkpoint / "sub" / "weights.bin").write_bytes(b"0123")
        run = client.create_run(experiment)
        client.log_artifacts(run.info.run_id, str(checkpoint), artifact_path="model")
        client.set_terminated(run.info.run_id)
        version = client.create_model_version(name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied: pods need no S3 keys
    client.set_registered_model_alias(name, "champion", version.version)


def _init_command(tmp_path: Path, port: int, name: str) -> tuple[list[str], dict[str, str]]:
    spec = one(render("r1ov-inference", _merged(MINIMAL_INFERENCE, {"model": {"name": name}})), "Deployment")
    download = spec["spec"]["template"]["spec"]["initContainers"][0]
    command = list(download["command"])
    assert command[:3] == ["python", "-m", "r1ov.registry.serving"]
    command[command.index("--cache-dir") + 1] = str(tmp_path / "models")
    command[command.index("--path-file") + 1] = str(tmp_path / "run" / "model-path")
    env = {e["name"]: e["value"] for e in download["env"] if "value" in e}
    env.update(MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}", PATH=os.environ["PATH"], HOME=str(tmp_path))
    env.update(PYTHONPATH=os.environ.get("PYTHONPATH", ""), **MLFLOW_CLIENT_ENV)  # the Secret's envFrom
    return [sys.executable, *command[1:]], env


def test_init_container_downloads_the_champion_through_the_server(mlflow_server: int, tmp_path: Path) -> None:
    """Register a model the way r1ov.registry.models does, then run the init container's exact command."""
    _register_tiny(mlflow_server, tmp_path, "tiny", versions=2)
    command, env = _init_command(tmp_path, mlflow_server, "tiny")
    result = subprocess.run(command, env=env, capture_output=True, timeout=180)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    served = Path((tmp_path / "run" / "model-path").read_text())
    assert served == tmp_path / "models" / "tiny" / "2"  # the alias, resolved to its version
    assert json.loads((served / "config.json").read_text()) == {"model_type": "tiny", "index": 1}
    assert (served / "sub" / "weights.bin").read_bytes() == b"0123"


def test_pods_serve_the_version_their_template_names(mlflow_server: int, tmp_path: Path) -> None:
    """Promotion writes r1ov.io/model-version on the pod template; the download reads it through the
    downward API and fetches that version, whatever the alias says. So `kubectl rollout undo` (the
    previous template) serves the previous version again, and a template without it follows the alias."""
    from r1ov.k8s.endpoint import VERSION_ANNOTATION
    from r1ov.registry.serving import VERSION_ENV

    objects = render("r1ov-inference", load_values(CHARTS / "r1ov-inference/ci/kserve-values.yaml"))
    for download in (
        one(render("r1ov-inference", MINIMAL_INFERENCE), "Deployment")["spec"]["template"]["spec"]["initContainers"][0],
        one(objects, "ClusterStorageContainer")["spec"]["container"],
    ):
        env = {e["name"]: e for e in download["env"]}
        assert env[VERSION_ENV]["valueFrom"]["fieldRef"]["fieldPath"] == f"metadata.annotations['{VERSION_ANNOTATION}']"
    _register_tiny(mlflow_server, tmp_path, "undo-tiny", versions=2)  # champion: 2
    command, env = _init_command(tmp_path, mlflow_server, "undo-tiny")
    for template_version, served in (("1", "1"), ("", "2")):  # an absent annotation reads as ""
        result = subprocess.run(command, env={**env, VERSION_ENV: template_version}, capture_output=True, timeout=180)
        assert result.returncode == 0, result.stderr.decode()[-2000:]
        path = Path((tmp_path / "run" / "model-path").read_text())
        assert path == tmp_path / "models" / "undo-tiny" / served
        assert json.loads((path / "config.json").read_text())["index"] == int(served) - 1


def test_replicas_sharing_the_cache_download_once_and_never_write_one_path(mlflow_server: int, tmp_path: Path) -> None:
    """Two replicas starting together on one shared volume, then a third later: one copy, no leftovers."""
    _register_tiny(mlflow_server, tmp_path, "shared")
    command, env = _init_command(tmp_path, mlflow_server, "shared")
    starts = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    for process in starts:
        _, err = process.communicate(timeout=180)
        assert process.returncode == 0, err.decode()[-2000:]
    version_dir = tmp_path / "models" / "shared"
    assert sorted(p.name for p in version_dir.iterdir()) == ["1"]  # the loser's staging copy is gone
    marker = version_dir / "1" / ".r1ov-complete"
    written = marker.stat().st_mtime_ns
    later = subprocess.run(command, env=env, capture_output=True, timeout=180)
    assert later.returncode == 0 and b"is cached" in later.stderr
    assert marker.stat().st_mtime_ns == written


PIPELINE_USER = ("r1ov-pipeline", "pipeline-password-from-its-secret")
INFERENCE_USER = ("r1ov-inference", "inference-password-from-its-secret")


def _users_job(port: int, secrets: dict[tuple[str, str], str]) -> subprocess.CompletedProcess[bytes]:
    """Run the platform chart's mlflow-users Job as a kubelet would: its command, its env with each
    secretKeyRef resolved from ``secrets`` (an optional reference to a missing key is left unset)."""
    job = one(render("r1ov-platform", SMALL_PLATFORM), "Job")
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    for entry in container["env"]:
        if "value" in entry:
            env[entry["name"]] = entry["value"]
            continue
        ref = entry["valueFrom"]["secretKeyRef"]
        if (ref["name"], ref["key"]) in secrets:
            env[entry["name"]] = secrets[(ref["name"], ref["key"])]
        else:
            assert ref.get("optional"), f"{entry['name']}: Secret {ref['name']} key {ref['key']} is required"
    env["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{port}"
    assert container["command"][0] == "python"
    return subprocess.run([sys.executable, *container["command"][1:]], env=env, capture_output=True, timeout=120)


def _admin_and_users(pipeline_password: str) -> dict[tuple[str, str], str]:
    auth = yaml.safe_load((CHARTS / "r1ov-platform" / "values.yaml").read_text())["mlflow"]["auth"]
    return {
        (auth["existingSecret"], auth["usernameKey"]): MLFLOW_ADMIN[0],
        (auth["existingSecret"], auth["passwordKey"]): MLFLOW_ADMIN[1],
        (auth["users"]["pipelineSecret"], "username"): PIPELINE_USER[0],
        (auth["users"]["pipelineSecret"], "password"): pipeline_password,
        (auth["users"]["inferenceSecret"], "MLFLOW_TRACKING_USERNAME"): INFERENCE_USER[0],
        (auth["users"]["inferenceSecret"], "MLFLOW_TRACKING_PASSWORD"): INFERENCE_USER[1],
    }


def test_the_pipeline_and_the_endpoint_log_in_as_their_own_users(
    mlflow_server: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`mlflow server --app-name basic-auth` as the chart runs it: before the users Job, the pipeline's and
    the endpoint's credentials get 401; after it, the pipeline registers and promotes (creator: MANAGE),
    the inference chart's download reads the champion (default READ), and a rotated Secret takes effect
    on the next run of the Job (helm upgrade)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    def search_as(user: tuple[str, str]) -> int:
        headers = {"Host": f"127.0.0.1:{mlflow_server}",
                   "Authorization": "Basic " + base64.b64encode(":".join(user).encode()).decode()}  # fmt: skip
        request = urllib.request.Request(
            f"http://127.0.0.1:{mlflow_server}/api/2.0/mlflow/experiments/search?max_results=1", headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert search_as(PIPELINE_USER) == 401 and search_as(INFERENCE_USER) == 401
    done = _users_job(mlflow_server, _admin_and_users(PIPELINE_USER[1]))
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert search_as(PIPELINE_USER) == 200 and search_as(INFERENCE_USER) == 200

    # The pipeline's registry steps, as its user: register two versions, move champion.
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", PIPELINE_USER[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PIPELINE_USER[1])
    _register_tiny(mlflow_server, tmp_path, "users-e2e", versions=2)
    # The endpoint's download, as its user: reads the champion, may not move it.
    command, env = _init_command(tmp_path, mlflow_server, "users-e2e")
    env.update(MLFLOW_TRACKING_USERNAME=INFERENCE_USER[0], MLFLOW_TRACKING_PASSWORD=INFERENCE_USER[1])
    result = subprocess.run(command, env=env, capture_output=True, timeout=180)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert Path((tmp_path / "run" / "model-path").read_text()) == tmp_path / "models" / "users-e2e" / "2"
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", INFERENCE_USER[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", INFERENCE_USER[1])
    tracking = f"http://127.0.0.1:{mlflow_server}"
    with pytest.raises(MlflowException, match=r"(?i)permission"):
        MlflowClient(tracking_uri=tracking, registry_uri=tracking).set_registered_model_alias(
            "users-e2e", "champion", "1"
        )

    # helm upgrade after the pipeline's Secret changed: the Job sets the new password.
    rotated = "a-rotated-pipeline-password"
    again = _users_job(mlflow_server, _admin_and_users(rotated))
    assert again.returncode == 0 and b"updated" in again.stderr, again.stderr.decode()[-2000:]
    assert search_as((PIPELINE_USER[0], rotated)) == 200 and search_as(PIPELINE_USER) == 401


def _as(port: int, user: tuple[str, str], method: str, path: str, body: dict[str, Any] | None = None) -> int:
    headers = {"Host": f"127.0.0.1:{port}", "Content-Type": "application/json",
               "Authorization": "Basic " + base64.b64encode(":".join(user).encode()).decode()}  # fmt: skip
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_readme_rotates_an_admin_password(mlflow_server: int, tmp_path: Path) -> None:
    """The platform README's rotation command, pasted into bash against `mlflow server --app-name
    basic-auth` as the chart runs it: the admin's old password stops working, the new one works.
    (A second admin rotates, so the fixture's own admin stays as the other tests expect.)"""
    readme = (CHARTS / "r1ov-platform" / "README.md").read_text()
    section = readme.split("## Rotating the admin password", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    curl = block[block.index("curl ") : block.index("\nkubectl", block.index("curl "))]
    assert "http://localhost:5000/api/2.0/mlflow/users/update-password" in curl
    second, old, new = "r1ov-admin-2", "second-admin-old-password", "second-admin-new-password"
    assert _as(mlflow_server, MLFLOW_ADMIN, "POST", "/api/2.0/mlflow/users/create",
               {"username": second, "password": old}) == 200  # fmt: skip
    assert _as(mlflow_server, MLFLOW_ADMIN, "PATCH", "/api/2.0/mlflow/users/update-admin",
               {"username": second, "is_admin": True}) == 200  # fmt: skip
    script = curl.replace("http://localhost:5000", f"http://127.0.0.1:{mlflow_server}")
    env = {"PATH": os.environ["PATH"], "ADMIN": second, "OLD": old, "NEW": new, "HOME": str(tmp_path)}
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, timeout=REQUEST_TIMEOUT_S)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    search = "/api/2.0/mlflow/experiments/search?max_results=1"
    assert _as(mlflow_server, (second, old), "GET", search) == 401
    assert _as(mlflow_server, (second, new), "GET", search) == 200


class _ModelsHandler(http.server.BaseHTTPRequestHandler):
    """Stand-in for vLLM's OpenAI server: /v1/models behind a bearer key, with the served directory as root."""

    key = "s3cret"
    served = "r1ov-7b"
    root = "/models/r1ov-7b/2"
    guarded = True  # False: a server started without --api-key, which answers anyone

    def do_GET(self) -> None:
        if type(self).guarded and self.headers.get("Authorization") != f"Bearer {self.key}":
            self.send_response(401)
            self.end_headers()
            return
        model = {"id": self.served, "object": "model", "root": type(self).root}
        body = json.dumps({"object": "list", "data": [model]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def models_endpoint() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ModelsHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("model", "key", "root", "guarded", "passes"),
    [
        ("r1ov-7b", "s3cret", "/models/r1ov-7b/2", True, True),
        ("r1ov-7b", "s3cret", "/models/r1ov-7b/1", True, False),  # promoted, but the replicas still serve v1
        ("other-model", "s3cret", "/models/r1ov-7b/2", True, False),
        ("r1ov-7b", "wrong", "/models/r1ov-7b/2", True, False),
        ("r1ov-7b", "s3cret", "/models/r1ov-7b/2", False, False),  # answers without the key
        ("r1ov-7b", "s3cret", "/mnt/models/r1ov-7b/2", True, True),  # KServe's storage initializer's layout
    ],
)
@pytest.mark.parametrize("values_file", ["minimal-values.yaml", "kserve-values.yaml"])
def test_helm_test_checks_the_served_version_matches_the_alias(
    mlflow_server: int, models_endpoint: str, tmp_path: Path, model: str, key: str, root: str, guarded: bool,
    passes: bool, values_file: str,
) -> None:  # fmt: skip
    if not getattr(_ModelsHandler, "registered", False):
        _register_tiny(mlflow_server, tmp_path, "r1ov-7b", versions=2)
        _ModelsHandler.registered = True
    _ModelsHandler.root, _ModelsHandler.guarded = root, guarded
    pod = one(render("r1ov-inference", load_values(CHARTS / "r1ov-inference/ci" / values_file)), "Pod")
    container = pod["spec"]["containers"][0]
    command = list(container["command"])
    assert command[:4] == ["python", "-m", "r1ov.registry.serving", "check"]
    command[command.index("--endpoint") + 1] = models_endpoint
    command[command.index("--served-model-name") + 1] = model
    command[command.index("--wait-seconds") + 1] = "0"  # the verdict now; waiting: test_helm_test_waits_for_the_rollout
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env.update(
        API_KEY=key, MLFLOW_TRACKING_URI=f"http://127.0.0.1:{mlflow_server}", PATH=os.environ["PATH"],
        HOME=str(tmp_path), PYTHONPATH=os.environ.get("PYTHONPATH", ""), **MLFLOW_CLIENT_ENV,
    )  # fmt: skip
    result = subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, timeout=120)
    assert (result.returncode == 0) is passes, result.stderr.decode()[-2000:]
    if not passes:
        assert b"Traceback" not in result.stderr


def test_helm_test_waits_for_the_rollout(mlflow_server: int, models_endpoint: str, tmp_path: Path) -> None:
    """Mid-rollout (old replicas still serve the earlier version) the helm test neither passes nor
    gives up: it checks again until the new version is served, within tests.waitSeconds."""
    if not getattr(_ModelsHandler, "registered", False):
        _register_tiny(mlflow_server, tmp_path, "r1ov-7b", versions=2)
        _ModelsHandler.registered = True
    _ModelsHandler.root, _ModelsHandler.guarded = "/models/r1ov-7b/1", True
    container = one(render("r1ov-inference", MINIMAL_INFERENCE), "Pod")["spec"]["containers"][0]
    command = list(container["command"])
    assert float(arg_after(command, "--wait-seconds")) >= 1800
    command[command.index("--endpoint") + 1] = models_endpoint
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env.update(
        API_KEY="s3cret", MLFLOW_TRACKING_URI=f"http://127.0.0.1:{mlflow_server}", PATH=os.environ["PATH"],
        HOME=str(tmp_path), PYTHONPATH=os.environ.get("PYTHONPATH", ""), **MLFLOW_CLIENT_ENV,
    )  # fmt: skip
    quick = [*command[1:], "--poll-seconds", "0.5"]
    waiting = subprocess.Popen([sys.executable, *quick], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(3)
    assert waiting.poll() is None  # still waiting while v1 is served
    _ModelsHandler.root = "/models/r1ov-7b/2"  # the rollout completes
    _, err = waiting.communicate(timeout=180)
    assert waiting.returncode == 0, err.decode()[-2000:]
    _ModelsHandler.root = "/models/r1ov-7b/1"
    short = list(quick)
    short[short.index("--wait-seconds") + 1] = "2"
    gave_up = subprocess.run([sys.executable, *short], env=env, capture_output=True, timeout=180)
    assert gave_up.returncode == 1 and b"waited 2 s for the rollout" in gave_up.stderr
    _ModelsHandler.root = "/models/r1ov-7b/2"


def test_serving_survives_a_node_disruption() -> None:
    """Two replicas by default; one replica allows no voluntary eviction and surges on update."""
    default = render("r1ov-inference", MINIMAL_INFERENCE)
    assert one(default, "Deployment")["spec"]["replicas"] == 2
    assert one(default, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    single = render("r1ov-inference", _merged(MINIMAL_INFERENCE, {"replicaCount": 1}))
    assert one(single, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 0
    strategy = one(single, "Deployment")["spec"]["strategy"]["rollingUpdate"]
    assert strategy == {"maxSurge": 1, "maxUnavailable": 0}
    short = _merged(MINIMAL_INFERENCE, {"progressDeadlineSeconds": 600})
    with pytest.raises(helm.HelmRenderError, match="must exceed the startup probe's budget"):
        render("r1ov-inference", short)


def test_kserve_alternative_serves_the_registered_model(mlflow_server: int, tmp_path: Path) -> None:
    """The InferenceService (validated against KServe's CRD with the other ci objects) asks for the
    models:/ URI through this release's storage container; that container's exact command, run as
    KServe runs it (the URI and /mnt/models as arguments), resolves the alias through MLflow, and the
    runtime's vLLM command serves the directory it names."""
    objects = render("r1ov-inference", load_values(CHARTS / "r1ov-inference/ci/kserve-values.yaml"))
    assert not by_kind(objects, "Deployment") and not by_kind(objects, "Service")
    isvc = one(objects, "InferenceService")
    predictor = isvc["spec"]["predictor"]
    assert predictor["model"]["storageUri"] == "models:/r1ov-7b@champion"
    assert predictor["nodeSelector"] == bundle.pool_selector("serve") and bundle.GPU_TAINT in predictor["tolerations"]
    assert predictor["model"]["resources"]["limits"][bundle.GPU_RESOURCE] == 1
    assert predictor["labels"]["r1ov.io/mlflow-client"] == "true"
    storage = one(objects, "ClusterStorageContainer")
    assert predictor["storageContainerName"] == storage["metadata"]["name"]
    pod = kserve_predictor_pod(objects)
    init, server = pod["initContainers"][0], pod["containers"][0]
    _register_tiny(mlflow_server, tmp_path, "kserve-tiny", versions=2)
    env = {e["name"]: e["value"] for e in init["env"] if "value" in e}
    env.update(MLFLOW_TRACKING_URI=f"http://127.0.0.1:{mlflow_server}", PATH=os.environ["PATH"], HOME=str(tmp_path))
    env.update(PYTHONPATH=os.environ.get("PYTHONPATH", ""), **MLFLOW_CLIENT_ENV)
    dest = tmp_path / "mnt" / "models"
    assert init["command"][0] == "sh" and "python -m r1ov.registry.serving" in init["command"][2]
    script = init["command"][2].replace("exec python", f"exec {sys.executable}")
    uri = init["args"][0].replace("r1ov-7b", "kserve-tiny")
    result = subprocess.run(
        ["sh", "-c", script, init["command"][3], uri, str(dest)], env=env, capture_output=True, timeout=180
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    served = Path((dest / "model-path").read_text())
    assert served == dest / "kserve-tiny" / "2"  # champion, resolved to its version: what /v1/models reports
    assert json.loads((served / "config.json").read_text()) == {"model_type": "tiny", "index": 1}
    # vLLM serves the directory the path file names, from the volume KServe mounts at /mnt/models.
    assert server["command"][:2] == ["sh", "-c"]
    assert f'"$(cat {KSERVE_MODEL_DIR}/model-path)"' in server["command"][2]
    assert init["args"][1] == KSERVE_MODEL_DIR


def _kserve_release(release: str, namespace: str, model: str = "r1ov-7b") -> list[tuple[str, dict[str, Any]]]:
    values = _merged(load_values(CHARTS / "r1ov-inference/ci/kserve-values.yaml"), {"model": {"name": model}})
    out = chart("r1ov-inference").render(values, name=release, namespace=namespace)
    return [
        (t, d) for t, text in sorted(out.items()) if not t.endswith("NOTES.txt") for d in yaml.safe_load_all(text) if d
    ]


def _cluster_scoped(objects: list[tuple[str, dict[str, Any]]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for _, o in objects if o["kind"] == "ClusterStorageContainer"}


def _kserve_matches(storage: dict[str, Any], uri: str) -> bool:
    """kserve/kserve v0.20.0 pkg/apis/serving/v1alpha1/storage_container_types.go IsStorageUriSupported:
    a prefix by strings.HasPrefix, else a regex by regexp.MatchString (unanchored search)."""
    for fmt in storage["spec"]["supportedUriFormats"]:
        if fmt.get("prefix"):
            if uri.startswith(fmt["prefix"]):
                return True
        elif fmt.get("regex") and re.search(fmt["regex"], uri):
            return True
    return False


def test_two_kserve_releases_each_get_their_own_storage_container() -> None:
    """The ClusterStorageContainer is cluster-scoped: two releases (another namespace, another model)
    must not write one object, and each InferenceService resolves its URI with its own tracking
    server and credentials."""
    first = _kserve_release("r1ov", "r1ov")
    second = _merged(load_values(CHARTS / "r1ov-inference/ci/kserve-values.yaml"), {
        "model": {"name": "r1ov-3b"}, "mlflow": {"trackingUri": "http://mlflow.team-b.svc:5000", "existingSecret": "b"},
    })  # fmt: skip
    out = chart("r1ov-inference").render(second, name="r1ov", namespace="team-b")
    second_objects = [
        (t, d) for t, text in sorted(out.items()) if not t.endswith("NOTES.txt") for d in yaml.safe_load_all(text) if d
    ]
    a, b = _cluster_scoped(first), _cluster_scoped(second_objects)
    assert len(a) == len(b) == 1 and not set(a) & set(b)  # same release name, no shared cluster object
    for objects in (first, second_objects):
        (storage,) = _cluster_scoped(objects).values()
        isvc = one(objects, "InferenceService")
        assert isvc["spec"]["predictor"]["storageContainerName"] == storage["metadata"]["name"]
        validate(storage)
    (sa,), (sb,) = a.values(), b.values()
    tracking = {
        o["metadata"]["name"]: {e["name"]: e.get("value") for e in o["spec"]["container"]["env"]} for o in (sa, sb)
    }
    assert (
        tracking[sa["metadata"]["name"]]["MLFLOW_TRACKING_URI"]
        != tracking[sb["metadata"]["name"]]["MLFLOW_TRACKING_URI"]
    )
    # Auto-matching (an InferenceService that names no container) picks neither for the other's model.
    assert _kserve_matches(sa, "models:/r1ov-7b@champion") and _kserve_matches(sa, "models:/r1ov-7b/3")
    assert not _kserve_matches(sa, "models:/r1ov-3b@champion") and not _kserve_matches(sa, "models:/r1ov-7b-old@x")
    assert _kserve_matches(sb, "models:/r1ov-3b@champion") and not _kserve_matches(sb, "models:/r1ov-7b@champion")
    # Two releases in one namespace differ by release name.
    third = _cluster_scoped(_kserve_release("canary", "r1ov"))
    assert not set(third) & set(a)


@pytest.mark.parametrize("mode", ["RawDeployment", "Standard", "Serverless", "Knative"])
def test_kserve_endpoint_is_cluster_local_keyed_and_tested(mode: str) -> None:
    """KServe mode is guarded like the Deployment: vLLM's API key from the Secret, no route outside
    the cluster, a NetworkPolicy where KServe makes a plain Deployment, and a helm test that calls the
    predictor Service with the key; the predictor pod KServe builds passes Pod Security "restricted"."""
    from r1ov.testing.pod_security import violations

    values = _merged(load_values(CHARTS / "r1ov-inference/ci/kserve-values.yaml"), {"kserve": {"deploymentMode": mode}})
    objects = render("r1ov-inference", values)
    for _, obj in objects:
        validate(obj)
    isvc = one(objects, "InferenceService")
    standard = mode in ("RawDeployment", "Standard")
    # kserve/kserve v0.20.0: kube_ingress_reconciler.go (Standard) reads networking.kserve.io/visibility,
    # ingress_reconciler.go (Knative) networking.knative.dev/visibility.
    label = "networking.kserve.io/visibility" if standard else "networking.knative.dev/visibility"
    assert isvc["metadata"]["labels"][label] == "cluster-local"
    pod = kserve_predictor_pod(objects)
    assert violations("restricted", pod) == []
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": pod},
                                 KUBE_VERSION, strict=True)  # fmt: skip
    server = pod["containers"][0]
    key_ref = {e["name"]: e for e in server["env"]}["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"]
    assert key_ref == {"name": "r1ov-inference-api-key", "key": "api-key"}
    assert not any("api-key" in arg for arg in server["args"])
    pod_labels = {**predictor_labels(isvc), "serving.kserve.io/inferenceservice": isvc["metadata"]["name"]}
    policies = by_kind(objects, "NetworkPolicy")
    test_pod = one(objects, "Pod")
    if standard:
        (policy,) = policies
        assert _matches(policy["spec"]["podSelector"]["matchLabels"], pod_labels)
        assert not _matches(policy["spec"]["podSelector"]["matchLabels"], test_pod["metadata"]["labels"])
        assert policy["spec"]["ingress"][0]["ports"] == [
            {"port": server["ports"][0]["containerPort"], "protocol": "TCP"}
        ]
    else:
        assert policies == []  # Knative's activator and queue-proxy sit in front of the pod
    # The helm test: the predictor Service KServe makes (<name>-predictor, port 80), the same key.
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    test_container = test_pod["spec"]["containers"][0]
    assert (
        arg_after(test_container["command"], "--endpoint")
        == f"http://{isvc['metadata']['name']}-predictor.{NAMESPACE}.svc:80"
    )
    assert {e["name"]: e for e in test_container["env"]}["API_KEY"]["valueFrom"]["secretKeyRef"] == key_ref
    assert arg_after(test_container["command"], "--served-model-name") == arg_after(
        server["args"], "--served-model-name"
    )
    assert not _matches(predictor_labels(isvc), test_pod["metadata"]["labels"])


def predictor_labels(isvc: dict[str, Any]) -> dict[str, str]:
    return isvc["spec"]["predictor"]["labels"]


def test_every_settings_key_reaches_the_pipeline_pods() -> None:
    """The ConfigMap's keys (every setting filled in) are exactly what each pipeline task maps into its env."""
    values = _merged(SMALL_PLATFORM, {"settings": {"s3Endpoint": "http://s3:8333", "awsRegion": "eu-west-1"}})
    published = set(settings_map(render("r1ov-platform", values))["data"])
    _, platform = yaml.safe_load_all((ROOT / "pipelines/r1ov.yaml").read_text())
    for name, executor in platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].items():
        mapped = {
            key["configMapKey"]
            for entry in executor.get("configMapAsEnv", [])
            if entry["configMapName"] == "r1ov-settings"
            for key in entry["keyToEnv"]
        }
        assert mapped == published, f"{name}: {sorted(published ^ mapped)}"


def test_image_settings_are_read_by_the_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    monkeypatch.setenv("R1OV_IMAGE_REGISTRY", "registry.example.com/ml")
    monkeypatch.setenv("R1OV_IMAGE_TAG", "0.1.0-rc2")
    reloaded = importlib.reload(bundle)
    try:
        assert reloaded.image("train") == "registry.example.com/ml/r1ov-train:0.1.0-rc2"
    finally:
        monkeypatch.undo()
        importlib.reload(bundle)
