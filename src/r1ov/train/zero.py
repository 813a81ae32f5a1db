"""The DeepSpeed config a training stage passes to the Trainer: packaged or the user's, with offload.

``distributed.deepspeed`` picks the ZeRO stage and the packaged config for it
(``r1ov/train/deepspeed/zero2.json``, ``zero3.json``); ``distributed.deepspeed_config`` replaces it
with the user's JSON (a path or URI), whose ``zero_optimization`` is checked before launch with
DeepSpeed's own model of that section (``deepspeed.runtime.zero.config.DeepSpeedZeroConfig``, which
refuses unknown keys) after setting aside the ``"auto"`` values transformers fills in.
``distributed.offload_optimizer`` / ``offload_param`` move AdamW's states (and its step) or the
parameters to CPU memory, as DeepSpeed's ``zero_optimization.offload_optimizer`` and
``offload_param`` do (DeepSpeed docs, docs/_pages/config-json.md, "Optimizer offloading": ZeRO
stages 1-3; "Parameter offloading": ZeRO stage 3 only). They apply on top of either config.

With the optimizer offloaded, the configs name no DeepSpeed optimizer, so transformers builds its torch
AdamW and accelerate swaps it for ``DeepSpeedCPUAdam`` on the same param groups
(accelerate/utils/deepspeed.py ``map_pytorch_optim_to_deepspeed``; DeepSpeed alone would refuse a torch
optimizer there, runtime/engine.py ``zero_force_ds_cpu_optimizer``). That loads DeepSpeed's ``cpu_adam``
op, a JIT C++ build (``-march=native``, about a minute) kept in ``r1ov.train.extensions_dir()``. The
training image does not prebuild it (``-march=native`` of the building host would not run on every
node) but carries g++, so each pod builds it for its own CPU at start, into its work volume
(images/Dockerfile.train). The step itself is the same fp32 AdamW as
without offload, in another order of float operations: on CPU (tests/test_train_offload.py) two runs
with and without it end within rounding of each other, and the summary's ``deepspeed_engine`` reports
what the running engine used (stage, optimizer, offload, bucket sizes of a user's JSON).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from r1ov.config import ConfigError, DistributedConfig

STAGES = {"zero2": 2, "zero3": 3}


def packaged(stage: str, cuda: bool | None = None) -> dict[str, Any] | None:
    """The packaged ZeRO config (``"auto"`` values filled in by transformers), or None.

    ``overlap_comm`` overlaps gradient reduction with the backward pass on GPUs (NCCL on its own
    CUDA stream); on CPU (gloo, tests and the demo) there is no stream to overlap on, so it stays off.
    """
    if stage == "none":
        return None
    path = resources.files("r1ov.train") / "deepspeed" / f"{stage}.json"
    if not path.is_file():
        raise ValueError(f"no DeepSpeed config for {stage!r}; expected one of none, zero2, zero3")
    config = json.loads(path.read_text())
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    config["zero_optimization"]["overlap_comm"] = cuda
    return config


def offload(device: str) -> dict[str, Any]:
    """An ``offload_*`` section: pinned host memory makes the copies to and from the GPU asynchronous."""
    return {"device": device, "pin_memory": True}


def read_custom(uri: str) -> dict[str, Any]:
    """The user's DeepSpeed JSON; a ConfigError naming the setting when it cannot be read or parsed."""
    from r1ov.data import storage

    try:
        config = json.loads(storage.read_text(uri))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"distributed.deepspeed_config: cannot read {uri} as JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise ConfigError(f"distributed.deepspeed_config: {uri} holds {type(config).__name__}, not a JSON object")
    return config


def check(config: dict[str, Any], dist: DistributedConfig, source: str) -> None:
    """The config's ZeRO section is one DeepSpeed accepts, at the stage ``distributed.deepspeed`` names
    (the memory plan and the checkpoint layout follow that setting)."""
    from pydantic import ValidationError

    section = config.get("zero_optimization")
    if not isinstance(section, dict):
        raise ConfigError(f"distributed.deepspeed_config: {source} has no zero_optimization section")
    stage = section.get("stage")
    if stage != STAGES[dist.deepspeed]:
        raise ConfigError(
            f"distributed.deepspeed_config: {source} has zero_optimization.stage {stage!r} but distributed.deepspeed "
            f"is {dist.deepspeed} (stage {STAGES[dist.deepspeed]}); make them agree"
        )
    from deepspeed.runtime.zero.config import DeepSpeedZeroConfig

    concrete = {key: value for key, value in section.items() if value != "auto"}  # transformers fills these in
    try:
        zero = DeepSpeedZeroConfig(**concrete)
    except (ValidationError, AssertionError, ValueError) as exc:
        first = str(exc).strip().splitlines()
        raise ConfigError(
            f"distributed.deepspeed_config: DeepSpeed refuses {source}'s zero_optimization: {' '.join(first[:3])}"
        ) from exc
    # The config model accepts any integer; the ZeRO-1/2 optimizer then asserts at engine start, after
    # launch, that all-gather buffers start 4-byte aligned in fp16: a multiple of 2 elements
    # (deepspeed/runtime/zero/stage_1_and_2.py, nccl_start_alignment_factor).
    if stage in (1, 2) and int(zero.allgather_bucket_size) % 2:
        raise ConfigError(
            f"distributed.deepspeed_config: {source}'s zero_optimization.allgather_bucket_size "
            f"{zero.allgather_bucket_size} must be even (DeepSpeed aligns all-gather buffers to 2 fp16 elements)"
        )


def build(dist: DistributedConfig, cuda: bool) -> dict[str, Any] | None:
    """The ``deepspeed`` value for TrainingArguments (None without DeepSpeed)."""
    if dist.deepspeed == "none":
        return None
    if dist.deepspeed_config:
        config = read_custom(dist.deepspeed_config)
        check(config, dist, dist.deepspeed_config)
    else:
        config = packaged(dist.deepspeed, cuda)
        assert config is not None
    section = config["zero_optimization"]
    if dist.offload_optimizer != "none":
        section["offload_optimizer"] = offload(dist.offload_optimizer)
    if dist.offload_param != "none":
        section["offload_param"] = offload(dist.offload_param)
    return config
