"""Durable checkpoints: every ``save_steps``, every ``save_every_minutes`` and on SIGTERM or
Ctrl-C, kept in ``checkpoint_uri``, resumed from exactly (weights, optimizer, scheduler, RNG, data order).

Layout under ``<checkpoint_uri>/checkpoints/`` (or, without a checkpoint_uri, the local checkpoint
directory itself)::

    checkpoint-200/...          the Trainer's checkpoint: weights, optimizer, scheduler, RNG per rank
    checkpoint-200/UPLOADED-node-1   each other node's part is in (holding the attempt's token)
    checkpoint-200/COMPLETE     written last, once every node has uploaded its part

A checkpoint without ``COMPLETE`` is half-written (a node died during the upload) and is never
resumed from; the last ``save_total_limit`` complete ones are kept. Each node's first process
uploads what that node wrote (ZeRO shards and RNG states are per rank) and, on resume, downloads
the whole checkpoint, so the nodes need no shared filesystem. Uploads run in the background
(:mod:`r1ov.train.uploads`) while training goes on, at most ``max_staged_checkpoints`` waiting on a
node's disk; the run waits for them at its end, and one that failed fails the run.

SIGTERM (pod deletion, preemption, a cancelled run) and SIGINT (Ctrl-C) are turned into "save now
and stop" at the next step boundary, agreed by all ranks, so the last complete step survives; the
process then exits with 143 (SIGTERM) or 130 (SIGINT) instead of saving a final model. The last
step itself is saved once, as the final model (``common.finish``), not also as a checkpoint: a
failure after training ends resumes from the last periodic checkpoint.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import torch
from transformers import TrainerCallback

from r1ov.data import storage
from r1ov.train import remote, uploads

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

    def _get_train_sampler(self, *args: Any, **kwargs: Any) -> Any:
        sampler = super()._get_train_sampler(*args, **kwargs)  # type: ignore[misc]
        if hasattr(sampler, "generator") and hasattr(sampler, "seed") and not hasattr(sampler, "set_epoch"):
            return EpochReplay(sampler)
        return sampler


class EpochReplay(torch.utils.data.Sampler):
    """A sampler seeded once (TRL's ``RepeatSampler``: one ``torch.Generator`` advanced by every pass)
    made to give each epoch the same order in a resumed run as in an uninterrupted one.

    A resumed run builds a fresh sampler, so its first pass would repeat the first epoch's order.
    The Trainer calls ``set_epoch`` before each epoch (through accelerate's ``DataLoaderShard``);
    here that re-seeds the generator and replays the earlier epochs' draws.
    """

    def __init__(self, sampler: Any) -> None:
        self.sampler = sampler
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Any:
        if self.sampler.seed is not None:
            self.sampler.generator.manual_seed(self.sampler.seed)
            for _ in range(self.epoch):
                for _ in self.sampler:  # each pass draws that epoch's permutation
                    pass
        return iter(self.sampler)


@cache
def resumable(trainer_class: type) -> type:
    """``trainer_class`` with :class:`ExactResume` (e.g. TRL's SFTTrainer or GRPOTrainer)."""
    return type(trainer_class.__name__, (ExactResume, trainer_class), {"__module__": __name__})


def _barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def rotate_local(directory: str, keep: int, protected: set[str] | frozenset[str] = frozenset()) -> None:
    """Delete all but the newest ``keep`` checkpoints this node wrote to its own disk, never one named
    in ``protected`` (still uploading, or whose upload failed: its local copy is the only one)."""
    steps = sorted(
        int(m.group(1)) for path in Path(directory).glob("checkpoint-*") if (m := _CHECKPOINT.match(path.name))
    )
    for step in steps[:-keep]:
        if f"checkpoint-{step}" not in protected:
            shutil.rmtree(Path(directory) / f"checkpoint-{step}", ignore_errors=True)


def _node() -> tuple[int, int]:
    """(this node's rank, the number of nodes) as torchrun tells its workers: GROUP_RANK and GROUP_WORLD_SIZE
    (torch/distributed/elastic/agent/server/local_elastic_agent.py, the workers' environment)."""
    return int(os.environ.get("GROUP_RANK", "0")), int(os.environ.get("GROUP_WORLD_SIZE", "1"))


def _any_rank(flag: bool) -> bool:
    """True when ``flag`` is true on any rank (one all-reduce; every rank must call it)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=_device())
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
    return tensor.item() > 0


def _uploaded_marker(node: int) -> str:
    return f"UPLOADED-node-{node}"


def _failed_marker(node: int) -> str:
    return f"UPLOAD-FAILED-node-{node}"


class DurableCheckpoints(TrainerCallback):
    """After each Trainer save: upload this node's part in the background, mark it complete, rotate.

    - Each node's local rank 0 hands the checkpoint to its :class:`~r1ov.train.uploads.Uploader`
      once every rank has finished writing (a barrier: weights, ZeRO shards, each rank's RNG state),
      and training goes on while it uploads.
    - At most ``max_staged`` checkpoints wait on a node's disk for their upload: a save due while a
      node's staging is full waits (saying so) until an upload ends. All ranks wait together, in short
      all-reduces, so no rank sits in one collective past its timeout.
    - Every node's uploader, after its part, leaves ``UPLOADED-node-<rank>`` holding this run's token;
      the main process's uploader writes ``COMPLETE`` once every node's marker is there, then deletes
      the store's oldest complete checkpoints beyond ``keep``. A node that gives its part up leaves
      ``UPLOAD-FAILED-node-<rank>`` (token and error) instead, and the main process gives that
      checkpoint up at once, naming the node, rather than wait ``peer_wait_s`` for a part that will
      not come; a wait that runs out is given up once, not retried. The token (drawn by rank 0 at the start)
      keeps a marker left by an earlier attempt at the same step from counting.
    - Each node keeps only the newest ``keep`` checkpoints on its disk (the Trainer's own rotation,
      off here, runs on the main process only and would delete a checkpoint still uploading); one
      still uploading, or whose upload failed, is never deleted.
    - :meth:`finish` waits for the uploads at the end (normal end and SIGTERM) and raises
      :class:`~r1ov.train.uploads.UploadFailed` naming any checkpoint that could not be uploaded.
    """

    def __init__(
        self,
        cfg: Any,
        keep: int,
        max_staged: int = 1,
        uploader: uploads.Uploader | None = None,
        peer_wait_s: float = remote.WAIT_S,
    ) -> None:
        self.root = store(cfg)
        self.staged = self.root != local_dir(cfg)  # the local copy is staging for a durable store elsewhere
        # Local rotation keeps at least what may still be uploading anywhere (the gate bounds it to
        # the newest max_staged), so a node sharing its disk with another never deletes the other's.
        self.keep = keep
        self.local_keep = max(keep, max_staged)
        self.max_staged = max_staged
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.node, self.nodes = _node()
        self.peer_wait_s = peer_wait_s
        self.token = uuid.uuid4().hex
        self.uploader = None
        if self.staged and self.local_rank == 0:
            self.uploader = uploader or uploads.Uploader(max_staged)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.nodes > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            token = [self.token]
            torch.distributed.broadcast_object_list(token, src=0)  # one token for the whole attempt
            self.token = token[0]

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # Runs after SaveTriggers (added first), so should_save is final and the same on every rank.
        if not (control.should_save and self.staged):
            return
        started = time.monotonic()
        waited = False
        while _any_rank(full := self.uploader is not None and self.uploader.full()):
            if not waited and (full or state.is_world_process_zero):  # said by the nodes it concerns
                logger.warning(
                    "step %d: %d checkpoint(s) still uploading to %s (max_staged_checkpoints=%d); "
                    "the save waits for one to finish rather than fill the disk",
                    state.global_step, self.max_staged, self.root, self.max_staged,
                )  # fmt: skip
                waited = True
            time.sleep(0.2)
        if waited and state.is_world_process_zero:
            seconds = time.monotonic() - started
            logger.warning("step %d: waited %.1f s for a checkpoint upload", state.global_step, seconds)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        name = f"checkpoint-{state.global_step}"
        local = Path(args.output_dir) / name
        target = storage.join(self.root, name)
        _barrier()  # every rank has written its files (RNG state last) before its node's upload reads them
        if not self.staged:
            if state.is_world_process_zero:
                self._complete(target, state.global_step)
            if self.local_rank == 0:
                rotate_local(args.output_dir, self.local_keep)
            return
        if self.uploader is None:
            return
        main = state.is_world_process_zero
        step = state.global_step

        def then() -> None:
            if main:
                self._await_peers(target)
                self._complete(target, step)
            else:
                storage.write_text(storage.join(target, _uploaded_marker(self.node)), self.token)

        def failed(error: str) -> None:
            if not main:
                storage.write_text(storage.join(target, _failed_marker(self.node)), f"{self.token}\n{error}")

        if local.is_dir():
            self.uploader.submit(name, local, target, then, failed)
        rotate_local(args.output_dir, self.local_keep, self.uploader.keep_locally())

    def _await_peers(self, target: str) -> None:
        """Until every other node's part of ``target`` is uploaded; UploadFailed (not retried) when a node
        gave its part up or ``peer_wait_s`` runs out."""
        deadline = time.monotonic() + self.peer_wait_s
        waiting = set(range(1, self.nodes))
        while waiting:
            for node in sorted(waiting):
                marker = storage.join(target, _uploaded_marker(node))
                if storage.exists(marker) and storage.read_text(marker) == self.token:
                    waiting.discard(node)
                    continue
                failure = storage.join(target, _failed_marker(node))
                if storage.exists(failure):
                    token, _, error = storage.read_text(failure).partition("\n")
                    if token == self.token:
                        raise uploads.UploadFailed(f"node {node} could not upload its part of {target}: {error}")
            if waiting:
                if time.monotonic() > deadline:
                    late = sorted(waiting)
                    raise uploads.UploadFailed(
                        f"node(s) {late} did not upload their part of {target} within {self.peer_wait_s:.0f} s"
                    )
                time.sleep(0.5)

    def _complete(self, target: str, step: int) -> None:
        storage.write_text(storage.join(target, COMPLETE), f"{step}\n")
        logger.info("checkpoint %s complete", target)
        for old in complete_steps(self.root)[: -self.keep]:
            _delete_dir(storage.join(self.root, f"checkpoint-{old}"))

    def finish(self) -> None:
        """At the end of training (every rank): wait for this node's uploads, all ranks together."""
        if not self.staged:
            return
        waited = time.monotonic()
        if _any_rank(self.uploader is not None and self.uploader.busy()):
            logger.info("waiting for the last checkpoint upload(s) to %s", self.root)
            while _any_rank(self.uploader is not None and not self.uploader.wait(0.5)):
                pass
            logger.info("checkpoint uploads done (%.1f s)", time.monotonic() - waited)
        error: uploads.UploadFailed | None = None
        if self.uploader is not None:
            try:
                self.uploader.close()
            except uploads.UploadFailed as exc:
                error = exc
        # Every rank stops together: one going on alone would wait in the final save's collectives.
        if _any_rank(error is not None):
            raise error or uploads.UploadFailed("a checkpoint upload failed on another node (see its log)")

    def abandon(self) -> None:
        """Training failed: say which uploads are left unfinished (the store never counts them complete)."""
        if self.uploader is not None and self.uploader.busy():
            logger.warning("training failed; unfinished checkpoint uploads: %s", sorted(self.uploader.staged()))


class SaveTriggers(TrainerCallback):
    """When to save besides every ``save_steps``, decided at each step boundary by all ranks together.

    - SIGTERM (pod deletion, preemption, a cancelled run) or SIGINT (Ctrl-C): save this step and
      stop. A second Ctrl-C stops at once, without the checkpoint. The previous handlers come back
      with :meth:`restore` (a command run in-process keeps its own).
    - The clock: save when ``every_s`` seconds passed since the last save, so a preemption loses at
      most that much work however slow the steps are.
    - The last step: no checkpoint, since ``common.finish`` writes the final model (saving both would
      gather and upload the same weights twice); unless SIGTERM came, then it is a checkpoint.

    Ranks agree through one all-reduce (MAX) per step: a rank whose signal or clock fired makes every
    rank save, so no rank waits alone in a collective save.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, every_s: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.requested = threading.Event()
        self.signum: int | None = None
        self.stopped = False
        self.every_s = every_s
        self.clock = clock
        self.last_save = clock()
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

    def _agreed(self) -> tuple[bool, bool]:
        """(stop, save now) as the whole world sees it."""
        flags = [
            1.0 if self.requested.is_set() else 0.0,
            1.0 if self.every_s and self.clock() - self.last_save >= self.every_s else 0.0,
        ]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            tensor = torch.tensor(flags, device=_device())
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
            flags = tensor.tolist()
        return flags[0] > 0, flags[1] > 0

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        stop, due = self._agreed()
        if stop:
            logger.warning("%s: saving step %d and stopping", _name(self.signum), state.global_step)
            control.should_save = True
            control.should_training_stop = True
            self.stopped = True
        elif state.global_step >= state.max_steps:
            control.should_save = False  # the final model is saved once, by common.finish
        elif due:
            logger.info("%.0f minutes since the last checkpoint: saving step %d", self.every_s / 60, state.global_step)
            control.should_save = True

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.last_save = self.clock()


def _name(signum: int | None) -> str:
    return signal.Signals(signum).name if signum else "a peer's signal"


def _device() -> torch.device:
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def train(trainer: Any, cfg: Any) -> tuple[Any, int]:
    """``trainer.train()`` with durable checkpoints, resumed from the latest complete one.

    Returns the train result and the step it resumed from (0 for a fresh start). Checkpoint uploads
    run in the background and are waited for before this returns; one that failed raises
    :class:`~r1ov.train.uploads.UploadFailed`. After SIGTERM or Ctrl-C the checkpoint is saved and
    uploaded, the world closed and the process exits with 143 or 130.
    """
    # SaveTriggers first: DurableCheckpoints' on_step_end reads the should_save it decides.
    stop = SaveTriggers(every_s=cfg.save_every_minutes * 60)
    trainer.add_callback(stop)
    durable = DurableCheckpoints(cfg, keep=cfg.save_total_limit, max_staged=cfg.max_staged_checkpoints)
    trainer.add_callback(durable)
    try:
        resume = resume_point(cfg)
        result = trainer.train(resume_from_checkpoint=resume)
    except BaseException:
        durable.abandon()
        raise
    finally:
        stop.restore()
    if stop.stopped:
        try:
            durable.finish()  # the stop's checkpoint is only worth something once it is in the store
        except uploads.UploadFailed as exc:
            logger.error("%s; the next attempt resumes from the latest complete checkpoint", exc)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        logger.warning(
            "stopped at step %d on %s; the checkpoint is in %s and the same command resumes from it",
            trainer.state.global_step, _name(stop.signum), store(cfg),
        )  # fmt: skip
        raise SystemExit(stop.exit_code)
    durable.finish()
    return result, int(_CHECKPOINT.match(Path(resume).name).group(1)) if resume else 0
