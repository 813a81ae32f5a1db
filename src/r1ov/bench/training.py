"""Training throughput: SFT on two torch.distributed processes with DeepSpeed ZeRO-2 (gloo)
against one process without DeepSpeed, same tiny model, data, steps and per-device batch.

On a GPU node the two-process run should approach twice the samples/s; on a CPU machine the
processes share the same cores, so the ratio mostly shows the overhead of the distributed path.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from r1ov.bench.report import Result
from r1ov.config import DistributedConfig, SFTConfig, SynthConfig
from r1ov.synthetic import run as synthesize
from r1ov.testing.tiny_model import build_tiny_model
from r1ov.train.sft import run as sft

STEPS = 12


def _train_data(tmp: Path) -> str:
    """Synthetic records with a reasoning chain built from their answer (no teacher needed)."""
    from r1ov import records
    from r1ov.reasoning import compose

    raw, out = str(tmp / "raw"), str(tmp / "train")
    synthesize(SynthConfig(output_uri=raw, n=48, seed=0))
    rows = records.read_records(raw)
    for row in rows:
        row["reasoning"] = compose(f"The question asks: {row['question']}", row["answer"])
    records.write_dataset(out, rows)
    return out


def _samples_per_second(model: Path, data: str, out: Path, dist: DistributedConfig) -> float:
    config = SFTConfig(
        model_name_or_path=str(model),
        train_uri=data,
        output_dir=str(out),
        max_steps=STEPS,
        gradient_accumulation_steps=1,
        max_length=512,
        max_pixels=12544,
        bf16=False,
        gradient_checkpointing=False,
        track=False,
        distributed=dist,
    )
    return float(sft(config)["train_samples_per_second"])


def run() -> list[Result]:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        model, data = build_tiny_model(tmp / "model"), _train_data(tmp)
        single = _samples_per_second(model, data, tmp / "single", DistributedConfig(deepspeed="none"))
        two = _samples_per_second(
            model, data, tmp / "two", DistributedConfig(nnodes=2, nproc_per_node=1, deepspeed="zero2")
        )
    return [
        Result.compare(
            "SFT samples/s, 2 nodes x 1 process, ZeRO-2 (gloo)",
            two,
            single,
            "samples/s",
            "ratio >= 1.6 on 2 GPUs; ~1 or below on a CPU machine where processes share cores",
        )
    ]
