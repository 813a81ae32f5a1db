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
