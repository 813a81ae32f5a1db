"""Training stages: SFT and GRPO on Qwen2.5-VL with TRL, DeepSpeed and torchrun.

sft.py / grpo.py   the stages: ``run(cfg)`` launches, ``train(cfg)`` trains in this process
rewards.py         GRPO rewards: accuracy, format, or a user's ``module:function``
common.py          setup both trainers share: runtime, model, data, saving
tracking.py        the MLflow run around a training stage
launch.py          local torchrun, Kubeflow PyTorchJob or TrainJob (after the memory preflight)
memory.py          per-GPU memory plan (``--plan``): ZeRO states, activations, vLLM
checkpoints.py     durable checkpoints, exact resume, SIGTERM and time-based saves
worker.py          what torchrun runs on every node
deepspeed/         ZeRO-2 and ZeRO-3 configs ("auto" values filled in by transformers)

May import ``r1ov.k8s`` (launching jobs), ``r1ov.registry`` (tracking), ``r1ov.stages`` (the
worker runs a stage by name), ``r1ov.data``, ``r1ov.scoring``, ``r1ov.config``, ``r1ov.errors``.
"""

from __future__ import annotations

import os
from pathlib import Path


def extensions_dir() -> Path:
    """Where DeepSpeed's JIT-built ops (deepspeed_shm_comm on CPU: two compiler runs, about a minute;
    the training image has it prebuilt) are kept: one
    cache per user and machine, keyed by the torch and DeepSpeed versions the ops were built
    against, so every run, demo and test on the machine builds them once. Versions come from the
    installed metadata, not an import of torch."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "none"

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "r1ov" / "torch_extensions" / f"torch{installed('torch')}-deepspeed{installed('deepspeed')}"


def nvidia_present() -> bool:
    """An NVIDIA driver on this machine (its device node or /proc entry), without importing torch."""
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia/version")


# DeepSpeed picks its accelerator at import and, finding no GPU, warns "Setting accelerator to CPU"
# in every process that imports it (the launcher and each node: three times in the demo).
# Where no NVIDIA driver exists the answer is known: say it (deepspeed/accelerator/real_accelerator.py
# reads DS_ACCELERATOR before detecting), for this process and the nodes it starts.
if not nvidia_present():
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
