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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class Result:
    """One row of a benchmark.

    ``goal`` is the number ``ratio`` must reach, or ``value`` where there is no baseline
    (``baseline`` and ``ratio`` are then ``None``); ``None`` marks a row kept for context (the
    machine's load, a cost broken out). "Reach" means at least, or at most where
    ``lower_is_better`` (memory, bytes, a slowdown); the name then says so, so the JSON reads
    right on its own. ``note`` is the goal's reason, shown in the ``.md`` only.
    """

    name: str
    value: float
    unit: str
    baseline: float | None
    ratio: float | None
    goal: float | None
    lower_is_better: bool = False
    note: str = ""

    @classmethod
    def compare(
        cls,
        name: str,
        value: float,
        baseline: float,
        unit: str,
        goal: float | None,
        note: str = "",
        lower_is_better: bool = False,
    ) -> Result:
        """A value against a baseline measured in the same run."""
        ratio = round(value / baseline, 3) if baseline else 0.0
        return cls(name, round(value, 4), unit, round(baseline, 4), ratio, goal, lower_is_better, note)

    @classmethod
    def absolute(
        cls, name: str, value: float, unit: str, goal: float | None, note: str = "", lower_is_better: bool = False
    ) -> Result:
        """A value with no baseline (a budget, a share): the goal applies to the value itself."""
        return cls(name, round(value, 4), unit, None, None, goal, lower_is_better, note)

    @property
    def title(self) -> str:
        return f"{self.name} (lower is better)" if self.lower_is_better else self.name

    def met(self) -> bool | None:
        """Whether the goal is reached (``None``: the row has no goal)."""
        if self.goal is None:
            return None
        measured = self.value if self.ratio is None else self.ratio
        return measured <= self.goal if self.lower_is_better else measured >= self.goal

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.title,
            "value": self.value,
            "unit": self.unit,
            "baseline": self.baseline,
            "ratio": self.ratio,
            "goal": self.goal,
        }

    def goal_text(self) -> str:
        if self.goal is None:
            return f"none ({self.note})" if self.note else "none"
        measured = "value" if self.ratio is None else "ratio"
        text = f"{measured} {'<=' if self.lower_is_better else '>='} {self.goal:g}"
        return f"{text}: {self.note}" if self.note else text


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
        "results": [r.as_json() for r in results],
    }
    (out / f"{name}.json").write_text(json.dumps(document, indent=2) + "\n")
    lines = [
        f"# Benchmark: {name}",
        "",
        f"Machine: {document['machine']}. Date: {document['date']}.",
        "",
        "| name | value | unit | baseline | ratio | goal | met |",
        "|---|---:|---|---:|---:|---|---|",
        *(
            f"| {r.title} | {r.value} | {r.unit} | {_cell(r.baseline)} | {_cell(r.ratio)} | {r.goal_text()} | "
            f"{_MET[r.met()]} |"
            for r in results
        ),
    ]
    if notes:
        lines += ["", notes.strip()]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    return out / f"{name}.json"


_MET = {True: "yes", False: "**no**", None: "-"}


def _cell(number: float | None) -> str:
    return "-" if number is None else str(number)
