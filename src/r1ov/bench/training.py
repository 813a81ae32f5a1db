"""Training throughput of our SFT and GRPO stages against a plain TRL script, in the same run.

``python -m r1ov.bench train`` writes ``sft.json`` and ``grpo.json``. Each compares steps per
CPU-second of the training loop (``Trainer.train``: model loading and data preparation excluded;
CPU time because this machine's cores are shared and wall time measures the neighbours)
of the stage as the pipeline runs it (``r1ov.train.sft.run`` / ``grpo.run``: config, launcher,
durable-checkpoint and SIGTERM callbacks, log callback, summary) with a plain ``SFTTrainer`` /
``GRPOTrainer`` script on the same tiny model, records, settings and seed (TRL's defaults are
overridden where the stage's differ: activation checkpointing, fp32 on CPU). Runs alternate, each in a
fresh interpreter with one compute thread (two threads on shared cores spin-wait for each other and
that CPU time is noise), and the median of each is reported, so both see the same machine load. The
stage's own per-run costs stay in: its checkpoint at the last step (kept for resume if the final
upload fails), the durable-checkpoint and SIGTERM callbacks and its log callback. The load average
at the start of each suite is reported beside the ratio. The goal: the stage costs at most 5%
(ratio >= 0.95).
"""

from __future__ import annotations

import os
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from r1ov.bench.report import Result
from r1ov.config import DistributedConfig, GRPOConfig, SFTConfig, SynthConfig

# Long enough that a run's fixed costs (its final checkpoint, kept for resume) weigh as they do in
# a short real run, a few percent, rather than deciding the ratio as they do over a 0.7 s loop;
# short enough that the suite stays at a few minutes.
SFT_STEPS = 60
GRPO_STEPS = 30
REPEATS = 3


def _sft_data(tmp: Path) -> str:
    """Synthetic records with a reasoning chain built from their answer (no teacher needed)."""
    from r1ov.data import records
    from r1ov.scoring.reasoning import compose
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
        dataloader_num_workers=0, disable_tqdm=True, activation_checkpointing=cfg.gradient_checkpointing, bf16=False,
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
        bf16=False,
    )  # fmt: skip
    trainer = GRPOTrainer(
        model=model, reward_funcs=rewards.get_rewards(cfg.rewards), args=args,
        train_dataset=common.to_dataset(examples.rows), processing_class=processor,
    )  # fmt: skip
    return float(trainer.train().metrics["train_steps_per_second"])


# --------------------------------------------------------------------------- runs


def _measure(kind: str, stage: str, cfg: Any) -> float:
    """steps per CPU-second of one run in a fresh interpreter: runs in one process speed each other
    up or down (allocator and kernel caches, garbage left by the previous trainer), whichever goes second."""
    return _measure_rates(kind, stage, cfg)["STEPS_PER_S"]


def _measure_rates(kind: str, stage: str, cfg: Any, env: dict[str, str] | None = None) -> dict[str, float]:
    """One run in a fresh interpreter (with ``env`` added): STEPS_PER_S per CPU-second and
    WALL_STEPS_PER_S per second of the clock, over the training loop."""
    import json
    import subprocess
    import sys

    config_file = Path(cfg.output_dir).with_suffix(".json")
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(cfg.model_dump_json())
    # One compute thread on both sides: with two, a thread whose partner lost its core to another
    # program spins in OpenMP's wait loop, and that burnt CPU time, not the training, decided the ratio.
    env = {**os.environ, **(env or {}), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "r1ov.bench.training", kind, stage, str(config_file)],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    rates = {
        key: json.loads(value)
        for line in done.stdout.splitlines()
        for key, _, value in [line.partition(" ")]
        if key in ("STEPS_PER_S", "WALL_STEPS_PER_S")
    }
    if done.returncode != 0 or len(rates) != 2:
        raise RuntimeError(f"{kind} {stage} run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return rates


def _alternate(stage: str, config: Callable[[Path], Any], tmp: Path) -> tuple[float, float]:
    """Medians of REPEATS alternating runs, each in its own process with a fresh output directory."""
    ours, plain = [], []
    for i in range(REPEATS):
        first, second = ("plain", "ours") if i % 2 == 0 else ("ours", "plain")  # neither always goes first
        for kind in (first, second):
            value = _measure(kind, stage, config(tmp / f"{kind}-{i}"))
            (ours if kind == "ours" else plain).append(value)
    return statistics.median(ours), statistics.median(plain)


def _load(load: float) -> Result:
    """The machine's load when the suite started: above the core count, CPU time too is inflated
    (shared caches and memory bandwidth), though both sides of the ratio see the same."""
    return Result.compare(
        "machine load average (1 min) when the suite started, vs cores", load, os.cpu_count() or 1, "processes",
        None, "above 1 the cores were shared with other work",
    )  # fmt: skip


def _stage_suite(
    stage: str, data: Callable[[Path], str], config: Callable[[Path, str, Path], Any], title: str
) -> list[Result]:
    """Our ``stage`` against plain TRL on a fresh tiny model and ``data``, with the machine's load."""
    from r1ov.testing.tiny_model import build_tiny_model

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        model, records = build_tiny_model(tmp / "model"), data(tmp)
        ours, plain = _alternate(stage, lambda out: config(model, records, out), tmp)
    return [Result.compare(title, ours, plain, "steps per CPU-second", 0.95), _load(load)]


def sft() -> list[Result]:
    title = f"SFT stage steps/s vs plain TRL SFTTrainer ({SFT_STEPS} steps, tiny model, 1 process)"
    return _stage_suite("sft", _sft_data, _sft_config, title)


def grpo() -> list[Result]:
    title = f"GRPO stage steps/s vs plain TRL GRPOTrainer ({GRPO_STEPS} steps, hf generation, tiny model)"
    return _stage_suite("grpo", _grpo_data, _grpo_config, title)


# ``python -m r1ov.bench train`` runs both and writes one file each.
SUITES = {"sft": sft, "grpo": grpo}


# --------------------------------------------------------------------------- time to first step

# The sizes: data loading must not grow with the dataset (r1ov.train.dataset).
FIRST_STEP_ROWS = (2_000, 20_000)
# One run's CPU time to its first step varies by about 0.8 s of ~2.5 s between identical runs here
# (imports and the collector's pass before training), so the median needs more runs than the
# throughput suites'.
FIRST_STEP_REPEATS = 7


def _first_step_data(tmp: Path, n: int) -> str:
    """``n`` SFT records as the filter stage writes them (1000-row shards): 64 distinct noisy 64x64
    PNGs (~12 KB each, so the bytes a rank copies grow with the rows), a question and a reasoning chain."""
    import numpy as np
    from PIL import Image

    from r1ov.data import imaging, records
    from r1ov.scoring.reasoning import compose

    rng = np.random.default_rng(0)
    images = [imaging.to_png(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))) for _ in range(64)]
    rows = []
    for i in range(n):
        row = records.new_record(source="bench/first-step", question=f"How many cubes are in scene {i}?",
                                 image_type="clevr", image=images[i % len(images)], answer=str(i % 5))  # fmt: skip
        row["reasoning"] = compose(f"I count {i % 5} cubes in scene {i}.", str(i % 5))
        rows.append(row)
    out = str(tmp / f"rows-{n}")
    records.write_dataset(out, rows)
    return out


def _first_step_child(config_json: str) -> None:
    """One run in this interpreter: ``sft.run`` until its first optimizer step begins. Prints
    ``FIRST_STEP {"cpu_s", "wall_s"}`` from just before the stage starts (libraries already imported,
    so the fixed part is what a run pays itself: model, processor, data, trainer)."""
    import json
    import time

    from transformers import Trainer

    from r1ov.train import sft as sft_stage

    cfg = SFTConfig.model_validate_json(Path(config_json).read_text())
    seen: list[dict[str, float]] = []
    original = Trainer.training_step
    started_cpu, started_wall = time.process_time(), time.monotonic()

    def first(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not seen:
            seen.append({"cpu_s": time.process_time() - started_cpu, "wall_s": time.monotonic() - started_wall})
        return original(self, *args, **kwargs)

    Trainer.training_step = first  # type: ignore[method-assign]
    sft_stage.run(cfg)
    print(f"FIRST_STEP {json.dumps(seen[0])}")


def _first_step_measure(cfg: SFTConfig) -> dict[str, float]:
    import json
    import subprocess
    import sys

    config_file = Path(cfg.output_dir).with_suffix(".json")
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(cfg.model_dump_json())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    code = f"from r1ov.bench.training import _first_step_child; _first_step_child({str(config_file)!r})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("FIRST_STEP ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"first-step run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].split(" ", 1)[1])


def first_step(rows: tuple[int, int] = FIRST_STEP_ROWS, repeats: int = FIRST_STEP_REPEATS) -> list[Result]:
    """Time from the SFT stage's start to its first step, on a dataset 10x larger than the baseline's.

    Each run is a fresh interpreter (one compute thread), small and large alternating, medians of
    ``repeats``; CPU seconds decide the ratio (the cores are shared), wall seconds are shown beside it.
    """
    from r1ov.testing.tiny_model import build_tiny_model

    small, large = rows
    load = os.getloadavg()[0]
    times: dict[int, list[dict[str, float]]] = {small: [], large: []}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        model = build_tiny_model(tmp / "model")
        data = {n: _first_step_data(tmp, n) for n in rows}
        for i in range(repeats):
            for n in (small, large) if i % 2 == 0 else (large, small):
                cfg = _sft_config(model, data[n], tmp / f"out-{n}-{i}").model_copy(update={"max_steps": 1})
                times[n].append(_first_step_measure(cfg))
    cpu = {n: statistics.median(t["cpu_s"] for t in times[n]) for n in rows}
    wall = {n: statistics.median(t["wall_s"] for t in times[n]) for n in rows}
    return [
        Result.compare(f"SFT time to first step, {large:,} rows vs {small:,} rows", cpu[large], cpu[small],
                       "CPU seconds", 1.2, f"medians of {repeats}; tiny model, 1 process", lower_is_better=True),
        Result.compare(f"SFT wall time to first step, {large:,} rows vs {small:,} rows", wall[large], wall[small],
                       "seconds", None, "context: wall time includes the neighbours' load", lower_is_better=True),
        _load(load),
    ]  # fmt: skip


SUITES["first_step"] = first_step  # writes first_step.json


def _timed_training_loop() -> list[tuple[float, int, float]]:
    """Record (CPU seconds, steps, wall seconds) of every ``Trainer.train`` call in this process.

    CPU time of the training loop, not wall time: this machine's cores are shared, and another
    program's load would otherwise decide the ratio. Both sides go through ``Trainer.train``.
    """
    import time

    from transformers import Trainer

    calls: list[tuple[float, int, float]] = []
    original = Trainer.train

    def train(self: Any, *args: Any, **kwargs: Any) -> Any:
        started, clock = time.process_time(), time.monotonic()
        result = original(self, *args, **kwargs)
        calls.append((time.process_time() - started, self.state.global_step, time.monotonic() - clock))
        return result

    Trainer.train = train  # type: ignore[method-assign]
    return calls


if __name__ == "__main__":  # one measurement: python -m r1ov.bench.training {ours,plain} {sft,grpo} CONFIG_JSON
    import json
    import sys

    kind, stage, path = sys.argv[1:4]
    config_class = SFTConfig if stage == "sft" else GRPOConfig
    run_config = config_class.model_validate_json(Path(path).read_text())
    loops = _timed_training_loop()
    if kind == "ours":
        _stage_steps_per_second(stage, run_config)
    else:
        (_plain_sft_steps_per_second if stage == "sft" else _plain_grpo_steps_per_second)(run_config)
    ((cpu_s, steps, wall_s),) = loops
    print(f"STEPS_PER_S {json.dumps(steps / cpu_s)}")
    print(f"WALL_STEPS_PER_S {json.dumps(steps / wall_s)}")
