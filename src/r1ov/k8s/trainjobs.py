"""Multi-node training jobs as data: Kubeflow PyTorchJob (kubeflow.org/v1) and TrainJob (trainer v2).

Both builders take the same arguments and return a plain dict ready for the API server:

    job = build_pytorchjob("sft-7b", ["torchrun", "-m", "r1ov.train.sft", "--config", "/cfg/sft.yaml"], dist, env)
    r1ov.k8s.client.run_to_completion(job, dist.cluster.namespace)

The command should start with ``torchrun`` (or ``python -m torch.distributed.run``): both
operators set torchrun's ``PET_*`` environment (nnodes, node rank, master address and port) in
every pod, so the same command runs unchanged on every node.
"""

from __future__ import annotations

import copy
from typing import Any

from r1ov.config import DistributedConfig
from r1ov.k8s import bundle, names, podspec

COMPONENT = "train"
# PyTorchJob: the operator rejects replica specs without a container of this name.
PYTORCH_CONTAINER = "pytorch"
# TrainJob: the torch-distributed runtime's replicated job and container are both named "node".
TRAINJOB_NODE = "node"
TRAINER_GROUP = "trainer.kubeflow.org"
# Owner of our runtimePatches entry; the Trainer webhook wants a domain-prefixed path.
PATCH_MANAGER = "r1ov.io/launcher"
# Unbuffered stdout so the master's log reaches the watcher line by line, not at exit.
_DEFAULT_ENV = {"PYTHONUNBUFFERED": "1"}
# How long torchrun waits for its workers after passing on SIGTERM before it SIGKILLs them
# (torch/distributed/launcher/api.py reads it when --shutdown-timeout is not given; the elastic
# agent's _shutdown(death_sig, timeout) defaults to 30 s). Torch releases without the setting keep
# 30 s: there a SIGTERM checkpoint must fit 30 s, or the steps since the last save are lost.
SHUTDOWN_TIMEOUT_ENV = "TORCH_ELASTIC_SHUTDOWN_TIMEOUT"
# After its workers are gone torchrun still closes the rendezvous and exits.
TORCHRUN_EXIT_MARGIN_S = 30

# The operator release whose CRD first declares each field these builders set where older releases in
# use lack it, read from the CRDs at each tag (kubeflow/trainer, manifests/base/crds/
# kubeflow.org_pytorchjobs.yaml and trainer.kubeflow.org_trainjobs.yaml): an older operator's API server
# would silently prune the field (apiextensions-apiserver pruning), which for runtimePatches takes the
# pods' placement, security context and service account with it.
FIELD_SINCE: dict[tuple[str, str], str] = {
    ("PyTorchJob", "spec.nprocPerNode"): "Kubeflow Training Operator v1.7.0",
    ("TrainJob", "spec.runtimePatches"): "Kubeflow Trainer v2.2.0",  # v2.1 had podTemplateOverrides
    ("TrainJob", "spec.activeDeadlineSeconds"): "Kubeflow Trainer v2.2.0",
}
# The operator releases whose CRDs the builders are tested against (tests/crds).
SUPPORTED_OPERATOR = {"PyTorchJob": "Kubeflow Training Operator v1.9", "TrainJob": "Kubeflow Trainer v2.3"}


def operator_needed(kind: str, field: str) -> str:
    """The operator release a cluster needs to keep ``field`` (a path such as ``spec.runtimePatches``) of a
    ``kind`` r1ov builds: the release that introduced it, else the release r1ov is tested against."""
    for (known_kind, known), release in FIELD_SINCE.items():
        if kind == known_kind and (field == known or field.startswith(f"{known}.") or field.startswith(f"{known}[")):
            return release
    return SUPPORTED_OPERATOR.get(kind, "a newer operator")


def termination_grace_s(dist: DistributedConfig) -> int:
    """The pod's terminationGracePeriodSeconds: torchrun's worker stop timeout plus its own exit.

    Kubernetes SIGKILLs the whole pod when it runs out (default 30 s), whatever torchrun waits for.
    """
    return dist.cluster.stop_grace_s + TORCHRUN_EXIT_MARGIN_S


def _image(dist: DistributedConfig) -> str:
    return dist.cluster.image or bundle.image("train")


def pytorchjob_name(name: str, nnodes: int) -> str:
    """The job name, short enough for the operator's pod and service names (``<name>-worker-<i>``)."""
    longest_suffix = max(len("-master-0"), len(f"-worker-{max(nnodes - 2, 0)}"))
    return names.dns_label(name, names.MAX_NAME - longest_suffix)


def trainjob_name(name: str, nnodes: int) -> str:
    """The job name, short enough for JobSet's pod names (``<name>-node-0-<i>-<5 random>``)."""
    return names.dns_label(name, names.MAX_NAME - len(f"-{TRAINJOB_NODE}-0-{nnodes - 1}-abcde"))


def pod_env(dist: DistributedConfig, env: dict[str, str]) -> list[dict[str, Any]]:
    """The training container's env: literals, the work volume's path, credentials and settings by reference."""
    cluster = dist.cluster
    efa = podspec.EFA_ENV if cluster.efa_devices else {}
    literal = {
        **_DEFAULT_ENV,
        **podspec.cache_env(cluster.work_dir),
        **cluster.nccl_env,
        **efa,
        SHUTDOWN_TIMEOUT_ENV: str(cluster.stop_grace_s),
        **cluster.env,
        **env,
        podspec.WORK_DIR_ENV: cluster.work_dir,
    }
    return (
        podspec.env_list(literal)
        + podspec.mapped_secret_env(cluster.secret_key_env)
        + podspec.settings_env(cluster.settings_config_map, skip=set(literal))
    )


def _volumes(dist: DistributedConfig) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    cluster = dist.cluster
    volumes = [podspec.shm_volume(cluster.shm_size), podspec.work_volume(cluster.work_size), *cluster.volumes]
    return volumes, [podspec.shm_mount(), podspec.work_mount(cluster.work_dir), *cluster.volume_mounts]


def _resources(dist: DistributedConfig) -> dict[str, Any]:
    cluster = dist.cluster
    extra = {
        **({podspec.EFA_RESOURCE: str(cluster.efa_devices)} if cluster.efa_devices else {}),
        **cluster.extra_resources,
    }
    return podspec.resources(cluster.gpus_per_node, cluster.cpu, cluster.memory, extra)


def _pod_metadata(dist: DistributedConfig, labels: dict[str, str]) -> dict[str, Any]:
    annotations = {**podspec.TRAINING_POD_ANNOTATIONS, **dist.cluster.annotations}
    return {"labels": dict(labels), "annotations": annotations}


def build_pytorchjob(name: str, command: list[str], dist: DistributedConfig, env: dict[str, str]) -> dict[str, Any]:
    """A PyTorchJob: one Master plus ``nnodes - 1`` Workers, ``nproc_per_node`` processes each."""
    cluster = dist.cluster
    job_name = pytorchjob_name(name, dist.nnodes)
    labels = {**names.standard_labels(job_name, COMPONENT), **cluster.labels}
    volumes, mounts = _volumes(dist)
    container: dict[str, Any] = {
        "name": PYTORCH_CONTAINER,
        "image": _image(dist),
        "command": list(command),
        "env": pod_env(dist, env),
        "resources": _resources(dist),
        "volumeMounts": mounts,
        "securityContext": podspec.container_security(),
    }
    if cluster.secret_env:
        container["envFrom"] = podspec.secret_env_from(cluster.secret_env)
    pod_spec: dict[str, Any] = {
        **podspec.gpu_placement(cluster.pool),
        "containers": [container],
        "volumes": volumes,
        # the SIGTERM checkpoint (save + upload) must finish before Kubernetes kills the pod
        "terminationGracePeriodSeconds": termination_grace_s(dist),
        "securityContext": podspec.pod_security(),
    }
    if cluster.service_account:
        pod_spec["serviceAccountName"] = cluster.service_account
    template = {"metadata": _pod_metadata(dist, labels), "spec": pod_spec}
    # With retries, OnFailure restarts every node's container, not only the preempted one: when a
    # node is lost, its peers fail in a collective with exit code 1, which ExitCode counts as
    # permanent (kubeflow/training-operator pkg/util/train/train_util.go IsRetryableExitCode: 1, 2,
    # 126-128 and 139 permanent; 130, 137, 143 retryable), so the job would fail instead of
    # resuming. A deleted (preempted) pod is recreated by the operator either way. The restarted
    # workers resume from the latest complete checkpoint; a real bug fails backoffLimit times, fast.
    restart_policy = "OnFailure" if cluster.backoff_limit else "Never"
    replica_specs = {"Master": {"replicas": 1, "restartPolicy": restart_policy, "template": template}}
    if dist.nnodes > 1:
        replica_specs["Worker"] = {
            "replicas": dist.nnodes - 1,
            "restartPolicy": restart_policy,
            "template": copy.deepcopy(template),
        }
    run_policy: dict[str, Any] = {
        "cleanPodPolicy": cluster.clean_pod_policy,
        "ttlSecondsAfterFinished": cluster.ttl_after_finished_s,
        "backoffLimit": cluster.backoff_limit,
    }
    if cluster.active_deadline_s is not None:
        run_policy["activeDeadlineSeconds"] = cluster.active_deadline_s
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": job_name, "namespace": cluster.namespace, "labels": labels},
        "spec": {
            "nprocPerNode": str(dist.nproc_per_node),
            "runPolicy": run_policy,
            "pytorchReplicaSpecs": replica_specs,
        },
    }


def build_trainjob(name: str, command: list[str], dist: DistributedConfig, env: dict[str, str]) -> dict[str, Any]:
    """A TrainJob on the ``dist.cluster.trainjob_runtime`` ClusterTrainingRuntime.

    Placement, /dev/shm and the service account go through ``spec.runtimePatches`` (the
    per-pod override field of Trainer v2.3). Secrets become one env entry per key because the
    trainer takes env, not envFrom: list the keys in ``cluster.secret_keys``. Retries, TTL and
    pod cleanup belong to the runtime in Trainer v2, so ``backoff_limit``,
    ``ttl_after_finished_s`` and ``clean_pod_policy`` do not apply here.
    """
    cluster = dist.cluster
    job_name = trainjob_name(name, dist.nnodes)
    labels = {**names.standard_labels(job_name, COMPONENT), **cluster.labels}
    volumes, mounts = _volumes(dist)
    pod_patch: dict[str, Any] = {
        **podspec.gpu_placement(cluster.pool),
        "volumes": volumes,
        "terminationGracePeriodSeconds": termination_grace_s(dist),
        # The webhook refuses env on the node container here; env goes in spec.trainer.
        "containers": [
            {"name": TRAINJOB_NODE, "volumeMounts": mounts, "securityContext": podspec.container_security()}
        ],
        "securityContext": podspec.pod_security(),
    }
    if cluster.service_account:
        pod_patch["serviceAccountName"] = cluster.service_account
    spec: dict[str, Any] = {
        "runtimeRef": {"apiGroup": TRAINER_GROUP, "kind": "ClusterTrainingRuntime", "name": cluster.trainjob_runtime},
        "trainer": {
            "image": _image(dist),
            "command": list(command),
            "env": pod_env(dist, env) + podspec.secret_key_env(cluster.secret_keys, cluster.secret_env),
            "numNodes": dist.nnodes,
            "numProcPerNode": dist.nproc_per_node,
            "resourcesPerNode": _resources(dist),
        },
        "runtimePatches": [
            {
                "manager": PATCH_MANAGER,
                "trainingRuntimeSpec": {
                    "template": {
                        "spec": {
                            "replicatedJobs": [
                                {
                                    "name": TRAINJOB_NODE,
                                    "template": {
                                        "spec": {
                                            "template": {"metadata": _pod_metadata(dist, labels), "spec": pod_patch}
                                        }
                                    },
                                }
                            ]
                        }
                    }
                },
            }
        ],
    }
    if cluster.active_deadline_s is not None:
        spec["activeDeadlineSeconds"] = cluster.active_deadline_s
    return {
        "apiVersion": f"{TRAINER_GROUP}/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": job_name, "namespace": cluster.namespace, "labels": labels},
        "spec": spec,
    }
