"""Evaluation throughput, in two parts.

Scoring (``r1ov eval score``): 10K predictions over items read from real-layout benchmark
files, our answer core against math-verify on every item (see ``r1ov.bench.scoring``).

Generation: batched transformers generation (batch 8) against batch 1, same tiny model,
items and token limit. Scoring is included; generation dominates.

Both ratios come from one run; the raw rates move with whatever else shares the machine
(2 cores here, shared with other jobs while measured), the ratios much less.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from r1ov.bench import scoring
from r1ov.bench.report import Result, timed
from r1ov.config import BenchmarkSpec, EvalConfig, SynthConfig
from r1ov.eval import run as evaluate
from r1ov.synthetic import run as synthesize
from r1ov.testing.tiny_model import build_tiny_model

ITEMS = 32


def _items_per_second(model: Path, bench: str, out: Path, batch_size: int) -> float:
    config = EvalConfig(
        model_name_or_path=str(model),
        benchmarks=[BenchmarkSpec(name="synthetic", uri=bench)],
        output_dir=str(out),
        backend="hf",
        max_new_tokens=32,
        max_pixels=12544,
        batch_size=batch_size,
        bootstrap_samples=0,
    )
    return ITEMS / timed(lambda: evaluate(config))


def run() -> list[Result]:
    return scoring.run() + _generation()


def _generation() -> list[Result]:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        model = build_tiny_model(tmp / "model")
        bench = str(tmp / "bench")
        synthesize(SynthConfig(output_uri=bench, n=ITEMS, seed=3, kinds=["chart", "table", "clevr", "math"]))
        _items_per_second(model, bench, tmp / "warm", 8)  # first load pays imports and caches
        single = _items_per_second(model, bench, tmp / "b1", 1)
        batched = _items_per_second(model, bench, tmp / "b8", 8)
    return [Result.compare("eval items/s, hf backend, batch 8", batched, single, "items/s", 2, "batching pays off")]
