"""Setup shared by the SFT and GRPO trainers: where we run, what we load, how we finish.

Both trainers run the same way inside a torchrun world (or alone in this process): detect
the device and backend, load model + processor, turn records into chat examples, pick the
DeepSpeed config, train, then save once from the main process and close the world.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor, TrainerCallback
from transformers.integrations import is_deepspeed_zero3_enabled
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from r1ov.config import DistributedConfig, ModelIOConfig
from r1ov.data import imaging, records, storage
from r1ov.scoring import reasoning
from r1ov.train import tracking, zero

logger = logging.getLogger(__name__)

SUMMARY_FILE = "train_summary.json"  # written by the main process into output_dir, read by launchers


# --------------------------------------------------------------------------- runtime


@dataclass(frozen=True)
class Runtime:
    """This process's place in the (torchrun) world and the device it trains on."""

    cuda: bool
    backend: str
    rank: int
    local_rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def detect_runtime(dist: DistributedConfig) -> Runtime:
    """Read torchrun's environment; nccl with CUDA, gloo on CPU unless the config says otherwise."""
    cuda = torch.cuda.is_available()
    backend = dist.backend if dist.backend != "auto" else ("nccl" if cuda else "gloo")
    if backend == "nccl" and not cuda:
        raise RuntimeError("distributed.backend is 'nccl' but no CUDA device is visible; use 'gloo' or 'auto'")
    if dist.deepspeed != "none" and "RANK" not in os.environ:
        # DeepSpeed outside torchrun falls back to MPI discovery and fails obscurely.
        raise RuntimeError(
            f"distributed.deepspeed={dist.deepspeed} needs a torchrun world: run the stage through "
            "r1ov.train.launch (the stage's run()), not train() directly, or set distributed.deepspeed=none"
        )
    return Runtime(
        cuda=cuda,
        backend=backend,
        rank=int(os.environ.get("RANK", "0")),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
    )


def deepspeed_config(stage: str, cuda: bool | None = None) -> dict[str, Any] | None:
    """The packaged ZeRO config for ``stage`` (see :func:`r1ov.train.zero.packaged`)."""
    return zero.packaged(stage, cuda)


def trainer_arguments(cfg: Any, runtime: Runtime, track: bool) -> dict[str, Any]:
    """TrainingArguments fields both trainers set the same way."""
    from r1ov.train import checkpoints

    if runtime.is_main:
        logger.info(
            "global batch %d = %d process(es) x %d per device x %d gradient accumulation step(s)",
            runtime.world_size * cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps,
            runtime.world_size,
            cfg.per_device_train_batch_size,
            cfg.gradient_accumulation_steps,
        )
    return {
        "output_dir": checkpoints.local_dir(cfg),  # the Trainer's checkpoints; the final model goes to output_dir
        "learning_rate": cfg.learning_rate,
        "per_device_train_batch_size": cfg.per_device_train_batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "num_train_epochs": cfg.num_train_epochs,
        "max_steps": cfg.max_steps,
        "seed": cfg.seed,
        "logging_steps": cfg.logging_steps,
        "activation_checkpointing": cfg.gradient_checkpointing,
        # bf16 needs a GPU; on CPU the tiny model trains in fp32.
        "bf16": cfg.bf16 and runtime.cuda,
        # Without use_cpu, a CPU torchrun world silently trains N independent copies and
        # DeepSpeed fails its batch-size check.
        "use_cpu": not runtime.cuda,
        "ddp_backend": runtime.backend if runtime.world_size > 1 else None,
        "deepspeed": zero.build(cfg.distributed, runtime.cuda),  # packaged or the user's, with offload
        # Checkpoints every save_steps, uploaded and rotated by checkpoints.DurableCheckpoints.
        "save_strategy": "steps" if cfg.save_steps else "no",
        "save_steps": cfg.save_steps or 1,
        # Rotation is checkpoints.DurableCheckpoints' on every node: the Trainer's, on the main process
        # only, would delete a checkpoint still uploading in the background.
        "save_total_limit": None,
        "report_to": tracking.report_to(track),
        "run_name": cfg.tracking.run_name,
        "dataloader_num_workers": 0,  # images are decoded in the collator; workers only add start-up time
        "disable_tqdm": True,  # progress goes to the log (LogCallback), one line per logging step
    }


def join_deepspeed(args: Any, runtime: Runtime) -> None:
    """Bring DeepSpeed's comm layer into the process group the TrainingArguments opened.

    Under ZeRO-3, ``from_pretrained`` partitions weights while loading (``zero.Init``),
    which reads the world size from DeepSpeed's comm layer. On GPU accelerate initialises
    it; on CPU (``use_cpu``) it does not, so zero.Init would see a world of one and fail
    its batch-size check. Call this after building the arguments, before loading models.
    """
    if not args.deepspeed or runtime.world_size == 1:
        return
    import deepspeed

    _ = args.device  # opens the torch process group if nothing has yet
    if not deepspeed.comm.is_initialized():
        deepspeed.init_distributed(dist_backend=runtime.backend)


# Fields renamed between the transformers releases our images hold: the newer name -> the older one
# (transformers 5.17, the vLLM image's in images/stack-vllm.txt, has gradient_checkpointing but no
# activation_checkpointing; tests/test_trainer_stack.py builds every stage against it).
RENAMED_FIELDS = {"activation_checkpointing": "gradient_checkpointing"}


def known_fields(config_class: type, fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` limited to what the installed ``config_class`` (a TrainingArguments dataclass) knows.

    A field the installed release calls by its older name is passed under that name; one it does not
    have at all is left out with a warning, rather than failing every worker with a TypeError.
    """
    known = {f.name for f in dataclasses.fields(config_class)}
    kept: dict[str, Any] = {}
    for name, value in fields.items():
        if name in known:
            kept[name] = value
        elif RENAMED_FIELDS.get(name) in known:
            kept[RENAMED_FIELDS[name]] = value
        else:
            logger.warning("the installed %s has no field %r; it is not set", config_class.__name__, name)
    return kept


def build_arguments(config_class: type, fields: dict[str, Any]) -> Any:
    """``config_class(**fields)`` with only the fields the installed release knows (see known_fields)."""
    return config_class(**known_fields(config_class, fields))


class LogCallback(TrainerCallback):
    """Trainer logs to ``logging`` (main process only) instead of transformers' stdout printer.
    Below a progress bar (a terminal) the per-step lines are debug: the bar shows the numbers."""

    def __init__(self, level: int = logging.INFO) -> None:
        self.level = level

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if state.is_world_process_zero and logs:
            shown = {k: round(v, 6) if isinstance(v, float) else v for k, v in logs.items()}
            logger.log(self.level, "step %d/%d %s", state.global_step, state.max_steps, shown)


# What the step bar shows beside the count, when the trainer logs it.
BAR_FIELDS = ("loss", "reward")


class StepBar(TrainerCallback):
    """A tqdm bar of optimizer steps with the latest loss (and GRPO's reward), on a terminal only:
    a pod's log or a pipe gets the step lines of :class:`LogCallback` instead."""

    def __init__(self, desc: str, stream: Any = None) -> None:
        import sys

        self.desc = desc
        self.stream = stream or sys.stderr
        self.bar: Any = None

    @property
    def active(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        from tqdm.auto import tqdm

        if state.is_world_process_zero and self.active:
            self.bar = tqdm(
                total=state.max_steps, initial=state.global_step, desc=self.desc, unit="step", file=self.stream
            )

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if self.bar is not None and logs:
            self.bar.set_postfix({k: f"{logs[k]:.4g}" for k in BAR_FIELDS if isinstance(logs.get(k), int | float)})

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def use_log_callback(trainer: Any, desc: str = "train") -> None:
    """Swap transformers' stdout printer for :class:`LogCallback` (and a :class:`StepBar` on a terminal)."""
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    bar = StepBar(desc)
    trainer.add_callback(LogCallback(logging.DEBUG if bar.active else logging.INFO))
    trainer.add_callback(bar)
    trainer.add_callback(tracking.ThroughputCallback())


# --------------------------------------------------------------------------- model


def load_model_and_processor(cfg: ModelIOConfig, bf16: bool, freeze_vision: bool = False) -> tuple[Any, Any]:
    """Model and processor from a checkpoint, with the config's image pixel bounds (bf16 on GPU only)."""
    bounds = {"shortest_edge": cfg.min_pixels, "longest_edge": cfg.max_pixels}  # Qwen's min/max_pixels
    processor = AutoProcessor.from_pretrained(cfg.model_name_or_path, size=bounds)
    dtype = torch.bfloat16 if bf16 and torch.cuda.is_available() else torch.float32
    # Only when chosen: the default leaves transformers to pick (sdpa), and flash_attention_2 needs a GPU.
    attention = {"attn_implementation": cfg.attn_implementation} if cfg.attn_implementation else {}
    model = AutoModelForImageTextToText.from_pretrained(cfg.model_name_or_path, dtype=dtype, **attention)
    if is_deepspeed_zero3_enabled() and hasattr(model, "_weight_conversions"):
        # Loaded under zero.Init, transformers keeps every registered key renaming (legacy ones
        # too) and reverting them on save writes "model.model.*" keys that vLLM cannot load.
        # Without the record, save_pretrained uses the model's current mapping, as after ZeRO-2.
        del model._weight_conversions
    if freeze_vision:
        frozen = freeze_vision_tower(model)
        logger.info("froze the vision tower (%d parameters)", frozen)
    return model, processor


def freeze_vision_tower(model: torch.nn.Module) -> int:
    """Stop gradients into the vision encoder and merger; returns how many parameters froze."""
    tower = model.model.visual
    count = 0
    for parameter in tower.parameters():
        parameter.requires_grad_(False)
        count += parameter.numel()
    return count


# --------------------------------------------------------------------------- data


def prompt_messages(record: dict[str, Any]) -> list[dict[str, Any]]:
    """System instruction, then the user turn: the image followed by the question and options."""
    question = reasoning.format_question(record["question"], record.get("options"))
    return [
        {"role": "system", "content": [{"type": "text", "text": reasoning.INSTRUCTION}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]},
    ]


def sft_messages(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The prompt plus the record's reasoning as the assistant turn."""
    answer = {"role": "assistant", "content": [{"type": "text", "text": record["reasoning"]}]}
    return [*prompt_messages(record), answer]


class SkipRecord(Exception):
    """Raised by a row builder for a record it cannot use; the message is "<code>: detail"."""


@dataclass
class Examples:
    """Training rows built from a dataset, and the records that could not be used, by reason."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


def load_examples(
    uri: str, to_row: Callable[[dict[str, Any], Image.Image], dict[str, Any]], required: tuple[str, ...]
) -> Examples:
    """Read the dataset's accepted records and build one row each with ``to_row(record, image)``.

    A record is skipped with a warning and counted under its reason when it lacks a
    ``required`` column (``missing_<column>``), its image is corrupt (``bad_image``) or
    ``to_row`` raises :class:`SkipRecord` (its code). Nothing is dropped silently.
    """
    examples = Examples()
    for record in records.read_records(uri):
        try:
            missing = [name for name in required if not record.get(name)]
            if missing:
                raise SkipRecord(f"missing_{missing[0]}: no {', '.join(missing)}")
            try:
                image = imaging.load_image(record)
            except imaging.BadImage as exc:
                raise SkipRecord(f"bad_image: {exc}") from exc
            examples.rows.append(to_row(record, image))
        except SkipRecord as exc:
            logger.warning("skipping record %s: %s", record["id"], exc)
            examples.skipped[str(exc).split(":", 1)[0]] += 1
    logger.info("%d training examples from %s (%d skipped)", len(examples.rows), uri, examples.skipped_total)
    if not examples.rows:
        raise ValueError(f"no usable training records in {uri} (skipped: {dict(examples.skipped) or 'none'})")
    return examples


def image_cell(record: dict[str, Any]) -> dict[str, Any]:
    """The record's encoded image as a ``datasets.Image`` cell.

    Rows keep the compressed bytes, decoded batch by batch by the collator, rather than
    decoded pixels: a few KB per example instead of megabytes, on every rank.
    """
    return {"bytes": imaging.image_bytes(record), "path": None}


def to_dataset(rows: list[dict[str, Any]]) -> Any:
    """A ``datasets.Dataset`` whose ``images`` column decodes to PIL images on access."""
    import datasets

    dataset = datasets.Dataset.from_list(rows)
    return dataset.cast_column("images", datasets.List(datasets.Image()))


# --------------------------------------------------------------------------- finishing


def last_logged(log_history: list[dict[str, Any]], key: str) -> float | None:
    """The most recent value of ``key`` the trainer logged (None if it never did)."""
    for entry in reversed(log_history):
        if key in entry:
            return float(entry[key])
    return None


def finish(trainer: Any, processor: Any, cfg: ModelIOConfig, runtime: Runtime, summary: dict[str, Any]) -> dict:
    """Save the final model + processor and the summary once, copy them to checkpoint_uri, close the world.

    Every rank calls this: under ZeRO-3 saving gathers shards from all of them, and the
    others must wait for the main process before anyone may read the directory.
    """
    trainer.save_model(cfg.output_dir)  # collective under ZeRO-3; writes on the main process only
    if runtime.is_main:
        processor.save_pretrained(cfg.output_dir)
        storage.write_text(str(Path(cfg.output_dir) / SUMMARY_FILE), json.dumps(summary, indent=2, sort_keys=True))
        if cfg.checkpoint_uri:
            storage.copy_tree(cfg.output_dir, cfg.checkpoint_uri)
            logger.info("copied %s to %s", cfg.output_dir, cfg.checkpoint_uri)
    trainer.accelerator.wait_for_everyone()
    close_world()
    return summary


def close_world() -> None:
    """Destroy the process group: otherwise rank 0 aborts at exit and the other nodes hang."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def read_summary(output_uri: str) -> dict[str, Any]:
    return json.loads(storage.read_text(storage.join(output_uri, SUMMARY_FILE)))


def summarize(
    stage: str,
    cfg: Any,
    trainer: Any,
    result: Any,
    examples: Examples,
    runtime: Runtime,
    started: float,
    run_id: str | None,
    **extra: Any,
) -> dict[str, Any]:
    """The summary every trainer returns (and ``finish`` writes for the launchers)."""
    return {
        "stage": stage,
        "output_dir": cfg.output_dir,
        "checkpoint_uri": cfg.checkpoint_uri,
        "steps": trainer.state.global_step,
        "train_loss": result.training_loss,
        **extra,
        "runtime_s": round(time.monotonic() - started, 2),
        # the training loop alone, without start-up and loading: what benchmarks compare
        "train_runtime_s": round(result.metrics.get("train_runtime", 0.0), 3),
        "train_samples_per_second": result.metrics.get("train_samples_per_second", 0.0),
        "train_records": len(examples.rows),
        "skipped_records": examples.skipped_total,
        "skipped_reasons": dict(examples.skipped),
        "world_size": runtime.world_size,
        "backend": runtime.backend,
        "deepspeed": cfg.distributed.deepspeed,
        "deepspeed_engine": deepspeed_engine_settings(trainer),
        "mlflow_run_id": run_id,
    }


def deepspeed_engine_settings(trainer: Any) -> dict[str, Any] | None:
    """What the DeepSpeed engine that trained actually ran with (None without DeepSpeed).

    Read back from the engine, after transformers filled the ``"auto"`` values and DeepSpeed parsed the
    config (deepspeed/runtime/engine.py ``zero_optimization_stage``, ``zero_reduce_bucket_size``,
    ``zero_allgather_bucket_size``, ``gradient_clipping``; ``basic_optimizer`` is the optimizer ZeRO
    wraps), and from the ZeRO optimizer (runtime/zero/stage_1_and_2.py ``cpu_offload``): a user's JSON
    or an offload setting that did not take effect shows here, not only in the dict handed over. The ZeRO-3
    optimizer names its flag ``offload_optimizer`` (runtime/zero/stage3.py).
    """
    engine = getattr(trainer, "deepspeed", None)
    if engine is None:
        return None
    return {
        "zero_stage": int(engine.zero_optimization_stage()),
        "optimizer": type(engine.basic_optimizer).__name__,  # DeepSpeedCPUAdam when the optimizer is offloaded
        "optimizer_offloaded": bool(
            getattr(engine.optimizer, "cpu_offload", False) or getattr(engine.optimizer, "offload_optimizer", False)
        ),
        "reduce_bucket_size": int(engine.zero_reduce_bucket_size()),
        "allgather_bucket_size": int(engine.zero_allgather_bucket_size()),
        "gradient_clipping": float(engine.gradient_clipping()),
        "train_batch_size": int(engine.train_batch_size()),
    }
