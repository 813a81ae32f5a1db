"""Evaluation: answer extraction, scoring, benchmark loaders, and ``r1ov.eval.run`` end to end.

The ``openai`` backend runs against a small OpenAI-compatible HTTP server started here: it
stands in for a served endpoint (our vLLM inference chart, or GPT-4o), speaks the same
``/v1/chat/completions`` protocol, answers from a table keyed by question and records every
request so the tests can check what was sent. The ``hf`` backend runs the tiny random
Qwen2.5-VL built offline.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from chat_stand_in import ChatStandIn
from PIL import Image

from r1ov.config import BenchmarkSpec, EvalConfig, TrackingConfig
from r1ov.data.records import new_record, write_dataset
from r1ov.eval import benchmarks, run
from r1ov.eval.extract import RULES, RULES_VERSION, extract, last_boxed
from r1ov.eval.score import bootstrap_interval, score_row, summarize
from r1ov.scoring.reasoning import INSTRUCTION, compose

OPTIONS = ["3", "4", "5", "6"]


def png(color: str = "red", size: tuple[int, int] = (32, 24)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


# --------------------------------------------------------------------------- extraction


@pytest.mark.parametrize(
    ("completion", "options", "answer", "rule"),
    [
        (compose("count them", "B"), OPTIONS, "B", "answer_tag"),
        (compose("count them", "(C)"), OPTIONS, "(C)", "answer_tag"),
        (compose("x", "12.5"), None, "12.5", "answer_tag"),
        (compose("x", "\\boxed{\\frac{1}{2}}"), None, "\\frac{1}{2}", "answer_tag"),
        ("so it is \\boxed{\\frac{3}{4}} indeed", None, "\\frac{3}{4}", "boxed"),
        ("We add them up. The answer is 42.", None, "42", "answer_is"),
        ("Thus the final answer: 3.5", None, "3.5", "answer_is"),
        ("Looking at the figure, I pick (D).", OPTIONS, "(D)", "option_text"),
        ("Looking at the figure, I pick D", OPTIONS, "D", "option_letter"),
        ("Looking at the figure, I pick D", None, None, "none"),  # a lone letter means nothing without options
        ("", OPTIONS, None, "none"),
        (None, OPTIONS, None, "none"),
    ],
)
def test_extract_rules(completion: str | None, options: list[str] | None, answer: str | None, rule: str) -> None:
    found = extract(completion, options)
    assert (found.answer, found.rule) == (answer, rule)


# Responses in the shapes real models write (MathVista's published outputs show each shape;
# these are written for the test). Options for the multiple-choice rows:
ANGLES = ["30°", "35°", "40°", "45°"]
YES_NO = ["Yes", "No"]


@pytest.mark.parametrize(
    ("completion", "options", "answer", "rule"),
    [
        # only the answer
        ("12", None, "12", "bare"),
        ("B", ANGLES, "B", "bare"),
        ("$9(\\pi-2)$", None, "$9(\\pi-2)$", "bare"),
        ("B. 35°", ANGLES, "B. 35°", "bare"),
        ("(B) No", YES_NO, "(B) No", "bare"),
        ("7</s>", None, "7", "bare"),  # an end-of-sequence mark left in the text
        # "answer is" in several languages
        ("Adding both parts gives the total.\nThe correct answer is (C) 40°.", ANGLES, "(C) 40°", "answer_is"),
        ("So the answer is C (40°)", ANGLES, "C (40°)", "answer_is"),
        ("The answer is (B), No.\n\nThere are two buses and three cars.", YES_NO, "(B), No", "answer_is"),
        ("so the answer to the question is no, there are not fewer trucks than cars.", YES_NO, "No", "answer_is"),
        ("The correct option letter is D. It has the lowest value.", ANGLES, "D", "answer_is"),
        ("根据勾股定理，面积是 8。\n因此，答案是D（8）。", ["15", "13", "11", "8"], "D", "answer_is"),
        ("∠BOC = 110° + 35°\n答案：C", ANGLES, "C", "answer_is"),
        ("Donc la réponse est 12.", None, "12", "answer_is"),
        ("Por lo tanto, la respuesta es 12.", None, "12", "answer_is"),
        ("Die Antwort ist 12.", None, "12", "answer_is"),
        ("Ответ: 12", None, "12", "answer_is"),
        ("The bars add up to less.\n\nThe correct answer is therefore choice (B).", YES_NO, "(B)", "answer_is"),
        ("It stays inconclusive. The answer is therefore B (No).", YES_NO, "B (No)", "answer_is"),
        ("So the answer is 1982 with an actual total income of $931,441.", None, "1982", "answer_is"),
        ("Question: What is it?\n\nAnswer: The amplitude is 1.", None, "1", "answer_is"),
        ("So the answer is 3 or 4 apples.", None, "3 or 4 apples", "answer_is"),  # a hedge stays whole
        # a letter written with its option text inside prose
        ("Looking at the arcs, the angle must be C (40°) as drawn.", ANGLES, "C", "option_text"),
        # the final sentence states a value or an option
        (
            "The spring stores the energy.\n\nTherefore, the distance is 0.11 meters.",
            None,
            "0.11 meters",
            "final_sentence",
        ),
        ("The two arcs are equal. The measure of angle AOB is 28 degrees.", None, "28 degrees", "final_sentence"),
        ("Total cost is 4 * $2 + 5 * $2.\n\nTherefore, Chase will spend $18.", None, "18", "final_sentence"),
        ("I count them one by one. There are two models scoring above 60.", None, "2 models", "final_sentence"),
        ("Each side is 4 m, so the perimeter is 4 m + 4 m + 4 m + 4 m = **16 m**.", None, "16 m", "final_sentence"),
        ("So the field strength is 0.214 N. It points radially inward.", None, "0.214 N", "final_sentence"),
        ("The sum is **56%**.\n\nIs there anything else I can help you with?", None, "56%", "final_sentence"),
        (
            "If the trees died, the porcupine population would most likely decrease.",
            ["double", "decrease"],
            "decrease",
            "final_sentence",
        ),
        # what is not an answer stays none
        ("The sun is larger than the moon.", ["Sun", "Moon"], None, "none"),
        ("There are 3 or 4 apples in the basket.", None, None, "hedge"),
        ("(A) 30°\n(B) 35°\n(C) 40°\n(D) 45°", ANGLES, None, "hedge"),  # the option list echoed back
    ],
)
def test_extract_reads_the_shapes_real_models_write(
    completion: str, options: list[str] | None, answer: str | None, rule: str
) -> None:
    found = extract(completion, options)
    assert (found.answer, found.rule) == (answer, rule)


def test_extracted_answers_score_as_the_official_rules_do() -> None:
    """End to end, from the raw response: the shapes above reach the verdict a reader gives."""
    assert score_row({"completion": "So the answer is C (40°)", "answer": "40°", "options": ANGLES})["correct"]
    assert score_row({"completion": "B", "answer": "No", "options": YES_NO})["correct"]
    row = score_row({"completion": "Therefore, the distance is 0.11 meters.", "answer": "0.11", "options": []})
    assert row["correct"] and row["rule"] == "final_sentence"
    # a letter with another option's text contradicts itself: no credit (the official scorer gives it)
    assert not score_row(
        {"completion": "The clock shows (C) 5:30.", "answer": "4:30", "options": ["9:30", "1:30", "4:30", "5:30"]}
    )["correct"]


def test_well_formed_only_for_one_think_and_one_answer() -> None:
    assert extract(compose("think", "B"), OPTIONS).well_formed
    assert not extract("<answer>B</answer>", OPTIONS).well_formed
    assert not extract("<think>a</think><answer>B</answer><think>b</think><answer>B</answer>", OPTIONS).well_formed


@pytest.mark.parametrize(
    ("completion", "rule"),
    [
        ("<think>the answer is 4</think><answer></answer>", "empty_answer"),  # empty tag: no digging in the think
        ("<think>x</think><answer>   </answer>", "empty_answer"),
        (compose("x", "A, B, C, D"), "hedge"),  # naming every option
        (compose("x", "A or B"), "hedge"),
        ("<think>x</think><answer>A</answer><answer>B</answer>", "hedge"),  # disagreeing answer blocks
    ],
)
def test_extract_refuses_hacks(completion: str, rule: str) -> None:
    found = extract(completion, OPTIONS)
    assert found.answer is None and found.rule == rule


def test_last_boxed_balances_braces() -> None:
    assert last_boxed("\\boxed{1} then \\boxed{\\sqrt{\\frac{a}{b}}}") == "\\sqrt{\\frac{a}{b}}"
    assert last_boxed("\\boxed{unclosed") is None


# --------------------------------------------------------------------------- scoring


def _row(completion: str | None, answer: str, options: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return score_row({"benchmark": "b", "completion": completion, "answer": answer, "options": options or [], **extra})


@pytest.mark.parametrize(
    ("completion", "gold", "options", "correct"),
    [
        (compose("x", "B"), "B", OPTIONS, True),
        (compose("x", "4"), "B", OPTIONS, True),  # the option's text names the same choice
        (compose("x", "(B)"), "B", OPTIONS, True),
        (compose("x", "C"), "B", OPTIONS, False),
        (compose("x", "12.50"), "12.5", None, True),
        (compose("x", "\\frac{1}{2}"), "0.5", None, True),
        (compose("x", "\\boxed{\\frac{6}{4}}"), "\\frac{3}{2}", None, True),
        (compose("x", "13"), "12", None, False),
        ("<think>12</think><answer></answer>", "12", None, False),  # empty answer never matches
        (compose("x", "A, B, C, D"), "B", OPTIONS, False),  # hedging over every option scores nothing
        ("The answer is 7.", "7", None, True),
    ],
)
def test_score_row(completion: str, gold: str, options: list[str] | None, correct: bool) -> None:
    assert _row(completion, gold, options)["correct"] is correct


def test_failed_generation_counts_as_wrong() -> None:
    row = _row(None, "3", error="bad_image: corrupt image: cannot identify")
    assert row["correct"] is False and row["rule"] == "failed"


def test_summarize_names_and_groups() -> None:
    rows = [
        _row(compose("x", "1"), "1", benchmark="alpha", category="Physics", level="1"),
        _row(compose("x", "2"), "1", benchmark="alpha", category="Physics", level="2"),
        _row("answer is 1", "1", benchmark="alpha", category="Biology", level="2"),
        _row(compose("x", "5"), "5", benchmark="beta"),
    ]
    summary = summarize(rows, bootstrap_samples=200, seed=3)
    metrics = summary["metrics"]
    assert metrics["overall/accuracy"] == pytest.approx(0.75)
    assert metrics["alpha/accuracy"] == pytest.approx(2 / 3)
    assert metrics["beta/accuracy"] == 1.0
    assert metrics["overall/macro_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    assert metrics["alpha/category/Physics/accuracy"] == 0.5
    assert metrics["alpha/category/Biology/accuracy"] == 1.0
    assert metrics["alpha/level/2/n"] == 2
    assert metrics["alpha/format_rate"] == pytest.approx(2 / 3)
    assert summary["rules"] == {"answer_is": 1, "answer_tag": 3}
    assert metrics["overall/accuracy_ci95_low"] <= 0.75 <= metrics["overall/accuracy_ci95_high"]
    assert not any(k.startswith("beta/category") for k in metrics)


def test_undefined_metrics_are_left_out() -> None:
    """No items means no accuracy at all (the promotion gate then refuses), not a NaN or a zero."""
    metrics = summarize([], bootstrap_samples=100)["metrics"]
    assert "overall/accuracy" not in metrics and metrics["overall/n"] == 0


def test_bootstrap_interval_is_seeded_and_sane() -> None:
    first = bootstrap_interval(70, 100, 1000, seed=0, name="x")
    assert first == bootstrap_interval(70, 100, 1000, seed=0, name="x")
    assert first != bootstrap_interval(70, 100, 1000, seed=1, name="x")
    low, high = first
    assert 0.58 < low < 0.7 < high < 0.8
    assert bootstrap_interval(10, 10, 100, seed=0) == (1.0, 1.0)


# --------------------------------------------------------------------------- loaders


def write_r1ov_bench_tsv(path: Path) -> Path:
    """Five rows in the published layout: a repeated image stored once, a corrupt one, one without answer."""
    image = base64.b64encode(png("blue")).decode("ascii")
    header = ["index", "image", "question", "choices", "answer", "level", "category"]
    rows = [
        [
            0,
            image,
            "Hint: pick one.\nQuestion: how many sides?\nChoices:\n(A) 3\n(B) 4",
            "['3', '4']",
            "B",
            "college",
            "Mathematics",
        ],
        [
            1,
            "0",
            "Which force acts here?\nA. gravity\nB. friction",
            "{'A': 'gravity', 'B': 'friction'}",
            "A",
            "high school",
            "Physics",
        ],
        [
            2,
            base64.b64encode(b"definitely not an image").decode("ascii"),
            "What organ is shown?",
            "",
            "heart",
            "college",
            "Biology",
        ],
        [3, image, "Unanswered question?", "", "", "college", "Deduction"],
        [4, image, 'A "quoted"\ttabbed question?', "", "7", "college", "Deduction"],
    ]
    with path.open("w", newline="") as handle:
        import csv

        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_r1ov_bench_tsv_loader(tmp_path: Path) -> None:
    loaded = benchmarks.load(BenchmarkSpec(name="r1ov-bench", uri=str(write_r1ov_bench_tsv(tmp_path / "bench.tsv"))))
    assert [r["answer"] for r in loaded.records] == ["B", "A", "heart", "7"]
    first, second, corrupt, quoted = loaded.records
    assert first["options"] == ["3", "4"] and second["options"] == ["gravity", "friction"]
    assert first["image"] == second["image"] == png("blue")  # "0" pointed at row 0's image
    meta = json.loads(first["metadata"])
    assert meta == {
        "benchmark_id": "0",
        "category": "Mathematics",
        "level": "college",
        "options_in_question": True,
    }
    assert corrupt["image"] == b"definitely not an image"  # kept: it fails at generation, with a reason
    assert quoted["question"] == 'A "quoted"\ttabbed question?'
    assert [r["reject_reason"].split(":")[0] for r in loaded.rejected] == ["no_answer"]
    limited = benchmarks.load(BenchmarkSpec(name="r1ov-bench", uri=str(tmp_path / "bench.tsv"), limit=2))
    assert len(limited.records) == 2


def test_mathvision_parquet_loader(tmp_path: Path) -> None:
    table = pa.Table.from_pylist(
        [
            {
                "id": "1",
                "question": "<image1> Which shape comes next?",
                "options": ["A", "B", "C", "D", "E"],
                "image": "images/1.jpg",
                "decoded_image": {"bytes": png(), "path": "1.jpg"},
                "answer": "C",
                "solution": None,
                "level": 2,
                "subject": "logic",
            },
            {
                "id": "2",
                "question": "<image1> How long is x?",
                "options": [],
                "image": "images/2.png",
                "decoded_image": None,
                "answer": "12",
                "solution": None,
                "level": 5,
                "subject": "metric geometry - length",
            },
        ]
    )
    (tmp_path / "data").mkdir()
    pq.write_table(table, tmp_path / "data" / "test-00000-of-00001.parquet")
    records = benchmarks.load(BenchmarkSpec(name="mathvision", uri=str(tmp_path / "data"))).records
    assert records[0]["image"] == png() and records[0]["options"] == ["A", "B", "C", "D", "E"]
    assert records[1]["image_uri"] == str(tmp_path / "data" / "images" / "2.png")
    assert json.loads(records[1]["metadata"])["level"] == "5"
    assert json.loads(records[1]["metadata"])["category"] == "metric geometry - length"


def test_mathverse_loader_reads_choices_from_the_question(tmp_path: Path) -> None:
    rows = [
        {
            "sample_index": "1",
            "problem_index": "1",
            "problem_version": "Text Lite",
            "question": "As shown in the figure, find angle B.\nChoices:\nA:55°\nB:35°\nC:45°",
            "image": {"bytes": png(), "path": None},
            "answer": "B",
            "question_type": "multi-choice",
            "metadata": {"split": "testmini", "source": "GeoQA", "subject": "Plane Geometry", "subfield": "Angle"},
        },
        {
            "sample_index": "2",
            "problem_index": "1",
            "problem_version": "Text Only",
            "question": "What is the length of AB?",
            "image": None,
            "answer": "5",
            "question_type": "free-form",
            "metadata": {"split": "testmini", "source": "GeoQA", "subject": "Plane Geometry", "subfield": "Length"},
        },
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "testmini.parquet")
    mc, text_only = benchmarks.load(BenchmarkSpec(name="mathverse", uri=str(tmp_path / "testmini.parquet"))).records
    assert mc["options"] == ["55°", "35°", "45°"]
    meta = json.loads(mc["metadata"])
    assert meta["category"] == "Text Lite" and meta["options_in_question"] and meta["subject"] == "Plane Geometry"
    assert json.loads(text_only["metadata"])["text_only"] is True


def test_mathvista_json_loader(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "1.jpg").write_bytes(png())
    annotations = {
        "1": {
            "question": "Which is larger?",
            "image": "images/1.jpg",
            "choices": ["the cat", "the dog"],
            "unit": None,
            "precision": None,
            "answer": "the dog",
            "question_type": "multi_choice",
            "answer_type": "text",
            "metadata": {"task": "figure question answering", "grade": "daily life", "skills": ["logical reasoning"]},
            "query": "Hint: answer with the option.\nQuestion: Which is larger?\nChoices:\n(A) the cat\n(B) the dog",
        },
        "2": {"question": "Test split item", "image": "images/1.jpg", "choices": None, "answer": "", "query": "q"},
    }
    (tmp_path / "annot_testmini.json").write_text(json.dumps(annotations))
    loaded = benchmarks.load(BenchmarkSpec(name="mathvista", uri=str(tmp_path / "annot_testmini.json")))
    (record,) = loaded.records
    assert record["question"].startswith("Hint:") and record["options"] == ["the cat", "the dog"]
    meta = json.loads(record["metadata"])
    assert meta["benchmark_id"] == "1" and meta["category"] == "figure question answering"
    assert meta["options_in_question"] is True
    assert record["image_uri"] == str(tmp_path / "images" / "1.jpg")
    assert loaded.rejected[0]["reject_reason"].startswith("no_answer:")


def test_wemath_json_loader(tmp_path: Path) -> None:
    items = [
        {
            "ID": "3steps_165",
            "split": "testmini",
            "knowledge concept": "Area of Circles",
            "question": "What is the area of the flower bed (  ) m²?",
            "option": "A. 200.96;B. 3215.36;C. 6280;D. 32; E. No correct answer",
            "answer": "B",
            "image_path": "3steps/image/165-3.png",
            "key": "3steps_3",
            "question number": 1575,
            "knowledge concept description": "Area of ...",
        }
    ]
    (tmp_path / "testmini.json").write_text(json.dumps(items))
    (record,) = benchmarks.load(BenchmarkSpec(name="wemath", uri=str(tmp_path / "testmini.json"))).records
    assert record["options"] == ["200.96", "3215.36", "6280", "32", "No correct answer"]
    assert record["image_uri"] == str(tmp_path / "3steps" / "image" / "165-3.png")
    meta = json.loads(record["metadata"])
    assert (meta["key"], meta["level"], meta["category"]) == ("3steps_3", "3steps", "Area of Circles")
    assert meta["question_number"] == "1575"


def test_unknown_benchmark_is_named() -> None:
    with pytest.raises(KeyError, match="mmmu"):
        benchmarks.load(BenchmarkSpec(name="mmmu", uri="x"))


# --------------------------------------------------------------------------- openai end to end


REPLIES = {
    "How many red squares": compose("I count four squares.", "B"),
    "What is 2 + 3": "Adding gives five, so the answer is 5.",
    "How many blue circles": compose("Looks like six.", "6"),
    "how many sides": compose("A square has four sides.", "B"),
    "Which force acts here": compose("It falls.", "A, B"),
    "tabbed question": compose("seven", "7"),
}


def reply_by_question(body: dict[str, Any]) -> str | None:
    """The evaluated model: the reply whose key the question contains (none: an HTTP 500)."""
    user_text = next(p["text"] for p in body["messages"][1]["content"] if p["type"] == "text")
    return next((v for k, v in REPLIES.items() if k in user_text), None)


@pytest.fixture
def stand_in() -> Iterator[ChatStandIn]:
    with ChatStandIn(reply_by_question) as server:
        yield server


def write_records_dataset(uri: Path) -> str:
    items = [
        new_record(
            source="synthetic/test",
            question="How many red squares?",
            image_type="natural",
            image=png("red"),
            options=OPTIONS,
            answer="B",
            metadata={"category": "counting", "level": "easy"},
        ),
        new_record(
            source="synthetic/test", question="What is 2 + 3?", image_type="math", image=png("white"), answer="5"
        ),
        new_record(
            source="synthetic/test",
            question="How many blue circles?",
            image_type="natural",
            image=png("blue"),
            answer="5",
        ),
        new_record(
            source="synthetic/test", question="Unreadable?", image_type="natural", image=b"\x89PNG broken", answer="1"
        ),
        new_record(
            source="synthetic/test", question="No reply from the server?", image_type="math", image=png(), answer="1"
        ),
    ]
    write_dataset(str(uri), items)
    return str(uri)


def test_eval_run_openai_end_to_end(tmp_path: Path, stand_in: ChatStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("STAND_IN_KEY", "sk-test")
    tracking = TrackingConfig(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifact_location=str(tmp_path / "mlartifacts"),
        experiment="eval-test",
    )
    client = MlflowClient(tracking.tracking_uri)
    experiment_id = client.create_experiment("eval-test", artifact_location=tracking.artifact_location)
    parent = client.create_run(experiment_id, run_name="pipeline").info.run_id
    tracking.parent_run_id = parent

    cfg = EvalConfig(
        model_name_or_path="served-model",
        backend="openai",
        base_url=stand_in.base_url,
        api_key_env="STAND_IN_KEY",
        max_retries=0,
        max_concurrency=2,
        max_new_tokens=64,
        output_dir=str(tmp_path / "out"),
        benchmarks=[
            BenchmarkSpec(name="synthetic", uri=write_records_dataset(tmp_path / "synth")),
            BenchmarkSpec(name="r1ov-bench", uri=str(write_r1ov_bench_tsv(tmp_path / "bench.tsv"))),
        ],
        tracking=tracking,
        bootstrap_samples=200,
    )
    summary = run(cfg)

    # What reached the endpoint: the system instruction, a PNG data URL, the question with lettered options.
    assert len(stand_in.requests) == 7  # 5 + 4 items to score, minus the 2 unreadable images
    first = next(r for r in stand_in.requests if "red squares" in json.dumps(r))
    assert first["path"] == "/v1/chat/completions" and first["auth"] == "Bearer sk-test"
    assert first["model"] == "served-model" and first["temperature"] == 0.0 and first["max_tokens"] == 64
    assert first["messages"][0] == {"role": "system", "content": INSTRUCTION}
    image_part, text_part = first["messages"][1]["content"]
    assert image_part["image_url"]["url"].startswith("data:image/png;base64,")
    Image.open(io.BytesIO(base64.b64decode(image_part["image_url"]["url"].split(",", 1)[1]))).verify()
    assert text_part["text"] == "How many red squares?\nOptions:\n(A) 3\n(B) 4\n(C) 5\n(D) 6"
    bench_text = next(r for r in stand_in.requests if "how many sides" in json.dumps(r))["messages"][1]["content"][1]
    assert "Options:" not in bench_text["text"]  # the bench's question lists its choices already

    metrics = summary["metrics"]
    # synthetic: squares right, 2+3 right (fallback), circles wrong, broken image failed, 500 failed
    assert metrics["synthetic/accuracy"] == pytest.approx(2 / 5)
    assert metrics["synthetic/failed"] == 2
    # bench: sides right, force hedged, corrupt image failed, tabbed right; the unanswered one set aside
    assert metrics["r1ov-bench/accuracy"] == pytest.approx(2 / 4)
    assert metrics["r1ov-bench/category/Deduction/accuracy"] == 1.0
    assert metrics["r1ov-bench/level/college/n"] == 3
    assert metrics["overall/accuracy"] == pytest.approx(4 / 9)
    assert summary["failures"] == {"bad_image": 2, "generation_failed": 1}
    assert summary["rejected"] == {"synthetic": 0, "r1ov-bench": 1}
    assert summary["rules"]["answer_is"] == 1 and summary["rules"]["hedge"] == 1

    out = tmp_path / "out"
    predictions = pq.read_table(out / "predictions.parquet").to_pylist()
    assert {"id", "benchmark", "question", "answer", "completion", "extracted", "correct"} <= set(predictions[0])
    broken = next(p for p in predictions if p["question"] == "Unreadable?")
    assert broken["error"].startswith("bad_image: corrupt image") and broken["correct"] is False
    assert json.loads((out / "metrics.json").read_text())["metrics"]["overall/accuracy"] == pytest.approx(4 / 9)
    assert "no_answer" in (out / "rejected.jsonl").read_text()
    # per-item verdicts (what paired comparisons and the promotion gate read), one per scored item
    verdicts = [json.loads(line) for line in (out / "verdicts.jsonl").read_text().splitlines()]
    assert len(verdicts) == len(predictions)
    assert set(verdicts[0]) == {"benchmark", "id", "correct", "rule", "extracted"}  # the rule that read each answer
    assert all(v["rule"] in {*RULES, "hedge", "none", "empty_answer", "failed"} for v in verdicts)
    assert sum(v["correct"] for v in verdicts) == 4
    html = (out / "report.html").read_text()
    assert '<table id="metrics">' in html and "<td>r1ov-bench</td>" in html
    assert '<img alt="accuracy by benchmark' in html and 'src="data:image/png;base64,' in html
    assert "&#10003;" in html and "&#10007;" in html  # the sample shows right and wrong predictions

    run_data = client.get_run(summary["mlflow_run_id"]).data
    assert run_data.tags["mlflow.parentRunId"] == parent
    assert run_data.metrics["overall/accuracy"] == pytest.approx(4 / 9)
    assert run_data.params["backend"] == "openai"
    artifacts = {a.path for a in client.list_artifacts(summary["mlflow_run_id"], "eval")}
    assert {
        "eval/report.html",
        "eval/metrics.json",
        "eval/predictions.parquet",
        "eval/tables.md",
        "eval/verdicts.jsonl",
    } <= artifacts
    # the manifest: what the score depends on besides the model, beside metrics.json, in MLflow and the report
    written = json.loads((out / "manifest.json").read_text())
    assert written["prompt"]["sha256"] == hashlib.sha256(written["prompt"]["template"].encode()).hexdigest()
    assert INSTRUCTION in written["prompt"]["template"]
    assert written["sampling"]["temperature"] == 0.0 and written["max_pixels"] == cfg.max_pixels
    bench = written["benchmarks"][1]
    assert bench["items"] == 5  # published count: the four scored items and the one set aside
    assert bench["files"] == {"bench.tsv": hashlib.sha256((tmp_path / "bench.tsv").read_bytes()).hexdigest()}
    assert written["extractor"]["rules_version"] == RULES_VERSION and written["code"]["r1ov"]
    assert "eval/manifest.json" in artifacts
    assert run_data.params["manifest.prompt_sha256"] == written["prompt"]["sha256"]
    assert run_data.params["manifest.extractor_rules_version"] == RULES_VERSION
    assert '<table id="manifest">' in html and written["prompt"]["sha256"] in html
    tables_md = (out / "tables.md").read_text()
    assert "## R1-Onevision-Bench by level and category" in tables_md and "| category | Deduction | 1 |" in tables_md
    assert '<div id="paper-tables">' in html and "R1-Onevision-7B (paper)" in html


# --------------------------------------------------------------------------- hf and vllm


def test_eval_run_hf_tiny_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    items = [
        new_record(source="t", question=f"How many cubes? ({i})", image_type="clevr", image=png(c), answer=str(i))
        for i, c in enumerate(["red", "green", "blue"])
    ]
    items.append(new_record(source="t", question="Broken?", image_type="clevr", image=b"nope", answer="0"))
    write_dataset(str(tmp_path / "data"), items)
    cfg = EvalConfig(
        model_name_or_path=str(tiny_model_dir),
        backend="hf",
        benchmarks=[BenchmarkSpec(name="records", uri=str(tmp_path / "data"), label="tiny")],
        output_dir=str(tmp_path / "out"),
        max_new_tokens=6,  # a random model: a few tokens prove the path, more only cost time
        batch_size=2,
    )
    summary = run(cfg)
    predictions = pq.read_table(tmp_path / "out" / "predictions.parquet").to_pylist()
    assert len(predictions) == 4 and summary["n_items"] == 4
    generated = [p for p in predictions if p["error"] is None]
    assert len(generated) == 3 and all(isinstance(p["completion"], str) for p in generated)
    assert all(p["finish_reason"] in {"stop", "length"} for p in generated)
    assert summary["metrics"]["tiny/failed"] == 1
    assert (tmp_path / "out" / "report.html").read_text().count("<tr") >= 3


@pytest.mark.vllm
@pytest.mark.gpu
def test_eval_run_vllm_tiny_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    """vLLM's offline engine on the tiny checkpoint: every item gets a completion."""
    items = [
        new_record(source="t", question=f"How many cubes? ({i})", image_type="clevr", image=png(), answer=str(i))
        for i in range(3)
    ]
    write_dataset(str(tmp_path / "data"), items)
    cfg = EvalConfig(
        model_name_or_path=str(tiny_model_dir),
        backend="vllm",
        benchmarks=[BenchmarkSpec(name="records", uri=str(tmp_path / "data"))],
        output_dir=str(tmp_path / "out"),
        max_new_tokens=8,
        vllm_gpu_memory_utilization=0.2,
        vllm_max_model_len=1024,
    )
    summary = run(cfg)
    assert summary["n_items"] == 3 and summary["metrics"]["records/failed"] == 0


# Shapes seen in MATH-V's published outputs (mathllm/MATH-V outputs/, commit a1f5cc3a), written
# for the test. MATH-V's letter-only options ("A" ... "E") hold their content in the image.
LETTERS = ["A", "B", "C", "D", "E"]
AREAS = ["$48 \\mathrm{~cm}^{2}$", "$58 \\mathrm{~cm}^{2}$", "$60 \\mathrm{~cm}^{2}$"]


@pytest.mark.parametrize(
    ("completion", "options", "answer", "rule"),
    [
        # the article "a" is not option A
        ("Without a description of the figures, it is impossible to determine the order.", LETTERS, None, "none"),
        ("A square is missing from the picture.", LETTERS, None, "none"),
        # the capital letter alone still names a letter option
        ('The odd one out is the cube with the letter "D" on it.', LETTERS, "D", "final_sentence"),
        ("所以ΔADC的面积为D。", LETTERS, "D", "final_sentence"),
        # several letters after "the answer is" stay whole (the matcher refuses them)
        ("So the answer is (A), (C), and (E).", LETTERS, "(A), (C), and (E)", "answer_is"),
        # an option written in $...$ named by the last sentence
        ("Adding the two parts, the probability is $\\frac{3}{8}$.", ["$\\frac{3}{4}$", "$\\frac{3}{8}$"], None, None),
        # a value box and its letter box naming one option; one value boxed twice
        (
            "The area is $\\boxed{58 \\text{ cm}^2}$, which is answer choice $\\boxed{\\text{(B)}}$.",
            AREAS,
            "\\text{(B)}",
            "boxed",
        ),
        ("So each is \\boxed{2.5cm}. Answer: \\boxed{2.5}.", None, "2.5", "boxed"),
        # two boxes that differ stay a hedge, kept whole for the matcher to refuse
        ("So it is \\boxed{3} or \\boxed{4}.", None, "So it is \\boxed{3} or \\boxed{4}.", "boxed"),
        (
            "It is \\boxed{58 \\text{ cm}^2}, choice \\boxed{(C)}.",
            AREAS,
            "It is \\boxed{58 \\text{ cm}^2}, choice \\boxed{(C)}.",
            "boxed",
        ),
        # a box opened after "the answer is" and never closed
        ("So $x = \\frac{8}{15}\\sqrt{5}$. The answer is \\boxed{D.", LETTERS, "D", "answer_is"),
    ],
)
def test_extract_reads_mathv_shapes(completion: str, options: list[str], answer: str | None, rule: str | None) -> None:
    found = extract(completion, options)
    if rule is None:  # the value found is the option's text, as the sentence writes it
        assert found.rule == "final_sentence" and found.answer == options[1]
    else:
        assert (found.answer, found.rule) == (answer, rule)
