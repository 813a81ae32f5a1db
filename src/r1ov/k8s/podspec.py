"""Pod pieces shared by training and rollout objects: GPU placement, resources, /dev/shm, env.

Every GPU pod lands on its pool through the one vocabulary in :mod:`r1ov.k8s.bundle`: a node
selector on ``r1ov.io/pool`` and a toleration for the GPU taint the node-pool chart puts on
its nodes. Secrets reach pods only by reference; :func:`env_list` refuses literal values under
names that look like credentials.
"""

from __future__ import annotations

import copy
import itertools
import re
from typing import Any

from r1ov.k8s import bundle

SHM_VOLUME = "dshm"
SHM_PATH = "/dev/shm"

# Words that mark an env var as a credential; matched on ``_``-separated words so that
# TOKENIZERS_PARALLELISM or MAX_TOKENS stay allowed.
_SECRET_WORDS = {"PASSWORD", "PASSWD", "SECRET", "TOKEN"}
_SECRET_PAIRS = {("API", "KEY"), ("ACCESS", "KEY"), ("PRIVATE", "KEY")}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def looks_secret(name: str) -> bool:
    """True for env names such as ``HF_TOKEN``, ``OPENAI_API_KEY``, ``AWS_SECRET_ACCESS_KEY``."""
    words = name.upper().split("_")
    return bool(_SECRET_WORDS.intersection(words)) or any(pair in _SECRET_PAIRS for pair in itertools.pairwise(words))


def env_list(env: dict[str, str]) -> list[dict[str, str]]:
    """``{"A": "1"}`` -> ``[{"name": "A", "value": "1"}]``, refusing credentials given as literals."""
    out = []
    for name, value in env.items():
        if not _ENV_NAME.match(name):
            raise ValueError(f"env name {name!r} is not a valid environment variable name")
        if looks_secret(name):
            raise ValueError(
                f"env {name} looks like a credential; put it in a Secret and list the Secret in "
                "cluster.secret_env instead of passing its value"
            )
        out.append({"name": name, "value": str(value)})
    return out


def secret_env_from(secrets: list[str]) -> list[dict[str, Any]]:
    """envFrom entries exposing every key of each Secret."""
    return [{"secretRef": {"name": secret}} for secret in secrets]


def secret_key_env(secret_keys: dict[str, list[str]], secrets: list[str]) -> list[dict[str, Any]]:
    """Env entries referencing Secret keys one by one, for APIs that take env but not envFrom."""
    missing = [secret for secret in secrets if not secret_keys.get(secret)]
    if missing:
        raise ValueError(
            f"TrainJob takes Secret keys one by one: set cluster.secret_keys for {', '.join(missing)} "
            "(e.g. secret_keys: {hf: [HF_TOKEN]})"
        )
    return [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
        for secret in secrets
        for key in secret_keys[secret]
    ]


# Keys of the settings ConfigMap (charts/r1ov-platform) that pods read, under the same env names.
SETTINGS_KEYS = (
    "R1OV_S3_ENDPOINT",
    "AWS_REGION",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_S3_ENDPOINT_URL",
    "MLFLOW_DISABLE_TELEMETRY",
)
WORK_VOLUME = "work"
WORK_DIR_ENV = "R1OV_WORK_DIR"  # tells the trainer where its work volume is mounted


def mapped_secret_env(mapping: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
    """Env entries from Secret keys under the names programs read (``access-key-id`` -> ``AWS_ACCESS_KEY_ID``).

    Optional references: where credentials come from the service account's workload identity the
    Secret does not exist, and the pod still starts.
    """
    return [
        {"name": env, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": True}}}
        for secret, keys in mapping.items()
        for key, env in keys.items()
    ]


def settings_env(config_map: str | None, skip: set[str]) -> list[dict[str, Any]]:
    """Env entries for the settings ConfigMap's keys (optional), except names already set."""
    if not config_map:
        return []
    return [
        {"name": key, "valueFrom": {"configMapKeyRef": {"name": config_map, "key": key, "optional": True}}}
        for key in SETTINGS_KEYS
        if key not in skip
    ]


def cache_env(work_dir: str) -> dict[str, str]:
    """Caches on the work volume: a Hugging Face id is downloaded there (HF_HOME), and JIT-built
    DeepSpeed ops and Triton kernels are written there, not into the image's home directory,
    which need not be writable and whose container layer is not sized for a 16 GB checkpoint."""
    cache = f"{work_dir.rstrip('/')}/.cache"
    return {
        "XDG_CACHE_HOME": cache,
        "HF_HOME": f"{cache}/huggingface",
        "TORCH_EXTENSIONS_DIR": f"{cache}/torch_extensions",
        "TRITON_CACHE_DIR": f"{cache}/triton",
    }


def work_volume(size: str | None = None) -> dict[str, Any]:
    """The pod's writable scratch: model copy, checkpoints, output before upload."""
    empty_dir: dict[str, Any] = {}
    if size:
        empty_dir["sizeLimit"] = size
    return {"name": WORK_VOLUME, "emptyDir": empty_dir}


def work_mount(path: str) -> dict[str, str]:
    return {"name": WORK_VOLUME, "mountPath": path}


def gpu_placement(pool: str) -> dict[str, Any]:
    """nodeSelector (pool label and GKE compute class) + tolerations that put a pod on ``pool``."""
    return {"nodeSelector": bundle.pool_selector(pool), "tolerations": bundle.pool_tolerations(pool)}


def resources(gpus: int, cpu: str, memory: str, extra: dict[str, str] | None = None) -> dict[str, Any]:
    """GPUs (and other devices: EFA, RDMA) as limits (the request follows for extended resources),
    CPU and memory as requests, and memory as a limit too: a namespace's ResourceQuota on
    ``limits.memory`` refuses a pod without one, and a limit equal to the request keeps the pod's
    memory guaranteed. CPU gets no limit on purpose (a CPU limit throttles data loaders and NCCL)."""
    limits = {"memory": memory, **({bundle.GPU_RESOURCE: str(gpus)} if gpus else {})}
    limits.update({name: str(value) for name, value in (extra or {}).items()})
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": limits}


# Pod Security "restricted" (k8s.io/pod-security-admission policy/check_runAsNonRoot.go,
# check_seccompProfile_restricted.go, check_allowPrivilegeEscalation.go, check_capabilities_restricted.go):
# every pod the bundle creates runs as the images' non-root user 1000 (images/Dockerfile.*), with the
# runtime's default seccomp profile, no privilege escalation and no capabilities. fsGroup makes the
# pod's volumes writable for that user.
IMAGE_UID = 1000
POD_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": IMAGE_UID,
    "runAsGroup": IMAGE_UID,
    "fsGroup": IMAGE_UID,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY: dict[str, Any] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def pod_security() -> dict[str, Any]:
    """A fresh copy of :data:`POD_SECURITY` for a pod spec (manifests are mutated by callers)."""
    return copy.deepcopy(POD_SECURITY)


def container_security() -> dict[str, Any]:
    """A fresh copy of :data:`CONTAINER_SECURITY` for a container."""
    return copy.deepcopy(CONTAINER_SECURITY)


# Pods of a training job: no Istio sidecar (it breaks the rendezvous of PyTorchJob pods in Kubeflow
# profile namespaces) and no voluntary disruption by Karpenter's consolidation mid-run.
TRAINING_POD_ANNOTATIONS = {"sidecar.istio.io/inject": "false", "karpenter.sh/do-not-disrupt": "true"}
EFA_RESOURCE = "vpc.amazonaws.com/efa"
# What NCCL's aws-ofi plugin needs to use EFA (with GPUDirect RDMA on p4d/p5).
EFA_ENV = {"FI_PROVIDER": "efa", "FI_EFA_USE_DEVICE_RDMA": "1"}


def shm_volume(size: str | None = None) -> dict[str, Any]:
    """A memory-backed /dev/shm: NCCL and DataLoader workers outgrow the container default of 64 MiB."""
    empty_dir: dict[str, Any] = {"medium": "Memory"}
    if size:
        empty_dir["sizeLimit"] = size
    return {"name": SHM_VOLUME, "emptyDir": empty_dir}


def shm_mount() -> dict[str, str]:
    return {"name": SHM_VOLUME, "mountPath": SHM_PATH}
