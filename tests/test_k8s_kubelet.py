"""The stand-in kubelet (r1ov.testing.kubelet) runs pods as a node would: what the system test relies on.

Each pod here is a short Python program that reports what it sees: its user, working directory,
environment (Secrets and ConfigMaps resolved), and which paths it can write. Needs root for the
mount and PID namespaces; skipped otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient, Configuration, CoreV1Api

from r1ov.config import DistributedConfig
from r1ov.k8s import client
from r1ov.k8s.rollout import build_rollout_server
from r1ov.k8s.trainjobs import build_pytorchjob, build_trainjob
from r1ov.testing.crd_schema import CRD
from r1ov.testing.kube_api import StandInAPI, serve
from r1ov.testing.kubelet import LocalKubelet

# The operators' CRDs at the supported releases (tests/crds): the stand-in prunes and validates jobs as a cluster would.
OPERATOR_CRDS = [
    CRD.load(Path(__file__).parent / "crds" / f)
    for f in ("kubeflow.org_pytorchjobs.yaml", "trainer.kubeflow.org_trainjobs.yaml")
]

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
NS = "r1ov"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[tuple[StandInAPI, ApiClient]]:
    api = StandInAPI(crds=OPERATOR_CRDS)
    image_env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src"),
                 "HOME": "/home/r1ov", "PYTHONDONTWRITEBYTECODE": "1"}  # fmt: skip
    api.kubelet = LocalKubelet(tmp_path / "kubelet", image_env, grace_s=2)
    with serve(api) as url:
        configuration = Configuration()
        configuration.host = url
        api_client = ApiClient(configuration)
        core = CoreV1Api(api_client)
        core.create_namespaced_secret(
            NS,
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "r1ov-s3"},
                "stringData": {"access-key-id": "AKIA-TEST", "secret-access-key": "s3cr3t"},
            },
        )
        # The platform chart's account, which training pods run as by default.
        core.create_namespaced_service_account(
            NS, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "r1ov-pipeline"}}
        )
        core.create_namespaced_config_map(NS, {"apiVersion": "v1", "kind": "ConfigMap",
                                               "metadata": {"name": "r1ov-settings"},
                                               "data": {"R1OV_S3_ENDPOINT": "http://s3.test:9000"}})  # fmt: skip
        try:
            yield api, api_client
        finally:
            api.kubelet.stop_all()


PROBE = """
import json, os, pathlib
def writable(path):
    try:
        p = pathlib.Path(path) / f"probe-{os.getpid()}"
        p.write_text("x"); p.unlink(); return True
    except OSError:
        return False
print("REPORT " + json.dumps({
    "uid": os.getuid(), "cwd": os.getcwd(),
    "env": {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "R1OV_S3_ENDPOINT",
                                           "PET_NNODES", "PET_NODE_RANK", "R1OV_WORK_DIR", "HOSTNAME_SEEN")},
    "leaked": "PYTEST_CURRENT_TEST" in os.environ,
    "writable": {p: writable(p) for p in ("/workspace", "/dev/shm", "/home/r1ov", "/tmp", "/", "/usr", "%s")},
}), flush=True)
"""


def _reports(api: StandInAPI, job: str) -> list[dict[str, Any]]:
    out = []
    for pod in api.pods.values():
        if pod.job == job:
            out += [json.loads(text.split("REPORT ", 1)[1]) for _, text in pod.log if "REPORT " in text]
    return out


def _wait_all_ended(api: StandInAPI, job: str, bound_s: float = 600.0) -> None:
    """Until each of the job's pods has a terminal phase (its log is complete by then); ``bound_s``
    only stops a test that would otherwise hang."""
    deadline = time.monotonic() + bound_s
    while True:
        with api.lock:
            phases = [pod.phase for pod in api.pods.values() if pod.job == job]
        if phases and all(phase in ("Succeeded", "Failed") for phase in phases):
            return
        assert time.monotonic() < deadline, f"pods of {job} still {phases}"
        time.sleep(0.1)


@pytest.mark.parametrize("launcher", ["pytorchjob", "trainjob"])
def test_pods_see_exactly_their_spec(kube: tuple[StandInAPI, ApiClient], launcher: str) -> None:
    api, api_client = kube
    dist = DistributedConfig(launcher=launcher, nnodes=2, cluster={"namespace": NS, "gpus_per_node": 0})
    build = build_pytorchjob if launcher == "pytorchjob" else build_trainjob
    job = build("probe", ["python", "-c", PROBE % ROOT], dist, {})
    summary = client.run_to_completion(job, NS, poll_s=0.1, timeout_s=600, api_client=api_client)
    assert summary["state"] in ("Succeeded", "Complete")
    # A PyTorchJob succeeds with its master, as the operator's default success policy says; the
    # worker may still be running on a busy machine. The reports are read once every pod has ended.
    _wait_all_ended(api, job["metadata"]["name"])
    reports = _reports(api, job["metadata"]["name"])
    assert len(reports) == 2, [(p.name, p.phase) for p in api.pods.values()]
    assert sorted(r["env"]["PET_NODE_RANK"] for r in reports) == ["0", "1"]
    for report in reports:
        assert report["uid"] == 1000 and report["cwd"] == "/home/r1ov"  # the image's USER and WORKDIR
        assert report["env"]["AWS_ACCESS_KEY_ID"] == "AKIA-TEST"  # secretKeyRef, mapped to the AWS name
        assert report["env"]["AWS_SECRET_ACCESS_KEY"] == "s3cr3t"
        assert report["env"]["R1OV_S3_ENDPOINT"] == "http://s3.test:9000"  # configMapKeyRef
        assert report["env"]["PET_NNODES"] == "2" and report["env"]["R1OV_WORK_DIR"] == "/workspace"
        assert not report["leaked"]  # nothing of the test process's environment
        writable = report["writable"]
        # declared volumes (work, /dev/shm), the image's HOME and the container's /tmp: yes; the rest: no
        assert writable.pop("/workspace") and writable.pop("/dev/shm") and writable.pop("/home/r1ov")
        assert writable.pop("/tmp")
        assert not any(writable.values()), writable


def test_a_missing_secret_fails_the_pod_with_the_kubelets_reason(kube: tuple[StandInAPI, ApiClient]) -> None:
    _, api_client = kube
    dist = DistributedConfig(launcher="pytorchjob", cluster={"namespace": NS, "gpus_per_node": 0, "secret_env": ["hf"]})
    job = build_pytorchjob("nosecret", ["python", "-c", "print(1)"], dist, {})
    with pytest.raises(client.JobFailed, match=r'CreateContainerConfigError.*secret "hf" not found'):
        client.run_to_completion(job, NS, poll_s=0.1, timeout_s=30, api_client=api_client)


def test_rollout_statefulset_pods_run_and_become_ready_on_their_probe(kube: tuple[StandInAPI, ApiClient]) -> None:
    """A stand-in server answering /health on the pod's port, started from the StatefulSet's own command."""
    api, api_client = kube
    port = 18000 + os.getpid() % 1000
    server = (
        "import http.server as h\n"
        "class H(h.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200 if self.path == '/health' else 404); self.end_headers()\n"
        f"h.HTTPServer(('127.0.0.1', {port}), H).serve_forever()\n"
    )
    objects = build_rollout_server("rollout", "m", 1, 1, replicas=1, image=None, port=port, group_port=port + 1)
    objects[0]["spec"]["template"]["spec"]["containers"][0]["command"] = ["python", "-c", server]
    client.apply(objects, NS, api_client=api_client)
    status = client.wait_ready(objects[0], NS, timeout_s=30, poll_s=0.2, api_client=api_client)
    assert status["readyReplicas"] == 1
    assert client.delete(objects, NS, api_client=api_client) == ["StatefulSet/rollout", "Service/rollout"]
    assert "rollout-0" not in api.pods
