"""`r1ov doctor` against the stand-ins: a ready namespace passes every row; each broken state is reported
with its fix, and nothing else is.

The Kubernetes stand-in serves API discovery and SelfSubjectAccessReviews (with impersonation) as
kube-apiserver does (see r1ov.testing.kube_api), with the Role charts/r1ov-platform renders; the KFP
API stand-in answers its health route; MLflow is a small HTTP server that, like the platform chart's
basic-auth MLflow, answers 401 to a request without the pipeline user's credentials; the image registry
is a small HTTP server speaking the part of the OCI distribution API a pull starts with (see
:func:`oci_registry`).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from r1ov.cli import main
from r1ov.k8s import bundle, doctor
from r1ov.testing.crd_schema import CRD
from r1ov.testing.kfp_api import KfpApiServer
from r1ov.testing.kube_api import StandInAPI, kubeconfig, role_rules_from_chart, serve

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "r1ov-platform"
NS = "r1ov"
USER, PASSWORD = "r1ov-pipeline", "s3cret"
CRDS = ROOT / "tests" / "crds"
# The operators' CRDs at the releases r1ov supports (Training Operator v1.9.4, Trainer v2.3.0), and an older Trainer.
SUPPORTED_CRDS = [CRD.load(CRDS / f) for f in ("kubeflow.org_pytorchjobs.yaml", "trainer.kubeflow.org_trainjobs.yaml")]
TRAINER_V2_1 = CRD.load(CRDS / "trainer.kubeflow.org_trainjobs.v2.1.0.yaml")


@contextlib.contextmanager
def mlflow_basic_auth(user: str, password: str) -> Iterator[str]:
    """An MLflow-shaped server that, as `mlflow server --app-name basic-auth` does, answers 401 without the
    user's credentials and 200 to an experiment search with them."""
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.headers.get("Authorization") == expected and self.path.startswith(
                "/api/2.0/mlflow/experiments/search"
            )
            body = b'{"experiments": []}' if ok else b"You are not authenticated."
            self.send_response(200 if ok else 401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


TAG = "9.9.9"


@contextlib.contextmanager
def oci_registry(images: set[str], *, anonymous_pull: bool = True) -> Iterator[tuple[str, list[str]]]:
    """A registry holding ``images`` (``repository:tag``), behind token authentication as ghcr.io or Docker
    Hub run it. What it models (OCI distribution-spec "Checking if content exists in the registry", and
    distribution/distribution docs/spec/auth/token.md): ``HEAD /v2/<name>/manifests/<tag>`` without a token
    is 401 with ``WWW-Authenticate: Bearer realm,service,scope``; ``GET /token?service&scope`` hands out an
    anonymous pull token (``anonymous_pull=False``: 401, a private registry); with the token, 200 and a
    ``Docker-Content-Digest`` for a held image and 404 for any other. Not modelled: blobs, pushes, token
    expiry, credentials. Yields the registry (host:port/namespace) and the requests it saw."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, code: int, headers: dict[str, str], body: bytes = b"") -> None:
            self.send_response(code)
            for key, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:
            seen.append(f"GET {self.path}")
            if self.path.startswith("/token?") and anonymous_pull and "scope=repository%3Ar1ov%2F" in self.path:
                return self._reply(200, {"Content-Type": "application/json"}, b'{"token": "pull-token"}')
            return self._reply(401, {}, b'{"errors": [{"code": "UNAUTHORIZED"}]}')

        def do_HEAD(self) -> None:
            seen.append(f"HEAD {self.path}")
            name, _, tag = self.path.removeprefix("/v2/").partition("/manifests/")
            if self.headers.get("Authorization") != "Bearer pull-token":
                realm = f"http://{self.headers['Host']}/token"
                challenge = f'Bearer realm="{realm}",service="stand-in",scope="repository:{name}:pull"'
                return self._reply(401, {"WWW-Authenticate": challenge})
            if "application/vnd.oci.image.index.v1+json" not in (self.headers.get("Accept") or ""):
                return self._reply(404, {})
            if f"{name}:{tag}" in images:
                return self._reply(200, {"Docker-Content-Digest": "sha256:" + "ab" * 32})
            return self._reply(404, {})

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}/r1ov", seen
    finally:
        server.shutdown()
        server.server_close()


ALL_IMAGES = {f"r1ov/{name}:{TAG}" for name in bundle.IMAGE_NAMES.values()}


def _secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS}, "data": encoded}


def _node_pools(provider: str) -> dict[str, list[dict[str, Any]]]:
    """What charts/r1ov-gpu-nodepools installs (cluster-scoped), by list path."""
    import helm_python as helm

    values = yaml.safe_load((ROOT / f"charts/r1ov-gpu-nodepools/ci/{provider}-values.yaml").read_text())
    rendered = helm.Chart.load(str(ROOT / "charts/r1ov-gpu-nodepools")).render(values, name="pools", namespace=NS)
    objects = [d for t, text in rendered.items() if not t.endswith("NOTES.txt") for d in yaml.safe_load_all(text) if d]
    paths = {"NodePool": "/apis/karpenter.sh/v1/nodepools", "ComputeClass": "/apis/cloud.google.com/v1/computeclasses"}
    out: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        if obj["kind"] in paths:
            out.setdefault(paths[obj["kind"]], []).append(obj)
    return out


def _ready(api: StandInAPI, mlflow_url: str, registry: str) -> None:
    """A namespace as the platform chart and the README leave it, on a cluster with the node-pool chart."""
    api.cluster_objects.update(_node_pools("aws"))
    api.objects[("secrets", NS, "r1ov-s3")] = _secret("r1ov-s3", {"access-key-id": "AK", "secret-access-key": "SK"})
    api.objects[("secrets", NS, "r1ov-mlflow")] = _secret("r1ov-mlflow", {"username": USER, "password": PASSWORD})
    api.objects[("configmaps", NS, "r1ov-settings")] = {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "r1ov-settings", "namespace": NS},
        "data": {"MLFLOW_TRACKING_URI": mlflow_url, "R1OV_IMAGE_REGISTRY": registry, "R1OV_IMAGE_TAG": TAG},
    }  # fmt: skip


def _doctor(api: StandInAPI, tmp_path: Path, kfp_endpoint: str, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    path = tmp_path / "kubeconfig"
    # The platform engineer's context: may read Secrets and impersonate the pipeline's service account.
    path.write_text(yaml.safe_dump(kubeconfig(api.url, NS, token=api.admin_token)))
    capsys.readouterr()
    code = main(["doctor", "--kubeconfig", str(path), "--kfp-endpoint", kfp_endpoint])
    return code, capsys.readouterr().out


def _misses(out: str) -> list[str]:
    return [line for line in out.splitlines() if "  MISS  " in line]


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[StandInAPI, str, str]]:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)  # not inside a pod: the kubeconfig applies
    api = StandInAPI(rules=role_rules_from_chart(CHART), crds=SUPPORTED_CRDS)
    images = set(ALL_IMAGES)  # a test removes one to break the state
    with (
        serve(api),
        KfpApiServer() as kfp,
        mlflow_basic_auth(USER, PASSWORD) as mlflow_url,
        oci_registry(images) as (registry, _),
    ):
        _ready(api, mlflow_url, registry)
        yield api, kfp.url, mlflow_url, images


def test_a_ready_namespace_passes_every_check(cluster, tmp_path: Path, capsys) -> None:
    api, kfp_url, _, _ = cluster
    code, out = _doctor(api, tmp_path, kfp_url, capsys)
    assert code == 0, out
    assert not _misses(out)
    checks = len(doctor.CALLS) + len(doctor.CRDS) + len(doctor.SECRETS) + len(bundle.GPU_POOLS) + 2
    checks += len(bundle.IMAGE_NAMES)
    assert f"{checks} ok, 0 to fix" in out
    assert "create statefulsets.apps" in out and "list events" in out
    (train,) = [line for line in out.splitlines() if f"/r1ov/r1ov-train:{TAG}" in line]
    assert " ok " in train and "present (sha256:abab" in train


def test_every_broken_state_is_reported_with_its_fix(cluster, tmp_path: Path, capsys) -> None:
    api, _, _, images = cluster
    # A Role from before apply-as-create: statefulsets without create.
    api.rules = copy.deepcopy(api.rules)
    for rule in api.rules:
        if rule.get("resources") == ["statefulsets"]:
            rule["verbs"] = [v for v in rule["verbs"] if v != "create"]
    api.installed.discard(("trainer.kubeflow.org", "v1alpha1"))  # Trainer v2 not installed
    api.objects[("secrets", NS, "r1ov-s3")]["data"].pop("secret-access-key")
    api.objects[("secrets", NS, "r1ov-mlflow")] = _secret("r1ov-mlflow", {"username": USER, "password": "stale"})
    pools = api.cluster_objects["/apis/karpenter.sh/v1/nodepools"]
    pools[:] = [p for p in pools if p["metadata"]["name"] != "r1ov-rollout"]  # no rollout pool
    for pool in pools:
        if pool["metadata"]["name"] == "r1ov-serve":  # a serve pool whose nodes lost the GPU taint
            pool["spec"]["template"]["spec"]["taints"] = []
    images.discard(f"r1ov/r1ov-vllm:{TAG}")  # never pushed
    code, out = _doctor(api, tmp_path, "http://127.0.0.1:9", capsys)  # nothing listens on port 9
    assert code == 1
    misses = _misses(out)
    assert len(misses) == 8, out
    expected = {
        "create statefulsets.apps": "helm upgrade the r1ov-platform chart",
        "trainjobs.trainer.kubeflow.org/v1alpha1": "install Kubeflow Trainer v2.3",
        "r1ov-s3": f"kubectl -n {NS} edit secret r1ov-s3  # add secret-access-key",
        "http://127.0.0.1:9": "port-forward",
        "MLflow": "HTTP 401: the pipeline's credentials are refused",
        "rollout (r1ov-rollout)": "helm install r1ov-gpu-nodepools",
        "serve (r1ov-serve)": "without the nvidia.com/gpu:NoSchedule taint",
        f"r1ov-vllm:{TAG}": "HTTP 404: no such image or tag",
    }
    for item, text in expected.items():
        assert any(item in line and text in line for line in misses), f"{item}: {text}\n{out}"


def test_gke_compute_classes_count_as_pools(cluster, tmp_path: Path, capsys) -> None:
    api, kfp_url, _, _ = cluster
    api.cluster_objects.clear()
    api.cluster_objects.update(_node_pools("gke"))
    code, out = _doctor(api, tmp_path, kfp_url, capsys)
    assert code == 0, out
    assert "ComputeClass/r1ov-train (GPU taint)" in out


def test_a_missing_secret_comes_with_the_command_that_creates_it(cluster, tmp_path: Path, capsys) -> None:
    api, kfp_url, _, _ = cluster
    del api.objects[("secrets", NS, "r1ov-mlflow")]
    code, out = _doctor(api, tmp_path, kfp_url, capsys)
    assert code == 1
    (miss,) = [line for line in _misses(out) if line.startswith("Secret") and "r1ov-mlflow" in line]
    assert "missing" in miss and "create secret generic r1ov-mlflow --from-literal=username=..." in miss
    # Without the Secret, MLflow is asked without credentials, and says so.
    assert any("MLflow" in line and "401" in line for line in _misses(out))


def test_doctor_asks_for_every_call_the_code_makes() -> None:
    """doctor.CALLS is the set tests/test_rbac.py records while the code runs (kept in step there too)."""
    from test_rbac import _recorded, pipeline_role

    with pytest.MonkeyPatch.context() as monkeypatch:
        recorded = _recorded(monkeypatch, rules=pipeline_role()).calls()
    assert {(g, r, v) for g, r, v, _ in doctor.CALLS} == recorded


def test_image_checks_follow_the_registry_token_flow_and_report_a_private_registry() -> None:
    """Anonymous pull: a 401 challenge, a token from its realm, the HEAD again with it (what `docker pull`
    does first). A registry that hands no anonymous token is reported as wanting credentials, not as
    missing images."""
    with oci_registry({f"r1ov/r1ov:{TAG}"}) as (registry, seen):
        assert doctor.manifest_status(f"{registry}/r1ov:{TAG}")[0] == 200
        assert doctor.manifest_status(f"{registry}/r1ov-train:{TAG}")[0] == 404
    assert [line.split("?")[0] for line in seen[:3]] == [f"HEAD /v2/r1ov/r1ov/manifests/{TAG}", "GET /token",
                                                         f"HEAD /v2/r1ov/r1ov/manifests/{TAG}"]  # fmt: skip
    assert "scope=repository%3Ar1ov%2Fr1ov%3Apull" in seen[1] and "service=stand-in" in seen[1]
    with oci_registry(ALL_IMAGES, anonymous_pull=False) as (registry, _):
        code, found = doctor.manifest_status(f"{registry}/r1ov:{TAG}")
    assert code == 401 and found == "HTTP 401"


def test_images_are_looked_for_where_the_settings_configmap_says(cluster) -> None:
    api, _, _, images = cluster
    images.clear()
    from kubernetes.client import ApiClient, Configuration

    configuration = Configuration()
    configuration.host = api.url
    configuration.api_key = {"authorization": f"Bearer {api.admin_token}"}
    checks = doctor.check_images(ApiClient(configuration), doctor.Target(namespace=NS))
    registry = api.objects[("configmaps", NS, "r1ov-settings")]["data"]["R1OV_IMAGE_REGISTRY"]
    assert [c.item for c in checks] == [f"{registry}/{name}:{TAG}" for name in bundle.IMAGE_NAMES.values()]
    assert not any(c.ok for c in checks) and all("make images" in c.fix for c in checks)


def test_an_older_trainer_is_reported_with_the_field_it_lacks(cluster, tmp_path: Path, capsys) -> None:
    """Discovery cannot tell Trainer v2.1 from v2.3 (both serve trainer.kubeflow.org/v1alpha1 trainjobs);
    a strict dry-run create of the TrainJob the launcher builds can, and creates nothing."""
    api, kfp_url, _, _ = cluster
    api.crds[("trainer.kubeflow.org", "trainjobs")] = TRAINER_V2_1
    code, out = _doctor(api, tmp_path, kfp_url, capsys)
    assert code == 1
    (miss,) = _misses(out)
    assert miss.startswith("CRD") and "trainjobs.trainer.kubeflow.org/v1alpha1" in miss
    assert "spec.runtimePatches (needs Kubeflow Trainer v2.2.0)" in miss and "upgrade to Kubeflow Trainer v2.3" in miss
    assert not [key for key in api.objects if key[0] in ("trainjobs", "pytorchjobs")]
