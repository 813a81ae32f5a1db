"""The scoring benchmark's inputs and measurement, at a small size (the full run is `python -m r1ov.bench eval`)."""

from __future__ import annotations

import random
from pathlib import Path

from r1ov.bench import real_style, scoring
from r1ov.eval.score import score_row


def test_bench_rows_come_from_every_layout_and_mix_right_and_wrong(tmp_path: Path) -> None:
    rows = scoring._rows(scoring.write_files(tmp_path, items=200), items=200)
    assert len(rows) == 200 and len({r["id"] for r in rows}) == 200
    assert {r["benchmark"] for r in scoring._rows(scoring.write_files(tmp_path / "all", items=60), 10_000)} == {
        "mathvista",
        "mathvision",
        "mathverse",
        "wemath",
        "r1ov-bench",
    }
    scored = [score_row(dict(r)) for r in rows]
    accuracy = sum(r["correct"] for r in scored) / len(scored)
    assert 0.4 < accuracy < 0.9  # right and wrong answers in the mix
    assert {r["rule"] for r in scored} >= {"answer_tag", "answer_is", "hedge"}


def test_bench_result_has_the_documented_shape() -> None:
    results = scoring.run(items=60, real_style_items=60)
    names = [r.name.split(" (")[0] for r in results]
    assert names == [
        "eval score items/s",
        "eval score items/s",
        "eval score items/s, real-style responses",
        "eval score items/s, real-style responses",
        "verdicts identical at load 4 and load 0",
    ]
    # wall-clock rates against their own goals, then the same rates against math-verify
    assert [r.goal for r in results] == [1000, 3, 2000, 3, 1.0]
    assert results[4].value == 1.0 and results[4].met()
    for absolute, compared in (results[0:2], results[2:4]):
        assert absolute.baseline is None and absolute.unit == "items/s" and absolute.value > 0
        assert compared.value == absolute.value and compared.baseline > 0
        assert compared.ratio == round(compared.value / compared.baseline, 3)


def test_real_style_responses_need_every_extraction_rule_and_mix_right_and_wrong(tmp_path: Path) -> None:
    rows = scoring._rows(scoring.write_files(tmp_path, items=400), 400, real_style.response)
    scored = [score_row(dict(r)) for r in rows]
    assert {r["rule"] for r in scored} >= {"bare", "answer_is", "boxed", "final_sentence", "hedge"}
    accuracy = sum(r["correct"] for r in scored) / len(scored)
    assert 0.4 < accuracy < 0.8  # about two in three written right, hedges earn nothing
    # every response the generator wrote as right (gold value or letter, no hedge) scores right
    assert sum(r["rule"] == "none" for r in scored) / len(scored) < 0.02


def test_verdicts_do_not_change_beside_a_busy_process(tmp_path: Path) -> None:
    rows = scoring._rows(scoring.write_files(tmp_path, items=60), 60, real_style.response)
    assert scoring.verdicts_under_load(rows, workers=1) == 1.0


def test_responses_are_deterministic() -> None:
    record = {"options": ["3", "4"], "answer": "B"}
    assert scoring.response(record, random.Random(5)) == scoring.response(record, random.Random(5))
