"""Scoring throughput: 10K predictions over items read from real-layout benchmark files.

Items: MathVista (HF parquet), MathVerse (testmini parquet, five versions), MathVision
(parquet), WeMath (testmini JSON) and R1-Onevision-Bench (TSV), written in their published
layouts and read by our loaders; free-form golds vary per copy (integers, decimals, LaTeX
fractions and roots) so no answer repeats across the set. Responses mix what models write:
tagged letters, ``(X) text``, option text, units, signs, LaTeX, boxed answers, hedges, no
tags, with a think block of a realistic length (~1-3K characters).

Ours: extraction, then the answer core (exact paths first, math-verify only for LaTeX the
exact paths cannot decide). Baseline: the same extraction, then every item through
math-verify (``parse`` both sides, ``verify``), as a naive scorer does.

A second set puts the same items behind real-style responses (``r1ov.bench.real_style``:
prose endings, bare answers, LaTeX in prose, long step-by-step solutions, Chinese, hedges),
where extraction does most of the work; it is measured the same way. On its first 1,000
items the verdicts are scored again with four processes keeping every core busy: the
symbolic budget counts CPU time, so they must be identical.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from r1ov.bench import real_style
from r1ov.bench.report import Result, timed
from r1ov.config import BenchmarkSpec
from r1ov.data.records import metadata
from r1ov.eval import benchmarks
from r1ov.eval.extract import extract
from r1ov.eval.score import score_row
from r1ov.scoring import symbolic
from r1ov.testing import layouts

ITEMS = 10_000
REAL_STYLE_ITEMS = 5_000
# The naive path runs math-verify on every item (~100x slower): its rate comes from the
# first items of the same set, so the whole benchmark stays within two minutes.
NAIVE_SAMPLE = 1_000
LOAD_SAMPLE = 1_000
_WORDS = [
    "the",
    "figure",
    "shows",
    "a",
    "triangle",
    "with",
    "sides",
    "so",
    "we",
    "compute",
    "the",
    "area",
    "then",
    "compare",
    "each",
    "option",
    "carefully",
]


def _vary_mathvista(rows: list[dict[str, Any]], copy_of: dict[str, int]) -> None:
    for row in rows:
        k = copy_of[row["pid"]]
        if row["answer_type"] == "integer":
            row["answer"] = str(int(row["answer"]) + k * (1 if int(row["answer"]) >= 0 else -1))
        elif row["answer_type"] == "float":
            row["answer"] = f"{float(row['answer']) + k / 10:.{int(row['precision'])}f}"


def _vary_mathvision(rows: list[dict[str, Any]]) -> None:
    for i, row in enumerate(rows):
        k = i // 5 + 2
        if row["answer"] == "12":
            row["answer"] = str(10 + k)
        elif row["answer"] == "-\\frac{1}{2}":
            row["answer"] = f"-\\frac{{1}}{{{k}}}"
        elif row["answer"].startswith("\\frac{\\sqrt"):
            row["answer"] = f"\\frac{{\\sqrt{{{k}}}}}{{2}}"


def write_files(root: Path, items: int = ITEMS) -> list[BenchmarkSpec]:
    """The five benchmarks in their layouts, about ``items`` items together."""

    def copies(per_10k: int) -> int:
        return max(1, round(per_10k * items / 10_000))

    mathvista = layouts.mathvista_rows(copies(300))
    _vary_mathvista(mathvista, {r["pid"]: (int(r["pid"]) - 1) // 10 for r in mathvista})
    (root / "mathvista" / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(mathvista), root / "mathvista" / "data" / "testmini-00000-of-00001.parquet")
    mathvision = layouts.mathvision_rows(copies(400))
    _vary_mathvision(mathvision)
    (root / "mathvision" / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(mathvision), root / "mathvision" / "data" / "test-00000-of-00001.parquet")
    layouts.write_mathverse_parquet(root / "mathverse", scale=copies(134))
    layouts.write_wemath_json(root / "wemath", scale=copies(250))
    layouts.write_r1ov_bench_tsv(root / "bench", scale=copies(200))
    return [
        BenchmarkSpec(name="mathvista", uri=str(root / "mathvista" / "data")),
        BenchmarkSpec(name="mathvision", uri=str(root / "mathvision" / "data")),
        BenchmarkSpec(name="mathverse", uri=str(root / "mathverse" / "testmini.parquet")),
        BenchmarkSpec(name="wemath", uri=str(root / "wemath" / "testmini.json")),
        BenchmarkSpec(name="r1ov-bench", uri=str(root / "bench" / "R1-Onevision-Bench.tsv")),
    ]


def _think(rng: random.Random) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(200, 500)))


def _negated(value: str) -> str:
    return value[1:] if value.startswith("-") else f"-{value}"


def response(record: dict[str, Any], rng: random.Random) -> str:
    """One model-like response to ``record``: right or wrong, in one of the styles models use."""
    options, gold = list(record.get("options") or []), str(record["answer"])
    think = _think(rng)
    style = rng.randrange(7)
    if options:
        letters = [chr(65 + i) for i in range(len(options))]
        letter = gold if gold in letters else letters[options.index(gold)] if gold in options else "A"
        text = options[letters.index(letter)]
        other = letters[(letters.index(letter) + 1) % len(letters)]
        answer = [letter, f"({letter}) {text}", text, other, None, "A or B", f"\\boxed{{{letter}}}"][style]
        if answer is None:
            return f"{think}\nSo the answer is ({letter})."
        return f"<think>{think}</think>\n<answer>{answer}</answer>"
    latex = "\\" in gold
    choices = [
        gold,
        f"{gold} cm" if not latex else f"${gold}$",
        _negated(gold),
        gold.replace("\\frac{\\sqrt", "\\dfrac{\\sqrt") if latex else f"{gold}.0" if "." not in gold else gold,
        None,
        f"{gold}1" if not latex else gold.replace("{2}", "{3}"),
        f"\\boxed{{{gold}}}",
    ]
    answer = choices[style]
    if answer is None:
        return f"{think}\nThe answer is {gold}."
    return f"<think>{think}</think>\n<answer>{answer}</answer>"


def _rows(
    specs: list[BenchmarkSpec], items: int = ITEMS, respond: Callable[[dict[str, Any], random.Random], str] = response
) -> list[dict[str, Any]]:
    rng = random.Random(0)
    rows = []
    for spec in specs:
        loaded = benchmarks.load(spec)
        for record in loaded.records:
            meta = metadata(record)
            rows.append(
                {
                    "id": record["id"],
                    "benchmark": spec.name,
                    "options": list(record.get("options") or []),
                    "answer": record["answer"],
                    "completion": respond(record, rng),
                    "category": meta.get("category"),
                    "level": meta.get("level"),
                    "metadata": record["metadata"],
                }
            )
    return rows[:items]


def naive_correct(row: dict[str, Any]) -> bool:
    """Every item through math-verify, as a naive scorer does (its own signal timeouts, main thread)."""
    from math_verify import parse, verify

    found = extract(row["completion"], row["options"])
    if found.answer is None:
        return False
    gold = parse(f"${row['answer']}$")
    predicted = parse(f"${found.answer}$")
    return bool(gold and predicted and verify(gold, predicted))


def run(items: int = ITEMS, real_style_items: int = REAL_STYLE_ITEMS) -> list[Result]:
    with tempfile.TemporaryDirectory() as name:
        specs = write_files(Path(name), max(items, real_style_items))
        rows = _rows(specs, items)
        real_rows = _rows(specs, real_style_items, real_style.response)
    naive_correct(rows[0])  # both paths start with math-verify and sympy imported
    symbolic.warm_up()
    same = verdicts_under_load(real_rows[:LOAD_SAMPLE])
    return [
        *_measure(rows, f"eval score items/s ({len(rows)} predictions, 5 benchmarks)", 1000),
        *_measure(
            real_rows,
            f"eval score items/s, real-style responses ({len(real_rows)}: prose, bare, LaTeX, long solutions)",
            2000,
        ),
        Result.absolute(
            f"verdicts identical at load 4 and load 0 (share of {min(len(real_rows), LOAD_SAMPLE)} real-style items)",
            same,
            "share",
            1.0,
            "the CPU-time budget makes verdicts independent of load",
        ),
    ]


def _busy(stop: Any) -> None:
    while not stop.is_set():
        sum(range(10_000))


def _verdicts(rows: list[dict[str, Any]]) -> list[bool]:
    symbolic.clear_caches()  # each pass parses afresh, as a new process would
    return [score_row(dict(r))["correct"] for r in rows]


def verdicts_under_load(rows: list[dict[str, Any]], workers: int = 4) -> float:
    """Share of ``rows`` whose verdict is the same scored alone and beside ``workers`` busy processes."""
    alone = _verdicts(rows)
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    busy = [context.Process(target=_busy, args=(stop,), daemon=True) for _ in range(workers)]
    for process in busy:
        process.start()
    try:
        loaded = _verdicts(rows)
    finally:
        stop.set()
        for process in busy:
            process.join(10)
    return sum(a == b for a, b in zip(alone, loaded, strict=True)) / max(1, len(rows))


def _measure(
    rows: list[dict[str, Any]], name: str, goal_items_s: float, naive_sample: int = NAIVE_SAMPLE
) -> list[Result]:
    """Items/s on ``rows`` (wall clock) and the same against naive math-verify on every item."""
    n = len(rows)
    ours_rows = [dict(r) for r in rows]
    cpu_start = time.process_time()
    ours_s = timed(lambda: [score_row(r) for r in ours_rows])
    ours_cpu_s = time.process_time() - cpu_start  # beside wall time: what a busy machine does not change
    sample = rows[:naive_sample]
    naive: list[bool] = []
    naive_s = timed(lambda: naive.extend(naive_correct(r) for r in sample))
    agree = sum(o["correct"] == v for o, v in zip(ours_rows, naive, strict=False)) / len(sample)
    answered = sum(r["rule"] not in ("none", "hedge", "empty_answer") for r in ours_rows)
    summary = {"set": name, "items": n, "ours_s": round(ours_s, 2), "ours_cpu_s": round(ours_cpu_s, 2)}
    summary["naive_items"] = len(sample)
    summary |= {"naive_s": round(naive_s, 2), "naive_agreement": round(agree, 3), "answered": answered}
    print(json.dumps(summary))
    return [
        Result.absolute(name, n / ours_s, "items/s", goal_items_s, "wall clock, extraction and matching"),
        Result.compare(f"{name} vs naive math-verify on every item", n / ours_s, len(sample) / naive_s, "items/s", 3),
    ]
