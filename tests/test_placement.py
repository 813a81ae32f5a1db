"""Every workload lands on a pool that exists, on EKS and on GKE, and fits its machines.

Workloads: every task of the compiled pipeline (with the parameter defaults a plain submit
uses, and the README's one-GPU-node variant of the training tasks), the PyTorchJob, TrainJob and
rollout servers the launchers generate, and the charts' pods (inference with each ci values file,
the MLflow server). Pools: what ``charts/r1ov-gpu-nodepools`` renders with ``ci/aws-values.yaml``
(Karpenter NodePools) and ``ci/gke-values.yaml`` (ComputeClasses).

A GPU workload must select a pool whose node labels carry its whole nodeSelector, tolerate every
taint of that pool, and fit one of the pool's machine shapes. A CPU workload must tolerate no GPU
taint (so no GPU node can take it) and, when it selects a pool, fit that pool's shapes.

Machine shapes are the providers' published vCPU / memory / GPU counts for the types the pools
name (SHAPES, below). Allocatable is estimated with GKE's documented kubelet reservation (the
larger of the two providers' for these sizes) and an allowance for DaemonSets; EKS's real
reservation depends on max pods per node and is smaller.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from kubernetes.utils import parse_quantity

from r1ov.config import DistributedConfig, GRPOConfig
from r1ov.k8s import bundle
from r1ov.k8s.trainjobs import build_pytorchjob, build_trainjob
from r1ov.train.launch import rollout_objects

ROOT = Path(__file__).resolve().parents[1]
CHARTS = ROOT / "charts"
GIB = 2**30

# type -> (vCPU, memory GiB, GPUs). AWS: EC2 instance type pages; GKE: machine type pages (GB there is GiB).
SHAPES: dict[str, tuple[int, int, int]] = {
    # AWS GPU
    "p5.48xlarge": (192, 2048, 8), "p5e.48xlarge": (192, 2048, 8), "p5en.48xlarge": (192, 2048, 8),
    "p4d.24xlarge": (96, 1152, 8), "p4de.24xlarge": (96, 1152, 8),
    "g6e.xlarge": (4, 32, 1), "g6e.2xlarge": (8, 64, 1), "g6e.4xlarge": (16, 128, 1), "g6e.8xlarge": (32, 256, 1),
    "g6e.16xlarge": (64, 512, 1), "g6e.12xlarge": (48, 384, 4), "g6e.24xlarge": (96, 768, 4),
    "g6e.48xlarge": (192, 1536, 8),
    "g6.xlarge": (4, 16, 1), "g6.2xlarge": (8, 32, 1), "g6.4xlarge": (16, 64, 1), "g6.8xlarge": (32, 128, 1),
    "g6.16xlarge": (64, 256, 1), "g6.12xlarge": (48, 192, 4), "g6.24xlarge": (96, 384, 4), "g6.48xlarge": (192, 768, 8),
    "g5.xlarge": (4, 16, 1), "g5.2xlarge": (8, 32, 1), "g5.4xlarge": (16, 64, 1), "g5.8xlarge": (32, 128, 1),
    "g5.16xlarge": (64, 256, 1), "g5.12xlarge": (48, 192, 4), "g5.24xlarge": (96, 384, 4), "g5.48xlarge": (192, 768, 8),
    # AWS CPU
    **{f"{family}.{size}": (cpu, cpu * per_cpu, 0)
       for family, per_cpu in (("m7i", 4), ("m6i", 4), ("c7i", 2), ("r7i", 8))
       for size, cpu in (("large", 2), ("xlarge", 4), ("2xlarge", 8), ("4xlarge", 16), ("8xlarge", 32))},
    # GKE
    "a3-highgpu-8g": (208, 1872, 8), "a2-ultragpu-8g": (96, 1360, 8), "a2-ultragpu-1g": (12, 170, 1),
    "g2-standard-16": (16, 64, 1), "g2-standard-24": (24, 96, 2), "g2-standard-96": (96, 384, 8),
    "n2-standard-8": (8, 32, 0), "n2-standard-16": (16, 64, 0), "e2-standard-8": (8, 32, 0),
}  # fmt: skip
DAEMONSETS = (0.5, 1.0)  # CPU cores, GiB: device plugin, CNI, log and metrics agents


def allocatable(cpu: float, memory_gib: float) -> tuple[float, float]:
    """GKE's kubelet reservation (memory tiers, CPU tiers), eviction threshold and DaemonSets subtracted."""
    tiers = ((4, 0.25), (4, 0.20), (8, 0.10), (112, 0.06), (float("inf"), 0.02))
    reserved, left = 0.0, memory_gib
    for size, share in tiers:
        reserved += min(left, size) * share
        left -= min(left, size)
    cpu_reserved = 0.06 + 0.01 * min(max(cpu - 1, 0), 1) + 0.005 * min(max(cpu - 2, 0), 2) + 0.0025 * max(cpu - 4, 0)
    return cpu - cpu_reserved - DAEMONSETS[0], memory_gib - reserved - 0.1 - DAEMONSETS[1]


@dataclass
class Pool:
    name: str
    labels: dict[str, str]
    taints: list[dict[str, str]]
    shapes: list[str]


@dataclass
class Workload:
    name: str
    selector: dict[str, str]
    tolerations: list[dict[str, Any]]
    cpu: float
    memory_gib: float
    gpus: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _render(chart: str, values: dict[str, Any]) -> list[dict[str, Any]]:
    out = helm.Chart.load(str(CHARTS / chart)).render(values, name="r1ov", namespace="r1ov")
    return [
        doc
        for template, text in sorted(out.items())
        if not template.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def _requirement(requirements: list[dict[str, Any]], key: str) -> list[str] | None:
    return next((r["values"] for r in requirements if r["key"] == key and r["operator"] == "In"), None)


def _karpenter_shapes(requirements: list[dict[str, Any]]) -> list[str]:
    families = _requirement(requirements, "karpenter.k8s.aws/instance-family")
    types = _requirement(requirements, "node.kubernetes.io/instance-type")
    categories = _requirement(requirements, "karpenter.k8s.aws/instance-category")
    gpu_floor = next(
        (int(r["values"][0]) for r in requirements if r["key"] == "karpenter.k8s.aws/instance-gpu-count"), None
    )
    out = []
    for name, (_, _, gpus) in SHAPES.items():
        family = name.split(".")[0]
        if "." not in name or (types and name not in types) or (families and family not in families):
            continue
        if categories and family[0] not in categories:
            continue
        if (gpu_floor is not None and gpus <= gpu_floor) or (gpu_floor is None and gpus):
            continue
        out.append(name)
    return out


def pools(provider: str) -> dict[str, Pool]:
    objects = _render(
        "r1ov-gpu-nodepools", yaml.safe_load((CHARTS / f"r1ov-gpu-nodepools/ci/{provider}-values.yaml").read_text())
    )
    found = {}
    for obj in objects:
        if obj["kind"] == "NodePool":
            template = obj["spec"]["template"]
            shapes = _karpenter_shapes(template["spec"]["requirements"])
            labels = template["metadata"]["labels"]
            found[obj["metadata"]["name"]] = Pool(
                obj["metadata"]["name"], labels, template["spec"].get("taints", []), shapes
            )
        elif obj["kind"] == "ComputeClass":
            config = obj["spec"]["nodePoolConfig"]
            labels = {**config["nodeLabels"], bundle.COMPUTE_CLASS_LABEL: obj["metadata"]["name"]}
            shapes = [p["machineType"] for p in obj["spec"]["priorities"]]
            taints = list(config.get("taints", []))
            if any("gpu" in p for p in obj["spec"]["priorities"]):  # GKE taints its GPU nodes itself too
                taints.append({"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"})
            found[obj["metadata"]["name"]] = Pool(obj["metadata"]["name"], labels, taints, shapes)
    for pool in found.values():
        unknown = [s for s in pool.shapes if s not in SHAPES]
        assert not unknown, f"{pool.name}: add the published shape of {unknown} to SHAPES"
        assert pool.shapes, f"{pool.name}: no machine shape matches its requirements"
    return found


def tolerates(tolerations: list[dict[str, Any]], taint: dict[str, str]) -> bool:
    for t in tolerations:
        if t.get("key") not in (None, taint["key"]) or t.get("effect") not in (None, "", taint["effect"]):
            continue
        if t.get("operator", "Equal") == "Exists" or t.get("value") == taint.get("value"):
            return True
    return False


# --------------------------------------------------------------------------- workloads


# The memory the README's launcher=local variant submits (train_task_memory=...).
README_LOCAL_MEMORY_GIB = float(
    parse_quantity(re.search(r"train_task_memory=(\S+)", (ROOT / "README.md").read_text()).group(1)) / GIB
)


def _resolved(value: str, defaults: dict[str, Any]) -> str:
    """A resource that names a pipeline parameter (``{{$.inputs.parameters['pipelinechannel--X']}}``) -> its default."""
    match = re.fullmatch(r"\{\{\$\.inputs\.parameters\['pipelinechannel--(\w+)'\]\}\}", value)
    return str(defaults[match.group(1)]) if match else value


def pipeline_workloads(package: Path = ROOT / "pipelines/r1ov.yaml") -> list[Workload]:
    spec, platform = yaml.safe_load_all(package.read_text())
    defaults = {k: v.get("defaultValue") for k, v in spec["root"]["inputDefinitions"]["parameters"].items()}
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    out = []
    for name, executor in spec["deploymentSpec"]["executors"].items():
        resources = executor["container"].get("resources", {})
        assert "resourceCpuRequest" in resources and "resourceMemoryRequest" in resources, f"{name}: no requests"
        config = executors.get(name, {})
        selector = config.get("nodeSelector", {})
        if "nodeSelectorJson" in selector:
            selector = defaults[
                selector["nodeSelectorJson"]["componentInputParameter"].removeprefix("pipelinechannel--")
            ]
        else:
            selector = selector.get("labels", {})
        tolerations = []
        for toleration in config.get("tolerations", []):
            if "tolerationJson" in toleration:
                tolerations += defaults[
                    toleration["tolerationJson"]["componentInputParameter"].removeprefix("pipelinechannel--")
                ]
            else:
                tolerations.append(toleration)
        count = resources.get("accelerator", {}).get("resourceCount", "0")
        gpus = int(float(_resolved(str(count), defaults)))  # a constant or a run parameter's default
        cpu = float(parse_quantity(_resolved(resources["resourceCpuRequest"], defaults)))
        memory = float(parse_quantity(_resolved(resources["resourceMemoryRequest"], defaults))) / GIB
        metadata = {"annotations": config.get("podMetadata", {})}
        out.append(Workload(f"pipeline/{name}", selector, tolerations, cpu, memory, gpus, metadata))
        if gpus == 0 and "train_task_gpus" in str(count):
            # The README's launcher=local variant: the task pod is one 8-GPU train node.
            out.append(Workload(
                f"pipeline/{name} (launcher=local)", bundle.pool_selector("train"), [dict(bundle.GPU_TAINT)],
                out[-1].cpu, README_LOCAL_MEMORY_GIB, 8,
            ))  # fmt: skip
    return out


def _pod_workloads(name: str, specs: list[dict[str, Any]], resources: dict[str, Any] | None = None) -> list[Workload]:
    out = []
    for spec in specs:
        requests: dict[str, Any] = {}
        for container in spec.get("containers", []):
            for key, value in ((resources or container.get("resources") or {}).get("requests") or {}).items():
                requests[key] = requests.get(key, 0) + parse_quantity(value)
        limits = (resources or (spec["containers"][0].get("resources") or {})).get("limits") or {}
        gpus = int(limits.get(bundle.GPU_RESOURCE, requests.get(bundle.GPU_RESOURCE, 0)))
        out.append(Workload(
            name, spec.get("nodeSelector", {}), spec.get("tolerations", []), float(requests.get("cpu", 0)),
            float(requests.get("memory", 0)) / GIB, gpus,
        ))  # fmt: skip
    return out


def job_workloads() -> list[Workload]:
    dist = DistributedConfig(launcher="pytorchjob", nnodes=2, nproc_per_node=8, cluster={"namespace": "r1ov"})
    pytorchjob = build_pytorchjob("sft", ["torchrun"], dist, {})
    trainjob = build_trainjob("sft", ["torchrun"], dist.model_copy(update={"launcher": "trainjob"}), {})
    grpo = GRPOConfig(model_name_or_path="m", train_uri="d", output_dir="o", generation="vllm-server",
                      distributed={"launcher": "pytorchjob"})  # fmt: skip
    statefulset = rollout_objects(grpo, "r1ov-grpo-1-rollout", "r1ov-grpo-1")[0]
    jobs = [r["template"]["spec"] for r in pytorchjob["spec"]["pytorchReplicaSpecs"].values()]
    patches = trainjob["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    node_specs = [j["template"]["spec"]["template"]["spec"] for j in patches]
    return [
        *_pod_workloads("job/PyTorchJob", jobs),
        *_pod_workloads("job/TrainJob", node_specs, trainjob["spec"]["trainer"]["resourcesPerNode"]),
        *_pod_workloads("job/rollout StatefulSet", [statefulset["spec"]["template"]["spec"]]),
    ]


def chart_workloads() -> list[Workload]:
    out = []
    for path in sorted((CHARTS / "r1ov-inference/ci").glob("*-values.yaml")):
        for obj in _render("r1ov-inference", yaml.safe_load(path.read_text())):
            if obj["kind"] == "Deployment":
                out += _pod_workloads(f"chart/r1ov-inference ({path.name})", [obj["spec"]["template"]["spec"]])
            elif obj["kind"] == "InferenceService":  # KServe builds the pod from the predictor
                predictor = obj["spec"]["predictor"]
                pod = {**predictor, "containers": [predictor["model"]]}
                out += _pod_workloads(f"chart/r1ov-inference InferenceService ({path.name})", [pod])
    for path in sorted((CHARTS / "r1ov-platform/ci").glob("*-values.yaml")):
        for obj in _render("r1ov-platform", yaml.safe_load(path.read_text())):
            if obj["kind"] == "Deployment":
                out += _pod_workloads(f"chart/r1ov-platform mlflow ({path.name})", [obj["spec"]["template"]["spec"]])
    return out


WORKLOADS = pipeline_workloads() + job_workloads() + chart_workloads()


# --------------------------------------------------------------------------- the checks


def _fits(workload: Workload, pool: Pool) -> list[str]:
    fitting = []
    for shape in pool.shapes:
        cpu, memory, gpus = SHAPES[shape]
        free_cpu, free_memory = allocatable(cpu, memory)
        if workload.cpu <= free_cpu and workload.memory_gib <= free_memory and workload.gpus <= gpus:
            fitting.append(shape)
    return fitting


@pytest.mark.parametrize("provider", ["aws", "gke"])
@pytest.mark.parametrize("workload", WORKLOADS, ids=lambda w: w.name)
def test_every_workload_lands_on_an_existing_pool_and_fits(provider: str, workload: Workload) -> None:
    available = pools(provider)
    gpu_taints = [t for pool in available.values() for t in pool.taints if t["key"] == bundle.GPU_TAINT["key"]]
    assert gpu_taints, "the GPU pools carry the GPU taint"
    matching = [p for p in available.values() if workload.selector.items() <= p.labels.items()]
    if workload.gpus:
        assert workload.selector, f"{workload.name}: a GPU workload must select its pool"
        assert matching, f"{workload.name}: selects {workload.selector}, which no {provider} pool carries"
        for pool in matching:
            assert all(tolerates(workload.tolerations, t) for t in pool.taints), f"{workload.name} on {pool.name}"
            assert _fits(workload, pool), (
                f"{workload.name}: {workload.cpu} CPU, {workload.memory_gib:.1f} GiB, {workload.gpus} GPU fit no "
                f"{pool.name} shape of {pool.shapes}"
            )
    else:
        assert not any(tolerates(workload.tolerations, t) for t in gpu_taints), (
            f"{workload.name}: a CPU workload tolerates the GPU taint and could hold a GPU node"
        )
        if workload.selector:
            assert matching, f"{workload.name}: selects {workload.selector}, which no {provider} pool carries"
            for pool in matching:
                assert not pool.taints and _fits(workload, pool), f"{workload.name} on {pool.name}"


def test_every_cpu_task_and_launcher_selects_the_cpu_pool() -> None:
    cpu_tasks = [w for w in WORKLOADS if w.name.startswith("pipeline/") and not w.gpus]
    # decontaminate, shard, distill/filter per shard, merge, sft and grpo (launchers), register,
    # promote, cleanup
    assert sorted(w.name.removeprefix("pipeline/exec-") for w in cpu_tasks) == [
        "cleanup",
        "data-stage-2",
        "data-stage-3",
        "decontaminate",
        "grpo",
        "merge-shards",
        "promote",
        "register",
        "sft",
        "shard-source",
    ]
    for workload in cpu_tasks:
        assert workload.selector == bundle.pool_selector(bundle.CPU_POOL), workload.name


def _executor_of_stage(stage: str, package: Path = ROOT / "pipelines/r1ov.yaml") -> str:
    """The executor running the data stage ``stage`` (the data_stage component's ``stage`` input)."""
    spec, _ = yaml.safe_load_all(package.read_text())
    for component in spec["components"].values():
        for task in (component.get("dag") or {}).get("tasks", {}).values():
            if task.get("inputs", {}).get("parameters", {}).get("stage", {}).get("runtimeValue") == {"constant": stage}:
                return spec["components"][task["componentRef"]["name"]]["executorLabel"]
    raise AssertionError(f"no data stage {stage!r} in the pipeline")


def test_formalize_runs_its_perception_on_a_rollout_pool_gpu() -> None:
    """Perception is on by default, and Grounding DINO wants a GPU: formalize's pods ask for one
    where the rollout servers' GPUs are, and the other data stages stay on the cpu pool."""
    by_name = {w.name: w for w in WORKLOADS}
    formalize = by_name[f"pipeline/{_executor_of_stage('formalize')}"]
    assert formalize.gpus == 1
    assert formalize.selector == bundle.pool_selector("rollout")
    assert formalize.tolerations == bundle.pool_tolerations("rollout")
    for stage in ("distill", "filter"):
        other = by_name[f"pipeline/{_executor_of_stage(stage)}"]
        assert other.gpus == 0 and other.selector == bundle.pool_selector(bundle.CPU_POOL), stage


def test_tasks_that_watch_or_run_long_jobs_are_not_disrupted() -> None:
    for workload in WORKLOADS:
        if workload.name in ("pipeline/exec-sft", "pipeline/exec-grpo", "pipeline/exec-evaluate"):
            assert workload.extra["annotations"]["annotations"]["karpenter.sh/do-not-disrupt"] == "true"


def test_the_shape_check_can_fail() -> None:
    serve = pools("gke")["r1ov-serve"]
    old_default = Workload("64Gi", bundle.pool_selector("serve"), [dict(bundle.GPU_TAINT)], 8, 64, 1)
    assert "g2-standard-16" not in _fits(old_default, serve)  # its 64 GB cannot hold a 64 Gi request
    too_big = Workload("4 GPUs", bundle.pool_selector("serve"), [dict(bundle.GPU_TAINT)], 8, 40, 4)
    assert not _fits(too_big, serve)


# --------------------------------------------------------------------------- one pool prefix, end to end

PROD_PREFIX = "r1ov-prod"  # charts/r1ov-gpu-nodepools/ci/aws-pinned-values.yaml uses it


def _prefixed_pools(provider: str, prefix: str) -> dict[str, Pool]:
    values = yaml.safe_load((CHARTS / f"r1ov-gpu-nodepools/ci/{provider}-values.yaml").read_text())
    values["namePrefix"] = prefix
    original = _render
    try:
        globals()["_render"] = lambda chart, _values: original(chart, values)
        return pools(provider)
    finally:
        globals()["_render"] = original


def _compiled_with_prefix(prefix: str, dest: Path) -> Path:
    """``R1OV_POOL_PREFIX=<prefix> r1ov compile`` into ``dest``: the pipeline as a site with that prefix builds it."""
    code = "import sys; from r1ov.pipeline.compile import compile_all; compile_all(sys.argv[1], sys.argv[2])"
    env = {**os.environ, "R1OV_POOL_PREFIX": prefix}
    subprocess.run([sys.executable, "-c", code, str(ROOT), str(dest)], check=True, env=env, timeout=300)
    return dest / "pipelines" / "r1ov.yaml"


def _lands(workload: Workload, available: dict[str, Pool]) -> bool:
    matching = [p for p in available.values() if workload.selector.items() <= p.labels.items()]
    return bool(matching) and all(
        all(tolerates(workload.tolerations, t) for t in p.taints) and _fits(workload, p) for p in matching
    )


@pytest.fixture(scope="module")
def prod_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _compiled_with_prefix(PROD_PREFIX, tmp_path_factory.mktemp("compiled"))


@pytest.mark.parametrize("provider", ["aws", "gke"])
def test_a_non_default_pool_prefix_schedules_every_pod(
    provider: str, prod_pipeline: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One value, namePrefix r1ov-prod: the node-pool chart's pools, the platform chart's settings (read by
    the launchers in pipeline pods), the pipeline compiled with it, and every task, job and rollout pod
    lands on those pools. With the default prefix compiled in, the same pools take none of the tasks."""
    from r1ov.k8s import bundle as bundle_module

    available = _prefixed_pools(provider, PROD_PREFIX)
    assert all(name.startswith(f"{PROD_PREFIX}-") for name in available)
    settings = next(
        o for o in _render("r1ov-platform", {"mlflow": {"backend": "sqlite"}, "settings": {"poolPrefix": PROD_PREFIX}})
        if o["kind"] == "ConfigMap" and "R1OV_POOL_PREFIX" in o.get("data", {})
    )  # fmt: skip
    # The launchers run in pipeline pods whose env carries the settings ConfigMap's keys.
    monkeypatch.setattr(bundle_module, "POOL_PREFIX", settings["data"]["R1OV_POOL_PREFIX"])
    tasks = pipeline_workloads(prod_pipeline)
    inference = yaml.safe_load((CHARTS / "r1ov-inference/ci/minimal-values.yaml").read_text())
    serving = [
        w
        for obj in _render("r1ov-inference", {**inference, "poolPrefix": PROD_PREFIX})
        if obj["kind"] == "Deployment"
        for w in _pod_workloads("chart/r1ov-inference", [obj["spec"]["template"]["spec"]])
    ]
    workloads = [w for w in tasks + job_workloads() + serving if w.selector or w.gpus]
    expected = {"pipeline/exec-shard-source", "job/PyTorchJob", "job/rollout StatefulSet", "chart/r1ov-inference"}
    assert {w.name for w in workloads} >= expected
    stranded = [w.name for w in workloads if not _lands(w, available)]
    assert not stranded, f"left Pending with namePrefix {PROD_PREFIX}: {stranded}"

    default_tasks = [w for w in pipeline_workloads() if w.selector and "local" not in w.name]
    assert default_tasks and not any(_lands(w, available) for w in default_tasks)


def test_efa_training_pools_take_every_training_pod() -> None:
    """With EFA the train pool splits into one NodePool per network-card count (ci/aws-efa-values.yaml):
    each carries the pool's labels and taint and offers 8-GPU shapes, so every training job pod and
    rollout server lands and fits on whichever Karpenter picks."""
    values = yaml.safe_load((CHARTS / "r1ov-gpu-nodepools/ci/aws-efa-values.yaml").read_text())
    original = _render
    try:
        globals()["_render"] = lambda chart, _values: original(chart, values)
        available = pools("aws")
    finally:
        globals()["_render"] = original
    train = [p for p in available.values() if p.labels.get(bundle.POOL_LABEL) == "train"]
    assert len(train) == 3 and all(p.name.startswith("r1ov-train-efa") for p in train)
    jobs = [w for w in job_workloads() if w.gpus]
    assert jobs
    stranded = [w.name for w in jobs if not _lands(w, available)]
    assert not stranded, stranded
