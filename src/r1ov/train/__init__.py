"""Training stages: SFT and GRPO on Qwen2.5-VL with TRL, DeepSpeed and torchrun.

sft.py / grpo.py   the stages: ``run(cfg)`` launches, ``train(cfg)`` trains in this process
rewards.py         GRPO rewards: accuracy, format, or a user's ``module:function``
common.py          setup both trainers share: runtime, model, data, saving
tracking.py        the MLflow run around a training stage
launch.py          local torchrun, Kubeflow PyTorchJob or TrainJob (after the memory preflight)
memory.py          per-GPU memory plan (``--plan``): ZeRO states, activations, vLLM
checkpoints.py     durable checkpoints, exact resume, SIGTERM and time-based saves
uploads.py         checkpoint uploads in the background, bounded staging, retries
worker.py          what torchrun runs on every node
deepspeed/         ZeRO-2 and ZeRO-3 configs ("auto" values filled in by transformers)

May import ``r1ov.k8s`` (launching jobs), ``r1ov.registry`` (tracking), ``r1ov.stages`` (the
worker runs a stage by name), ``r1ov.data``, ``r1ov.scoring``, ``r1ov.config``, ``r1ov.errors``.
"""

from __future__ import annotations

import os
from pathlib import Path


def extensions_dir() -> Path:
    """Where DeepSpeed's JIT-built ops are kept (on CPU: deepspeed_shm_comm, two compiler runs, about a
    minute; the training image has it prebuilt): one cache per user and machine, keyed by the torch and
    DeepSpeed versions the ops were built against and by where those two are installed, so every run,
    demo and test of one environment builds them once. The location is part of the key because torch's
    JIT build writes DeepSpeed's source and include paths and torch's own into the folder's build.ninja
    (torch/utils/cpp_extension.py ``_write_ninja_file_and_build_library``), and ninja rebuilds whatever
    command line changed: two virtualenvs sharing one folder (a second checkout) would rebuild it for
    each other in turn. Versions come from the installed metadata and locations from the import
    system's finder, without importing torch."""
    import hashlib
    from importlib.metadata import PackageNotFoundError, version
    from importlib.util import find_spec

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "none"

    def location(name: str) -> str:
        # As this process sees it, not resolved: DeepSpeed's op builder writes the path it was imported
        # from (op_builder/builder.py ``deepspeed_src_path``), so a virtualenv reached through a symlink
        # builds with other command lines than the same one reached directly.
        spec = find_spec(name)
        return str(spec.origin) if spec is not None and spec.origin else "none"

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    where = hashlib.sha256(f"{location('torch')}|{location('deepspeed')}".encode()).hexdigest()[:8]
    key = f"torch{installed('torch')}-deepspeed{installed('deepspeed')}-{where}"
    return cache / "r1ov" / "torch_extensions" / key


def nvidia_present() -> bool:
    """An NVIDIA driver on this machine (its device node or /proc entry), without importing torch."""
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia/version")


# DeepSpeed picks its accelerator at import and, finding no GPU, warns "Setting accelerator to CPU"
# in every process that imports it (the launcher and each node: three times in the demo).
# Where no NVIDIA driver exists the answer is known: say it (deepspeed/accelerator/real_accelerator.py
# reads DS_ACCELERATOR before detecting), for this process and the nodes it starts.
if not nvidia_present():
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
