"""Durable checkpoints: every ``save_steps`` and on SIGTERM, kept in ``checkpoint_uri``, resumed from.

Layout under ``<checkpoint_uri>/checkpoints/`` (or, without a checkpoint_uri, the local checkpoint
directory itself)::

    checkpoint-200/...          the Trainer's checkpoint: weights, optimizer, scheduler, RNG per rank
    checkpoint-200/COMPLETE     written last, once every node has uploaded its part

A checkpoint without ``COMPLETE`` is half-written (a node died during the upload) and is never
resumed from; the last ``save_total_limit`` complete ones are kept. Each node's first process
uploads what that node wrote (ZeRO shards and RNG states are per rank) and, on resume, downloads
the whole checkpoint, so the nodes need no shared filesystem.

SIGTERM (pod deletion, preemption, a cancelled run) is turned into "save now and stop" at the next
step boundary, agreed by all ranks, so the last complete step survives; the process then exits
with 143 instead of saving a final model.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import torch
from transformers import TrainerCallback

from r1ov.data import storage
from r1ov.train import remote

logger = logging.getLogger(__name__)

COMPLETE = "COMPLETE"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
INTERRUPTED_EXIT = 128 + signal.SIGTERM


def local_dir(cfg: Any) -> str:
    """Where the Trainer writes checkpoints on this node: beside the output, never inside it
    (the output directory is uploaded as the final model)."""
    return f"{cfg.output_dir.rstrip('/')}-checkpoints"


def store(cfg: Any) -> str:
    """Where complete checkpoints are kept for resuming."""
    return storage.join(cfg.checkpoint_uri, "checkpoints") if cfg.checkpoint_uri else local_dir(cfg)


def complete_steps(root: str) -> list[int]:
    """Steps of the complete checkpoints under ``root``, oldest first."""
    fs, path = storage.filesystem(root)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return []
    steps = []
    for info in fs.get_file_info(pafs.FileSelector(path, recursive=False)):
        m = _CHECKPOINT.match(info.base_name)
        if m and info.type == pafs.FileType.Directory and storage.exists(storage.join(root, info.base_name, COMPLETE)):
            steps.append(int(m.group(1)))
    return sorted(steps)


def _delete_dir(uri: str) -> None:
    fs, path = storage.filesystem(uri)
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_dir(path)


def resume_point(cfg: Any) -> str | None:
    """The local directory of the latest complete checkpoint (downloaded once per node), or None."""
    root = store(cfg)
    steps = complete_steps(root)
    if not steps:
        return None
    name = f"checkpoint-{steps[-1]}"
    source = storage.join(root, name)
    dest = Path(local_dir(cfg)) / name
    if source != str(dest):
        remote.node_once(dest, lambda d: storage.copy_tree(source, str(d)))
    logger.info("resuming from %s (step %d)", source, steps[-1])
    return str(dest)


def load_weights(model: Any, checkpoint: str) -> None:
    """Copy a checkpoint's weights into ``model`` as ``from_pretrained`` reads them, strictly.

    ``save_pretrained`` writes the checkpoint's original key names (modeling_utils
    ``save_pretrained`` -> core_model_loading ``revert_weight_conversion``), e.g. Qwen2.5-VL's
    ``model.layers.*`` / ``visual.*``, while the live model calls them ``model.language_model.*`` /
    ``model.visual.*``. Only ``from_pretrained`` applies the renaming
    (conversion_mapping ``get_model_conversion_mapping``), so the checkpoint is read through it;
    the strict copy fails loudly on any key that still does not match.
    """
    dtype = next(model.parameters()).dtype
    # A second copy on the CPU for a moment: this path is for models that fit one device.
    saved = type(model).from_pretrained(checkpoint, dtype=dtype)
    model.load_state_dict(saved.state_dict(), strict=True)
    logger.info("loaded the weights of %s", checkpoint)


class ExactResume:
    """Trainer mixin: resume without DeepSpeed with the checkpoint's weights, not the base model's.

    transformers 5's ``Trainer._load_from_checkpoint`` (trainer.py; the path without DeepSpeed or
    FSDP) calls ``model.load_state_dict(state_dict, False)`` on the saved safetensors, without the
    key renaming ``from_pretrained`` applies: for Qwen2.5-VL no key matches but ``lm_head``, only a
    warning is logged, and training continues from the base weights with the restored optimizer.
    DeepSpeed resumes from its own engine checkpoint (``deepspeed_load_checkpoint``) and is left as is.
    """

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        from transformers import PreTrainedModel

        if (
            model is not None
            or self.is_deepspeed_enabled
            or self.is_fsdp_enabled
            or not isinstance(self.model, PreTrainedModel)
        ):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)  # type: ignore[misc]
        load_weights(self.model, resume_from_checkpoint)
        return None


@cache
def resumable(trainer_class: type) -> type:
    """``trainer_class`` with :class:`ExactResume` (e.g. TRL's SFTTrainer or GRPOTrainer)."""
    return type(trainer_class.__name__, (ExactResume, trainer_class), {"__module__": __name__})


def _barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


class DurableCheckpoints(TrainerCallback):
    """After each Trainer save: upload this node's part, then (main process) mark it complete and rotate."""

    def __init__(self, cfg: Any, keep: int) -> None:
        self.root = store(cfg)
        self.keep = keep
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        name = f"checkpoint-{state.global_step}"
        local = Path(args.output_dir) / name
        target = storage.join(self.root, name)
        if self.local_rank == 0 and local.is_dir() and target != str(local):
            storage.copy_tree(str(local), target)
        _barrier()  # every node's part is in place before the marker
        if state.is_world_process_zero:
            storage.write_text(storage.join(target, COMPLETE), f"{state.global_step}\n")
            logger.info("checkpoint %s complete", target)
            for step in complete_steps(self.root)[: -self.keep]:
                _delete_dir(storage.join(self.root, f"checkpoint-{step}"))


class StopOnSigterm(TrainerCallback):
    """SIGTERM -> save at the next step boundary and stop; every rank stops at the same step."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.stopped = False
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self.requested.set())

    def _agreed(self) -> bool:
        flag = 1.0 if self.requested.is_set() else 0.0
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            tensor = torch.tensor([flag], device=_device())
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
            flag = float(tensor.item())
        return flag > 0

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._agreed():
            logger.warning("SIGTERM: saving step %d and stopping", state.global_step)
            control.should_save = True
            control.should_training_stop = True
            self.stopped = True


def _device() -> torch.device:
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def train(trainer: Any, cfg: Any) -> tuple[Any, int]:
    """``trainer.train()`` with durable checkpoints, resumed from the latest complete one.

    Returns the train result and the step it resumed from (0 for a fresh start). After SIGTERM
    the checkpoint is saved, the world closed and the process exits with 143.
    """
    trainer.add_callback(DurableCheckpoints(cfg, keep=cfg.save_total_limit))
    stop = StopOnSigterm()
    trainer.add_callback(stop)
    resume = resume_point(cfg)
    result = trainer.train(resume_from_checkpoint=resume)
    if stop.stopped:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        logger.warning("stopped at step %d on SIGTERM; a re-run resumes from there", trainer.state.global_step)
        raise SystemExit(INTERRUPTED_EXIT)
    return result, int(_CHECKPOINT.match(Path(resume).name).group(1)) if resume else 0
