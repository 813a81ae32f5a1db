"""Durable checkpoints: every ``save_steps`` and on SIGTERM or Ctrl-C, kept in ``checkpoint_uri``, resumed from.

Layout under ``<checkpoint_uri>/checkpoints/`` (or, without a checkpoint_uri, the local checkpoint
directory itself)::

    checkpoint-200/...          the Trainer's checkpoint: weights, optimizer, scheduler, RNG per rank
    checkpoint-200/COMPLETE     written last, once every node has uploaded its part

A checkpoint without ``COMPLETE`` is half-written (a node died during the upload) and is never
resumed from; the last ``save_total_limit`` complete ones are kept. Each node's first process
uploads what that node wrote (ZeRO shards and RNG states are per rank) and, on resume, downloads
the whole checkpoint, so the nodes need no shared filesystem.

SIGTERM (pod deletion, preemption, a cancelled run) and SIGINT (Ctrl-C) are turned into "save now
and stop" at the next step boundary, agreed by all ranks, so the last complete step survives; the
process then exits with 143 (SIGTERM) or 130 (SIGINT) instead of saving a final model.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
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


class StopOnSignal(TrainerCallback):
    """SIGTERM or SIGINT (Ctrl-C) -> save at the next step boundary and stop; every rank stops at
    the same step. A second Ctrl-C stops at once, without the checkpoint. The previous handlers
    come back with :meth:`restore` (a command run in-process keeps its own)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.signum: int | None = None
        self.stopped = False
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}

    def _handle(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGINT and self.requested.is_set():
            raise KeyboardInterrupt  # asked twice: the user does not want to wait for the save
        self.signum = self.signum or signum
        self.requested.set()
        if signum == signal.SIGINT:
            logger.warning("Ctrl-C: saving a checkpoint at the end of this step (Ctrl-C again stops at once)")

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}

    @property
    def exit_code(self) -> int:
        """The shell's code for death by the signal (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + (self.signum or signal.SIGTERM)

    def _agreed(self) -> bool:
        flag = 1.0 if self.requested.is_set() else 0.0
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            tensor = torch.tensor([flag], device=_device())
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
            flag = float(tensor.item())
        return flag > 0

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._agreed():
            logger.warning("%s: saving step %d and stopping", _name(self.signum), state.global_step)
            control.should_save = True
            control.should_training_stop = True
            self.stopped = True


def _name(signum: int | None) -> str:
    return signal.Signals(signum).name if signum else "a peer's signal"


def _device() -> torch.device:
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def train(trainer: Any, cfg: Any) -> tuple[Any, int]:
    """``trainer.train()`` with durable checkpoints, resumed from the latest complete one.

    Returns the train result and the step it resumed from (0 for a fresh start). After SIGTERM or
    Ctrl-C the checkpoint is saved, the world closed and the process exits with 143 or 130.
    """
    trainer.add_callback(DurableCheckpoints(cfg, keep=cfg.save_total_limit))
    stop = StopOnSignal()
    trainer.add_callback(stop)
    try:
        resume = resume_point(cfg)
        result = trainer.train(resume_from_checkpoint=resume)
    finally:
        stop.restore()
    if stop.stopped:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        logger.warning(
            "stopped at step %d on %s; the checkpoint is in %s and the same command resumes from it",
            trainer.state.global_step, _name(stop.signum), store(cfg),
        )  # fmt: skip
        raise SystemExit(stop.exit_code)
    return result, int(_CHECKPOINT.match(Path(resume).name).group(1)) if resume else 0
