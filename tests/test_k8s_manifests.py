"""Training-job and rollout manifests, validated against the upstream schemas they must satisfy.

Custom resources are checked against the CRD's openAPIV3Schema (vendored in tests/crds, see
SOURCES.md) the way the API server takes a create with strict field validation: a field the
structural schema would prune is an error, then the OpenAPI schema (r1ov.testing.crd_schema).
Built-in objects are checked with kubernetes_validate (the Kubernetes 1.31 OpenAPI schemas,
strict). CEL rules and operator webhooks are not in those schemas; the rules that matter here
are asserted directly.
"""

from __future__ import annotations

import copy
import functools
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from r1ov.config import DistributedConfig
from r1ov.k8s import bundle, names, podspec
from r1ov.k8s.rollout import build_rollout_server, rollout_base_url
from r1ov.k8s.trainjobs import build_pytorchjob, build_trainjob
from r1ov.testing.crd_schema import CRD, prune

CRDS = Path(__file__).parent / "crds"
K8S_VERSION = "1.31.0"
RFC1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
COMMAND = ["torchrun", "-m", "r1ov.train.sft", "--config", "/etc/r1ov/sft.yaml"]


# --------------------------------------------------------------------------- helpers


@functools.cache
def _crd(kind: str) -> CRD:
    files = {"PyTorchJob": "kubeflow.org_pytorchjobs.yaml", "TrainJob": "trainer.kubeflow.org_trainjobs.yaml"}
    return CRD.load(CRDS / files[kind])


def _validate_crd(obj: dict[str, Any]) -> None:
    """As the API server takes a create with fieldValidation=Strict: nothing the structural schema would
    prune, and nothing the OpenAPI schema refuses (r1ov.testing.crd_schema)."""
    crd, version = _crd(obj["kind"]), obj["apiVersion"].split("/")[1]
    decoded = copy.deepcopy(obj)
    unknown = prune(decoded, crd.schemas[version])
    errors = [str(e) for e in crd.validator(version).errors(decoded)]
    assert not unknown and not errors, "\n".join([*(f"unknown field {u!r}" for u in unknown), *errors][:10])


def _dist(**overrides: Any) -> DistributedConfig:
    cluster = overrides.pop("cluster", {})
    return DistributedConfig.model_validate(
        {"launcher": "pytorchjob", "nnodes": 2, "nproc_per_node": 8, **overrides, "cluster": cluster}
    )


def _pod_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """Every pod spec (or pod spec patch) an object carries."""
    if obj["kind"] == "PyTorchJob":
        return [r["template"]["spec"] for r in obj["spec"]["pytorchReplicaSpecs"].values()]
    if obj["kind"] == "TrainJob":
        jobs = obj["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
        return [j["template"]["spec"]["template"]["spec"] for j in jobs]
    return [obj["spec"]["template"]["spec"]]


def _all_env(obj: Any) -> list[dict[str, Any]]:
    """Every env entry anywhere in an object."""
    found = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == "env" and isinstance(value, list):
                found.extend(value)
            else:
                found.extend(_all_env(value))
    elif isinstance(obj, list):
        for value in obj:
            found.extend(_all_env(value))
    return found


def _all_images(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        return [v for k, v in obj.items() if k == "image" and isinstance(v, str)] + [
            i for v in obj.values() for i in _all_images(v)
        ]
    if isinstance(obj, list):
        return [i for v in obj for i in _all_images(v)]
    return []


# --------------------------------------------------------------------------- PyTorchJob


@pytest.mark.parametrize("nnodes", [1, 2, 4])
def test_pytorchjob_matches_crd_and_layout(nnodes: int) -> None:
    job = build_pytorchjob("sft", COMMAND, _dist(nnodes=nnodes), {"R1OV_STAGE": "sft"})
    _validate_crd(job)
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert specs["Master"]["replicas"] == 1
    if nnodes == 1:
        assert "Worker" not in specs
    else:
        assert specs["Worker"]["replicas"] == nnodes - 1
    assert job["spec"]["nprocPerNode"] == "8"
    for replica in specs.values():
        (container,) = replica["template"]["spec"]["containers"]
        assert container["name"] == "pytorch"  # the operator's webhook requires this name
        assert container["command"] == COMMAND
        assert {"name": "R1OV_STAGE", "value": "sft"} in container["env"]


def test_strict_crd_validation_catches_misspelt_fields() -> None:
    job = build_pytorchjob("sft", COMMAND, _dist(), {})
    job["spec"]["nprocPerNod"] = job["spec"].pop("nprocPerNode")
    with pytest.raises(AssertionError, match="nprocPerNod"):
        _validate_crd(job)
    job = build_pytorchjob("sft", COMMAND, _dist(), {})
    job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["resource"] = {}
    with pytest.raises(AssertionError, match="resource"):
        _validate_crd(job)


@pytest.mark.parametrize("replica", ["Master", "Worker"])
def test_pytorchjob_pod_template_is_a_valid_kubernetes_pod_template(replica: str) -> None:
    job = build_pytorchjob("sft", COMMAND, _dist(nnodes=3, cluster={"secret_env": ["hf"], "shm_size": "32Gi"}), {})
    template = job["spec"]["pytorchReplicaSpecs"][replica]["template"]
    wrapper = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template}
    kubernetes_validate.validate(wrapper, K8S_VERSION, strict=True)


def test_pytorchjob_run_policy_and_cluster_knobs() -> None:
    cluster = {
        "namespace": "team-a",
        "image": "registry.example/r1ov-train:1.2.3",
        "gpus_per_node": 4,
        "cpu": "16",
        "memory": "256Gi",
        "pool": "train",
        "service_account": "trainer",
        "active_deadline_s": 7200,
        "backoff_limit": 2,
        "ttl_after_finished_s": 600,
        "clean_pod_policy": "All",
        "shm_size": "64Gi",
    }
    job = build_pytorchjob("sft", COMMAND, _dist(nproc_per_node=4, cluster=cluster), {})
    _validate_crd(job)
    assert job["metadata"]["namespace"] == "team-a"
    assert job["spec"]["runPolicy"] == {
        "cleanPodPolicy": "All",
        "ttlSecondsAfterFinished": 600,
        "backoffLimit": 2,
        "activeDeadlineSeconds": 7200,
    }
    master = job["spec"]["pytorchReplicaSpecs"]["Master"]
    # A lost node makes its peers exit 1, which ExitCode treats as permanent: every node restarts and resumes.
    assert master["restartPolicy"] == "OnFailure"
    pod = master["template"]["spec"]
    assert pod["serviceAccountName"] == "trainer"
    assert pod["containers"][0]["image"] == "registry.example/r1ov-train:1.2.3"
    assert pod["containers"][0]["resources"] == {
        "requests": {"cpu": "16", "memory": "256Gi"},
        "limits": {"memory": "256Gi", bundle.GPU_RESOURCE: "4"},  # memory limit = request: guaranteed, quota-ready
    }
    assert pod["volumes"] == [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Gi"}},
        {"name": "work", "emptyDir": {}},  # the trainer's writable scratch: model copy, checkpoints, output
    ]
    # Without retries a failed pod stays failed.
    no_retry = build_pytorchjob("sft", COMMAND, _dist(cluster={"backoff_limit": 0}), {})
    assert no_retry["spec"]["pytorchReplicaSpecs"]["Master"]["restartPolicy"] == "Never"
    assert no_retry["spec"]["runPolicy"]["activeDeadlineSeconds"] == 3 * 24 * 3600  # a hung job ends by default
    endless = build_pytorchjob("sft", COMMAND, _dist(cluster={"active_deadline_s": None}), {})
    assert "activeDeadlineSeconds" not in endless["spec"]["runPolicy"]


@pytest.mark.parametrize("kind", ["pytorchjob", "trainjob"])
def test_a_stopping_pod_has_time_to_save_its_last_checkpoint(kind: str) -> None:
    """torchrun SIGKILLs its workers 30 s after passing on SIGTERM, Kubernetes the pod 30 s after sending it,
    unless told otherwise: both must outlast a checkpoint save + upload (cluster.stop_grace_s)."""
    dist = _dist(nnodes=2, cluster={"stop_grace_s": 1200})
    if kind == "pytorchjob":
        job = build_pytorchjob("sft", COMMAND, dist, {})
        pods = [spec["template"]["spec"] for spec in job["spec"]["pytorchReplicaSpecs"].values()]
        envs = [pod["containers"][0]["env"] for pod in pods]
        assert job["spec"]["runPolicy"]["backoffLimit"] == 3  # by default a preempted job restarts by itself
    else:
        job = build_trainjob("sft", COMMAND, dist, {})
        pods = [job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
                ["template"]["spec"]["template"]["spec"]]  # fmt: skip
        envs = [job["spec"]["trainer"]["env"]]
    _validate_crd(job)
    for pod, env in zip(pods, envs, strict=True):
        assert {"name": "TORCH_ELASTIC_SHUTDOWN_TIMEOUT", "value": "1200"} in env
        assert pod["terminationGracePeriodSeconds"] > 1200


def test_master_and_worker_templates_are_independent() -> None:
    job = build_pytorchjob("sft", COMMAND, _dist(nnodes=2), {})
    specs = job["spec"]["pytorchReplicaSpecs"]
    specs["Worker"]["template"]["spec"]["containers"][0]["env"].append({"name": "X", "value": "1"})
    assert {"name": "X", "value": "1"} not in specs["Master"]["template"]["spec"]["containers"][0]["env"]
    assert build_pytorchjob("sft", COMMAND, _dist(nnodes=2), {}) == build_pytorchjob(
        "sft", COMMAND, _dist(nnodes=2), {}
    )


# --------------------------------------------------------------------------- TrainJob


@pytest.mark.parametrize("nnodes", [1, 4])
def test_trainjob_matches_crd_and_layout(nnodes: int) -> None:
    cluster = {"secret_env": ["hf"], "secret_keys": {"hf": ["HF_TOKEN"]}, "service_account": "trainer"}
    job = build_trainjob("sft", COMMAND, _dist(nnodes=nnodes, cluster=cluster), {"R1OV_STAGE": "sft"})
    _validate_crd(job)
    spec = job["spec"]
    assert spec["runtimeRef"] == {
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
        "name": "torch-distributed",
    }
    trainer = spec["trainer"]
    assert trainer["numNodes"] == nnodes
    assert trainer["numProcPerNode"] == 8
    assert trainer["command"] == COMMAND
    assert trainer["image"] == bundle.image("train")
    assert trainer["resourcesPerNode"]["limits"] == {"memory": "512Gi", bundle.GPU_RESOURCE: "8"}
    assert {"name": "R1OV_STAGE", "value": "sft"} in trainer["env"]
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "HF_TOKEN"}}} in trainer["env"]
    # The Trainer webhook's rules, which the schema does not carry.
    (patch,) = spec["runtimePatches"]
    assert re.match(r"^[a-z0-9.-]+\.[a-z]+/[a-z0-9-]+$", patch["manager"])  # domain-prefixed path
    (replicated,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert replicated["name"] == "node"  # the torch-distributed runtime's job name
    pod = replicated["template"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "trainer"
    for container in pod["containers"]:
        assert container["name"] == "node"
        assert "env" not in container


def test_trainjob_name_satisfies_cel_rules() -> None:
    for raw in ["SFT Run #7 (7B) on the big cluster with a very long descriptive name indeed", "7b-sft", "--x--"]:
        job = build_trainjob(raw, COMMAND, _dist(nnodes=16), {})
        name = job["metadata"]["name"]
        # The CRD's x-kubernetes-validations on metadata.name.
        assert RFC1035.match(name) and len(name) <= 63, name
        # JobSet's webhook: "<name>-node-0-<last pod index>-<5 random>" must be a DNS-1035 label.
        assert len(f"{name}-node-0-15-abcde") <= 63


def test_trainjob_deadline_and_secret_keys_required() -> None:
    job = build_trainjob("sft", COMMAND, _dist(cluster={"active_deadline_s": 3600}), {})
    _validate_crd(job)
    assert job["spec"]["activeDeadlineSeconds"] == 3600
    with pytest.raises(ValueError, match="secret_keys for hf"):
        build_trainjob("sft", COMMAND, _dist(cluster={"secret_env": ["hf"]}), {})


# --------------------------------------------------------------------------- shared rules


def _all_objects() -> list[dict[str, Any]]:
    dist = _dist(nnodes=3, cluster={"secret_env": ["s3"], "secret_keys": {"s3": ["AWS_SECRET_ACCESS_KEY"]}})
    env = {"TOKENIZERS_PARALLELISM": "false", "R1OV_STAGE": "sft"}
    return [
        build_pytorchjob("sft", COMMAND, dist, env),
        build_trainjob("sft", COMMAND, dist, env),
        *build_rollout_server(
            "grpo", "/models/sft", 2, 1, 1, None, secret_env=["s3"], env={"VLLM_LOGGING_LEVEL": "INFO"}
        ),
    ]


@pytest.mark.parametrize("index", range(4), ids=["pytorchjob", "trainjob", "statefulset", "service"])
def test_objects_carry_standard_labels_and_pinned_images(index: int) -> None:
    obj = _all_objects()[index]
    labels = obj["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "r1ov"
    assert labels["app.kubernetes.io/instance"] == obj["metadata"]["name"]
    assert labels["app.kubernetes.io/managed-by"] == "r1ov"
    assert labels["app.kubernetes.io/version"] == bundle.TAG
    for value in labels.values():
        assert len(value) <= 63 and re.match(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$", value)
    for image in _all_images(obj):
        assert image.endswith(f":{bundle.TAG}") and not image.endswith(":latest")


@pytest.mark.parametrize("index", range(3), ids=["pytorchjob", "trainjob", "rollout"])
def test_gpu_pods_land_on_their_pool(index: int) -> None:
    obj = _all_objects()[index]
    pool = "rollout" if obj["kind"] == "StatefulSet" else "train"
    for pod in _pod_specs(obj):
        assert pod["nodeSelector"] == bundle.pool_selector(pool)
        assert bundle.GPU_TAINT in pod["tolerations"]
        assert {"name": "dshm", "emptyDir": {"medium": "Memory"}} in pod["volumes"]
        for container in pod["containers"]:
            assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]


def test_no_secret_literals_anywhere() -> None:
    for obj in _all_objects():
        for entry in _all_env(obj):
            if podspec.looks_secret(entry["name"]):
                assert "value" not in entry and "secretKeyRef" in entry["valueFrom"], (obj["kind"], entry)
    pytorchjob, _, statefulset, _ = _all_objects()
    for pod in _pod_specs(pytorchjob) + _pod_specs(statefulset):
        assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": "s3"}}]


@pytest.mark.parametrize("name", ["HF_TOKEN", "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY", "MLFLOW_TRACKING_PASSWORD"])
def test_builders_refuse_credentials_as_literals(name: str) -> None:
    for build in (build_pytorchjob, build_trainjob):
        with pytest.raises(ValueError, match="Secret"):
            build("sft", COMMAND, _dist(), {name: "hunter2"})
    with pytest.raises(ValueError, match="Secret"):
        build_rollout_server("grpo", "m", 1, 1, 1, None, env={name: "hunter2"})


def test_secret_detection_spares_ordinary_names() -> None:
    for name in ["TOKENIZERS_PARALLELISM", "MAX_TOKENS", "KEY_PREFIX", "NCCL_DEBUG", "HF_HOME"]:
        assert not podspec.looks_secret(name)


def test_names_are_rfc1035_and_long_ones_stay_distinct() -> None:
    assert names.dns_label("SFT_Run 1") == "sft-run-1"
    assert names.dns_label("7b") == "r7b"
    long_a, long_b = "x" * 80 + "-a", "x" * 80 + "-b"
    assert names.dns_label(long_a) != names.dns_label(long_b)
    assert len(names.dns_label(long_a)) == 63
    with pytest.raises(ValueError):
        names.dns_label("___")
    for nnodes in (1, 2, 16):
        job = build_pytorchjob("A" * 100, COMMAND, _dist(nnodes=nnodes), {})
        name = job["metadata"]["name"]
        assert RFC1035.match(name)
        # The operator names pods and services "<name>-master-0" / "<name>-worker-<i>".
        assert len(f"{name}-worker-{max(nnodes - 2, 0)}") <= 63 and len(f"{name}-master-0") <= 63


# --------------------------------------------------------------------------- rollout servers


def test_rollout_objects_are_valid_kubernetes() -> None:
    objects = build_rollout_server("GRPO Rollout", "/models/sft", 2, 2, 2, None, namespace="r1ov")
    assert [o["kind"] for o in objects] == ["StatefulSet", "Service"]
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        assert obj["metadata"]["namespace"] == "r1ov"


def test_rollout_server_layout() -> None:
    statefulset, service = build_rollout_server(
        "grpo",
        "/models/sft",
        tensor_parallel=2,
        data_parallel=2,
        replicas=1,
        image=None,
        extra_args=["--max-model-len", "4096"],
    )
    pod = statefulset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == bundle.image("vllm")
    assert container["command"] == [
        "trl", "vllm-serve", "--model", "/models/sft", "--tensor-parallel-size", "2", "--data-parallel-size", "2",
        "--host", "0.0.0.0", "--port", "8000", "--max-model-len", "4096",
    ]  # fmt: skip
    assert container["resources"]["limits"] == {"memory": "64Gi", bundle.GPU_RESOURCE: "4"}  # T * D
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port_names == {"http": 8000, "weight-sync": 51216}
    for probe in ("startupProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] >= 1800
    # Headless Service: DNS names per pod, both ports, selecting exactly the server pods.
    assert service["spec"]["clusterIP"] == "None"
    assert {(p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {(8000, "http"), (51216, "weight-sync")}
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert statefulset["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    assert rollout_base_url("grpo", "r1ov") == "http://grpo-0.grpo.r1ov.svc:8000"


def test_rollout_name_fits_statefulset_limits_and_url_agrees() -> None:
    long_name = "grpo rollout for the seven billion parameter model, second attempt"
    statefulset, service = build_rollout_server(long_name, "m", 1, 1, 3, "registry.example/vllm:1.0")
    name = statefulset["metadata"]["name"]
    # controller-revision-hash label = "<name>-<10 chars>" must fit in 63.
    assert RFC1035.match(name) and len(name) + 11 <= 63
    assert rollout_base_url(long_name, "ns", replica=2) == f"http://{name}-2.{service['metadata']['name']}.ns.svc:8000"
    assert statefulset["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/vllm:1.0"


def test_rollout_reads_s3_models_with_the_streamer() -> None:
    statefulset, _ = build_rollout_server("grpo", "s3://models/sft", 1, 1, 1, None)
    command = statefulset["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[-2:] == ["--load-format", "runai_streamer"]
    statefulset, _ = build_rollout_server("grpo", "s3://m", 1, 1, 1, None, extra_args=["--load-format=safetensors"])
    assert "runai_streamer" not in statefulset["spec"]["template"]["spec"]["containers"][0]["command"]


@pytest.mark.parametrize(
    "kwargs",
    [{"tensor_parallel": 0}, {"data_parallel": 0}, {"replicas": 0}, {"port": 70000}, {"group_port": 8000}],
)
def test_rollout_rejects_impossible_layouts(kwargs: dict[str, int]) -> None:
    args = {"tensor_parallel": 1, "data_parallel": 1, "replicas": 1, **kwargs}
    with pytest.raises(ValueError):
        build_rollout_server("grpo", "m", image=None, **args)


def test_builders_do_not_mutate_their_inputs() -> None:
    dist = _dist(cluster={"secret_env": ["a"], "secret_keys": {"a": ["K"]}})
    before = copy.deepcopy(dist.model_dump())
    env = {"A": "1"}
    build_pytorchjob("x", COMMAND, dist, env)
    build_trainjob("x", COMMAND, dist, env)
    assert dist.model_dump() == before and env == {"A": "1"}


# --------------------------------------------------------------------------- multi-node knobs


def _platform_knobs() -> dict[str, Any]:
    return {
        "efa_devices": 4,
        "extra_resources": {"rdma/ib": "1"},
        "env": {"HF_HUB_ENABLE_HF_TRANSFER": "1"},
        "nccl_env": {"NCCL_DEBUG": "INFO", "NCCL_SOCKET_IFNAME": "eth0"},
        "annotations": {"prometheus.io/scrape": "false"},
        "labels": {"team": "vision"},
        "volumes": [{"name": "datasets", "persistentVolumeClaim": {"claimName": "datasets", "readOnly": True}}],
        "volume_mounts": [{"name": "datasets", "mountPath": "/datasets", "readOnly": True}],
        "gpus_per_node": 8,
    }


@pytest.mark.parametrize("nnodes", [1, 2, 4])
@pytest.mark.parametrize("launcher", ["pytorchjob", "trainjob"])
def test_multi_node_knobs_reach_every_training_pod(launcher: str, nnodes: int) -> None:
    """NCCL/EFA env and devices, extra env/volumes/annotations/labels, the Istio opt-out and
    Karpenter's do-not-disrupt, on every pod; credentials and settings by reference; still valid."""
    dist = _dist(launcher=launcher, nnodes=nnodes, cluster=_platform_knobs())
    build = build_pytorchjob if launcher == "pytorchjob" else build_trainjob
    job = build("sft", COMMAND, dist, {})
    _validate_crd(job)
    env = {e["name"]: e for e in _all_env(job)}
    assert env["NCCL_DEBUG"]["value"] == "INFO" and env["NCCL_SOCKET_IFNAME"]["value"] == "eth0"
    assert env["FI_PROVIDER"]["value"] == "efa" and env["HF_HUB_ENABLE_HF_TRANSFER"]["value"] == "1"
    assert env["R1OV_WORK_DIR"]["value"] == "/workspace"
    # Hub downloads, JIT-built ops and kernel caches go to the work volume, not the image's home.
    for cache in ("HF_HOME", "TORCH_EXTENSIONS_DIR", "TRITON_CACHE_DIR", "XDG_CACHE_HOME"):
        assert env[cache]["value"].startswith("/workspace/"), cache
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {
        "name": "r1ov-s3", "key": "access-key-id", "optional": True,
    }  # fmt: skip
    assert env["R1OV_S3_ENDPOINT"]["valueFrom"]["configMapKeyRef"]["name"] == "r1ov-settings"
    if launcher == "pytorchjob":
        templates = [r["template"] for r in job["spec"]["pytorchReplicaSpecs"].values()]
        resources = [t["spec"]["containers"][0]["resources"] for t in templates]
    else:
        jobs = job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
        templates = [j["template"]["spec"]["template"] for j in jobs]
        resources = [job["spec"]["trainer"]["resourcesPerNode"]]
    for template in templates:
        assert template["metadata"]["annotations"] == {
            "sidecar.istio.io/inject": "false",
            "karpenter.sh/do-not-disrupt": "true",
            "prometheus.io/scrape": "false",
        }
        assert template["metadata"]["labels"]["team"] == "vision"
        assert {"name": "datasets", "persistentVolumeClaim": {"claimName": "datasets", "readOnly": True}} in (
            template["spec"]["volumes"]
        )
        mounts = template["spec"]["containers"][0]["volumeMounts"]
        assert {"name": "datasets", "mountPath": "/datasets", "readOnly": True} in mounts
        assert {"name": "work", "mountPath": "/workspace"} in mounts
    for limits in (r["limits"] for r in resources):
        assert limits == {"memory": "512Gi", "nvidia.com/gpu": "8", "vpc.amazonaws.com/efa": "4", "rdma/ib": "1"}
    if launcher == "pytorchjob":
        for template in templates:
            wrapper = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template}
            kubernetes_validate.validate(wrapper, K8S_VERSION, strict=True)


@pytest.mark.parametrize(
    ("dist", "message"),
    [
        ({"nproc_per_node": 16, "cluster": {"gpus_per_node": 8}}, "nproc_per_node 16 > cluster.gpus_per_node 8"),
        ({"launcher": "trainjob", "cluster": {"secret_env": ["hf"]}}, "set cluster.secret_keys for hf"),
    ],
)
def test_layouts_the_cluster_cannot_run_are_config_errors(dist: dict[str, Any], message: str) -> None:
    from r1ov.config import ConfigError, SFTConfig, build

    fields = {"model_name_or_path": "m", "train_uri": "d", "output_dir": "o"}
    with pytest.raises(ConfigError, match=re.escape(message)):
        build(SFTConfig, {**fields, "distributed": {"launcher": "pytorchjob", **dist}}, name="sft")


# --------------------------------------------------------------------------- rollout servers of a GRPO job


def _grpo_cfg(**overrides: Any) -> Any:
    from r1ov.config import GRPOConfig
    from r1ov.k8s.bundle import RUN_LABEL

    fields: dict[str, Any] = {
        "model_name_or_path": "s3://r1ov/runs/r/sft",
        "train_uri": "s3://r1ov/clevr",
        "output_dir": "/tmp/out",
        "checkpoint_uri": "s3://r1ov/runs/r/grpo",
        "generation": "vllm-server",
        "distributed": {"launcher": "pytorchjob", "nnodes": 2, "cluster": {"labels": {RUN_LABEL: "run-7"}}},
    }
    return GRPOConfig(**{**fields, **overrides})


@pytest.mark.parametrize("launcher", ["pytorchjob", "trainjob"])
def test_rollout_servers_run_as_the_vllm_team_would(launcher: str) -> None:
    """Dedicated GPUs at 0.9, non-root, ready on /health, reachable only from this run's trainer pods."""
    from r1ov.train import launch

    cfg = _grpo_cfg(
        distributed={"launcher": launcher, "nnodes": 2, "cluster": {"labels": {"r1ov.io/pipeline-run": "run-7"}}}
    )
    statefulset, service, policy = launch.rollout_objects(cfg, "r1ov-grpo-ab12-rollout", "r1ov-grpo-ab12")
    for obj in (statefulset, service, policy):
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    pod = statefulset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["command"]
    assert command[command.index("--gpu-memory-utilization") + 1] == "0.9"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1000
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    env = {e["name"]: e for e in container["env"]}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "r1ov-s3"  # the streamer reads S3
    # The policy selects the servers' pods and admits only pods labelled as this job's trainers.
    assert (
        policy["spec"]["podSelector"]["matchLabels"].items()
        <= statefulset["spec"]["template"]["metadata"]["labels"].items()
    )
    clients = policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert clients["r1ov.io/pipeline-run"] == "run-7"
    job = launch.job_manifest("grpo", cfg, "r1ov-grpo-ab12", "s3://r1ov/runs/r/grpo/train_config.json")
    if launcher == "pytorchjob":
        templates = [r["template"] for r in job["spec"]["pytorchReplicaSpecs"].values()]
    else:
        jobs = job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
        templates = [j["template"]["spec"]["template"] for j in jobs]
    for template in templates:
        assert clients.items() <= template["metadata"]["labels"].items()
    assert not clients.items() <= statefulset["spec"]["template"]["metadata"]["labels"].items()


def test_rollout_pods_opt_out_of_the_mesh_and_of_voluntary_disruption() -> None:
    """A rollout server lost mid-run takes the trainer's rollouts and its weight-sync peer with it: its
    pods carry the same opt-outs as the trainers', and the run's own annotations beside them."""
    from r1ov.k8s import rollout
    from r1ov.train import launch

    cfg = _grpo_cfg(
        distributed={"launcher": "pytorchjob", "nnodes": 2, "cluster": {"annotations": {"team.example/cost": "vision"}}}
    )
    statefulset = launch.rollout_objects(cfg, "r1ov-grpo-ab12-rollout", "r1ov-grpo-ab12")[0]
    kubernetes_validate.validate(statefulset, K8S_VERSION, strict=True)
    annotations = statefulset["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "sidecar.istio.io/inject": "false",
        "karpenter.sh/do-not-disrupt": "true",
        "team.example/cost": "vision",
    }
    job = launch.job_manifest("grpo", cfg, "r1ov-grpo-ab12", "s3://r1ov/runs/r/grpo/train_config.json")
    for replica in job["spec"]["pytorchReplicaSpecs"].values():
        assert replica["template"]["metadata"]["annotations"] == annotations  # the trainers' own
    # TRL's GRPO trainer has one vLLM client for one server URL: one server per job, the URL of replica 0
    assert statefulset["spec"]["replicas"] == rollout.SERVERS_PER_JOB == 1
    overridden = build_rollout_server("grpo", "m", 1, 1, 1, None, annotations={"karpenter.sh/do-not-disrupt": "false"})
    assert overridden[0]["spec"]["template"]["metadata"]["annotations"]["karpenter.sh/do-not-disrupt"] == "false"


def test_grpo_trainers_with_vllm_rollouts_run_in_the_vllm_image() -> None:
    from r1ov.k8s import bundle
    from r1ov.train import launch

    for generation, image in (("vllm-server", bundle.image("vllm")), ("vllm-colocate", bundle.image("vllm")),
                              ("hf", bundle.image("train"))):  # fmt: skip
        job = launch.job_manifest("grpo", _grpo_cfg(generation=generation), "r1ov-grpo-ab12", "s3://c")
        assert set(_all_images(job)) == {image}
    pinned = _grpo_cfg(distributed={"launcher": "pytorchjob", "cluster": {"image": "registry.example/mine:1"}})
    assert set(_all_images(launch.job_manifest("grpo", pinned, "x", "s3://c"))) == {"registry.example/mine:1"}


def test_vllm_is_pinned_once_to_a_version_trl_supports() -> None:
    """images/Dockerfile.vllm's base image is the one pin; TRL states the range it supports."""
    import importlib.util

    from packaging.version import Version

    dockerfile = (Path(__file__).resolve().parents[1] / "images" / "Dockerfile.vllm").read_text()
    (tag,) = re.findall(r"^ARG VLLM_IMAGE=vllm/vllm-openai:v([\d.]+)@sha256:[0-9a-f]{64}$", dockerfile, flags=re.M)
    low, high = re.search(
        r'Version\("([\d.]+)"\) <= _vllm_base_version <= Version\("([\d.]+)"\)',
        Path(importlib.util.find_spec("trl.import_utils").origin).read_text(),
    ).groups()
    assert Version(low) <= Version(tag) <= Version(high)
    # No other file names a vLLM version.
    root = Path(__file__).resolve().parents[1]
    others = [p for p in (root / "images").iterdir() if p.is_file() and p.name != "Dockerfile.vllm"]
    assert not [p.name for p in others if re.search(r"vllm[=:~<>]+v?\d", p.read_text(), flags=re.I)]


# --------------------------------------------------------------------------- --dry-run


@pytest.mark.parametrize("nnodes", [1, 2, 4])
@pytest.mark.parametrize(
    ("stage", "recipe", "launcher"),
    [("sft", "sft-qwen2.5-vl-7b.yaml", "pytorchjob"), ("sft", "sft-qwen2.5-vl-3b.yaml", "trainjob"),
     ("grpo", "grpo-clevr.yaml", "pytorchjob"), ("grpo", "grpo-clevr.yaml", "trainjob")],
)  # fmt: skip
def test_dry_run_prints_yaml_that_kubectl_apply_accepts(stage: str, recipe: str, launcher: str, nnodes: int) -> None:
    """Every document parses and validates: core kinds strictly (kubernetes-validate), custom
    resources against their CRD; GRPO's rollout servers and NetworkPolicy come with the job."""
    recipes = Path(__file__).resolve().parents[1] / "pipelines" / "recipes"
    args = [stage, "--config", str(recipes / recipe), "--set", f"distributed.launcher={launcher}"]
    if stage == "grpo" and nnodes == 4:  # 4 x 8 GPUs x 8 per device would overshoot the global batch of 128
        args += ["--set", "per_device_train_batch_size=4"]
    # A process of its own, as `r1ov ... --dry-run | kubectl apply -f -` runs: stdout is what kubectl reads.
    done = subprocess.run(
        [sys.executable, "-m", "r1ov.cli", *args, "--set", f"distributed.nnodes={nnodes}", "--dry-run"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert not out.lstrip().startswith("{")  # not a JSON wrapper
    documents = list(yaml.safe_load_all(out))
    kinds = [d["kind"] for d in documents]
    job_kind = "PyTorchJob" if launcher == "pytorchjob" else "TrainJob"
    assert kinds == (["StatefulSet", "Service", "NetworkPolicy", job_kind] if stage == "grpo" else [job_kind])
    for doc in documents:
        if doc["kind"] in ("PyTorchJob", "TrainJob"):
            _validate_crd(doc)
        else:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        assert doc["metadata"]["namespace"] == "r1ov"


def test_job_and_rollout_pods_run_as_the_platform_chart_s_account_by_default() -> None:
    """Workload identity: the chart's ``r1ov-pipeline`` account (IRSA / GKE annotations) on every pod the
    launchers create; ``service_account: null`` leaves the namespace's default account."""
    from r1ov.train import launch

    values = yaml.safe_load((Path(__file__).parents[1] / "charts/r1ov-platform/values.yaml").read_text())
    account = values["serviceAccount"]["name"]
    for job in (build_pytorchjob("sft", COMMAND, _dist(), {}),
                build_trainjob("sft", COMMAND, _dist(launcher="trainjob"), {})):  # fmt: skip
        _validate_crd(job)
        assert {spec["serviceAccountName"] for spec in _pod_specs(job)} == {account}
    statefulset = launch.rollout_objects(_grpo_cfg(), "r1ov-grpo-ab12-rollout", "r1ov-grpo-ab12")[0]
    kubernetes_validate.validate(statefulset, K8S_VERSION, strict=True)
    assert statefulset["spec"]["template"]["spec"]["serviceAccountName"] == account
    unset = build_pytorchjob("sft", COMMAND, _dist(cluster={"service_account": None}), {})
    assert all("serviceAccountName" not in spec for spec in _pod_specs(unset))
