"""Supervised fine-tuning of Qwen2.5-VL on the filtered reasoning records (TRL SFTTrainer).

    r1ov sft --config pipelines/recipes/sft.yaml --set distributed.nnodes=2

``run(cfg)`` is the stage: it hands the config to the launcher (torchrun locally, or a
Kubeflow PyTorchJob/TrainJob), whose processes each call ``train(cfg)``. Each example is
the system instruction, the image with the question, and the record's ``<think>/<answer>``
reasoning as the assistant turn; the loss covers the answer only when asked.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from PIL import Image

from r1ov.config import SFTConfig
from r1ov.scoring import lengths
from r1ov.train import checkpoints, common, dataset, tracking

logger = logging.getLogger(__name__)


def trl_fields(cfg: SFTConfig, runtime: common.Runtime) -> dict[str, Any]:
    """TRL SFTConfig fields for this stage, as every worker passes them (before build_arguments)."""
    return {
        **common.trainer_arguments(cfg, runtime, track=cfg.track),
        "lr_scheduler_type": cfg.lr_scheduler_type,
        "warmup_steps": cfg.warmup_ratio,  # a float below 1 is read as a ratio of the total steps
        "max_length": cfg.max_length,
        "assistant_only_loss": cfg.assistant_only_loss,
        **dataset.TRAINER_FIELDS,
    }


def _row(record: dict[str, Any], image: Image.Image) -> dict[str, Any]:
    return {"messages": common.sft_messages(record), "images": [image]}


def _reasoning_tokens(processor: Any, examples: dataset.TrainData, cfg: SFTConfig) -> dict[str, Any]:
    """What GRPO's completion limit and eval's generation limit must leave room for (r1ov.scoring.lengths).

    Counted after training, on the main process: tokenizing every reasoning chain is a pass over the
    whole dataset that would otherwise stand before step 1 on every rank.
    """
    texts = examples.rows.with_format(None)["reasoning"]  # the stored column, without building rows
    stats = lengths.token_stats(processor.tokenizer, texts)
    if stats["max"] > cfg.max_length:
        logger.warning(
            "sft.max_length is %d tokens but the longest reasoning alone is %d: those examples were cut",
            cfg.max_length, stats["max"],
        )  # fmt: skip
    return stats


def train(cfg: SFTConfig) -> dict[str, Any]:
    """Train in this process (one rank of a torchrun world, or alone); returns the summary."""
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    started = time.monotonic()
    runtime = common.detect_runtime(cfg.distributed)

    # 1. trainer settings first: under ZeRO-3 they make from_pretrained load partitioned weights
    args = common.build_arguments(TRLSFTConfig, trl_fields(cfg, runtime))
    common.join_deepspeed(args, runtime)

    # 2. model, processor, and the records with reasoning (rows built, images decoded, on access)
    model, processor = common.load_model_and_processor(cfg, bf16=cfg.bf16, freeze_vision=cfg.freeze_vision)
    examples = dataset.build(cfg.train_uri, _row, required=("question", "reasoning"))

    # 3. train (tracked by the main process), save once, close the world
    tags = {"r1ov.train_uri": cfg.train_uri, "r1ov.base_model": cfg.model_name_or_path}
    with tracking.stage_run(cfg.tracking, cfg.track and runtime.is_main, "sft", tags) as run_id:
        trainer = checkpoints.resumable(SFTTrainer)(
            model=model, args=args, train_dataset=examples.rows, processing_class=processor
        )
        common.use_log_callback(trainer, "sft")
        result, resumed_from = checkpoints.train(trainer, cfg)
        reasoning_tokens = _reasoning_tokens(processor, examples, cfg) if runtime.is_main else None
        summary = common.summarize(
            "sft", cfg, trainer, result, examples, runtime, started, run_id, resumed_from_step=resumed_from,
            final_loss=common.last_logged(trainer.state.log_history, "loss"),
            num_tokens=common.last_logged(trainer.state.log_history, "num_tokens"),  # tokens trained on
            reasoning_tokens=reasoning_tokens,
        )  # fmt: skip
        tracking.log_metrics({"train_records": len(examples.rows), "skipped_records": examples.skipped_total})
        return common.finish(trainer, processor, cfg, runtime, summary)


def run(cfg: SFTConfig) -> dict[str, Any]:
    """The SFT stage: launch ``train`` as configured (local torchrun, PyTorchJob or TrainJob)."""
    from r1ov.train.launch import launch

    return launch("sft", cfg)
