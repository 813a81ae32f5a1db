"""The optional LLM extractor, against a local OpenAI-compatible endpoint over HTTP.

It must be asked only where every rule found nothing, its answer must go through the same
matcher as the rules', its use and failures must be counted, and the manifest must name it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from chat_stand_in import ChatStandIn

from r1ov import config as cfg
from r1ov.cli import main
from r1ov.config import BenchmarkSpec, EvalConfig, ExtractorConfig
from r1ov.data.records import new_record, write_dataset
from r1ov.eval import run
from r1ov.eval.llm_extract import PROMPT_SHA256, parse_reply
from r1ov.eval.offline import ScoreError, compare_files
from r1ov.testing import layouts
from r1ov.train.rewards import REWARDS


class ExtractorStandIn(ChatStandIn):
    """A chat-completions endpoint that answers extraction prompts from a fixed table.

    It reads the ``[Response]`` field of the prompt and replies with the first entry of
    ``REPLIES`` whose key the response contains (None: HTTP 500). Asked without that field
    (as the evaluated model), it answers from ``MODEL_ANSWERS`` by question. It does not read
    the response as a model would, and does not model rate limits, streaming or token accounting.
    """

    REPLIES: ClassVar[dict[str, str | None]] = {
        "most of the shape is blue": "Final answer: B",  # a label the parser strips
        "below the origin": "3",  # a wrong reading: the matcher, not the LLM, decides (gold -3)
        "partly hidden": None,  # the request fails
        "cannot tell": "NONE",
        "first ordering or the second": "A or B",  # a hedging reply is no answer
        "counting heads": "5",
    }
    MODEL_ANSWERS: ClassVar[dict[str, str]] = {
        "Question 0?": "<answer>7</answer>",
        "Question 1?": "There are counting heads here.",
    }

    def __init__(self) -> None:
        super().__init__(lambda body: self.reply(body["messages"][-1]["content"]))

    def reply(self, prompt: str | list) -> str | None:
        text = prompt if isinstance(prompt, str) else " ".join(p.get("text", "") for p in prompt)
        if "[Response]:" not in text:
            question = next((q for q in self.MODEL_ANSWERS if q in text), None)
            return self.MODEL_ANSWERS[question] if question else "I am not sure."
        response = text.split("[Response]:", 1)[1]
        return next((reply for key, reply in self.REPLIES.items() if key in response), "NONE")


@pytest.fixture
def server() -> Iterator[ExtractorStandIn]:
    with ExtractorStandIn() as stand_in:
        yield stand_in


# MathVista fixture pid -> response (pid 7 has none: --missing wrong scores it without a request)
RESPONSES = {
    "1": "<think>Measure it.</think><answer>1.2</answer>",  # rule answer_tag: no request
    "2": "Counting the shaded parts, most of the shape is blue.",  # LLM: B -> right
    "3": "The curve crosses the vertical axis below the origin.",  # LLM: 3 -> wrong (gold -3)
    "4": "The ruler is partly hidden.",  # LLM request fails: no answer, counted
    "5": "I cannot tell from the figure.",  # LLM: NONE
    "6": "<answer>A or B</answer>",  # rule hedge: no request
    "8": "<think>hmm</think><answer></answer>",  # empty answer tag: no request
    "9": "5",  # rule bare: no request
    "10": "It is either the first ordering or the second one.",  # LLM hedges: no answer
}
ASKED = {"2", "3", "4", "5", "10"}


def _score(tmp_path: Path, out: str, extra: list[str]) -> dict:
    data = layouts.write_mathvista_parquet(tmp_path / "mathvista")
    predictions = tmp_path / "p.jsonl"
    predictions.write_text("".join(json.dumps({"id": k, "response": v}) + "\n" for k, v in RESPONSES.items()))
    argv = ["eval", "score", "--benchmark", "mathvista", "--data", str(data), "--predictions", str(predictions)]
    argv += ["--out", str(tmp_path / out), "--bootstrap-samples", "0", "--missing", "wrong", *extra]
    assert main(argv) == 0
    return json.loads((tmp_path / out).read_text())


def _verdicts(tmp_path: Path, out: str) -> dict[str, dict]:
    path = tmp_path / out.replace(".json", ".verdicts.jsonl")
    return {v["benchmark_id"]: v for v in map(json.loads, path.read_text().splitlines())}


def test_eval_score_asks_the_llm_only_where_the_rules_found_nothing(
    tmp_path: Path, server: ExtractorStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXTRACTOR_KEY", "sk-extract")
    flags = ["--extractor-url", server.base_url, "--extractor-model", "reader", "--extractor-key-env", "EXTRACTOR_KEY"]
    scored = _score(tmp_path, "s.json", [*flags, "--extractor-retries", "0"])

    # Requests went out for exactly the items without a rule-found answer, one each.
    pattern = re.compile(r"\[Response\]: (.*)\n\[Final answer\]", re.S)
    sent = [pattern.search(r["messages"][0]["content"]) for r in server.requests]
    assert sorted(m.group(1) for m in sent if m) == sorted(RESPONSES[pid] for pid in ASKED)
    assert len(server.requests) == len(ASKED)
    first = server.requests[0]
    assert first["model"] == "reader" and first["auth"] == "Bearer sk-extract" and first["temperature"] == 0.0

    verdicts = _verdicts(tmp_path, "s.json")
    assert (verdicts["2"]["rule"], verdicts["2"]["extracted"], verdicts["2"]["correct"]) == ("llm", "B", True)
    # The LLM read "3"; the matcher says 3 is not -3.
    assert (verdicts["3"]["rule"], verdicts["3"]["extracted"], verdicts["3"]["correct"]) == ("llm", "3", False)
    for pid in ("4", "5", "10"):  # failed request, NONE, a hedging reply: still no answer
        assert (verdicts[pid]["rule"], verdicts[pid]["extracted"], verdicts[pid]["correct"]) == ("none", None, False)
    assert verdicts["1"]["rule"] == "answer_tag" and verdicts["6"]["rule"] == "hedge"
    assert verdicts["8"]["rule"] == "empty_answer" and verdicts["9"]["rule"] == "bare"

    assert scored["extractor"] == {"asked": 5, "answered": 2, "no_answer": 2, "failed": 1}
    assert scored["rules"]["llm"] == 2
    # 1, 2 and 9 right out of all 10 items (7 had no prediction).
    assert scored["overall"]["accuracy"] == pytest.approx(0.3)
    llm = scored["manifest"]["extractor"]["llm"]
    assert llm == {"model": "reader", "endpoint": server.base_url, "prompt_sha256": PROMPT_SHA256}
    beside = json.loads((tmp_path / "s.manifest.json").read_text())
    assert beside["extractor"]["llm"] == llm


def test_compare_refuses_scores_read_by_different_extractors(tmp_path: Path, server: ExtractorStandIn) -> None:
    _score(tmp_path, "rules.json", [])
    assert server.requests == []  # off by default
    _score(tmp_path, "llm.json", ["--extractor-url", server.base_url, "--extractor-model", "reader"])
    with pytest.raises(ScoreError, match=r"extractor\.llm"):
        compare_files(str(tmp_path / "rules.json"), str(tmp_path / "llm.json"))


def test_extractor_flags_go_together(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["eval", "score", "--benchmark", "mathvista", "--data", "x", "--predictions", "y", "--out", "z"]
    assert main([*argv, "--extractor-model", "reader"]) == 2
    assert "--extractor-url and --extractor-model go together" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("reply", "options", "answer"),
    [
        ("B", ["3", "4"], "B"),
        ("Final answer: 12 cm\nBecause the ruler...", None, "12 cm"),
        ("[Final answer]: \\boxed{\\frac{1}{2}}", None, "\\frac{1}{2}"),
        ("`-3`", None, "-3"),
        ("NONE", None, None),
        ("none.", None, None),
        ("N/A", None, None),
        ("", None, None),
        ("A, B or C", ["1", "2", "3"], None),
    ],
)
def test_replies_are_read_as_one_answer_or_none(reply: str, options: list[str] | None, answer: str | None) -> None:
    assert parse_reply(reply, options) == answer


def test_eval_run_counts_the_extractor_in_metrics_report_and_manifest(tmp_path: Path, server: ExtractorStandIn) -> None:
    items = [
        new_record(source="t", question=f"Question {i}?", image_type="math", image=layouts.png(), answer=answer)
        for i, answer in enumerate(["7", "5"])
    ]
    write_dataset(str(tmp_path / "data"), items)
    config = EvalConfig(
        model_name_or_path="served",
        backend="openai",
        base_url=server.base_url,
        max_retries=0,
        benchmarks=[BenchmarkSpec(name="records", uri=str(tmp_path / "data"))],
        output_dir=str(tmp_path / "out"),
        bootstrap_samples=0,
        extractor=ExtractorConfig(base_url=server.base_url, model="reader", max_retries=0),
    )
    summary = run(config)
    # Question 0 is tagged (rules), question 1 is prose the LLM reads as 5.
    assert summary["metrics"]["records/accuracy"] == 1.0
    assert summary["rules"] == {"answer_tag": 1, "llm": 1}
    assert summary["metrics"]["extractor/answered"] == 1.0 and summary["metrics"]["extractor/failed"] == 0.0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["extractor"] == {"asked": 1, "answered": 1, "no_answer": 0, "failed": 0}
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["extractor"]["llm"]["model"] == "reader"
    report = (tmp_path / "out" / "report.html").read_text()
    assert "it read an answer in 1 (rule llm)" in report and PROMPT_SHA256[:12] in report
    assert len([r for r in server.requests if r["model"] == "reader"]) == 1


def test_extractor_block_is_validated_at_load() -> None:
    base = ["model_name_or_path=m", "output_dir=/tmp/o", "benchmarks=[{name: records, uri: /d}]"]
    loaded = cfg.load(cfg.EvalConfig, None, [*base, "extractor={base_url: http://x/v1, model: r}"])
    assert loaded.extractor is not None and loaded.extractor.max_concurrency == 8
    assert cfg.load(cfg.EvalConfig, None, base).extractor is None  # off by default
    with pytest.raises(cfg.ConfigError, match=r"extractor\.max_concurrency"):
        cfg.load(cfg.EvalConfig, None, [*base, "extractor={base_url: http://x/v1, model: r, max_concurrency: 0}"])
    with pytest.raises(cfg.ConfigError, match=r"extractor\.model"):
        cfg.load(cfg.EvalConfig, None, [*base, "extractor={base_url: http://x/v1}"])


def test_grpo_rewards_stay_pure_rules(server: ExtractorStandIn) -> None:
    """Prose the LLM extractor would read earns no accuracy reward, and no request is made."""
    prose = ["Counting the shaded parts, most of the shape is blue.", "There are counting heads here."]
    assert REWARDS["accuracy"](prose, ["8/11", "5"], options=[["3/11", "8/11", "6/11", "3/5"], None]) == [0.0, 0.0]
    assert server.requests == []
