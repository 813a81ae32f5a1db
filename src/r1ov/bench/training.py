"""Training throughput of our SFT and GRPO stages against a plain TRL script, in the same run.

``python -m r1ov.bench train`` writes ``sft.json`` and ``grpo.json``. Each compares steps/s of the
training loop (TRL's own ``train_steps_per_second``: model loading and data preparation excluded)
of the stage as the pipeline runs it (``r1ov.train.sft.run`` / ``grpo.run``: config, launcher,
durable-checkpoint and SIGTERM callbacks, log callback, summary) with a plain ``SFTTrainer`` /
``GRPOTrainer`` script on the same tiny model, records, settings and seed (TRL's defaults are
overridden where the stage's differ, e.g. activation checkpointing). Runs alternate and the median
of each is reported, so both see the same machine load. The goal: the stage costs at most 5%
(ratio >= 0.95). SFT also reports two torchrun nodes with ZeRO-2 against one process.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from r1ov.bench.report import Result
from r1ov.config import DistributedConfig, GRPOConfig, SFTConfig, SynthConfig

SFT_STEPS = 12
GRPO_STEPS = 6
REPEATS = 3


def _sft_data(tmp: Path) -> str:
    """Synthetic records with a reasoning chain built from their answer (no teacher needed)."""
    from r1ov import records
    from r1ov.reasoning import compose
    from r1ov.synthetic import run as synthesize

    raw, out = str(tmp / "raw"), str(tmp / "sft-data")
    synthesize(SynthConfig(output_uri=raw, n=48, seed=0))
    rows = records.read_records(raw)
    for row in rows:
        row["reasoning"] = compose(f"The question asks: {row['question']}", row["answer"])
    records.write_dataset(out, rows)
    return out


def _grpo_data(tmp: Path) -> str:
    from r1ov.synthetic import run as synthesize

    out = str(tmp / "clevr")
    synthesize(SynthConfig(output_uri=out, n=24, seed=1, kinds=["clevr"]))
    return out


def _sft_config(model: Path, data: str, out: Path, dist: DistributedConfig | None = None) -> SFTConfig:
    return SFTConfig(
        model_name_or_path=str(model), train_uri=data, output_dir=str(out), max_steps=SFT_STEPS,
        per_device_train_batch_size=2, gradient_accumulation_steps=1, max_length=512, max_pixels=12544,
        bf16=False, gradient_checkpointing=False, track=False,
        distributed=dist or DistributedConfig(deepspeed="none"),
    )  # fmt: skip


def _grpo_config(model: Path, data: str, out: Path) -> GRPOConfig:
    return GRPOConfig(
        model_name_or_path=str(model), train_uri=data, output_dir=str(out), generation="hf", max_steps=GRPO_STEPS,
        num_generations=2, per_device_train_batch_size=2, gradient_accumulation_steps=1, max_completion_length=16,
        max_prompt_length=512, learning_rate=1e-3, max_pixels=12544, bf16=False, gradient_checkpointing=False,
        track=False, distributed=DistributedConfig(deepspeed="none"),
    )  # fmt: skip


# --------------------------------------------------------------------------- our stages


def _stage_steps_per_second(stage: str, cfg: Any) -> float:
    from r1ov.train import grpo, sft

    summary = (sft if stage == "sft" else grpo).run(cfg)
    return summary["steps"] / summary["train_runtime_s"]


# --------------------------------------------------------------------------- plain TRL


def _plain_model(cfg: Any) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(
        cfg.model_name_or_path, size={"shortest_edge": cfg.min_pixels, "longest_edge": cfg.max_pixels}
    )
    model = AutoModelForImageTextToText.from_pretrained(cfg.model_name_or_path, dtype=torch.float32)
    return model, processor


def _plain_sft_steps_per_second(cfg: SFTConfig) -> float:
    """What a user would write with TRL alone, on the same rows."""
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    from r1ov.train import common

    examples = common.load_examples(
        cfg.train_uri,
        lambda record, image: {"messages": common.sft_messages(record), "images": [common.image_cell(record)]},
        required=("question", "reasoning"),
    )
    model, processor = _plain_model(cfg)
    args = TRLSFTConfig(
        output_dir=cfg.output_dir, max_steps=cfg.max_steps, per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=1, learning_rate=cfg.learning_rate, lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_ratio, max_length=cfg.max_length, assistant_only_loss=cfg.assistant_only_loss,
        seed=cfg.seed, logging_steps=cfg.logging_steps, use_cpu=True, save_strategy="no", report_to=[],
        dataloader_num_workers=0, disable_tqdm=True, activation_checkpointing=cfg.gradient_checkpointing,
    )  # fmt: skip
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=common.to_dataset(examples.rows), processing_class=processor
    )
    return float(trainer.train().metrics["train_steps_per_second"])


def _plain_grpo_steps_per_second(cfg: GRPOConfig) -> float:
    from trl import GRPOConfig as TRLGRPOConfig
    from trl import GRPOTrainer

    from r1ov.train import common, rewards

    def row(record: dict[str, Any], image: Any) -> dict[str, Any]:
        return {"prompt": common.prompt_messages(record), "images": [common.image_cell(record)],
                "answer": record["answer"], "options": record["options"] or []}  # fmt: skip

    examples = common.load_examples(cfg.train_uri, row, required=("question", "answer"))
    model, processor = _plain_model(cfg)
    args = TRLGRPOConfig(
        output_dir=cfg.output_dir, max_steps=cfg.max_steps, per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=1, learning_rate=cfg.learning_rate, num_generations=cfg.num_generations,
        beta=cfg.beta, max_completion_length=cfg.max_completion_length, temperature=cfg.temperature,
        seed=cfg.seed, logging_steps=cfg.logging_steps, use_cpu=True, use_vllm=False, save_strategy="no",
        report_to=[], dataloader_num_workers=0, disable_tqdm=True, activation_checkpointing=cfg.gradient_checkpointing,
    )  # fmt: skip
    trainer = GRPOTrainer(
        model=model, reward_funcs=rewards.get_rewards(cfg.rewards), args=args,
        train_dataset=common.to_dataset(examples.rows), processing_class=processor,
    )  # fmt: skip
    return float(trainer.train().metrics["train_steps_per_second"])


# --------------------------------------------------------------------------- runs


def _alternate(ours: Callable[[int], float], plain: Callable[[int], float]) -> tuple[float, float]:
    """Medians of REPEATS alternating runs (a fresh output directory each)."""
    a, b = [], []
    for i in range(REPEATS):
        b.append(plain(i))
        a.append(ours(i))
    return statistics.median(a), statistics.median(b)


def sft() -> list[Result]:
    from r1ov.testing.tiny_model import build_tiny_model
    from r1ov.train import sft as stage

    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        model, data = build_tiny_model(tmp / "model"), _sft_data(tmp)
        ours, plain = _alternate(
            lambda i: _stage_steps_per_second("sft", _sft_config(model, data, tmp / f"ours-{i}")),
            lambda i: _plain_sft_steps_per_second(_sft_config(model, data, tmp / f"plain-{i}")),
        )
        single = stage.run(_sft_config(model, data, tmp / "single"))["train_samples_per_second"]
        two = stage.run(
            _sft_config(model, data, tmp / "two", DistributedConfig(nnodes=2, nproc_per_node=1, deepspeed="zero2"))
        )["train_samples_per_second"]
    return [
        Result.compare(
            f"SFT stage steps/s vs plain TRL SFTTrainer ({SFT_STEPS} steps, tiny model, 1 process)",
            ours, plain, "steps/s", "ratio >= 0.95",
        ),
        Result.compare(
            "SFT samples/s, 2 nodes x 1 process, ZeRO-2 (gloo), vs 1 process",
            float(two), float(single), "samples/s",
            "ratio >= 1.6 on 2 GPUs; ~1 or below on a CPU machine where processes share cores",
        ),
    ]  # fmt: skip


def grpo() -> list[Result]:
    from r1ov.testing.tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        model, data = build_tiny_model(tmp / "model"), _grpo_data(tmp)
        ours, plain = _alternate(
            lambda i: _stage_steps_per_second("grpo", _grpo_config(model, data, tmp / f"ours-{i}")),
            lambda i: _plain_grpo_steps_per_second(_grpo_config(model, data, tmp / f"plain-{i}")),
        )
    return [
        Result.compare(
            f"GRPO stage steps/s vs plain TRL GRPOTrainer ({GRPO_STEPS} steps, hf generation, tiny model)",
            ours, plain, "steps/s", "ratio >= 0.95",
        )
    ]  # fmt: skip


# ``python -m r1ov.bench train`` runs both and writes one file each.
SUITES = {"sft": sft, "grpo": grpo}
