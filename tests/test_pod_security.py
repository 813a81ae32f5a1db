"""Every pod the bundle makes passes Pod Security "restricted" and carries requests and a memory limit.

On a namespace labelled ``pod-security.kubernetes.io/enforce: restricted`` the API server refuses a
pod that fails a check, and under a ResourceQuota on memory a pod without a memory limit (see
r1ov.testing.admission and r1ov.testing.pod_security, which follow the upstream checks). The pods:
the PyTorchJob and TrainJob pods the launchers build (the TrainJob's node pod as Trainer v2 assembles
it from spec.trainer and runtimePatches), the GRPO rollout servers, and every pod the charts render
(inference with each ci values file, the platform chart's MLflow server, helm test pods).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from r1ov.config import DistributedConfig, GRPOConfig
from r1ov.k8s.trainjobs import build_pytorchjob, build_trainjob
from r1ov.testing.kube_api import planned_pods
from r1ov.testing.pod_security import violations
from r1ov.train.launch import rollout_objects

ROOT = Path(__file__).resolve().parents[1]
CHARTS = ROOT / "charts"
NS = "r1ov"


def _dist(launcher: str) -> DistributedConfig:
    return DistributedConfig(launcher=launcher, nnodes=2, nproc_per_node=8, cluster={"namespace": NS})


def _launched() -> list[tuple[str, dict[str, Any]]]:
    """(what, pod spec) of every pod the launchers create."""
    out = []
    for launcher, build in (("pytorchjob", build_pytorchjob), ("trainjob", build_trainjob)):
        job = build("sft", ["torchrun", "-m", "r1ov.train.sft"], _dist(launcher), {})
        out += [(f"{job['kind']} pod {name}", spec) for name, spec in planned_pods(job["kind"], job)]
    grpo = GRPOConfig(
        model_name_or_path="s3://bucket/runs/sft", train_uri="s3://bucket/clevr", output_dir="/tmp/out",
        generation="vllm-server", distributed={"launcher": "pytorchjob", "cluster": {"namespace": NS}},
    )  # fmt: skip
    for obj in rollout_objects(grpo, "grpo", "r1ov-grpo-ab12"):
        if obj["kind"] == "StatefulSet":
            out.append((f"rollout server {obj['metadata']['name']}", obj["spec"]["template"]["spec"]))
    return out


def _rendered(chart: str) -> list[tuple[str, dict[str, Any]]]:
    """(what, pod spec) of every pod a chart renders, for its default values and each ci values file."""
    loaded = helm.Chart.load(str(CHARTS / chart))
    out = []
    defaults = {"mlflow": {"backend": "sqlite"}} if chart == "r1ov-platform" else {}
    for values_file in [None, *sorted((CHARTS / chart / "ci").glob("*-values.yaml"))]:
        values = yaml.safe_load(values_file.read_text()) if values_file else defaults
        label = f"{chart} ({values_file.name if values_file else 'defaults'})"
        try:
            rendered = loaded.render(values, name="r1ov", namespace=NS)
        except Exception as exc:  # a chart whose defaults require a value renders only with ci files
            if values_file is None:
                continue
            raise AssertionError(f"{label} does not render: {exc}") from exc
        for template, text in rendered.items():
            if template.endswith("NOTES.txt"):
                continue
            for obj in (doc for doc in yaml.safe_load_all(text) if doc):
                where = f"{label} {obj['kind']}/{obj['metadata']['name']}"
                if obj["kind"] == "Pod":
                    out.append((where, obj["spec"]))
                elif obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
                    out.append((where, obj["spec"]["template"]["spec"]))
    return out


PODS = _launched() + _rendered("r1ov-inference") + _rendered("r1ov-platform")


def test_every_kind_of_pod_is_covered() -> None:
    whats = " ".join(what for what, _ in PODS)
    for expected in ("PyTorchJob pod", "TrainJob pod", "rollout server", "r1ov-inference", "r1ov-platform"):
        assert expected in whats


@pytest.mark.parametrize(("what", "spec"), PODS, ids=[what for what, _ in PODS])
def test_pod_passes_restricted(what: str, spec: dict[str, Any]) -> None:
    assert violations("restricted", spec) == [], what


@pytest.mark.parametrize(("what", "spec"), PODS, ids=[what for what, _ in PODS])
def test_pod_has_requests_and_a_memory_limit(what: str, spec: dict[str, Any]) -> None:
    for container in [*(spec.get("initContainers") or []), *spec["containers"]]:
        resources = container.get("resources") or {}
        assert {"cpu", "memory"} <= set(resources.get("requests") or {}), f"{what}: {container['name']} requests"
        assert "memory" in (resources.get("limits") or {}), f"{what}: {container['name']} has no memory limit"


def test_every_pipeline_task_has_requests_and_a_memory_limit() -> None:
    """KFP task pods: the compiled pipeline's resources (a parameter's default where a task takes one)."""
    spec, _ = yaml.safe_load_all((ROOT / "pipelines" / "r1ov.yaml").read_text())
    defaults = {k: v.get("defaultValue") for k, v in spec["root"]["inputDefinitions"]["parameters"].items()}
    for name, executor in spec["deploymentSpec"]["executors"].items():
        resources = executor["container"].get("resources", {})
        assert {"resourceCpuRequest", "resourceMemoryRequest", "resourceMemoryLimit"} <= set(resources), name
        limit = resources["resourceMemoryLimit"]
        if "pipelinechannel--" in limit:
            assert defaults[limit.split("pipelinechannel--")[1].split("'")[0]], f"{name}: {limit} has no default"


# --------------------------------------------------------------------------- KFP task pods

# What the KFP 2.17 backend puts around a task's own container (kubeflow/pipelines, tag 2.17.0):
# backend/src/v2/compiler/argocompiler/security_context.go, applySecurityContextToExecutorTemplate: the
# pod gets only seccompProfile RuntimeDefault (applyPodSeccompProfileOnly), the task's container
# defaultUserContainerSecurityContext (no privilege escalation, capabilities ALL dropped, seccomp) but
# NOT runAsNonRoot ("user-specified images may run as root"); the kfp-launcher init container the full
# defaultContainerSecurityContext (runAsNonRoot too) and launcherResources (argo.go: limits memory
# 256Mi, cpu 0.5; requests cpu 0.1).
_KFP_USER_CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
_KFP_LAUNCHER = {
    "name": "kfp-launcher",
    "securityContext": {**_KFP_USER_CONTAINER_SECURITY, "runAsNonRoot": True},
    "resources": {"limits": {"memory": "256Mi", "cpu": "0.5"}, "requests": {"cpu": "0.1"}},
}
# Argo's wait sidecar, as KFP's manifests configure the executor (manifests/kustomize/third-party/argo/
# base/workflow-controller-configmap-patch.yaml, `executor:`): a restricted securityContext, no resources.
_ARGO_WAIT = {
    "name": "wait",
    "securityContext": {**_KFP_USER_CONTAINER_SECURITY, "runAsNonRoot": True, "runAsUser": 65532},
}


def kfp_task_pod(executor: dict[str, Any], platform: dict[str, Any]) -> dict[str, Any]:
    """The pod spec the KFP 2.17 backend runs for one compiled executor and its kubernetes platform config.

    The driver (backend/src/v2/driver/driver.go initPodSpecPatch; k8s.go extendPodSpecPatch) patches the
    compiled executor template: the container's resources from the component spec (cpu/memory requests
    and limits), and, from ``kubernetes.set_security_context``, runAsUser/runAsGroup/runAsNonRoot on the
    task's container (capabilities ALL dropped again). Volumes, env, node selectors and tolerations are
    left out: Pod Security restricted and the memory checks do not read them (emptyDir, secret and
    configMap volumes are all restricted-allowed).
    """
    resources = executor["container"].get("resources", {})
    requests = {"cpu": resources.get("resourceCpuRequest"), "memory": resources.get("resourceMemoryRequest")}
    limits = {"cpu": resources.get("resourceCpuLimit"), "memory": resources.get("resourceMemoryLimit")}
    security = dict(_KFP_USER_CONTAINER_SECURITY)
    wanted = platform.get("securityContext") or {}
    # The platform config is protobuf JSON: its int64 fields print as strings.
    for field in ("runAsUser", "runAsGroup"):
        if field in wanted:
            security[field] = int(wanted[field])
    if "runAsNonRoot" in wanted:
        security["runAsNonRoot"] = wanted["runAsNonRoot"]
    main = {
        "name": "main",
        "image": executor["container"]["image"],
        "securityContext": security,
        "resources": {
            "requests": {k: v for k, v in requests.items() if v},
            "limits": {k: v for k, v in limits.items() if v},
        },
    }
    return {
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "initContainers": [dict(_KFP_LAUNCHER)],
        "containers": [main, dict(_ARGO_WAIT)],
    }


def _task_pods() -> list[tuple[str, dict[str, Any]]]:
    spec, platforms = yaml.safe_load_all((ROOT / "pipelines" / "r1ov.yaml").read_text())
    configs = platforms["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    return [
        (name, kfp_task_pod(executor, configs.get(name, {})))
        for name, executor in spec["deploymentSpec"]["executors"].items()
    ]


TASK_PODS = _task_pods()


@pytest.mark.parametrize(("name", "spec"), TASK_PODS, ids=[name for name, _ in TASK_PODS])
def test_every_pipeline_task_pod_passes_restricted(name: str, spec: dict[str, Any]) -> None:
    """KFP 2.17 hardens a task's container but leaves runAsNonRoot to the pipeline, since an image may run
    as root: without ``kubernetes.set_security_context(run_as_non_root=True, ...)`` a restricted namespace
    refuses every task pod. What the pipeline cannot express: ``fsGroup`` and other pod-level fields
    (set_security_context covers the container's runAsUser/runAsGroup/runAsNonRoot only), and the
    resources of Argo's ``wait`` sidecar (the workflow controller's ``executor.resources`` setting; KFP's
    manifests set none, so a namespace whose ResourceQuota covers limits.memory needs a LimitRange
    default for it)."""
    assert violations("restricted", spec) == [], name


@pytest.mark.parametrize(("name", "spec"), TASK_PODS, ids=[name for name, _ in TASK_PODS])
def test_every_pipeline_task_pod_has_a_memory_limit_where_the_pipeline_sets_it(name: str, spec: dict[str, Any]) -> None:
    for container in [*spec["initContainers"], spec["containers"][0]]:
        assert "memory" in container["resources"].get("limits", {}), f"{name}: {container['name']}"
