"""The paper's two tables, from scored rows of every benchmark."""

from __future__ import annotations

import json

from r1ov.eval import tables
from r1ov.eval.score import summarize


def _row(benchmark: str, correct: bool, category: str | None = None, level: str | None = None, **meta: str) -> dict:
    return {
        "benchmark": benchmark,
        "correct": correct,
        "well_formed": True,
        "extracted": "x",
        "rule": "answer_tag",
        "category": category,
        "level": level,
        "metadata": json.dumps(meta),
    }


def _summary() -> dict:
    rows = [_row("mathvision", i < 3) for i in range(10)]
    versions = ["Text Dominant", "Text Lite", "Vision Intensive", "Vision Dominant", "Vision Only"]
    rows += [_row("mathverse", i % 5 != 4 or i == 4, category=versions[i % 5]) for i in range(20)]
    rows += [_row("mathvista", i < 6, category="figure question answering") for i in range(10)]
    for problem in range(4):  # all parts right for two problems, all wrong for two
        for part in ("1", "2", "multi"):
            rows.append(_row("wemath", problem < 2, key=f"2steps_{part}", wemath_id=f"2steps_{problem}"))
    rows += [_row("r1ov-bench", i < 2, category="Physics", level="college") for i in range(4)]
    rows += [_row("r1ov-bench", True, category="Deduction", level="social test")]
    return summarize(rows, bootstrap_samples=200, seed=1)


def test_math_table_columns_with_intervals() -> None:
    summary = _summary()
    _, paper2, ours = tables.math_rows(summary, "my-model")
    assert paper2 == ["R1-Onevision-7B (paper)", "29.9", "46.4", "40.0", "64.1", "61.8"]
    assert ours[0] == "my-model"
    assert ours[1].startswith("30.0 [")  # MathVision 3/10 with its interval
    assert ours[2].startswith("85.0 [")  # MathVerse over every version: 17/20
    assert ours[3].startswith("25.0 [")  # Vision Only alone: 1/4
    assert ours[4].startswith("60.0 [")
    # WeMath: 2 mastered, 2 insufficient knowledge over the fixed 525
    assert ours[5] == f"{100 * (525 - 2) / 525:.1f} (strict {100 * (525 - 2) / 525:.1f})"


def test_bench_table_by_level_and_category() -> None:
    rows = tables.bench_rows(_summary())
    assert rows[0][:3] == ["average", "all", "5"] and rows[0][3].startswith("60.0 [")
    assert rows[1][:3] == ["level", "college", "4"] and rows[1][3].startswith("50.0 [")
    assert {r[1] for r in rows if r[0] == "category"} == {"Physics", "Deduction"}


def test_markdown_and_html_hold_the_same_cells() -> None:
    summary = _summary()
    text = tables.markdown(summary, "my-model")
    assert "| model | MathVision | MathVerse | MathVerse (vision only) | MathVista | WeMath |" in text
    assert "| category | Deduction | 1 | 100.0 [100.0, 100.0] |" in text
    page = tables.html_tables(summary, "my-model")
    assert "<td>Deduction</td>" in page and "<th>MathVerse (vision only)</th>" in page


def test_missing_benchmarks_show_dashes() -> None:
    summary = summarize([_row("mathvista", True)], bootstrap_samples=0)
    ours = tables.math_rows(summary, "m")[-1]
    assert ours[1] == ours[2] == ours[3] == ours[5] == tables.DASH and ours[4] == "100.0"
    assert "R1-Onevision-Bench was not evaluated." in tables.markdown(summary, "m")
