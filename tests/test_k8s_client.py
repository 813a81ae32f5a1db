"""The cluster client, driven through the real ``kubernetes`` package against the local stand-in API server.

``r1ov.testing.kube_api.StandInAPI`` speaks the REST paths and payloads the ``kubernetes`` client
sends and plays the operators with a script (see its docstring for what it does not model); the
client must find the job's main pod by the labels the real operator or JobSet puts on it.
Authorization is checked with the Role that ``charts/r1ov-platform`` renders for the pipeline's
service account: a request the Role does not grant is a 403, as on a cluster.
"""

from __future__ import annotations

import _thread
import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient, Configuration

from r1ov.config import DistributedConfig
from r1ov.k8s import client
from r1ov.k8s.rollout import build_rollout_server
from r1ov.k8s.trainjobs import build_pytorchjob, build_trainjob
from r1ov.testing.crd_schema import CRD
from r1ov.testing.kube_api import StandInAPI, kubeconfig, serve

# The operators' CRDs at the supported releases (tests/crds): the stand-in prunes and validates jobs as a cluster would.
OPERATOR_CRDS = [
    CRD.load(Path(__file__).parent / "crds" / f)
    for f in ("kubeflow.org_pytorchjobs.yaml", "trainer.kubeflow.org_trainjobs.yaml")
]

NS = "r1ov"


@pytest.fixture
def api() -> Iterator[StandInAPI]:
    state = StandInAPI(crds=OPERATOR_CRDS)
    with serve(state):
        yield state


@pytest.fixture
def kube(api: StandInAPI) -> ApiClient:
    configuration = Configuration()
    configuration.host = api.url
    return ApiClient(configuration)


def _dist(nnodes: int = 2) -> DistributedConfig:
    return DistributedConfig(launcher="pytorchjob", nnodes=nnodes, nproc_per_node=1, cluster={"namespace": NS})


def _deleted(api: StandInAPI, name: str) -> bool:
    return any(method == "DELETE" and path.endswith(f"/{name}") for method, path, _ in api.requests)


def _pod_log_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "r1ov.k8s.pods"]


# --------------------------------------------------------------------------- run_to_completion


def test_pytorchjob_success_streams_master_log(api: StandInAPI, kube: ApiClient, caplog) -> None:
    caplog.set_level(logging.INFO)
    api.script = [
        ("Created", "PyTorchJobCreated", "created"),
        ("Running", "PyTorchJobRunning", "running"),
        ("Running", "PyTorchJobRunning", "running"),
        ("Succeeded", "PyTorchJobSucceeded", "PyTorchJob r1ov/sft successfully completed."),
    ]
    api.log_lines = [f"step {i} loss {1 / (i + 1):.3f}" for i in range(5)]
    job = build_pytorchjob("sft", ["torchrun", "-m", "r1ov.train.sft"], _dist(), {})
    summary = client.run_to_completion(job, NS, poll_s=0.05, timeout_s=30, api_client=kube)
    assert summary["state"] == "Succeeded" and summary["reason"] == "PyTorchJobSucceeded"
    assert summary["name"] == "sft" and summary["kind"] == "PyTorchJob"
    # Every line once, in order, despite reconnects (the stand-in closes each follow stream).
    assert _pod_log_messages(caplog) == [f"[sft-master-0] {line}" for line in api.log_lines]
    assert summary["log_lines"] == 5
    assert not _deleted(api, "sft")  # a finished job stays for its TTL
    (create,) = [r for r in api.requests if r[0] == "POST"]
    assert create[1] == f"/apis/kubeflow.org/v1/namespaces/{NS}/pytorchjobs"


def test_trainjob_success_follows_node0(api: StandInAPI, kube: ApiClient, caplog) -> None:
    caplog.set_level(logging.INFO)
    api.script = [("Running", "", ""), ("Running", "", ""), ("Complete", "JobSetCompleted", "jobset completed")]
    api.log_lines = ["node 0 up", "done"]
    job = build_trainjob("sft", ["torchrun", "-m", "r1ov.train.sft"], _dist(), {})
    summary = client.run_to_completion(job, NS, poll_s=0.05, timeout_s=30, api_client=kube)
    assert summary["state"] == "Complete"
    assert _pod_log_messages(caplog) == ["[sft-node-0-0-x7k2p] node 0 up", "[sft-node-0-0-x7k2p] done"]


def test_failed_job_raises_reason_and_is_deleted(api: StandInAPI, kube: ApiClient, caplog) -> None:
    caplog.set_level(logging.INFO)
    api.script = [
        ("Created", "PyTorchJobCreated", "created"),
        ("Running", "PyTorchJobRunning", "running"),
        ("Failed", "PyTorchJobFailed", "PyTorchJob r1ov/sft is failed because 1 Master replica(s) failed."),
    ]
    api.log_lines = ["step 0", "Traceback (most recent call last):", "torch.OutOfMemoryError: CUDA out of memory"]
    job = build_pytorchjob("sft", ["torchrun"], _dist(), {})
    with pytest.raises(client.JobFailed) as failure:
        client.run_to_completion(job, NS, poll_s=0.05, timeout_s=30, api_client=kube)
    assert failure.value.reason == "PyTorchJobFailed"
    assert "Master replica(s) failed" in failure.value.message
    assert _deleted(api, "sft") and ("pytorchjobs", NS, "sft") not in api.objects
    (delete,) = [r for r in api.requests if r[0] == "DELETE"]
    assert delete[2]["propagationPolicy"] == ["Background"]  # pods go with the job
    # The failing pod's last lines were emitted before the job was deleted.
    assert "[sft-master-0] torch.OutOfMemoryError: CUDA out of memory" in _pod_log_messages(caplog)


def test_timeout_deletes_the_job(api: StandInAPI, kube: ApiClient) -> None:
    api.script = [("Created", "PyTorchJobCreated", ""), ("Running", "PyTorchJobRunning", "")]
    job = build_pytorchjob("sft", ["torchrun"], _dist(), {})
    started = time.monotonic()
    with pytest.raises(client.JobTimeout) as failure:
        client.run_to_completion(job, NS, poll_s=0.05, timeout_s=0.5, api_client=kube)
    assert isinstance(failure.value, client.JobFailed) and failure.value.reason == "Timeout"
    assert "last state: Running" in failure.value.message
    assert time.monotonic() - started < 10
    assert _deleted(api, "sft") and ("pytorchjobs", NS, "sft") not in api.objects


@pytest.mark.usefixtures("ctrl_c_raises")
@pytest.mark.parametrize("how", ["sigterm", "interrupt"])
def test_cancel_deletes_the_job(api: StandInAPI, kube: ApiClient, how: str) -> None:
    api.script = [("Running", "PyTorchJobRunning", "")]
    job = build_pytorchjob("sft", ["torchrun"], _dist(), {})
    handler_before = signal.getsignal(signal.SIGTERM)
    if how == "sigterm":
        timer = threading.Timer(0.4, os.kill, (os.getpid(), signal.SIGTERM))
        expected: type[BaseException] = SystemExit
    else:
        timer = threading.Timer(0.4, _thread.interrupt_main)
        expected = KeyboardInterrupt
    timer.start()
    try:
        with pytest.raises(expected) as stopped:
            client.run_to_completion(job, NS, poll_s=0.05, timeout_s=30, api_client=kube)
    finally:
        timer.cancel()
    if how == "sigterm":
        assert stopped.value.code == 128 + signal.SIGTERM
    assert _deleted(api, "sft") and ("pytorchjobs", NS, "sft") not in api.objects
    assert signal.getsignal(signal.SIGTERM) == handler_before


@pytest.mark.parametrize(
    ("pod_status", "script", "quoted"),
    [
        ({"reason": "OOMKilled", "exit_code": 137}, [("Failed", "PyTorchJobFailed", "1 Master replica(s) failed.")],
         "sft-master-0: OOMKilled (exit code 137)"),
        ({"reason": "ImagePullBackOff", "message": 'Back-off pulling image "r1ov-train:bad"'}, [("Created", "", "")],
         'sft-master-0: ImagePullBackOff: Back-off pulling image "r1ov-train:bad"'),
        ({"reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."},
         [("Created", "", "")], "sft-master-0: Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu."),
    ],
    ids=["oom", "image-pull", "unschedulable"],
)  # fmt: skip
def test_failure_and_timeout_quote_what_the_pods_say(
    api: StandInAPI, kube: ApiClient, pod_status: dict[str, Any], script: list, quoted: str
) -> None:
    api.script = script
    api.pod_status = pod_status
    job = build_pytorchjob("sft", ["torchrun"], _dist(), {})
    with pytest.raises(client.JobFailed) as failure:
        client.run_to_completion(job, NS, poll_s=0.05, timeout_s=1, api_client=kube, follow_logs=False)
    assert quoted in str(failure.value)
    assert _deleted(api, "sft")


def test_existing_job_is_reported_not_deleted(api: StandInAPI, kube: ApiClient) -> None:
    job = build_pytorchjob("sft", ["torchrun"], _dist(), {})
    api.objects[("pytorchjobs", NS, "sft")] = {**job, "metadata": {**job["metadata"], "generation": 1}}
    with pytest.raises(client.JobFailed) as failure:
        client.run_to_completion(job, NS, poll_s=0.05, timeout_s=5, api_client=kube)
    assert failure.value.reason == "AlreadyExists"
    assert not _deleted(api, "sft") and ("pytorchjobs", NS, "sft") in api.objects


def test_transient_api_errors_are_retried(api: StandInAPI, kube: ApiClient) -> None:
    api.fail_job_gets = 3
    api.script = [("Succeeded", "PyTorchJobSucceeded", "ok")]
    job = build_pytorchjob("sft", ["torchrun"], _dist(), {})
    summary = client.run_to_completion(job, NS, poll_s=0.05, timeout_s=30, api_client=kube, follow_logs=False)
    assert summary["state"] == "Succeeded" and summary["log_lines"] == 0


def test_namespace_mismatch_and_unknown_kinds_are_refused(kube: ApiClient) -> None:
    job = build_pytorchjob("sft", ["torchrun"], _dist(), {})
    with pytest.raises(ValueError, match="namespace"):
        client.run_to_completion(job, "other", api_client=kube)
    with pytest.raises(ValueError, match="unsupported job kind"):
        client.run_to_completion(
            {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"}}, NS, api_client=kube
        )


# --------------------------------------------------------------------------- plain objects


def test_apply_wait_ready_delete_rollout_server(api: StandInAPI, kube: ApiClient) -> None:
    objects = build_rollout_server("grpo", "/models/sft", 1, 1, replicas=2, image=None)
    applied = client.apply(objects, NS, api_client=kube)
    assert [o["metadata"]["name"] for o in applied] == ["grpo", "grpo"]
    client.apply(objects, NS, api_client=kube)  # idempotent: same objects, same generation
    assert api.objects[("statefulsets", NS, "grpo")]["metadata"]["generation"] == 1
    assert set(api.objects) == {("statefulsets", NS, "grpo"), ("services", NS, "grpo")}
    patches = [r for r in api.requests if r[0] == "PATCH"]
    assert patches and all(r[2]["fieldManager"] == ["r1ov"] and r[2]["force"] == ["true"] for r in patches)

    status = client.wait_ready(objects[0], NS, timeout_s=10, poll_s=0.05, api_client=kube)
    assert status["readyReplicas"] == 2

    assert client.delete(objects, NS, api_client=kube) == ["StatefulSet/grpo", "Service/grpo"]
    assert api.objects == {}
    assert client.delete(objects, NS, api_client=kube) == []  # already gone is fine


def test_wait_ready_times_out_with_the_status(api: StandInAPI, kube: ApiClient) -> None:
    api.ready_after_gets = -1  # never ready
    objects = build_rollout_server("grpo", "/models/sft", 1, 1, replicas=1, image=None)
    client.apply(objects, NS, api_client=kube)
    with pytest.raises(TimeoutError, match="readyReplicas"):
        client.wait_ready(objects[0], NS, timeout_s=0.3, poll_s=0.05, api_client=kube)


def test_kubeconfig_is_the_fallback(api: StandInAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)  # not inside a pod
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(kubeconfig(api.url, NS, token="test-token")))
    kube = client.load_api_client(str(path))
    objects = build_rollout_server("grpo", "/models/sft", 1, 1, replicas=1, image=None)
    client.apply(objects, NS, api_client=kube)
    assert ("statefulsets", NS, "grpo") in api.objects


@pytest.mark.parametrize("ending", ["success", "failure"])
def test_grpo_rollout_servers_live_exactly_as_long_as_the_job(
    api: StandInAPI, kube: ApiClient, monkeypatch: pytest.MonkeyPatch, ending: str
) -> None:
    """GRPO in vllm-server mode on a cluster launcher: rollout pods up before the trainers,
    their URL handed to the trainers, and torn down on success and failure alike."""
    from r1ov.config import GRPOConfig
    from r1ov.train import launch

    monkeypatch.setattr(client, "load_api_client", lambda *a, **k: kube)
    cfg = GRPOConfig(
        model_name_or_path="s3://bucket/runs/sft",
        train_uri="s3://bucket/clevr",
        output_dir="/tmp/out",
        generation="vllm-server",
        distributed={"launcher": "pytorchjob", "cluster": {"namespace": NS, "poll_s": 0.05}},
    )
    with contextlib.suppress(RuntimeError), launch.rollout_servers("grpo", cfg, "r1ov-grpo-ab12") as job_cfg:
        assert job_cfg.vllm_server_base_url == f"http://r1ov-grpo-ab12-rollout-0.r1ov-grpo-ab12-rollout.{NS}.svc:8000"
        assert ("statefulsets", NS, "r1ov-grpo-ab12-rollout") in api.objects
        if ending == "failure":
            raise RuntimeError("trainer failed")
    assert api.objects == {}


def test_rollout_servers_are_not_started_when_a_url_is_given() -> None:
    from r1ov.config import GRPOConfig
    from r1ov.train import launch

    cfg = GRPOConfig(
        model_name_or_path="m", train_uri="d", output_dir="o", generation="vllm-server",
        vllm_server_base_url="http://shared-rollout:8000", distributed={"launcher": "pytorchjob"},
    )  # fmt: skip
    with launch.rollout_servers("grpo", cfg, "job") as job_cfg:
        assert job_cfg is cfg


def test_exit_handler_sweep_deletes_only_the_runs_objects(api: StandInAPI, kube: ApiClient) -> None:
    """What the pipeline's cleanup task does after a failed or cancelled run."""
    from r1ov.k8s.bundle import RUN_LABEL

    def launched(run: str) -> list[dict[str, Any]]:
        dist = DistributedConfig(launcher="pytorchjob", nnodes=2, cluster={"namespace": NS, "labels": {RUN_LABEL: run}})
        job = build_pytorchjob(f"sft-{run}", ["torchrun", "-m", "x"], dist, {})
        servers = build_rollout_server(f"rollout-{run}", "/m", 1, 1, replicas=1, image=None, labels={RUN_LABEL: run})
        return [job, *servers]

    for obj in launched("run-a") + launched("run-b"):
        client.apply([obj], NS, api_client=kube)
    deleted = client.delete_labelled(NS, f"{RUN_LABEL}=run-a", api_client=kube)
    assert sorted(d.split("/")[0] for d in deleted) == ["PyTorchJob", "Service", "StatefulSet"]
    assert all("run-b" in key[2] for key in api.objects) and len(api.objects) == 3
    assert client.delete_labelled(NS, f"{RUN_LABEL}=run-a", api_client=kube) == []


# --------------------------------------------------------------------------- RBAC of the stand-in

CHART = Path(__file__).resolve().parents[1] / "charts" / "r1ov-platform"


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("POST", f"/apis/kubeflow.org/v1/namespaces/{NS}/pytorchjobs", {}, ("kubeflow.org", "pytorchjobs", "create")),
        ("GET", f"/apis/kubeflow.org/v1/namespaces/{NS}/pytorchjobs/a", {}, ("kubeflow.org", "pytorchjobs", "get")),
        ("GET", f"/api/v1/namespaces/{NS}/pods", {}, ("", "pods", "list")),
        ("GET", f"/api/v1/namespaces/{NS}/pods", {"watch": ["true"]}, ("", "pods", "watch")),
        ("GET", f"/api/v1/namespaces/{NS}/pods/p/log", {}, ("", "pods/log", "get")),
        ("PATCH", f"/apis/apps/v1/namespaces/{NS}/statefulsets/s", {}, ("apps", "statefulsets", "patch")),
        ("PUT", f"/api/v1/namespaces/{NS}/services/s", {}, ("", "services", "update")),
        ("DELETE", f"/api/v1/namespaces/{NS}/services/s", {}, ("", "services", "delete")),
        ("DELETE", f"/api/v1/namespaces/{NS}/services", {}, ("", "services", "deletecollection")),
    ],
)
def test_requests_map_to_rbac_attributes_as_the_api_server_does(method, path, query, expected) -> None:
    from r1ov.testing.kube_api import request_info

    info = request_info(method, path, query)
    assert info is not None and (info.group, info.resource, info.verb) == expected and info.namespace == NS


def test_ungranted_request_is_a_403_like_a_cluster_and_every_call_is_recorded() -> None:
    from kubernetes.client import CustomObjectsApi
    from kubernetes.client.exceptions import ApiException

    state = StandInAPI(
        rules=[{"apiGroups": ["kubeflow.org"], "resources": ["pytorchjobs"], "verbs": ["get"]}], crds=OPERATOR_CRDS
    )
    with serve(state) as url:
        configuration = Configuration()
        configuration.host = url
        custom = CustomObjectsApi(ApiClient(configuration))
        job = build_pytorchjob("sft", ["torchrun"], _dist(), {})
        with pytest.raises(ApiException) as denied:
            custom.create_namespaced_custom_object("kubeflow.org", "v1", NS, "pytorchjobs", job)
        with pytest.raises(ApiException) as missing:  # granted, so the object's absence shows
            custom.get_namespaced_custom_object("kubeflow.org", "v1", NS, "pytorchjobs", "sft")
    assert denied.value.status == 403 and missing.value.status == 404
    body = json.loads(denied.value.body)
    assert body["reason"] == "Forbidden" and body["details"] == {
        "name": "",
        "group": "kubeflow.org",
        "kind": "pytorchjobs",
    }
    assert body["message"] == (
        'pytorchjobs is forbidden: User "system:serviceaccount:r1ov:r1ov-pipeline" cannot create resource '
        f'"pytorchjobs" in API group "kubeflow.org" in the namespace "{NS}"'
    )
    assert state.objects == {}
    assert state.calls() == {("kubeflow.org", "pytorchjobs", "create"), ("kubeflow.org", "pytorchjobs", "get")}
    assert state.calls(denied=True) == {("kubeflow.org", "pytorchjobs", "create")}


def test_chart_role_is_enforced_for_the_pipeline_service_account(caplog) -> None:
    """The Role rendered from charts/r1ov-platform lets the launcher run a job and follow its log."""
    from r1ov.testing.kube_api import allows, request_info, role_rules_from_chart

    rules = role_rules_from_chart(CHART)
    assert rules == role_rules_from_chart(CHART, service_account="r1ov-pipeline")
    with pytest.raises(ValueError, match="binds no Role"):
        role_rules_from_chart(CHART, service_account="someone-else")
    # An extra subject bound through values gets the same rules.
    extra = {"rbac": {"extraSubjects": [{"name": "pipeline-runner"}]}}
    assert role_rules_from_chart(CHART, extra, service_account="pipeline-runner") == rules
    assert not allows(rules, request_info("GET", f"/api/v1/namespaces/{NS}/secrets/r1ov-s3", {}))

    caplog.set_level(logging.INFO)
    state = StandInAPI(rules=rules, crds=OPERATOR_CRDS)
    state.script = [("Running", "PyTorchJobRunning", ""), ("Succeeded", "PyTorchJobSucceeded", "done")]
    state.log_lines = ["step 1"]
    with serve(state) as url:
        configuration = Configuration()
        configuration.host = url
        job = build_pytorchjob("sft", ["torchrun"], _dist(), {})
        summary = client.run_to_completion(job, NS, poll_s=0.05, timeout_s=30, api_client=ApiClient(configuration))
    assert summary["state"] == "Succeeded"
    assert {("kubeflow.org", "pytorchjobs", "create"), ("", "pods", "list"), ("", "pods/log", "get")} <= state.calls()
    assert state.calls(denied=True) == set()


def _apply_request(url: str, obj: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """A raw server-side apply, as ``kubectl apply --server-side`` sends it."""
    import urllib.error
    import urllib.request

    path = f"/apis/apps/v1/namespaces/{NS}/statefulsets/{obj['metadata']['name']}?fieldManager=r1ov&force=true"
    request = urllib.request.Request(
        url + path, data=json.dumps(obj).encode(), method="PATCH",
        headers={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_apply_that_creates_is_authorized_as_create_too() -> None:
    """kube-apiserver's patch handler (staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go,
    PatchResource) authorizes the request as `patch`, and an apply on a missing object also as
    `create` (createAuthorizerAttributes, checked through withAuthorization in handlers/update.go)."""
    statefulset = build_rollout_server("grpo", "/models/sft", 1, 1, replicas=1, image=None)[0]
    patch_only = [{"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": ["patch"]}]
    state = StandInAPI(rules=patch_only, crds=OPERATOR_CRDS)
    with serve(state) as url:
        code, body = _apply_request(url, statefulset)
        assert code == 403 and body["reason"] == "Forbidden"
        assert "cannot create resource" in body["message"] and 'statefulsets.apps "grpo"' in body["message"]
        assert state.objects == {}
        assert state.calls(denied=True) == {("apps", "statefulsets", "create")}
        # The same apply on an existing object is an update: `patch` alone is enough.
        state.objects[("statefulsets", NS, "grpo")] = {**statefulset, "metadata": {"name": "grpo", "generation": 1}}
        code, _ = _apply_request(url, statefulset)
        assert code == 200
    state = StandInAPI(rules=[{**patch_only[0], "verbs": ["create", "patch"]}], crds=OPERATOR_CRDS)
    with serve(state) as url:
        assert _apply_request(url, statefulset)[0] == 201
    assert state.calls() == {("apps", "statefulsets", "patch"), ("apps", "statefulsets", "create")}


def test_rollout_servers_start_under_the_rendered_role(monkeypatch: pytest.MonkeyPatch) -> None:
    """The GRPO rollout servers are applied (created) by the pipeline's service account with only the
    Role charts/r1ov-platform renders: no 403 on a cluster."""
    from r1ov.config import GRPOConfig
    from r1ov.testing.kube_api import role_rules_from_chart
    from r1ov.train import launch

    state = StandInAPI(rules=role_rules_from_chart(CHART), crds=OPERATOR_CRDS)
    with serve(state) as url:
        configuration = Configuration()
        configuration.host = url
        monkeypatch.setattr(client, "load_api_client", lambda *a, **k: ApiClient(configuration))
        cfg = GRPOConfig(
            model_name_or_path="s3://bucket/runs/sft", train_uri="s3://bucket/clevr", output_dir="/tmp/out",
            generation="vllm-server",
            distributed={"launcher": "pytorchjob", "cluster": {"namespace": NS, "poll_s": 0.05}},
        )  # fmt: skip
        with launch.rollout_servers("grpo", cfg, "r1ov-grpo-ab12"):
            kinds = {key[0] for key in state.objects}
    assert kinds == {"statefulsets", "services", "networkpolicies"}
    assert state.calls(denied=True) == set()


# --------------------------------------------------------------------------- server-side apply merges


def _request(url: str, method: str, path: str, obj: dict[str, Any], content_type: str) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        url + path, data=json.dumps(obj).encode(), method=method,
        headers={"Content-Type": content_type, "Accept": "application/json", "Authorization": "Bearer cluster-admin"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _deployment(image: str = "vllm:1", replicas: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "serve", "labels": {"app.kubernetes.io/name": "serve"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "serve"}},
            "template": {
                "metadata": {"labels": {"app": "serve"}},
                "spec": {"containers": [{"name": "vllm", "image": image, "ports": [{"containerPort": 8000}]}]},
            },
        },
    }


def _apply_as(url: str, manager: str, obj: dict[str, Any], *, force: bool) -> tuple[int, dict]:
    plural = {"Deployment": "deployments", "StatefulSet": "statefulsets"}[obj["kind"]]
    path = f"/apis/apps/v1/namespaces/{NS}/{plural}/{obj['metadata']['name']}?fieldManager={manager}"
    return _request(url, "PATCH", path + ("&force=true" if force else ""), obj, "application/apply-patch+yaml")


def test_a_partial_apply_merges_into_the_object_and_keeps_what_others_own(api: StandInAPI, kube: ApiClient) -> None:
    """Promotion applies only the version annotation of a Deployment the chart created: the containers,
    replicas and labels Helm wrote stay (structured-merge-diff merges maps member by member; it never
    replaces spec wholesale)."""
    from r1ov.config import EndpointConfig
    from r1ov.k8s.endpoint import VERSION_ANNOTATION, roll_to_version

    code, _ = _request(
        api.url, "POST", f"/apis/apps/v1/namespaces/{NS}/deployments?fieldManager=helm", _deployment(),
        "application/json",
    )  # fmt: skip
    assert code == 201
    roll_to_version(EndpointConfig(deployment="serve", namespace=NS), "7", api_client=kube)
    after = api.objects[("deployments", NS, "serve")]
    assert after["spec"]["replicas"] == 2
    assert after["spec"]["template"]["spec"]["containers"] == _deployment()["spec"]["template"]["spec"]["containers"]
    assert after["spec"]["template"]["metadata"] == {
        "labels": {"app": "serve"},
        "annotations": {VERSION_ANNOTATION: "7"},
    }
    assert after["metadata"]["labels"] == {"app.kubernetes.io/name": "serve"}
    assert after["metadata"]["generation"] == 2  # the template changed: a rollout


def test_apply_without_force_conflicts_on_a_field_another_manager_owns(api: StandInAPI) -> None:
    """structured-merge-diff merge/update.go Updater.Apply: changing another manager's field is a 409
    Conflict naming the manager and the field, unless forced; the same value is shared, not a conflict."""
    assert _request(
        api.url, "POST", f"/apis/apps/v1/namespaces/{NS}/deployments?fieldManager=helm", _deployment(),
        "application/json",
    )[0] == 201  # fmt: skip
    scale = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "serve"}, "spec": {"replicas": 3}}
    code, body = _apply_as(api.url, "autoscaler", scale, force=False)
    assert code == 409 and body["reason"] == "Conflict"
    assert body["message"] == 'Apply failed with 1 conflict: conflict with "helm": .spec.replicas'
    assert api.objects[("deployments", NS, "serve")]["spec"]["replicas"] == 2
    same = {**scale, "spec": {"replicas": 2}}
    assert _apply_as(api.url, "autoscaler", same, force=False)[0] == 200
    assert _apply_as(api.url, "autoscaler", scale, force=True)[0] == 200
    assert api.objects[("deployments", NS, "serve")]["spec"]["replicas"] == 3
    # Ownership moved: helm re-applying its old value now conflicts the other way.
    code, body = _apply_as(api.url, "helm", _deployment(), force=False)
    assert code == 409 and 'conflict with "autoscaler": .spec.replicas' in body["message"]


def test_apply_merges_containers_by_name_and_prunes_only_what_the_manager_dropped(api: StandInAPI) -> None:
    """Lists of containers merge by name (x-kubernetes-list-map-keys); a field the applier sent before and
    omits now is removed, a field another manager owns stays."""
    first = _deployment()
    first["metadata"]["labels"]["stale"] = "yes"
    assert _apply_as(api.url, "r1ov", first, force=False)[0] == 201
    sidecar = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "serve", "labels": {"team": "ml"}},
        "spec": {"template": {"spec": {"containers": [{"name": "proxy", "image": "envoy:1"}]}}},
    }  # fmt: skip
    assert _apply_as(api.url, "mesh", sidecar, force=False)[0] == 200
    assert _apply_as(api.url, "r1ov", _deployment(image="vllm:2"), force=False)[0] == 200
    after = api.objects[("deployments", NS, "serve")]
    containers = {c["name"]: c["image"] for c in after["spec"]["template"]["spec"]["containers"]}
    assert containers == {"vllm": "vllm:2", "proxy": "envoy:1"}
    assert after["metadata"]["labels"] == {"app.kubernetes.io/name": "serve", "team": "ml"}


# --------------------------------------------------------------------------- admission of the pods controllers create

RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}


def _events(api: StandInAPI) -> list[dict[str, Any]]:
    return [o for (plural, _, _), o in api.objects.items() if plural == "events"]


def test_a_restricted_namespace_refuses_pods_without_a_security_context_with_an_event_only(
    api: StandInAPI, kube: ApiClient
) -> None:
    """Pod Security admission (k8s.io/pod-security-admission) refuses the operator's pods, not the job:
    the job gets a FailedCreatePod event (training-operator pod_control.go) and no Failed condition."""
    from kubernetes.client import CustomObjectsApi

    from r1ov.testing.pod_security import violations

    api.namespace_labels[NS] = RESTRICTED
    job = build_pytorchjob("sft", ["torchrun"], _dist(), {})
    job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"].pop("securityContext", None)
    for replica in job["spec"]["pytorchReplicaSpecs"].values():
        for container in replica["template"]["spec"]["containers"]:
            container.pop("securityContext", None)
    CustomObjectsApi(kube).create_namespaced_custom_object("kubeflow.org", "v1", NS, "pytorchjobs", job)
    assert ("pytorchjobs", NS, job["metadata"]["name"]) in api.objects  # the job itself is admitted
    assert not api.pods
    (event,) = _events(api)
    assert event["reason"] == "FailedCreatePod" and event["type"] == "Warning"
    assert (
        event["involvedObject"]["kind"] == "PyTorchJob" and event["involvedObject"]["name"] == job["metadata"]["name"]
    )
    assert event["message"].startswith(f'Error creating: pods "{job["metadata"]["name"]}-master-0" is forbidden: ')
    assert 'violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false' in event["message"]
    status = CustomObjectsApi(kube).get_namespaced_custom_object(
        "kubeflow.org", "v1", NS, "pytorchjobs", job["metadata"]["name"]
    )["status"]
    assert [c["type"] for c in status["conditions"]] == ["Created"]
    # The checks themselves, one by one (policy/check_*.go).
    ok = {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": False,
                                                         "capabilities": {"drop": ["ALL"]}}}],
    }  # fmt: skip
    assert violations("restricted", ok) == []
    assert violations("baseline", {"containers": [{"name": "c"}]}) == []
    host_path = {**ok, "volumes": [{"name": "h", "hostPath": {"path": "/"}}]}
    assert [v.split(" (")[0] for v in violations("restricted", host_path)] == [
        "hostPath volumes",
        "restricted volume types",
    ]
    as_root = {**ok, "securityContext": {**ok["securityContext"], "runAsUser": 0}}
    assert [v.split(" (")[0] for v in violations("restricted", as_root)] == ["runAsUser=0"]
    unconfined = {**ok, "securityContext": {"runAsNonRoot": True}}
    assert [v.split(" (")[0] for v in violations("restricted", unconfined)] == ["seccompProfile"]


def test_a_quota_on_memory_limits_refuses_pods_without_one_unless_a_limit_range_defaults_it(
    api: StandInAPI, kube: ApiClient
) -> None:
    """ResourceQuota admission (pkg/quota/v1/evaluator/core/pods.go) wants every container to state what the
    quota limits; a LimitRange's default (LimitRanger) fills it in first. The StatefulSet gets a
    FailedCreate event (stateful_pod_control.go) and no ready replica."""
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "compute", "namespace": NS},
             "spec": {"hard": {"limits.memory": "100Gi", "requests.cpu": "64"}}}  # fmt: skip
    api.objects[("resourcequotas", NS, "compute")] = quota
    objects = build_rollout_server("grpo", "/models/sft", 1, 1, replicas=1, image=None)
    objects[0]["spec"]["template"]["spec"]["containers"][0]["resources"].pop("limits", None)
    objects[0]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] = {"nvidia.com/gpu": "1"}
    client.apply(objects, NS, api_client=kube)
    (event,) = _events(api)
    assert event["reason"] == "FailedCreate" and event["involvedObject"]["kind"] == "StatefulSet"
    assert event["message"] == (
        'create Pod grpo-0 in StatefulSet grpo failed error: pods "grpo-0" is forbidden: '
        "failed quota: compute: must specify limits.memory"
    )
    with pytest.raises(RuntimeError, match=r"FailedCreate: .* must specify limits\.memory"):  # at once, not at timeout
        client.wait_ready(objects[0], NS, timeout_s=60, poll_s=0.05, api_client=kube)
    client.delete(objects, NS, api_client=kube)
    api.objects.pop(("events", NS, event["metadata"]["name"]))

    api.objects[("limitranges", NS, "defaults")] = {
        "apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "defaults", "namespace": NS},
        "spec": {"limits": [{"type": "Container", "default": {"memory": "80Gi"}}]},
    }  # fmt: skip
    client.apply(objects, NS, api_client=kube)
    assert not _events(api)
    # A second server would take 160Gi of the 100Gi the quota allows.
    client.apply(build_rollout_server("grpo-2", "/models/sft", 1, 1, replicas=1, image=None), NS, api_client=kube)
    (event,) = _events(api)
    assert "exceeded quota: compute, requested: limits.memory=" in event["message"]


def test_the_launcher_fails_fast_with_the_reason_when_admission_refuses_the_job_s_pods(
    api: StandInAPI, kube: ApiClient
) -> None:
    """A refused pod leaves the job without a Failed condition (the operator retries and reports events):
    the launcher reads the Warning event and fails at once with admission's reason, instead of waiting
    for activeDeadlineSeconds, and deletes the job."""
    api.namespace_labels[NS] = RESTRICTED
    api.script = [("Created", "PyTorchJobCreated", "")]
    job = build_pytorchjob("sft", ["torchrun"], _dist(), {})
    for replica in job["spec"]["pytorchReplicaSpecs"].values():
        replica["template"]["spec"]["securityContext"] = {"runAsUser": 0}
    with pytest.raises(client.JobFailed) as failed:
        client.run_to_completion(job, NS, poll_s=0.05, timeout_s=60, api_client=kube)
    assert not isinstance(failed.value, client.JobTimeout)
    assert failed.value.reason == "FailedCreatePod"
    assert 'violates PodSecurity "restricted:latest"' in failed.value.message and "runAsUser=0" in failed.value.message
    assert ("pytorchjobs", NS, job["metadata"]["name"]) not in api.objects


def test_the_launcher_fails_fast_on_a_trainjob_whose_job_pods_are_refused(api: StandInAPI, kube: ApiClient) -> None:
    """For a TrainJob the refusal is an event on the JobSet's batch Job (``<name>-node-0``)."""
    api.namespace_labels[NS] = RESTRICTED
    api.script = [("Created", "TrainJobCreated", "")]
    job = build_trainjob("sft", ["torchrun"], DistributedConfig(launcher="trainjob", cluster={"namespace": NS}), {})
    patch = job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    patch["template"]["spec"]["template"]["spec"]["securityContext"] = {"runAsNonRoot": False}
    with pytest.raises(client.JobFailed, match="runAsNonRoot != true") as failed:
        client.run_to_completion(job, NS, poll_s=0.05, timeout_s=60, api_client=kube)
    assert failed.value.reason == "FailedCreate" and not isinstance(failed.value, client.JobTimeout)
