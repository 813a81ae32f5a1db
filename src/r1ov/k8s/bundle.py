"""Facts about the bundle that several places share: image names, the tag, pool vocabulary.

Components (``base_image=``), charts (via tests that compare their defaults) and the image
bake file all read these, so a release changes one line.
"""

from __future__ import annotations

import os

from r1ov import __version__

# The platform chart's settings ConfigMap sets both in pipeline pods, so the jobs and rollout
# servers a launcher creates use the namespace's registry and release.
REGISTRY = os.environ.get("R1OV_IMAGE_REGISTRY", "ghcr.io/r1ov")
TAG = os.environ.get("R1OV_IMAGE_TAG") or __version__

# One image per job kind; every one of them carries the r1ov library.
IMAGE_NAMES = {
    "base": "r1ov",  # CPU stages: data, eval scoring, registry, promotion
    "train": "r1ov-train",  # CUDA + DeepSpeed: SFT and GRPO trainers
    "vllm": "r1ov-vllm",  # vLLM: rollout servers, offline eval, the inference endpoint
    "data": "r1ov-data",  # formalization extras: OCR, detector weights
}


def image(kind: str, registry: str = REGISTRY, tag: str = TAG) -> str:
    if kind not in IMAGE_NAMES:
        raise KeyError(f"unknown image kind {kind!r}; expected one of {sorted(IMAGE_NAMES)}")
    return f"{registry}/{IMAGE_NAMES[kind]}:{tag}"


# Node pools: the node-pool chart, the pipeline, the training and rollout pods and the inference
# chart use these. A pod picks its pool with pool_selector(); the same selector works on EKS and
# GKE because both carry both labels: the chart's Karpenter NodePools put the compute-class label
# on their nodes, and on GKE a ComputeClass with whenUnsatisfiable DoNotScaleUp serves only pods
# that select it (cloud.google.com/compute-class).
POOL_LABEL = "r1ov.io/pool"
COMPUTE_CLASS_LABEL = "cloud.google.com/compute-class"
# The node-pool chart's namePrefix: pool train -> NodePool/ComputeClass <prefix>-train. One value for
# every place that names a pool: the platform chart publishes it (settings.poolPrefix ->
# R1OV_POOL_PREFIX in the settings ConfigMap), so the launchers in pipeline pods place their jobs and
# rollout servers with it, and `R1OV_POOL_PREFIX=<prefix> r1ov compile` puts it into the compiled
# pipeline's task selectors (KFP's node selectors are literals in the compiled package).
DEFAULT_POOL_PREFIX = "r1ov"
POOL_PREFIX = os.environ.get("R1OV_POOL_PREFIX") or DEFAULT_POOL_PREFIX
GPU_POOLS = ("train", "rollout", "serve")
CPU_POOL = "cpu"  # launchers, data stages, registry: never on a GPU node
POOLS = (*GPU_POOLS, CPU_POOL)
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def pool_selector(pool: str, prefix: str | None = None) -> dict[str, str]:
    """The nodeSelector that puts a pod on ``pool`` on either provider (``prefix``: :data:`POOL_PREFIX`)."""
    if pool not in POOLS:
        raise KeyError(f"unknown pool {pool!r}; expected one of {list(POOLS)}")
    # Keys sorted: the compiled YAML stays stable.
    return {COMPUTE_CLASS_LABEL: f"{prefix or POOL_PREFIX}-{pool}", POOL_LABEL: pool}


def pool_tolerations(pool: str) -> list[dict[str, str]]:
    """GPU pools carry the GPU taint; the CPU pool none, so a CPU pod tolerates nothing."""
    return [dict(GPU_TAINT)] if pool in GPU_POOLS else []


# Every object a pipeline run launches carries its run id, so the exit handler can sweep them.
RUN_LABEL = "r1ov.io/pipeline-run"
