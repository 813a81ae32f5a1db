"""The teacher client against the offline teacher over real HTTP.

The offline teacher (``r1ov.synthetic.offline_teacher``) is the local stand-in for GPT-4o and
DeepSeek-R1: a real OpenAI-compatible server (FastAPI + uvicorn) on a free port, so what
runs here is the production client, its retries, its cache and its budget.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import openai
import pytest

from r1ov.config import SynthConfig, TeacherConfig
from r1ov.data import records
from r1ov.formalize import REGISTRY
from r1ov.scoring.reasoning import parse
from r1ov.synthetic import run as synthesize
from r1ov.synthetic.offline_teacher import fetch_stats, serve
from r1ov.synthetic.oracle import DISTILL_FLAWS, Oracle, noise_plan
from r1ov.teachers import BudgetExceeded, Reply, Request, TeacherClient, protocol
from r1ov.teachers.cache import ResponseCache, cache_key


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> str:
    uri = str(tmp_path_factory.mktemp("teachers") / "src")
    synthesize(SynthConfig(output_uri=uri, n=12, seed=3, kinds=["table", "chart", "circuit", "math"]))
    return uri


@pytest.fixture(scope="module")
def rows(dataset: str) -> list[dict]:
    return records.read_records(dataset)


def distill_request(row: dict) -> Request:
    """A distillation request as the distill stage builds it (formal text from ground truth)."""
    formalizer = REGISTRY[row["image_type"]]
    text = formalizer.reference(records.ground_truth(row))
    return Request(protocol.distill_messages(formalizer.language, text, row["question"], row["options"]))


def teacher(url: str, **overrides) -> TeacherConfig:
    return TeacherConfig(base_url=url, model="offline", **overrides)


def test_models_endpoint_speaks_openai(dataset: str) -> None:
    with serve([dataset], model="r1ov-offline-teacher") as url:
        models = openai.OpenAI(base_url=url, api_key="unused").models.list()
    assert [m.id for m in models.data] == ["r1ov-offline-teacher"]


def test_replies_follow_the_record(dataset: str, rows: list[dict]) -> None:
    with serve([dataset]) as url:
        replies = TeacherClient(teacher(url)).complete_all([distill_request(r) for r in rows])
    for row, reply in zip(rows, replies, strict=True):
        assert isinstance(reply, Reply), reply
        parsed = parse(reply.text)
        assert parsed.well_formed and parsed.answer == row["answer"]


def test_concurrency_bound_is_respected(dataset: str, rows: list[dict]) -> None:
    requests = [distill_request(r) for r in rows[:9]]
    for limit in (1, 3):
        with serve([dataset], delay_s=0.2) as url:
            started = time.monotonic()
            replies = TeacherClient(teacher(url, max_concurrency=limit)).complete_all(requests)
            elapsed = time.monotonic() - started
            stats = fetch_stats(url)
        assert all(isinstance(r, Reply) for r in replies)
        assert stats["max_in_flight"] == limit
        assert elapsed >= 0.2 * len(requests) / limit * 0.9


def test_retry_honours_retry_after(dataset: str, rows: list[dict]) -> None:
    # Retry-After of 2 s, far above the client's own first backoff (<= 0.5 s): waiting it proves it is read.
    with serve([dataset], fail_first=1, retry_after=2.0) as url:
        started = time.monotonic()
        [reply] = TeacherClient(teacher(url, max_retries=2)).complete_all([distill_request(rows[0])])
        elapsed = time.monotonic() - started
        stats = fetch_stats(url)
    assert isinstance(reply, Reply)
    assert stats["faults"] == 1 and stats["requests"] == 2
    assert elapsed >= 1.9


def test_a_failed_request_fails_alone(dataset: str, rows: list[dict]) -> None:
    with serve([dataset], fail_first=1, retry_after=0.1) as url:
        client = TeacherClient(teacher(url, max_retries=0, max_concurrency=1))
        results = client.complete_all([distill_request(r) for r in rows[:3]])
    failures = [r for r in results if isinstance(r, Exception)]
    assert len(failures) == 1 and isinstance(failures[0], openai.RateLimitError)
    assert sum(isinstance(r, Reply) for r in results) == 2
    assert client.stats.failed == 1


def test_cache_hit_costs_no_request_and_no_budget(dataset: str, rows: list[dict], tmp_path: Path) -> None:
    request = distill_request(rows[0])
    with serve([dataset]) as url:
        client = TeacherClient(teacher(url, cache_uri=str(tmp_path / "cache"), max_requests=1))
        [first] = client.complete_all([request])
        [again] = client.complete_all([request])  # budget spent, but the cache answers
        [other] = client.complete_all([distill_request(rows[1])])
        stats = fetch_stats(url)
        # A fresh client (a re-run of the stage) reads the same cache.
        [rerun] = TeacherClient(teacher(url, cache_uri=str(tmp_path / "cache"))).complete_all([request])
        assert fetch_stats(url)["requests"] == 1
    assert isinstance(first, Reply) and not first.cached
    assert isinstance(again, Reply) and again.cached and again.text == first.text
    assert isinstance(rerun, Reply) and rerun.cached
    assert isinstance(other, BudgetExceeded)
    assert stats["requests"] == 1
    assert client.summary()["sent"] == 1 and client.summary()["cache_hits"] == 1


def test_budget_refuses_requests_past_the_limit(dataset: str, rows: list[dict]) -> None:
    with serve([dataset]) as url:
        client = TeacherClient(teacher(url, max_requests=2, max_concurrency=4))
        results = client.complete_all([distill_request(r) for r in rows[:5]])
        assert fetch_stats(url)["requests"] == 2
    assert sum(isinstance(r, Reply) for r in results) == 2
    assert sum(isinstance(r, BudgetExceeded) for r in results) == 3


def test_unknown_image_is_a_client_error_not_retried(dataset: str) -> None:
    from r1ov.synthetic import generate

    stranger = generate(99, 0, "chart")["image"]
    request = Request(protocol.image_messages("classify", stranger, "image/png"))
    with serve([dataset]) as url:
        [result] = TeacherClient(teacher(url)).complete_all([request])
        assert fetch_stats(url)["requests"] == 1
    assert isinstance(result, openai.BadRequestError)
    assert "knows no record" in str(result)


def test_cache_key_ignores_dict_order_and_sees_params(tmp_path: Path) -> None:
    messages = [{"role": "user", "content": "hi"}]
    assert cache_key("m", messages, {"a": 1, "b": 2}) == cache_key("m", messages, {"b": 2, "a": 1})
    assert cache_key("m", messages, {"temperature": 0.1}) != cache_key("m", messages, {"temperature": 0.2})
    assert cache_key("m", messages, {}) != cache_key("n", messages, {})
    cache = ResponseCache(str(tmp_path))
    assert cache.get("ab" * 32) is None
    cache.put("ab" * 32, {"text": "x"})
    assert cache.get("ab" * 32) == {"text": "x"}
    (tmp_path / "ab" / f"{'ab' * 32}.json").write_text("{broken")
    assert cache.get("ab" * 32) is None  # a damaged entry is a miss


def test_noise_plan_is_seeded_exact_and_covers_every_flaw(rows: list[dict]) -> None:
    plan = noise_plan(rows, 0.5, "distill", 0, DISTILL_FLAWS)
    assert plan == noise_plan(list(reversed(rows)), 0.5, "distill", 0, DISTILL_FLAWS)
    assert len(plan) == 6 and set(plan.values()) == set(DISTILL_FLAWS)
    assert noise_plan(rows, 0.5, "distill", 1, DISTILL_FLAWS) != plan
    assert noise_plan(rows, 0.0, "distill", 0, DISTILL_FLAWS) == {}
    assert Oracle(rows, noise=0.5).distill_flaws == plan


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_command_line_server(dataset: str) -> None:
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "r1ov.synthetic.offline_teacher",
        "--data",
        dataset,
        "--port",
        str(port),
        "--noise",
        "0.1",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as response:
                    assert json.load(response)["data"][0]["id"] == "r1ov-offline-teacher"
                break
            except OSError:
                assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize("flaw", [None, "wrong_answer"])
@pytest.mark.parametrize("max_observations", [None, 0])
def test_a_label_that_reads_as_a_letter_is_not_taken_for_an_option(
    flaw: str | None, max_observations: int | None
) -> None:
    # A chart whose categories are called A, B, C asks "Which option has the lowest value?" with
    # no choices: the answer "B" is a label, and the chain must not look it up among options.
    from r1ov.scoring import answers
    from r1ov.scoring.reasoning import parse
    from r1ov.synthetic.oracle import chain

    row = {"question": "Which option has the lowest value in the chart?", "answer": "B", "options": None}
    reply = parse(chain(row, "x,y\nA,3\nB,1", flaw=flaw, max_observations=max_observations))
    assert reply.well_formed
    assert answers.answers_match(reply.answer, "B", []) is (flaw is None)
