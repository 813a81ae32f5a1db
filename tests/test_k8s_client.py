"""The cluster client, driven through the real ``kubernetes`` package against a local stand-in API server.

No Kubernetes API server runs here, so ``StandInAPI`` is one: a small HTTP server speaking the
REST paths and payloads the ``kubernetes`` client sends (create/get/delete namespaced custom
objects, server-side apply, list pods by label selector, read pod logs with follow, timestamps
and sinceSeconds), answering with Kubernetes ``Status`` errors (404, 409, 400 while a container
starts, 503). It plays the operators too: each GET of a job advances it through a scripted list
of status conditions, and the job's main pod carries the labels the real operator or JobSet puts
on it, so the client must find it the way it would in a cluster.
"""

from __future__ import annotations

import _thread
import contextlib
import json
import logging
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from kubernetes.client import ApiClient, Configuration

from r1ov.config import DistributedConfig
from r1ov.k8s import client
from r1ov.k8s.rollout import build_rollout_server
from r1ov.k8s.trainjobs import build_pytorchjob, build_trainjob

NS = "r1ov"
# The stand-in's own table of what it serves (independent of r1ov.k8s.kinds on purpose).
RESOURCES = {
    ("kubeflow.org", "v1", "pytorchjobs"): "PyTorchJob",
    ("trainer.kubeflow.org", "v1alpha1", "trainjobs"): "TrainJob",
    ("apps", "v1", "statefulsets"): "StatefulSet",
    ("apps", "v1", "deployments"): "Deployment",
    ("", "v1", "services"): "Service",
}
# Labels the real controllers put on a job's main pod, and that pod's container.
MAIN_POD = {
    "PyTorchJob": lambda name: (
        f"{name}-master-0",
        {
            "training.kubeflow.org/job-name": name,
            "training.kubeflow.org/operator-name": "pytorchjob-controller",
            "training.kubeflow.org/replica-type": "master",
            "training.kubeflow.org/replica-index": "0",
            "training.kubeflow.org/job-role": "master",
        },
        "pytorch",
    ),
    "TrainJob": lambda name: (
        f"{name}-node-0-0-x7k2p",
        {
            "jobset.sigs.k8s.io/jobset-name": name,
            "jobset.sigs.k8s.io/replicatedjob-name": "node",
            "jobset.sigs.k8s.io/job-index": "0",
            "batch.kubernetes.io/job-completion-index": "0",
            "trainer.kubeflow.org/trainjob-ancestor-step": "trainer",
        },
        "node",
    ),
}
TERMINAL = {"Succeeded": "Succeeded", "Complete": "Succeeded", "Failed": "Failed"}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class StandInAPI:
    """In-memory API server state; see the module docstring."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (plural, namespace, name) -> object
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []
        self.script: list[tuple[str, str, str]] = []  # (condition type, reason, message) per job GET
        self.steps: dict[str, int] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.log_lines: list[str] = []
        self.logs: dict[str, list[tuple[datetime, str]]] = {}
        self.fail_job_gets = 0  # answer this many job GETs with 503 first
        self.ready_after_gets = 2  # workloads report one more ready replica per GET after this many
        self.workload_gets: dict[str, int] = {}
        self.url = ""

    # ------------------------------------------------------------- the "operator"

    def _job_status(self, name: str) -> dict[str, Any]:
        step = min(self.steps.get(name, 0), len(self.script) - 1)
        self.steps[name] = self.steps.get(name, 0) + 1
        conditions = []
        for i, (ctype, reason, message) in enumerate(self.script[: step + 1]):
            current = i == step or ctype == "Created"
            conditions.append(
                {"type": ctype, "status": "True" if current else "False", "reason": reason, "message": message,
                 "lastTransitionTime": _now()}
            )  # fmt: skip
        ctype = self.script[step][0] if self.script else "Created"
        pod = next((p for p in self.pods.values() if p["job"] == name), None)
        if pod is not None:
            pod["phase"] = TERMINAL.get(ctype, "Pending" if ctype in ("Created", "") else "Running")
        return {"conditions": conditions} if conditions else {}

    def _start_job(self, kind: str, name: str) -> None:
        pod_name, labels, container = MAIN_POD[kind](name)
        self.pods[pod_name] = {
            "job": name, "labels": labels, "container": container, "phase": "Pending", "uid": str(uuid.uuid4()),
        }  # fmt: skip
        start = datetime.now(UTC)
        self.logs[pod_name] = [(start + timedelta(microseconds=250 * i), line) for i, line in enumerate(self.log_lines)]

    def _workload_status(self, obj: dict[str, Any]) -> dict[str, Any]:
        key = obj["metadata"]["name"]
        self.workload_gets[key] = self.workload_gets.get(key, 0) + 1
        want = obj["spec"].get("replicas", 1)
        ready = 0 if self.ready_after_gets < 0 else max(0, min(want, self.workload_gets[key] - self.ready_after_gets))
        return {"observedGeneration": obj["metadata"]["generation"], "replicas": want, "readyReplicas": ready,
                "updatedReplicas": ready, "availableReplicas": ready}  # fmt: skip

    # ------------------------------------------------------------- REST

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> tuple[int, Any]:
        url = urlparse(raw_path)
        query = parse_qs(url.query)
        with self.lock:
            self.requests.append((method, url.path, query))
            if m := re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/log", url.path):
                return self._log(m.group(2), query)
            if m := re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods", url.path):
                return self._list_pods(m.group(1), query)
            m = re.fullmatch(
                r"/apis/([^/]+)/([^/]+)/namespaces/([^/]+)/([^/]+)(?:/([^/]+))?", url.path
            ) or re.fullmatch(r"/api()/(v1)/namespaces/([^/]+)/([^/]+)(?:/([^/]+))?", url.path)
            if not m or (m.group(1), m.group(2), m.group(4)) not in RESOURCES:
                return 404, _status(404, "NotFound", f"the server could not find the requested resource {url.path}")
            group, version, namespace, plural, name = m.groups()
            kind = RESOURCES[(group, version, plural)]
            api_version = f"{group}/{version}" if group else version
            key = (plural, namespace, name or "")
            if method == "POST" and name is None:
                return self._create(kind, api_version, plural, namespace, headers, body)
            if name is None and method == "GET":
                return self._list(kind, api_version, plural, namespace, query)
            if name is None:
                return 405, _status(405, "MethodNotAllowed", f"{method} on a collection")
            if method == "GET":
                return self._get(kind, key)
            if method == "DELETE":
                if key not in self.objects:
                    return 404, _status(404, "NotFound", f'{plural} "{name}" not found')
                del self.objects[key]
                return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
            if method == "PATCH":
                return self._apply(kind, api_version, key, headers, query, body)
            return 405, _status(405, "MethodNotAllowed", method)

    def _create(self, kind, api_version, plural, namespace, headers, body) -> tuple[int, Any]:
        if headers.get("Content-Type") != "application/json":
            return 415, _status(415, "UnsupportedMediaType", str(headers.get("Content-Type")))
        obj = json.loads(body)
        if obj.get("kind") != kind or obj.get("apiVersion") != api_version:
            return 400, _status(
                400, "BadRequest", f"the API version in the data ({obj.get('apiVersion')}) does not match"
            )
        if obj["metadata"].get("namespace", namespace) != namespace:
            return 400, _status(400, "BadRequest", "the namespace of the provided object does not match")
        key = (plural, namespace, obj["metadata"]["name"])
        if key in self.objects:
            return 409, _status(409, "AlreadyExists", f'{plural} "{key[2]}" already exists')
        obj["metadata"].update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1, namespace=namespace)
        self.objects[key] = obj
        if kind in MAIN_POD:
            self._start_job(kind, key[2])
        return 201, obj

    def _get(self, kind: str, key: tuple[str, str, str]) -> tuple[int, Any]:
        if key not in self.objects:
            return 404, _status(404, "NotFound", f'{key[0]} "{key[2]}" not found')
        obj = self.objects[key]
        if kind in MAIN_POD:
            if self.fail_job_gets > 0:
                self.fail_job_gets -= 1
                return 503, _status(503, "ServiceUnavailable", "etcd leader changed")
            obj["status"] = self._job_status(key[2])
        elif kind in ("StatefulSet", "Deployment"):
            obj["status"] = self._workload_status(obj)
        return 200, obj

    def _apply(self, kind, api_version, key, headers, query, body) -> tuple[int, Any]:
        # Server-side apply: the content type and a field manager are mandatory.
        if headers.get("Content-Type") != "application/apply-patch+yaml":
            return 415, _status(415, "UnsupportedMediaType", f"expected apply patch, got {headers.get('Content-Type')}")
        if not query.get("fieldManager"):
            return 422, _status(422, "Invalid", "fieldManager is required for apply requests")
        obj = yaml.safe_load(body)
        if obj.get("kind") != kind or obj.get("apiVersion") != api_version or obj["metadata"]["name"] != key[2]:
            return 400, _status(400, "BadRequest", "object does not match the request path")
        previous = self.objects.get(key)
        if previous is None:
            obj["metadata"].update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1, namespace=key[1])
            self.objects[key] = obj
            return 201, obj
        changed = previous.get("spec") != obj.get("spec")
        previous["metadata"]["generation"] += int(changed)
        previous["metadata"]["labels"] = obj["metadata"].get("labels", {})
        previous["spec"] = obj.get("spec")
        return 200, previous

    def _list(self, kind, api_version, plural, namespace, query) -> tuple[int, Any]:
        wanted = dict(part.split("=", 1) for part in query.get("labelSelector", [""])[0].split(",") if part)
        items = [
            obj
            for (obj_plural, obj_namespace, _), obj in self.objects.items()
            if obj_plural == plural
            and obj_namespace == namespace
            and wanted.items() <= (obj["metadata"].get("labels") or {}).items()
        ]
        return 200, {"apiVersion": api_version, "kind": f"{kind}List", "metadata": {}, "items": items}

    def _list_pods(self, namespace: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        wanted = dict(part.split("=", 1) for part in query.get("labelSelector", [""])[0].split(",") if part)
        items = [
            {"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": name, "namespace": namespace, "uid": pod["uid"], "labels": pod["labels"],
                          "creationTimestamp": _now()},
             "spec": {"containers": [{"name": pod["container"], "image": "x"}]},
             "status": {"phase": pod["phase"]}}
            for name, pod in self.pods.items()
            if wanted.items() <= pod["labels"].items()
        ]  # fmt: skip
        return 200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}

    def _log(self, name: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        pod = self.pods.get(name)
        if pod is None:
            return 404, _status(404, "NotFound", f'pods "{name}" not found')
        container = query.get("container", [pod["container"]])[0]
        if container != pod["container"]:
            return 400, _status(400, "BadRequest", f"container {container} is not valid for pod {name}")
        if pod["phase"] == "Pending":
            return 400, _status(400, "BadRequest", f'container "{container}" in pod "{name}" is waiting to start')
        lines = self.logs[name]
        if "sinceSeconds" in query:
            cutoff = datetime.now(UTC) - timedelta(seconds=int(query["sinceSeconds"][0]))
            lines = [(t, text) for t, text in lines if t >= cutoff]
        stamped = query.get("timestamps", ["false"])[0] == "true"
        text = "".join(
            f"{t.strftime('%Y-%m-%dT%H:%M:%S.%f')}000Z {line}\n" if stamped else f"{line}\n" for t, line in lines
        )
        return 200, text


def _make_handler(api: StandInAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            code, payload = api.handle(self.command, self.path, self.headers, self.rfile.read(length))
            data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain" if isinstance(payload, str) else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = _serve

        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

    return Handler


@pytest.fixture
def api() -> Iterator[StandInAPI]:
    state = StandInAPI()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


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
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "stand-in", "cluster": {"server": api.url}}],
                "users": [{"name": "me", "user": {"token": "test-token"}}],
                "contexts": [{"name": "ctx", "context": {"cluster": "stand-in", "user": "me", "namespace": NS}}],
                "current-context": "ctx",
            }
        )
    )
    kube = client.load_api_client(str(kubeconfig))
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
    from r1ov.bundle import RUN_LABEL

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
