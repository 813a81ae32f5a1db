"""The platform Role grants exactly what the code calls: nothing missing, nothing unused.

Every code path that talks to the Kubernetes API from a pipeline pod runs against the API
stand-in (r1ov.testing.kube_api), which records each request as the API server's authorizer sees
it, (API group, resource, verb): both training launchers through success, failure, cancel and a
name clash; the GRPO rollout servers' lifecycle; the exit handler's sweep; and a promotion that
rolls the endpoint (the chart's Deployment, or KServe's InferenceService). That set is compared
both ways with the Role ``charts/r1ov-platform`` renders
for the pipeline's service account, with that Role enforced (a denied call is a missing grant).

KFP's own needs when runs use this account (the Argo executor's task results, the launcher's
ConfigMap) are another Role of the chart and not part of this comparison: the code does not
call them.
"""

from __future__ import annotations

import _thread
import contextlib
import signal
import threading
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException

from r1ov.config import DistributedConfig, EndpointConfig, GRPOConfig
from r1ov.k8s import client
from r1ov.k8s.bundle import RUN_LABEL
from r1ov.k8s.endpoint import roll_to_version
from r1ov.k8s.trainjobs import build_pytorchjob, build_trainjob
from r1ov.pipeline.tasks import cleanup_run
from r1ov.testing.crd_schema import CRD
from r1ov.testing.kube_api import StandInAPI, serve

# The operators' CRDs at the supported releases (tests/crds): the stand-in prunes and validates jobs as a cluster would.
OPERATOR_CRDS = [
    CRD.load(Path(__file__).parent / "crds" / f)
    for f in ("kubeflow.org_pytorchjobs.yaml", "trainer.kubeflow.org_trainjobs.yaml")
]

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "r1ov-platform"
NS = "r1ov"
RUN = "run-1234"
# The endpoint the chart's Role may roll by default (rbac.endpointDeployments: the README's release).
ENDPOINT = yaml.safe_load((CHART / "values.yaml").read_text())["rbac"]["endpointDeployments"][0]

Call = tuple[str, str, str]


def pipeline_role(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The rules of the chart's Role for the code (the one named ``*-pipeline``)."""
    values = values if values is not None else {"mlflow": {"backend": "sqlite"}}  # RBAC does not depend on MLflow
    rendered = helm.Chart.load(str(CHART)).render(values, name="r1ov", namespace=NS)
    roles = [
        doc
        for template, text in rendered.items()
        if not template.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc and doc["kind"] == "Role" and doc["metadata"]["name"].endswith("-pipeline")
    ]
    assert len(roles) == 1, [r["metadata"]["name"] for r in roles]
    return roles[0]["rules"]


def granted(rules: list[dict[str, Any]]) -> set[Call]:
    """Every (group, resource, verb) the rules grant; wildcards and resourceNames are not allowed here."""
    out = set()
    for rule in rules:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], f"wildcard in {rule}: grant what the code calls, by name"
        out |= {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    return out


def _dist(launcher: str) -> DistributedConfig:
    return DistributedConfig(
        launcher=launcher, nnodes=2, nproc_per_node=1, cluster={"namespace": NS, "labels": {RUN_LABEL: RUN}}
    )


def exercise(api: StandInAPI, kube: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every path a pipeline pod takes through the API, with the scripted operator answering."""
    monkeypatch.setattr(client, "load_api_client", lambda *a, **k: kube)
    failed = [("Running", "Running", ""), ("Failed", "Failed", "1 Master replica(s) failed")]
    done = {"pytorchjob": ("Succeeded", "PyTorchJobSucceeded", ""), "trainjob": ("Complete", "JobSetCompleted", "")}

    # Launchers: success, failure (the job is deleted), a clash with an existing job, cancel.
    for build, launcher in ((build_pytorchjob, "pytorchjob"), (build_trainjob, "trainjob")):
        for name, script in (("ok", [("Running", "Running", ""), done[launcher]]), ("bad", failed)):
            api.script, api.log_lines = script, ["step 1"]
            job = build(f"{launcher}-{name}", ["torchrun"], _dist(launcher), {})
            with contextlib.suppress(client.JobFailed):
                client.run_to_completion(job, NS, poll_s=0.02, timeout_s=20, api_client=kube)
    with contextlib.suppress(client.JobFailed):
        client.run_to_completion(build_pytorchjob("pytorchjob-ok", ["x"], _dist("pytorchjob"), {}), NS, api_client=kube)
    api.script = [("Running", "Running", "")]
    timer = threading.Timer(0.3, _thread.interrupt_main)
    # Ctrl-C raises KeyboardInterrupt here even where the suite inherited SIGINT ignored; a bound on
    # the wait turns a lost interrupt into a failure instead of a hang.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer.start()
    try:
        with contextlib.suppress(KeyboardInterrupt):
            client.run_to_completion(
                build_pytorchjob("cancel", ["x"], _dist("pytorchjob"), {}),
                NS,
                poll_s=0.02,
                timeout_s=60,
                api_client=kube,
            )
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)

    # GRPO rollout servers: up before the trainers, torn down however the job ends.
    from r1ov.train import launch

    grpo = GRPOConfig(
        model_name_or_path="s3://bucket/runs/sft",
        train_uri="s3://bucket/clevr",
        output_dir="/tmp/out",
        generation="vllm-server",
        distributed={
            "launcher": "pytorchjob",
            "cluster": {"namespace": NS, "poll_s": 0.02, "labels": {RUN_LABEL: RUN}},
        },
    )
    with launch.rollout_servers("grpo", grpo, "r1ov-grpo-ab12"):
        pass

    # The exit handler after a failed run: something left behind to sweep.
    api.script = [("Running", "Running", "")]
    client.apply(launch.rollout_objects(grpo, "left-behind", "r1ov-grpo-left"), NS, api_client=kube)
    cleanup_run(RUN, "pytorchjob", NS)

    # Promotion rolls the endpoint (the Deployment exists: the inference chart made it).
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": ENDPOINT, "namespace": NS},
        "spec": {"replicas": 1, "template": {"metadata": {}}},
    }
    api.objects[("deployments", NS, ENDPOINT)] = {**deployment, "metadata": {**deployment["metadata"], "generation": 1}}
    roll_to_version(EndpointConfig(deployment=ENDPOINT, namespace=NS), "7", api_client=kube)
    # The same roll when the inference chart renders a KServe InferenceService instead.
    api.objects[("inferenceservices", NS, ENDPOINT)] = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": ENDPOINT, "namespace": NS, "generation": 1},
        "spec": {"predictor": {"model": {"storageUri": "models:/m@champion"}}},
    }
    roll_to_version(EndpointConfig(deployment=ENDPOINT, namespace=NS, kind="InferenceService"), "7", api_client=kube)


def _recorded(monkeypatch: pytest.MonkeyPatch, rules: list[dict[str, Any]] | None) -> StandInAPI:
    api = StandInAPI(rules=rules, crds=OPERATOR_CRDS)
    with serve(api) as url:
        configuration = Configuration()
        configuration.host = url
        try:
            exercise(api, ApiClient(configuration), monkeypatch)
        except ApiException as exc:  # a denial stops the path; the test names what was denied
            if exc.status != 403:
                raise
    return api


@pytest.fixture(scope="module")
def enforced() -> StandInAPI:
    """One pass over every path with the chart's Role enforced; every attempt is recorded, denied or not."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        return _recorded(monkeypatch, rules=pipeline_role())


def test_the_role_grants_exactly_what_the_code_calls(enforced: StandInAPI) -> None:
    needed, role = enforced.calls(), granted(pipeline_role())
    missing = (needed - role) | enforced.calls(denied=True)
    assert not missing, f"the code calls what the Role does not grant (403 on a cluster): {sorted(missing)}"
    unused = role - needed
    assert not unused, f"the Role grants what no code calls: {sorted(unused)}"


def test_the_role_never_reads_secrets_or_runs_pods() -> None:
    role = granted(pipeline_role())
    assert not {(g, r, v) for g, r, v in role if r in ("secrets", "pods") and v in ("get", "create", "delete")}
    assert ("", "pods/exec", "create") not in role


def test_the_role_rolls_only_the_named_endpoint_never_the_mlflow_server() -> None:
    """Promotion patches the endpoint by name: a Role that could patch any Deployment could strip the
    MLflow server's --app-name basic-auth."""
    from r1ov.testing.kube_api import allows, request_info

    rules = pipeline_role()
    for resource in (
        "apps/v1/namespaces/r1ov/deployments",
        "serving.kserve.io/v1beta1/namespaces/r1ov/inferenceservices",
    ):
        assert allows(rules, request_info("PATCH", f"/apis/{resource}/{ENDPOINT}", {}))
        assert not allows(rules, request_info("PATCH", f"/apis/{resource}/mlflow", {}))
    unnamed = pipeline_role({"mlflow": {"backend": "sqlite"}, "rbac": {"endpointDeployments": []}})
    assert not any("deployments" in r["resources"] or "inferenceservices" in r["resources"] for r in unnamed)
