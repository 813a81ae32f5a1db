"""Scoring predictions and summarising them into named metrics with bootstrap intervals.

An item is correct when its extracted answer matches the ground truth under
``answers.answers_match`` (the one equivalence test the filter and the GRPO reward use too).
Failed generations count as wrong. Metric names are flat and slash-separated::

    overall/accuracy  overall/accuracy_ci95_low  overall/format_rate  overall/macro_accuracy
    <benchmark>/accuracy  <benchmark>/n  <benchmark>/category/<c>/accuracy  <benchmark>/level/<l>/accuracy
    <benchmark>/four_dim/score_strict ...   (WeMath's IK/IG/CM/RM, when the rows carry WeMath keys)
"""

from __future__ import annotations

import math
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

from r1ov.eval.benchmarks.wemath import four_dimensional
from r1ov.eval.extract import extract
from r1ov.scoring.answers import answer_spec, answers_match


def score_row(row: dict[str, Any]) -> dict[str, Any]:
    """Fill ``extracted``, ``rule``, ``well_formed`` and ``correct`` on a prediction row."""
    found = extract(row.get("completion"), row.get("options"))
    matched = not row.get("error") and answers_match(
        found.answer, row.get("answer"), row.get("options"), **answer_spec(row)
    )
    row.update(
        extracted=found.answer,
        rule=found.rule if not row.get("error") else "failed",
        well_formed=found.well_formed,
        correct=bool(matched),
    )
    return row


def bootstrap_interval(correct: int, n: int, samples: int, seed: int, name: str = "") -> tuple[float, float]:
    """95% percentile-bootstrap interval of an accuracy of ``correct``/``n``.

    Resampling n items with replacement from a set with ``correct`` hits gives a hit count
    distributed Binomial(n, correct/n), so the bootstrap draws that count directly: the same
    distribution as index resampling, at O(samples) instead of O(samples * n).
    """
    if n == 0 or samples == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])
    means = rng.binomial(n, correct / n, size=samples) / n
    low, high = np.percentile(means, [2.5, 97.5])
    return (float(low), float(high))


def _group_stats(rows: list[dict[str, Any]]) -> dict[str, float]:
    n = len(rows)
    correct = sum(r["correct"] for r in rows)
    return {"n": n, "correct": correct, "accuracy": correct / n if n else float("nan")}


def _interval_stats(rows: list[dict[str, Any]], name: str, samples: int, seed: int) -> dict[str, Any]:
    stats = _group_stats(rows)
    stats["accuracy_ci95_low"], stats["accuracy_ci95_high"] = bootstrap_interval(
        stats["correct"], stats["n"], samples, seed, name
    )
    return stats


def _detail_stats(rows: list[dict[str, Any]], name: str, samples: int, seed: int) -> dict[str, Any]:
    stats = _group_stats(rows)
    low, high = bootstrap_interval(stats["correct"], stats["n"], samples, seed, name)
    n = stats["n"] or 1
    stats.update(
        accuracy_ci95_low=low,
        accuracy_ci95_high=high,
        format_rate=sum(bool(r["well_formed"]) for r in rows) / n,
        extraction_rate=sum(r["extracted"] is not None for r in rows) / n,
        failed=sum(bool(r.get("error")) for r in rows),
        truncated_rate=sum(r.get("finish_reason") == "length" for r in rows) / n,
    )
    return stats


def _by(rows: Iterable[dict[str, Any]], key: str) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row.get(key) not in (None, ""):
            groups[str(row[key])].append(row)
    return dict(sorted(groups.items()))


def summarize(rows: list[dict[str, Any]], bootstrap_samples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Metrics over scored rows: overall, per benchmark, per category and level, rule counts."""
    overall = _detail_stats(rows, "overall", bootstrap_samples, seed)
    benchmarks: dict[str, Any] = {}
    for label, group in _by(rows, "benchmark").items():
        stats = _detail_stats(group, label, bootstrap_samples, seed)
        stats["categories"] = {
            c: _interval_stats(g, f"{label}/category/{c}", bootstrap_samples, seed)
            for c, g in _by(group, "category").items()
        }
        stats["levels"] = {
            level: _interval_stats(g, f"{label}/level/{level}", bootstrap_samples, seed)
            for level, g in _by(group, "level").items()
        }
        stats["extra"] = four_dimensional(group)
        benchmarks[label] = stats
    accuracies = [b["accuracy"] for b in benchmarks.values()]
    overall["macro_accuracy"] = float(np.mean(accuracies)) if accuracies else float("nan")
    failures = Counter(str(r["error"]).split(":", 1)[0] for r in rows if r.get("error"))
    return {
        "metrics": flatten(overall, benchmarks),
        "overall": overall,
        "benchmarks": benchmarks,
        "rules": dict(sorted(Counter(r["rule"] for r in rows).items())),
        "failures": dict(sorted(failures.items())),
    }


def add_extractor_counts(summary: dict[str, Any], counts: dict[str, int] | None) -> None:
    """The LLM extractor's use (``llm_extract.fill``'s counts) in the summary and its metrics; None: it was off."""
    summary["extractor"] = counts
    for key, value in (counts or {}).items():
        summary["metrics"][f"extractor/{key}"] = float(value)


_TOP_LEVEL = (
    "accuracy",
    "accuracy_ci95_low",
    "accuracy_ci95_high",
    "n",
    "format_rate",
    "extraction_rate",
    "failed",
    "truncated_rate",
)


def flatten(overall: dict[str, Any], benchmarks: dict[str, Any]) -> dict[str, float]:
    """The flat ``name -> value`` view logged to MLflow and read by the promotion gate.

    Undefined values (NaN: no items, or no bootstrap) are left out, so a consumer sees a
    missing metric, never a number that is not one.
    """
    flat: dict[str, float] = {f"overall/{k}": float(overall[k]) for k in (*_TOP_LEVEL, "macro_accuracy")}
    for label, stats in benchmarks.items():
        flat.update({f"{label}/{k}": float(stats[k]) for k in _TOP_LEVEL})
        flat.update({f"{label}/{k}": float(v) for k, v in stats.get("extra", {}).items()})
        for kind, groups in (("category", stats["categories"]), ("level", stats["levels"])):
            for name, group in groups.items():
                flat[f"{label}/{kind}/{name}/accuracy"] = float(group["accuracy"])
                flat[f"{label}/{kind}/{name}/n"] = float(group["n"])
                for bound in ("accuracy_ci95_low", "accuracy_ci95_high"):
                    flat[f"{label}/{kind}/{name}/{bound}"] = float(group.get(bound, float("nan")))
    return {k: v for k, v in flat.items() if math.isfinite(v)}
