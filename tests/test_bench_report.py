"""The benchmark file format: six keys per row, a numeric goal, and whether it was met."""

from __future__ import annotations

import json
from pathlib import Path

from r1ov.bench.report import Result, write


def test_rows_carry_a_numeric_goal_that_the_ratio_or_the_value_must_reach(tmp_path: Path) -> None:
    rows = [
        Result.compare("steps/s while uploading", 9.0, 10.0, "steps/s", 0.9, "upload in the background"),
        Result.compare("time to first step, 20K vs 2K rows", 1.5, 1.0, "s", 1.2, lower_is_better=True),
        Result.absolute("peak RSS", 900.0, "MB", 1536, "the 1.5 GB budget", lower_is_better=True),
        Result.compare("machine load vs cores", 3.0, 2.0, "processes", None, "context"),
    ]
    document = json.loads(write("example", rows, tmp_path).read_text())
    assert {"machine", "date", "results"} <= document.keys()
    assert all(list(r) == ["name", "value", "unit", "baseline", "ratio", "goal"] for r in document["results"])
    assert [r["goal"] for r in document["results"]] == [0.9, 1.2, 1536, None]
    assert document["results"][1]["name"].endswith("(lower is better)")  # the JSON reads right on its own
    assert document["results"][2]["baseline"] is None and document["results"][2]["ratio"] is None
    assert [r.met() for r in rows] == [True, False, True, None]
    table = (tmp_path / "example.md").read_text()
    assert "| ratio >= 0.9: upload in the background | yes |" in table
    assert "| ratio <= 1.2 | **no** |" in table
    assert "| value <= 1536: the 1.5 GB budget | yes |" in table


def test_make_runs_every_benchmark_suite() -> None:
    """`make bench-NAME` reaches the suite (a phony target shadowing the pattern rule does nothing)."""
    import shutil
    import subprocess

    import pytest

    from r1ov.bench.__main__ import SUITES

    if shutil.which("make") is None:
        pytest.skip("no make here")
    root = Path(__file__).resolve().parents[1]
    for name in SUITES:
        dry = subprocess.run(["make", "-n", f"bench-{name}"], cwd=root, capture_output=True, text=True, check=True)
        assert f"-m r1ov.bench {name}" in dry.stdout, f"make bench-{name} runs nothing: {dry.stdout!r}"
