"""The paper's two tables from an eval summary, as Markdown (and the same cells as HTML).

Table 1 (math benchmarks): MathVision, MathVerse, MathVerse vision-only, MathVista, WeMath,
our model beside the paper's rows. Table 2: R1-Onevision-Bench by education level and by
category. Every accuracy carries its 95% bootstrap interval. A benchmark is recognised by
its label starting with the loader's name (``mathverse``, ``mathverse-mini``, ...); a
column without one shows a dash.

MathVerse is the accuracy over every version loaded; the vision-only column is its "Vision
Only" version. WeMath is the loose four-dimensional score over the fixed 525 problems (the
strict one beside it), which is how we read the paper's column; it is a score, not an
accuracy, so it has no interval.
"""

from __future__ import annotations

import html
import math
from typing import Any

MATH_COLUMNS = ("MathVision", "MathVerse", "MathVerse (vision only)", "MathVista", "WeMath")

# The paper's reported numbers (R1-Onevision, arXiv 2503.10615), for reference beside ours.
PAPER_MATH = {
    "Qwen2.5-VL-7B (paper)": (25.4, 43.6, 38.2, 63.7, 61.0),
    "R1-Onevision-7B (paper)": (29.9, 46.4, 40.0, 64.1, 61.8),
}
PAPER_BENCH_AVERAGE = {"R1-Onevision-7B (paper)": 36.2}
DASH = "–"


def _find(summary: dict[str, Any], name: str) -> dict[str, Any] | None:
    for label, stats in summary.get("benchmarks", {}).items():
        if label.lower().startswith(name):
            return stats
    return None


def _pct(stats: dict[str, Any] | None) -> str:
    if not stats or stats.get("accuracy") is None or not math.isfinite(stats["accuracy"]):
        return DASH
    text = f"{100 * stats['accuracy']:.1f}"
    low, high = stats.get("accuracy_ci95_low"), stats.get("accuracy_ci95_high")
    if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
        text += f" [{100 * low:.1f}, {100 * high:.1f}]"
    return text


def math_rows(summary: dict[str, Any], model: str) -> list[list[str]]:
    mathverse = _find(summary, "mathverse")
    vision_only = None
    if mathverse:
        vision_only = next((v for k, v in mathverse.get("categories", {}).items() if k.lower() == "vision only"), None)
    wemath = _find(summary, "wemath")
    extra = (wemath or {}).get("extra", {})
    if "four_dim/score_loose" in extra:
        we = f"{100 * extra['four_dim/score_loose']:.1f} (strict {100 * extra['four_dim/score_strict']:.1f})"
    else:
        we = DASH
    ours = [model, _pct(_find(summary, "mathvision")), _pct(mathverse), _pct(vision_only)]
    ours += [_pct(_find(summary, "mathvista")), we]
    rows = [[name, *(f"{v:.1f}" for v in values)] for name, values in PAPER_MATH.items()]
    return [*rows, ours]


def bench_rows(summary: dict[str, Any]) -> list[list[str]]:
    stats = _find(summary, "r1ov-bench")
    if not stats:
        return []
    rows = [["average", "all", str(stats["n"]), _pct(stats)]]
    for kind, key in (("level", "levels"), ("category", "categories")):
        for name, group in stats.get(key, {}).items():
            rows.append([kind, name, str(group["n"]), _pct(group)])
    return rows


def _markdown(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _html(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_BENCH_HEADERS = ["group", "name", "n", "accuracy % [95% CI]"]


def markdown(summary: dict[str, Any], model: str) -> str:
    """Both tables as one Markdown document (KFP Markdown artifact, MLflow, tables.md)."""
    parts = [
        f"# Results: {model}",
        "",
        "## Math benchmarks (accuracy %, 95% bootstrap interval)",
        "",
        _markdown(["model", *MATH_COLUMNS], math_rows(summary, model)),
        "",
        "WeMath: loose four-dimensional score over the 525 composite problems (strict in brackets).",
    ]
    bench = bench_rows(summary)
    parts += ["", "## R1-Onevision-Bench by level and category", ""]
    if bench:
        paper = ", ".join(f"{k}: {v:.1f}" for k, v in PAPER_BENCH_AVERAGE.items())
        parts += [_markdown(_BENCH_HEADERS, bench), "", f"Paper average for reference: {paper}."]
    else:
        parts.append("R1-Onevision-Bench was not evaluated.")
    return "\n".join(parts) + "\n"


def html_tables(summary: dict[str, Any], model: str) -> str:
    """The same tables for report.html."""
    out = ["<h3>Math benchmarks (accuracy %, 95% bootstrap interval)</h3>"]
    out.append(_html(["model", *MATH_COLUMNS], math_rows(summary, model)))
    bench = bench_rows(summary)
    if bench:
        out += ["<h3>R1-Onevision-Bench by level and category</h3>", _html(_BENCH_HEADERS, bench)]
    return "\n".join(out)
