"""The LLM judge beside the rules, against a local OpenAI-compatible judge over HTTP."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from chat_stand_in import ChatStandIn

from r1ov.cli import main
from r1ov.config import BenchmarkSpec, EvalConfig, JudgeConfig
from r1ov.data.records import new_record, write_dataset
from r1ov.eval import run
from r1ov.eval.judge import parse_verdict
from r1ov.testing import layouts


class JudgeStandIn(ChatStandIn):
    """A chat-completions endpoint that grades like a lenient judge.

    It reads ``[Standard Answer]`` and ``[Model Answer]`` from the prompt and answers "1"
    when they are equal ignoring case, spaces and parentheses, or when the model answer
    names the option whose text is the standard answer; it also says "1" for any answer
    containing "approximately" (a judge's known leniency). It answers "maybe" to answers
    containing "unsure" and HTTP 500 to "crash". Asked a question without those fields (as the
    evaluated model), it answers ``<answer>1</answer>``. It does not model rate limits, streaming,
    token accounting or any real model's judgement.
    """

    def __init__(self) -> None:
        super().__init__(lambda body: self.grade(body["messages"][-1]["content"]))

    @staticmethod
    def grade(prompt: str) -> str | None:
        def field(name: str) -> str:
            match = re.search(rf"\[{re.escape(name)}\]: (.*)", prompt)
            return match.group(1).strip() if match else ""

        if "[Standard Answer]" not in prompt:  # asked as the evaluated model, not as the judge
            return "<think>One more than nothing.</think><answer>1</answer>"
        answer, model = field("Standard Answer"), field("Model Answer")
        if "crash" in model:
            return None
        if "unsure" in model:
            return "maybe"
        if "approximately" in model:
            return "1"

        def norm(text: str) -> str:
            return re.sub(r"[\s()]", "", text).lower()

        options = dict(re.findall(r"\(([A-Z])\) ([^;]+)", field("Options")))
        letter = norm(model)[:1].upper() if len(norm(model)) == 1 else None
        same = norm(answer) == norm(model) or (letter is not None and norm(options.get(letter, "")) == norm(answer))
        return "1" if same else "0"


@pytest.fixture
def judge_server() -> Iterator[JudgeStandIn]:
    with JudgeStandIn() as server:
        yield server


def tagged(answer: str) -> str:
    return f"<think>I reason about the figure.</think><answer>{answer}</answer>"


# pid -> response; the rules and the lenient judge agree on all but 5 and 9
RESPONSES = {
    "1": tagged("1.2"),  # both right
    "2": tagged("B"),  # both right (the judge maps the letter to its text)
    "3": tagged("3"),  # both wrong: the gold is -3
    "4": tagged("12"),  # both right
    "5": tagged("approximately 12"),  # rules: not one value; the judge: right
    "6": tagged("unsure"),  # the judge gives no verdict
    "7": tagged("crash"),  # the judge's request fails
    "8": tagged("0.25"),  # both right
    "9": tagged("5.0"),  # rules: right (5.0 is 5); the judge compares text: wrong
    "10": tagged("R, D, N"),  # both right
}


def test_judge_is_scored_beside_the_rules(
    tmp_path: Path, judge_server: JudgeStandIn, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUDGE_KEY", "sk-judge")
    data = layouts.write_mathvista_parquet(tmp_path / "mathvista")
    predictions = tmp_path / "p.jsonl"
    predictions.write_text("".join(json.dumps({"id": k, "response": v}) + "\n" for k, v in RESPONSES.items()))
    argv = ["eval", "score", "--benchmark", "mathvista", "--data", str(data), "--predictions", str(predictions)]
    argv += ["--out", str(tmp_path / "s.json"), "--bootstrap-samples", "100", "--judge-url", judge_server.base_url]
    argv += [
        "--judge-model",
        "grader",
        "--judge-key-env",
        "JUDGE_KEY",
        "--judge-concurrency",
        "3",
        "--judge-retries",
        "0",
    ]
    assert main(argv) == 0
    scored = json.loads((tmp_path / "s.json").read_text())
    # The rules decide the score: 1, 2, 4, 8, 9, 10 right.
    assert scored["overall"]["accuracy"] == pytest.approx(0.6)
    judged = scored["judge"]
    assert judged["n"] == 8 and judged["failed"] == 2
    assert judged["accuracy"] == pytest.approx(6 / 8)  # 1, 2, 4, 5, 8, 10
    assert judged["agreement_with_rules"] == pytest.approx(6 / 8)
    assert (judged["judge_only_correct"], judged["rules_only_correct"]) == (1, 1)
    verdicts = {v["benchmark_id"]: v for v in map(json.loads, (tmp_path / "s.verdicts.jsonl").read_text().splitlines())}
    assert verdicts["5"]["judge"] is True and verdicts["5"]["correct"] is False
    assert verdicts["6"]["judge"] is None and verdicts["7"]["judge"] is None

    request = next(r for r in judge_server.requests if "[Model Answer]: B" in r["messages"][0]["content"])
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sk-judge"
    assert request["model"] == "grader" and request["temperature"] == 0.0
    assert "[Options]: (A) 3/11; (B) 8/11; (C) 6/11; (D) 3/5" in request["messages"][0]["content"]
    assert "[Standard Answer]: 8/11" in request["messages"][0]["content"]
    assert json.loads(capsys.readouterr().out)["judge"]["n"] == 8


def test_judge_flags_go_together(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["eval", "score", "--benchmark", "mathvista", "--data", "x", "--predictions", "y", "--out", "z"]
    assert main([*argv, "--judge-url", "http://127.0.0.1:1/v1"]) == 2
    assert "--judge-url and --judge-model go together" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [("1", True), ("0", False), ("Judgement: 1", True), (" 0\n", False), ("yes", None), ("", None)],
)
def test_verdicts_are_read_strictly(reply: str, verdict: bool | None) -> None:
    assert parse_verdict(reply) is verdict


def test_eval_run_reports_the_judge_beside_the_rules(tmp_path: Path, judge_server: JudgeStandIn) -> None:
    items = [
        new_record(source="t", question=f"Question {i}?", image_type="math", image=layouts.png(), answer=answer)
        for i, answer in enumerate(["1", "1", "2"])
    ]
    write_dataset(str(tmp_path / "data"), items)
    cfg = EvalConfig(
        model_name_or_path="served",
        backend="openai",
        base_url=judge_server.base_url,
        max_retries=0,
        benchmarks=[BenchmarkSpec(name="records", uri=str(tmp_path / "data"))],
        output_dir=str(tmp_path / "out"),
        bootstrap_samples=0,
        judge=JudgeConfig(base_url=judge_server.base_url, model="grader", max_retries=0),
    )
    summary = run(cfg)
    assert summary["metrics"]["records/accuracy"] == pytest.approx(2 / 3)
    assert summary["metrics"]["judge/accuracy"] == pytest.approx(2 / 3)
    assert summary["metrics"]["judge/agreement_with_rules"] == 1.0
    judged = [r for r in judge_server.requests if r["model"] == "grader"]
    assert len(judged) == 3 and all("[Model Answer]: 1" in r["messages"][0]["content"] for r in judged)
