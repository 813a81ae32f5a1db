"""``r1ov eval score`` and ``r1ov eval compare`` through the real command line entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r1ov.cli import main
from r1ov.testing import layouts

# MathVista fixture pid -> (a response a careful grader marks right, one it marks wrong)
RESPONSES = {
    "1": ("<think>AB is about 1.23.</think><answer>1.23</answer>", "<think>t</think><answer>1.3</answer>"),
    "2": ("<think>8 of 11 parts.</think><answer>(B) 8/11</answer>", "<think>t</think><answer>A or B</answer>"),
    "3": ("<think>f(0) = -3</think><answer>-3</answer>", "<think>t</think><answer>3</answer>"),
    "4": ("<think>t</think><answer>12 cm</answer>", "<think>t</think><answer>120</answer>"),
    "5": ("<think>t</think><answer>[2007, 2008]</answer>", "<think>t</think><answer>[2008, 2009]</answer>"),
    "6": ("The answer is (B) equal to.", "<think>t</think><answer>larger than</answer>"),
    "7": ("<think>t</think><answer>a logarithmic function</answer>", "<think>t</think><answer>A</answer>"),
    "8": ("<think>t</think><answer>\\frac{1}{4}</answer>", "<think>t</think><answer>-0.25</answer>"),
    "9": ("<think>t</think><answer>\\boxed{5}</answer>", "<think>t</think><answer>5!</answer>"),
    "10": ("<think>t</think><answer>R, D, N</answer>", "<think>t</think><answer>D, N, R</answer>"),
}


def _predictions(path: Path, which: list[int]) -> Path:
    path.write_text(
        "".join(
            json.dumps({"id": pid, "response": RESPONSES[pid][w]}) + "\n"
            for pid, w in zip(RESPONSES, which, strict=True)
        )
    )
    return path


@pytest.fixture
def mathvista(tmp_path: Path) -> Path:
    return layouts.write_mathvista_parquet(tmp_path / "mathvista")


def _score(tmp_path: Path, data: Path, predictions: Path, out: str, *extra: str) -> int:
    argv = ["eval", "score", "--benchmark", "mathvista", "--data", str(data), "--predictions", str(predictions)]
    return main([*argv, "--out", str(tmp_path / out), "--bootstrap-samples", "200", *extra])


def test_eval_score_gives_a_careful_graders_verdicts(
    tmp_path: Path, mathvista: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    right = _predictions(tmp_path / "right.jsonl", [0] * 10)
    assert _score(tmp_path, mathvista, right, "right.json") == 0
    printed = json.loads(capsys.readouterr().out)
    scored = json.loads((tmp_path / "right.json").read_text())
    assert printed["overall"] == scored["overall"]
    assert scored["overall"]["accuracy"] == 1.0 and scored["overall"]["n"] == 10
    assert all(scored["verdicts"].values())

    wrong = _predictions(tmp_path / "wrong.jsonl", [1] * 10)
    assert _score(tmp_path, mathvista, wrong, "wrong.json") == 0
    scored = json.loads((tmp_path / "wrong.json").read_text())
    assert scored["overall"]["accuracy"] == 0.0, scored["verdicts"]
    low, high = scored["overall"]["ci95"]
    assert low == high == 0.0
    verdicts = [json.loads(line) for line in (tmp_path / "wrong.verdicts.jsonl").read_text().splitlines()]
    assert len(verdicts) == 10 and {v["id"] for v in verdicts} == {f"mathvista/{i}" for i in range(1, 11)}
    hedge = next(v for v in verdicts if v["benchmark_id"] == "2")
    assert hedge["rule"] == "hedge" and hedge["extracted"] is None


def test_eval_score_groups_with_intervals(tmp_path: Path, mathvista: Path) -> None:
    mixed = _predictions(tmp_path / "mixed.jsonl", [0, 1, 0, 1, 0, 0, 1, 1, 0, 1])
    assert _score(tmp_path, mathvista, mixed, "mixed.json") == 0
    scored = json.loads((tmp_path / "mixed.json").read_text())
    assert scored["overall"]["accuracy"] == 0.5 and scored["overall"]["format_rate"] == 0.9
    groups = scored["by_category"]
    assert set(groups) == {
        "figure question answering",
        "geometry problem solving",
        "math word problem",
        "textbook question answering",
        "visual question answering",
    }
    for group in groups.values():
        low, high = group["ci95"]
        assert 0.0 <= low <= group["accuracy"] <= high <= 1.0
    assert sum(g["n"] for g in groups.values()) == 10


def test_eval_compare_pairs_the_items(tmp_path: Path, mathvista: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _score(tmp_path, mathvista, _predictions(tmp_path / "a.jsonl", [0] * 10), "a.json")
    _score(tmp_path, mathvista, _predictions(tmp_path / "b.jsonl", [1] * 8 + [0] * 2), "b.json")
    capsys.readouterr()
    assert main(["eval", "compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 10 and result["difference"] == pytest.approx(-0.8)
    assert (result["only_a_correct"], result["only_b_correct"]) == (8, 0)
    assert result["p_value"] == pytest.approx(2 * 0.5**8)
    assert result["ci95"][1] < 0


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unknown_benchmark", "unknown benchmark 'mathvistaa'; choose from"),
        ("no_predictions_file", "cannot read predictions"),
        ("not_json", "not JSON"),
        ("no_id", 'each line needs an "id"'),
        ("unknown_id", "1 prediction id(s) not in the benchmark data: '999'"),
        ("missing_items", "9 item(s) have no prediction"),
        ("bad_data", "cannot read mathvista data"),
    ],
)
def test_user_mistakes_get_one_line_and_a_nonzero_exit(
    tmp_path: Path, mathvista: Path, capsys: pytest.CaptureFixture[str], case: str, message: str
) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"id": "1", "response": "1.2"}) + "\n")
    predictions, data, benchmark = good, mathvista, "mathvista"
    if case == "unknown_benchmark":
        benchmark = "mathvistaa"
    elif case == "no_predictions_file":
        predictions = tmp_path / "absent.jsonl"
    elif case == "not_json":
        predictions = tmp_path / "bad.jsonl"
        predictions.write_text("{not json\n")
    elif case == "no_id":
        predictions = tmp_path / "noid.jsonl"
        predictions.write_text(json.dumps({"response": "1"}) + "\n")
    elif case == "unknown_id":
        predictions = tmp_path / "unknown.jsonl"
        predictions.write_text(json.dumps({"id": "999", "response": "1"}) + "\n")
    elif case == "bad_data":
        data = tmp_path / "nothing-here"
    argv = ["eval", "score", "--benchmark", benchmark, "--data", str(data), "--predictions", str(predictions)]
    assert main([*argv, "--out", str(tmp_path / "out.json")]) == 2
    # Progress log lines may come first; the mistake itself is one line, and no traceback.
    err = [line for line in capsys.readouterr().err.strip().splitlines() if " INFO " not in line]
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0], err


def test_missing_items_can_be_scored_wrong_or_skipped(tmp_path: Path, mathvista: Path) -> None:
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps({"id": "mathvista/1", "response": "<think>t</think><answer>1.2</answer>"}) + "\n")
    assert _score(tmp_path, mathvista, one, "wrong.json", "--missing", "wrong") == 0
    scored = json.loads((tmp_path / "wrong.json").read_text())
    assert scored["overall"]["n"] == 10 and scored["overall"]["accuracy"] == 0.1
    assert scored["overall"]["no_prediction"] == 9
    assert _score(tmp_path, mathvista, one, "skip.json", "--missing", "skip") == 0
    assert json.loads((tmp_path / "skip.json").read_text())["overall"]["n"] == 1


def test_compare_refuses_files_that_are_not_score_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "x.json").write_text("{}")
    assert main(["eval", "compare", str(tmp_path / "x.json"), str(tmp_path / "x.json")]) == 2
    assert "not a score file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("benchmark", "write"),
    [
        ("mathverse", layouts.write_mathverse_parquet),
        ("mathvision", lambda d: layouts.write_mathvision_parquet(d, "testmini").parent),
        ("wemath", layouts.write_wemath_json),
        ("r1ov-bench", layouts.write_r1ov_bench_tsv),
    ],
)
def test_eval_score_reads_every_published_layout(tmp_path: Path, benchmark: str, write: object) -> None:
    """Gold answers as responses score 1.0 on each layout, keyed by the benchmark's own ids."""
    from r1ov.config import BenchmarkSpec
    from r1ov.data.records import metadata
    from r1ov.eval import benchmarks

    data = write(tmp_path / benchmark)  # type: ignore[operator]
    records = benchmarks.load(BenchmarkSpec(name=benchmark, uri=str(data))).records
    predictions = tmp_path / "p.jsonl"
    predictions.write_text(
        "".join(
            json.dumps(
                {"id": metadata(r)["benchmark_id"], "response": f"<think>t</think><answer>{r['answer']}</answer>"}
            )
            + "\n"
            for r in records
        )
    )
    argv = ["eval", "score", "--benchmark", benchmark, "--data", str(data), "--predictions", str(predictions)]
    assert main([*argv, "--out", str(tmp_path / "s.json"), "--bootstrap-samples", "50"]) == 0
    scored = json.loads((tmp_path / "s.json").read_text())
    assert scored["overall"]["accuracy"] == 1.0 and scored["overall"]["n"] == len(records)
    if benchmark == "mathverse":
        assert scored["by_category"]["Vision Only"]["n"] == 3
    if benchmark == "wemath":
        assert scored["extra"]["four_dim/total"] == 525 and scored["extra"]["steps/S3_accuracy"] == 1.0
    if benchmark == "r1ov-bench":
        assert set(scored["by_level"]) == {"college", "high school", "junior high school", "social test"}


def test_a_full_mathvision_prediction_file_scores_every_published_item(tmp_path: Path) -> None:
    """MATH-V item 528's question is only ``<image1>``; another item here has no gold. Neither
    leaves the denominator, and a prediction file covering every published id never aborts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = layouts.mathvision_rows()
    rows[0]["question"] = "<image1>"  # the question is in the image
    rows[1]["answer"] = ""  # unscorable: set aside by the loader, yet published
    path = tmp_path / "mathvision" / "data" / "test-00000-of-00001.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    predictions = tmp_path / "p.jsonl"
    predictions.write_text(
        "".join(
            json.dumps({"id": r["id"], "response": f"<think>t</think><answer>{r['answer'] or 'A'}</answer>"}) + "\n"
            for r in rows
        )
    )
    argv = ["eval", "score", "--benchmark", "mathvision", "--data", str(path.parent)]
    out = tmp_path / "s.json"
    assert main([*argv, "--predictions", str(predictions), "--out", str(out), "--bootstrap-samples", "50"]) == 0
    scored = json.loads(out.read_text())
    assert scored["overall"]["n"] == len(rows)  # the published count
    assert scored["overall"]["correct"] == len(rows) - 1  # the item without a gold scores wrong
    assert scored["overall"]["set_aside_scored_wrong"] == 1
    lines = out.with_name("s.verdicts.jsonl").read_text().splitlines()
    verdict = {v["benchmark_id"]: v for v in map(json.loads, lines)}
    assert verdict[rows[0]["id"]]["correct"] is True


def test_wemath_full_width_option_markers_split_the_options(tmp_path: Path) -> None:
    """We-Math ``2steps_59`` writes its markers with a full-width full stop (U+FF0E)."""
    from r1ov.eval.benchmarks._io import parse_options

    assert parse_options("A．12;B．16;C．18;D．20") == ["12", "16", "18", "20"]
    assert parse_options("A．12；B．16；C．18") == ["12", "16", "18"]


def test_eval_score_writes_its_manifest_beside_and_inside_the_score(tmp_path: Path, mathvista: Path) -> None:
    import hashlib

    predictions = _predictions(tmp_path / "a.jsonl", [0] * 10)
    assert _score(tmp_path, mathvista, predictions, "a.json") == 0
    beside = json.loads((tmp_path / "a.manifest.json").read_text())
    assert json.loads((tmp_path / "a.json").read_text())["manifest"] == beside
    (bench,) = beside["benchmarks"]
    assert bench["items"] == 10  # the published count
    assert bench["files"] == {mathvista.name: hashlib.sha256(mathvista.read_bytes()).hexdigest()}
    assert beside["extractor"]["rules_version"] and beside["code"]["r1ov"]
    assert beside["prompt"] is None and beside["sampling"] is None  # predictions scored as given
    assert hashlib.sha256(predictions.read_bytes()).hexdigest() in beside["model"]


def test_eval_compare_refuses_scores_made_under_different_conditions(
    tmp_path: Path, mathvista: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _score(tmp_path, mathvista, _predictions(tmp_path / "a.jsonl", [0] * 10), "a.json")
    _score(tmp_path, mathvista, _predictions(tmp_path / "b.jsonl", [1] * 10), "b.json")
    # B as another release of the extractor would have scored it
    b = json.loads((tmp_path / "b.json").read_text())
    b["manifest"]["extractor"]["rules_version"] = "older"
    (tmp_path / "b.json").write_text(json.dumps(b))
    capsys.readouterr()
    assert main(["eval", "compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) != 0
    err = capsys.readouterr().err
    assert "scored under different conditions (extractor.rules_version)" in err and "Traceback" not in err
    argv = ["eval", "compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--allow-manifest-mismatch"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["manifest_differences"] == ["extractor.rules_version"]
