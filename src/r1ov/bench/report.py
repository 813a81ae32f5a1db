"""Benchmark results: ``docs/benchmarks/<name>.json`` and a readable ``.md`` beside it.

Every result is a ratio against a baseline measured in the same run on the same machine, so
numbers from different machines are compared by their ratios, never their raw values.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class Result:
    name: str
    value: float
    unit: str
    baseline: float
    ratio: float
    goal: str

    @classmethod
    def compare(cls, name: str, value: float, baseline: float, unit: str, goal: str) -> Result:
        return cls(
            name, round(value, 4), unit, round(baseline, 4), round(value / baseline, 3) if baseline else 0.0, goal
        )


def machine() -> str:
    return f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def best_of(repeats: int, run: Callable[[], float]) -> float:
    """Median of ``repeats`` measurements (``run`` returns one measurement)."""
    return statistics.median(run() for _ in range(repeats))


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def write(name: str, results: list[Result], out_dir: str | Path = "docs/benchmarks", notes: str = "") -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    document = {
        "machine": machine(),
        "date": datetime.now(UTC).date().isoformat(),
        "results": [asdict(r) for r in results],
    }
    (out / f"{name}.json").write_text(json.dumps(document, indent=2) + "\n")
    lines = [
        f"# Benchmark: {name}",
        "",
        f"Machine: {document['machine']}. Date: {document['date']}.",
        "",
        "| name | value | unit | baseline | ratio | goal |",
        "|---|---:|---|---:|---:|---|",
        *(f"| {r.name} | {r.value} | {r.unit} | {r.baseline} | {r.ratio} | {r.goal} |" for r in results),
    ]
    if notes:
        lines += ["", notes.strip()]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    return out / f"{name}.json"
