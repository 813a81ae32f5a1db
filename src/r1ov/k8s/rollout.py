"""GRPO rollout servers as data: ``trl vllm-serve`` pods behind a headless Service.

    objects = build_rollout_server("grpo-rollout", "s3://models/sft", tensor_parallel=2, data_parallel=1,
                                   replicas=1, image=None)
    client.apply(objects, "r1ov"); client.wait_ready(objects[0], "r1ov")
    GRPOConfig(vllm_server_base_url=rollout_base_url("grpo-rollout", "r1ov"), ...)

A StatefulSet rather than a Deployment: each replica is a separate vLLM server whose weights
the trainer pushes over NCCL, so the trainer must address one pod, not a load-balanced name.
The StatefulSet gives replica ``i`` the stable name ``<name>-<i>.<name>.<ns>.svc`` and the
headless Service publishes it only once the pod is ready.

Weight sync (TRL 1.16 with vLLM's NCCL weight-transfer engine): the trainer hosts the
rendezvous on ``group_port`` and the server's workers dial in, then NCCL opens its own
pod-to-pod connections. The group port is still exposed (older TRL servers hosted the
rendezvous themselves), but what matters is that NetworkPolicies let trainer and rollout pods
reach each other on any port.

One server per training job: TRL 1.16's GRPO trainer opens one ``VLLMClient`` on its main process
with the single ``vllm_server_base_url`` (trl/generation/vllm_generation.py, ``VLLMGeneration``'s
server-mode setup, tag v1.16.0), and that client speaks to one server
(trl/generation/vllm_client.py, ``VLLMClient.__init__(base_url=...)``): there is no list of
servers to spread rollouts over or to push weights to. A job scales its rollouts with
``vllm_tensor_parallel_size`` (the GPUs of that one server); :data:`SERVERS_PER_JOB` is what the
launchers ask for, and ``replicas`` stays for servers shared by hand.

The pods carry the training pods' annotations (:data:`r1ov.k8s.podspec.TRAINING_POD_ANNOTATIONS`):
no Istio sidecar (``sidecar.istio.io/inject: "false"``, Istio's "Installing the Sidecar",
"Controlling the injection policy": the pod-level opt-out; an Envoy proxy would sit in the NCCL
weight-transfer path and the unauthenticated dev endpoints would join the mesh) and
``karpenter.sh/do-not-disrupt: "true"`` (Karpenter's "Disruption" concepts, "Pod-Level Controls",
and its well-known annotations reference: blocks consolidation and drift of the pod's node), since
a server that goes away mid-run leaves the trainer without rollouts and out of its weight-sync group.
"""

from __future__ import annotations

import math
from typing import Any

from r1ov.k8s import bundle, names, podspec

COMPONENT = "rollout"
CONTAINER = "vllm"
# TRL 1.16's `trl vllm-serve` execs vLLM's own OpenAI server, whose health route is /health
# (the older TRL server answered on /health/; vLLM would redirect that and hide failures).
HEALTH_PATH = "/health"
HTTP_PORT_NAME = "http"
GROUP_PORT_NAME = "weight-sync"
# The controller-revision-hash label is "<statefulset>-<10 chars>" and must fit in 63.
_STATEFULSET_NAME_MAX = 52
_PROBE_PERIOD_S = 10
# Dedicated GPUs: vLLM's own default (0.3 is the value for sharing a GPU with the trainer).
SERVER_GPU_MEMORY_UTILIZATION = 0.9
# TRL's GRPO trainer talks to one vLLM server (see the module's docstring).
SERVERS_PER_JOB = 1


def server_name(name: str) -> str:
    """The StatefulSet and Service name derived from ``name``."""
    return names.dns_label(name, _STATEFULSET_NAME_MAX)


def rollout_base_url(name: str, namespace: str, *, replica: int = 0, port: int = 8000) -> str:
    """URL of one rollout server for ``GRPOConfig.vllm_server_base_url``.

    Uses ``<pod>.<service>.<namespace>.svc`` so it resolves under any cluster domain.
    """
    service = server_name(name)
    return f"http://{service}-{replica}.{service}.{namespace}.svc:{port}"


def serve_command(
    model: str, tensor_parallel: int, data_parallel: int, port: int, extra_args: list[str] | None = None
) -> list[str]:
    """The ``trl vllm-serve`` command line."""
    command = [
        "trl",
        "vllm-serve",
        "--model",
        model,
        "--tensor-parallel-size",
        str(tensor_parallel),
        "--data-parallel-size",
        str(data_parallel),
        "--host",
        "0.0.0.0",
        "--port",
        str(port),
    ]
    extra = list(extra_args or [])
    # vLLM reads s3:// checkpoints only through the Run:ai model streamer (vllm[runai] in the image).
    if model.startswith("s3://") and not any(arg.split("=")[0] == "--load-format" for arg in extra):
        extra += ["--load-format", "runai_streamer"]
    return command + extra


def build_rollout_server(
    name: str,
    model: str,
    tensor_parallel: int,
    data_parallel: int,
    replicas: int,
    image: str | None,
    pool: str = "rollout",
    port: int = 8000,
    group_port: int = 51216,
    extra_args: list[str] | None = None,
    *,
    namespace: str | None = None,
    env: dict[str, str] | None = None,
    env_refs: list[dict[str, Any]] | None = None,
    secret_env: list[str] | None = None,
    service_account: str | None = None,
    cpu: str = "8",
    memory: str = "64Gi",
    shm_size: str | None = None,
    startup_timeout_s: int = 1800,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """``[StatefulSet, Service]`` for ``replicas`` vLLM servers of ``tensor_parallel * data_parallel`` GPUs each.

    A trainer talks to one server (``rollout_base_url(..., replica=i)``), so scale a dense
    model such as Qwen2.5-VL with ``tensor_parallel``: vLLM refuses ``data_parallel > 1`` for
    dense models (it is meant for MoE experts).
    ``startup_timeout_s`` bounds model loading (startup probe); the readiness probe then
    takes a server out of the Service while its engine is unhealthy. There is no liveness
    probe on purpose: restarting a server mid-run would silently drop it from the trainer's
    weight-sync group, so a dead engine is left for the trainer to report.
    The pods carry the Istio opt-out and Karpenter's do-not-disrupt, plus ``annotations``.
    """
    counts = {"tensor_parallel": tensor_parallel, "data_parallel": data_parallel, "replicas": replicas}
    for field, value in counts.items():
        if value < 1:
            raise ValueError(f"{field} must be at least 1, got {value}")
    for field, value in (("port", port), ("group_port", group_port)):
        if not 1 <= value <= 65535:
            raise ValueError(f"{field} must be a TCP port (1-65535), got {value}")
    if port == group_port:
        raise ValueError(f"port and group_port must differ, both are {port}")

    service = server_name(name)
    labels = {**names.standard_labels(service, COMPONENT), **(labels or {})}
    selector = names.selector_labels(service, COMPONENT)
    probe_target = {"httpGet": {"path": HEALTH_PATH, "port": HTTP_PORT_NAME}, "periodSeconds": _PROBE_PERIOD_S}
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image or bundle.image("vllm"),
        "command": serve_command(model, tensor_parallel, data_parallel, port, extra_args),
        "ports": [
            {"name": HTTP_PORT_NAME, "containerPort": port, "protocol": "TCP"},
            {"name": GROUP_PORT_NAME, "containerPort": group_port, "protocol": "TCP"},
        ],
        "resources": podspec.resources(tensor_parallel * data_parallel, cpu, memory),
        "startupProbe": {
            **probe_target,
            "timeoutSeconds": 5,
            "failureThreshold": max(1, math.ceil(startup_timeout_s / _PROBE_PERIOD_S)),
        },
        "readinessProbe": {**probe_target, "timeoutSeconds": 5, "failureThreshold": 3},
        "volumeMounts": [podspec.shm_mount()],
        "securityContext": podspec.container_security(),
    }
    if env or env_refs:
        container["env"] = podspec.env_list(env or {}) + list(env_refs or [])
    if secret_env:
        container["envFrom"] = podspec.secret_env_from(secret_env)
    pod_spec: dict[str, Any] = {
        **podspec.gpu_placement(pool),
        "containers": [container],
        "volumes": [podspec.shm_volume(shm_size)],
        "securityContext": podspec.pod_security(),
    }
    if service_account:
        pod_spec["serviceAccountName"] = service_account

    metadata: dict[str, Any] = {"name": service, "labels": labels}
    if namespace:
        metadata["namespace"] = namespace
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata,
        "spec": {
            "serviceName": service,
            "replicas": replicas,
            # Servers are independent: start them together instead of one after another.
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {
                    "labels": dict(labels),
                    "annotations": {**podspec.TRAINING_POD_ANNOTATIONS, **(annotations or {})},
                },
                "spec": pod_spec,
            },
        },
    }
    service_object = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": dict(metadata, labels=dict(labels)),
        "spec": {
            "clusterIP": "None",
            "selector": dict(selector),
            "ports": [
                {"name": HTTP_PORT_NAME, "port": port, "targetPort": HTTP_PORT_NAME, "protocol": "TCP"},
                {"name": GROUP_PORT_NAME, "port": group_port, "targetPort": GROUP_PORT_NAME, "protocol": "TCP"},
            ],
        },
    }
    return [statefulset, service_object]


def build_rollout_network_policy(
    name: str, clients: dict[str, str], *, namespace: str | None = None, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """A NetworkPolicy letting only the run's trainer pods (``clients``, their labels) reach the servers.

    ``trl vllm-serve`` exposes dev-mode endpoints (``/collective_rpc``, weight updates) with no
    authentication: no other pod in the cluster may reach them. All ports are allowed from the
    trainers: NCCL weight transfer opens its own connections besides HTTP and the group port.
    """
    service = server_name(name)
    metadata: dict[str, Any] = {
        "name": service,
        "labels": {**names.standard_labels(service, COMPONENT), **(labels or {})},
    }
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata,
        "spec": {
            "podSelector": {"matchLabels": names.selector_labels(service, COMPONENT)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": dict(clients)}}]}],
        },
    }
