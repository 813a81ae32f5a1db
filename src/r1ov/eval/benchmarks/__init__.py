"""Benchmark loaders by name: each reads a benchmark in its published layout into records.

A loader is ``(uri) -> list[record]``; items that cannot be scored (no question, no
ground truth) come back with ``reject_reason`` set, so :func:`load` can report them
instead of dropping them. Benchmark fields (category, level, subject, question type,
WeMath keys) live in each record's ``metadata`` JSON; ``category`` and ``level`` drive the
per-group metrics, ``options_in_question`` tells the prompt not to list the choices twice,
and ``text_only`` marks items asked without an image.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from r1ov.config import BenchmarkSpec
from r1ov.data.records import reject
from r1ov.eval.benchmarks.mathverse import load_mathverse
from r1ov.eval.benchmarks.mathvision import load_mathvision
from r1ov.eval.benchmarks.mathvista import load_mathvista
from r1ov.eval.benchmarks.r1ov_bench import load_r1ov_bench
from r1ov.eval.benchmarks.records import load_records
from r1ov.eval.benchmarks.wemath import load_wemath

log = logging.getLogger(__name__)

Loader = Callable[[str], list[dict[str, Any]]]

LOADERS: dict[str, Loader] = {
    "records": load_records,
    "synthetic": load_records,
    "clevr": load_records,
    "r1ov-bench": load_r1ov_bench,
    "mathvision": load_mathvision,
    "mathverse": load_mathverse,
    "mathvista": load_mathvista,
    "wemath": load_wemath,
}


@dataclass
class Loaded:
    """One benchmark's items: ``records`` to evaluate, ``rejected`` with their reasons."""

    label: str
    records: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)


def load(spec: BenchmarkSpec) -> Loaded:
    """Load ``spec`` with its loader; ``limit`` keeps the first N items of the file."""
    if spec.name not in LOADERS:
        raise KeyError(f"unknown benchmark {spec.name!r}; expected one of {sorted(LOADERS)}")
    rows = LOADERS[spec.name](spec.uri)
    if spec.limit is not None:
        rows = rows[: spec.limit]
    loaded = Loaded(label=spec.label or spec.name)
    seen: set[str] = set()
    for row in rows:
        if not row.get("reject_reason") and row["id"] in seen:
            reject(row, f"duplicate_id: {row['id']} appears more than once in {spec.uri}")
        seen.add(row["id"])
        (loaded.rejected if row.get("reject_reason") else loaded.records).append(row)
    log.info("%s: %d items from %s (%d set aside)", loaded.label, len(loaded.records), spec.uri, len(loaded.rejected))
    return loaded
