"""Custom resources against the CRDs installed in the stand-in API server, as kube-apiserver treats them.

The stand-in prunes what a CRD's structural schema does not declare and validates the rest against its
OpenAPI schema (``r1ov.testing.crd_schema``, citing k8s.io/apiextensions-apiserver), with the
``fieldValidation`` semantics of the create handler: ``Warn`` (the default) prunes and warns, ``Strict``
refuses with 400. The CRDs are the vendored upstream files in tests/crds and tests/chart_crds (see their
SOURCES.md), including Trainer v2.1.0's TrainJob, which predates ``runtimePatches`` and
``activeDeadlineSeconds``: on such a cluster the launcher must refuse to submit rather than lose the
pods' placement, security context and service account.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient, Configuration, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from r1ov.config import DistributedConfig
from r1ov.k8s import client, endpoint
from r1ov.k8s.trainjobs import build_pytorchjob, build_trainjob
from r1ov.testing.crd_schema import CRD, prune
from r1ov.testing.kube_api import StandInAPI, planned_pods, serve
from r1ov.testing.pod_security import ENFORCE_LABEL

NS = "r1ov"
CRDS = Path(__file__).parent / "crds"
CHART_CRDS = Path(__file__).parent / "chart_crds"
CHARTS = Path(__file__).parent.parent / "charts"
PYTORCHJOB = CRD.load(CRDS / "kubeflow.org_pytorchjobs.yaml")  # Training Operator v1.9.4
TRAINJOB = CRD.load(CRDS / "trainer.kubeflow.org_trainjobs.yaml")  # Trainer v2.3.0
TRAINJOB_V2_1 = CRD.load(CRDS / "trainer.kubeflow.org_trainjobs.v2.1.0.yaml")  # Trainer v2.1.0
RUNTIME = CRD.load(CRDS / "trainer.kubeflow.org_clustertrainingruntimes.yaml")  # Trainer v2.3.0
ISVC = CRD.load(CHART_CRDS / "serving.kserve.io_inferenceservices.yaml")  # KServe v0.20.0
SCRIPT = [("Created", "Created", "created"), ("Running", "Running", "running"), ("Complete", "Done", "done")]

SCRIPT_PYTORCH = [("Created", "Created", "created"), ("Running", "Running", "running"), ("Succeeded", "Done", "done")]


@pytest.fixture
def cluster(request: pytest.FixtureRequest) -> Iterator[tuple[StandInAPI, ApiClient]]:
    """A stand-in with the CRDs the test names (indirect parameter), and a client for it."""
    api = StandInAPI(crds=list(getattr(request, "param", [PYTORCHJOB, TRAINJOB, ISVC])))
    with serve(api) as url:
        configuration = Configuration()
        configuration.host = url
        yield api, ApiClient(configuration)


def _dist(launcher: str, **cluster: Any) -> DistributedConfig:
    return DistributedConfig.model_validate(
        {"launcher": launcher, "nnodes": 2, "nproc_per_node": 1, "cluster": {"namespace": NS, **cluster}}
    )


def _trainjob(**cluster: Any) -> dict[str, Any]:
    return build_trainjob("sft", ["torchrun", "-m", "r1ov.train.sft"], _dist("trainjob", **cluster), {})


def _stored(api: StandInAPI, plural: str, name: str) -> dict[str, Any] | None:
    return api.objects.get((plural, NS, name))


def _create_raw(kube: ApiClient, obj: dict[str, Any], plural: str, **kwargs: Any) -> Any:
    group, version = obj["apiVersion"].split("/")
    return CustomObjectsApi(kube).create_namespaced_custom_object(group, version, NS, plural, obj, **kwargs)


# --------------------------------------------------------------------------- pruning, as algorithm.go does


SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "replicas": {"type": "integer"},
                "items": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                         "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "template": {"type": "object", "x-kubernetes-embedded-resource": True,
                             "properties": {"spec": {"type": "object", "properties": {}}}},
            },
        }
    },
}  # fmt: skip


def test_pruning_drops_undeclared_fields_and_reports_their_paths() -> None:
    obj = {
        "apiVersion": "x.io/v1",
        "kind": "X",
        "metadata": {"name": "a", "whatever": 1},  # metadata: never pruned at the root
        "spec": {
            "replicas": 2,
            "typo": 1,
            "items": [{"name": "a"}, {"name": "b", "extra": True}],
            "free": {"anything": {"goes": 1}, "known": {"a": "x", "b": "dropped below a declared field"}},
            "labels": {"k": "v"},
            "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"k": "v"}}, "spec": {"x": 1}},
        },
        "status": {"anything": 1},
    }
    unknown = prune(obj, SCHEMA)
    assert unknown == [
        "spec.free.known.b",
        "spec.items[1].extra",
        "spec.template.spec.x",
        "spec.typo",
        "status",
    ]
    assert obj["metadata"] == {"name": "a", "whatever": 1}
    assert obj["spec"]["free"]["anything"] == {"goes": 1}  # preserved: x-kubernetes-preserve-unknown-fields
    assert obj["spec"]["template"]["metadata"] == {"labels": {"k": "v"}}  # kept: x-kubernetes-embedded-resource
    assert obj["spec"]["labels"] == {"k": "v"} and obj["spec"]["items"][1] == {"name": "b"}
    assert "status" not in obj and "typo" not in obj["spec"]


# Cases of apiextensions-apiserver's own table (pkg/apiserver/schema/pruning/algorithm_test.go, TestPrune),
# in this module's schema form: (object, schema, object after pruning, pruned paths), not at a resource root.
UPSTREAM_CASES = {
    "object array": (
        [{"a": 1}, {"b": 1}, {"a": 1, "b": 2, "c": 3}],
        {"items": {"properties": {"a": {}, "c": {}}}},
        [{"a": 1}, {}, {"a": 1, "c": 3}],
        ["[1].b", "[2].b"],
    ),
    "object array with nil schema": (
        [{"a": 1}, {"b": 1}, {"a": 1, "b": 2, "c": 3}],
        None,
        [{}, {}, {}],
        ["[0].a", "[1].b", "[2].a", "[2].b", "[2].c"],
    ),
    "additionalProperties with schema": (
        {"a": 1, "b": 1, "c": {"a": 1, "b": 2, "c": {"a": 1}}},
        {"properties": {"a": {}, "c": {"additionalProperties": {"type": "integer"}}}},
        {"a": 1, "c": {"a": 1, "b": 2, "c": {}}},
        ["b", "c.c.a"],
    ),
    "additionalProperties with bool": (
        {"a": 1, "b": 1, "c": {"a": 1, "b": 2, "c": {"a": 1, "apiVersion": "unknown"}}},
        {"properties": {"a": {}, "c": {"additionalProperties": False}}},
        {"a": 1, "c": {"a": 1, "b": 2, "c": {}}},
        ["b", "c.c.a", "c.c.apiVersion"],
    ),
}


@pytest.mark.parametrize("case", list(UPSTREAM_CASES))
def test_pruning_agrees_with_the_api_server_s_own_cases(case: str) -> None:
    obj, schema, expected, pruned = UPSTREAM_CASES[case]
    obj = copy.deepcopy(obj)
    assert prune(obj, schema, root=False) == pruned
    assert obj == expected


def test_the_objects_r1ov_builds_lose_nothing_to_pruning_on_the_supported_operators() -> None:
    for job, crd, version in (
        (build_pytorchjob("sft", ["torchrun"], _dist("pytorchjob", active_deadline_s=60), {}), PYTORCHJOB, "v1"),
        (_trainjob(active_deadline_s=60), TRAINJOB, "v1alpha1"),
    ):
        pruned = copy.deepcopy(job)
        assert prune(pruned, crd.schemas[version]) == [] and pruned == job
        assert crd.validator(version).errors(pruned) == []


def test_an_older_trainer_prunes_the_fields_that_carry_placement_and_the_service_account() -> None:
    job = _trainjob(active_deadline_s=3600, service_account="r1ov-train", pool="train")
    pruned = copy.deepcopy(job)
    assert prune(pruned, TRAINJOB_V2_1.schemas["v1alpha1"]) == ["spec.activeDeadlineSeconds", "spec.runtimePatches"]
    assert "runtimePatches" not in pruned["spec"]  # nodeSelector, tolerations, securityContext, serviceAccountName


# --------------------------------------------------------------------------- the stand-in, over HTTP


@pytest.mark.parametrize("cluster", [[TRAINJOB_V2_1]], indirect=True)
def test_by_default_an_unknown_field_is_pruned_with_a_warning(cluster: tuple[StandInAPI, ApiClient]) -> None:
    api, kube = cluster
    job = _trainjob(active_deadline_s=3600)
    created = _create_raw(kube, job, "trainjobs")  # no fieldValidation: the server's default, Warn
    assert "runtimePatches" not in created["spec"] and "activeDeadlineSeconds" not in created["spec"]
    assert "runtimePatches" not in _stored(api, "trainjobs", job["metadata"]["name"])["spec"]
    assert api.warnings == ['unknown field "spec.activeDeadlineSeconds"', 'unknown field "spec.runtimePatches"']


@pytest.mark.parametrize("cluster", [[TRAINJOB_V2_1]], indirect=True)
def test_what_pruning_costs_a_trainjob_on_an_older_trainer(cluster: tuple[StandInAPI, ApiClient]) -> None:
    """Without strict validation the job is stored without runtimePatches, so its node pods lose the
    security context, placement and service account they carried: a restricted namespace refuses them."""
    api, kube = cluster
    api.namespace_labels[NS] = {ENFORCE_LABEL: "restricted"}
    job = _trainjob(service_account="r1ov-train")
    _create_raw(kube, job, "trainjobs")
    for _, spec in planned_pods("TrainJob", _stored(api, "trainjobs", "sft")):  # one per node
        assert "nodeSelector" not in spec and "serviceAccountName" not in spec and "securityContext" not in spec
    events = [o for (plural, _, _), o in api.objects.items() if plural == "events"]
    assert [e["reason"] for e in events] == ["FailedCreate"]
    assert 'violates PodSecurity "restricted:latest"' in events[0]["message"]


@pytest.mark.parametrize("cluster", [[TRAINJOB_V2_1]], indirect=True)
def test_strict_field_validation_refuses_an_unknown_field_with_400(cluster: tuple[StandInAPI, ApiClient]) -> None:
    api, kube = cluster
    job = _trainjob()
    with pytest.raises(ApiException) as caught:
        _create_raw(kube, job, "trainjobs", field_validation="Strict")
    body = json.loads(caught.value.body)
    assert caught.value.status == 400 and body["reason"] == "BadRequest"
    assert body["message"] == (
        'TrainJob in version "v1alpha1" cannot be handled as a TrainJob: strict decoding error: '
        'unknown field "spec.activeDeadlineSeconds", unknown field "spec.runtimePatches"'
    )
    assert _stored(api, "trainjobs", job["metadata"]["name"]) is None


def test_a_pytorchjob_with_a_wrong_typed_field_gets_422_with_the_field_path(
    cluster: tuple[StandInAPI, ApiClient],
) -> None:
    api, kube = cluster
    job = build_pytorchjob("sft", ["torchrun"], _dist("pytorchjob"), {})
    job["spec"]["runPolicy"]["backoffLimit"] = "3"
    del job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["image"]
    job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["name"] = None
    with pytest.raises(ApiException) as caught:
        _create_raw(kube, job, "pytorchjobs")
    body = json.loads(caught.value.body)
    assert caught.value.status == 422 and body["reason"] == "Invalid"
    master = "spec.pytorchReplicaSpecs.Master.template.spec.containers[0]"
    assert body["details"]["causes"] == [
        # a null that is neither nullable nor defaulted is pruned first (prunenulls.go), then required
        {"reason": "FieldValueRequired", "message": "Required value", "field": f"{master}.name"},
        {
            "reason": "FieldValueTypeInvalid",
            "message": 'Invalid value: "string": spec.runPolicy.backoffLimit in body must be of type integer: "string"',
            "field": "spec.runPolicy.backoffLimit",
        },
    ]
    assert body["message"].startswith('PyTorchJob.kubeflow.org "sft" is invalid: [')
    assert _stored(api, "pytorchjobs", "sft") is None


def test_a_pattern_violation_names_the_field_and_the_pattern(cluster: tuple[StandInAPI, ApiClient]) -> None:
    _, kube = cluster
    job = _trainjob()
    job["spec"]["trainer"]["resourcesPerNode"]["limits"]["memory"] = "64 GB"
    with pytest.raises(ApiException) as caught:
        _create_raw(kube, job, "trainjobs")
    (cause,) = json.loads(caught.value.body)["details"]["causes"]
    where = "spec.trainer.resourcesPerNode.limits.memory"
    assert cause["field"] == where and cause["reason"] == "FieldValueInvalid"
    assert cause["message"].startswith(f'Invalid value: "64 GB": {where} in body should match \'^(\\+|-)?((')


def test_enum_and_length_errors_read_as_the_api_server_writes_them() -> None:
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "policy": {"type": "string", "enum": ["All", "None"]},
        "name": {"type": "string", "maxLength": 3},
        "items": {"type": "array", "maxItems": 1, "items": {"type": "string"}},
    }}}}  # fmt: skip
    obj = {"spec": {"policy": "Some", "name": "long", "items": ["a", "b"]}}
    errors = [str(e) for e in CRD("x.io", "X", "xs", True, {"v1": schema}).validator("v1").errors(obj)]
    assert errors == [
        "spec.items: Too many: 2: must have at most 1 item",
        "spec.name: Too long: may not be more than 3 bytes",
        'spec.policy: Unsupported value: "Some": supported values: "All", "None"',
    ]


def test_the_inference_service_the_chart_renders_and_promotion_applies_are_valid(
    cluster: tuple[StandInAPI, ApiClient],
) -> None:
    """charts/r1ov-inference in KServe mode: its InferenceService is created with strict field validation
    (nothing would be pruned), and promotion's server-side apply of the version annotation merges into it."""
    import helm_python as helm

    api, kube = cluster
    values = yaml.safe_load((CHARTS / "r1ov-inference/ci/kserve-values.yaml").read_text())
    rendered = helm.Chart.load(str(CHARTS / "r1ov-inference")).render(values, name="serve", namespace=NS)
    (isvc,) = [
        doc
        for name, text in rendered.items()
        if not name.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc and doc["kind"] == "InferenceService"
    ]
    created = _create_raw(kube, isvc, "inferenceservices", field_validation="Strict")
    assert created["spec"] == isvc["spec"]
    name = isvc["metadata"]["name"]
    client.apply([endpoint.version_patch(name, "7", kind="InferenceService")], NS, api_client=kube)
    stored = _stored(api, "inferenceservices", name)
    assert stored["spec"]["predictor"]["annotations"][endpoint.VERSION_ANNOTATION] == "7"
    assert api.warnings == []


def test_an_apply_with_a_field_the_crd_lacks_fails_like_the_api_server(cluster: tuple[StandInAPI, ApiClient]) -> None:
    api, kube = cluster
    patch = endpoint.version_patch("serve", "7", kind="InferenceService")
    patch["spec"]["predictor"]["replicas"] = 2  # not a field of the v1beta1 predictor
    with pytest.raises(ApiException) as caught:
        client.apply([patch], NS, api_client=kube)
    assert caught.value.status == 500
    assert ".spec.predictor.replicas: field not declared in schema" in json.loads(caught.value.body)["message"]
    assert _stored(api, "inferenceservices", "serve") is None


def test_upstream_torch_distributed_runtime_validates_and_a_misspelt_field_would_be_pruned() -> None:
    """r1ov renders no ClusterTrainingRuntime (TrainJobs use the one Trainer installs): its schema is held
    against Trainer v2.3.0's own torch-distributed runtime, which must come through untouched."""
    runtime = yaml.safe_load((CRDS / "torch_distributed.v2.3.0.yaml").read_text())
    kept = copy.deepcopy(runtime)
    assert prune(kept, RUNTIME.schemas["v1alpha1"]) == [] and kept == runtime
    assert RUNTIME.validator("v1alpha1").errors(kept) == []
    runtime["spec"]["mlPolicy"]["numNode"] = 2
    assert prune(runtime, RUNTIME.schemas["v1alpha1"]) == ["spec.mlPolicy.numNode"]


# --------------------------------------------------------------------------- the launcher


@pytest.mark.parametrize("cluster", [[TRAINJOB_V2_1]], indirect=True)
def test_the_launcher_refuses_a_trainjob_an_older_trainer_would_prune(
    cluster: tuple[StandInAPI, ApiClient],
) -> None:
    api, kube = cluster
    api.script = SCRIPT
    job = _trainjob(active_deadline_s=3600)
    with pytest.raises(client.JobFailed) as caught:
        client.run_to_completion(job, NS, poll_s=0.05, timeout_s=10, api_client=kube)
    message = str(caught.value)
    assert "spec.runtimePatches" in message and "spec.activeDeadlineSeconds" in message
    assert "Kubeflow Trainer v2.2.0" in message
    assert "\n" not in message
    assert _stored(api, "trainjobs", job["metadata"]["name"]) is None  # nothing was submitted


@pytest.mark.parametrize("cluster", [[TRAINJOB]], indirect=True)
def test_the_same_trainjob_runs_on_trainer_v2_3(cluster: tuple[StandInAPI, ApiClient]) -> None:
    api, kube = cluster
    api.script = SCRIPT
    job = _trainjob(active_deadline_s=3600)
    summary = client.run_to_completion(job, NS, poll_s=0.05, timeout_s=10, api_client=kube, follow_logs=False)
    assert summary["state"] == "Complete"
    assert _stored(api, "trainjobs", job["metadata"]["name"])["spec"]["runtimePatches"] == job["spec"]["runtimePatches"]


def test_the_launcher_reports_an_invalid_job_in_one_line(cluster: tuple[StandInAPI, ApiClient]) -> None:
    _, kube = cluster
    job = build_pytorchjob("sft", ["torchrun"], _dist("pytorchjob"), {})
    job["spec"]["runPolicy"]["backoffLimit"] = "3"
    with pytest.raises(client.JobFailed) as caught:
        client.run_to_completion(job, NS, poll_s=0.05, timeout_s=10, api_client=kube)
    assert caught.value.reason == "Invalid"
    assert "spec.runPolicy.backoffLimit" in str(caught.value) and "\n" not in str(caught.value)
