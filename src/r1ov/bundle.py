"""Facts about the bundle that several places share: image names, the tag, pool vocabulary.

Components (``base_image=``), charts (via tests that compare their defaults) and the image
bake file all read these, so a release changes one line.
"""

from __future__ import annotations

import os

from r1ov import __version__

REGISTRY = os.environ.get("R1OV_IMAGE_REGISTRY", "ghcr.io/r1ov")
TAG = __version__

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


# GPU node pools: the node-pool chart, the pipeline and the inference chart use these.
POOL_LABEL = "r1ov.io/pool"
POOLS = ("train", "rollout", "serve")
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}

# Every object a pipeline run launches carries its run id, so the exit handler can sweep them.
RUN_LABEL = "r1ov.io/pipeline-run"
