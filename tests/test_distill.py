"""The distill stage against the offline teacher over real HTTP.

The offline teacher (``r1ov.synthetic.offline_teacher``) is the local stand-in for DeepSeek-R1: a
real OpenAI-compatible server that writes role-played ``<think>`` chains from the ground truth.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from r1ov.config import DistillConfig, SynthConfig, TeacherConfig
from r1ov.data import records
from r1ov.distill.stage import completion_text, run
from r1ov.formalize import REGISTRY
from r1ov.scoring.answers import answers_match
from r1ov.scoring.reasoning import parse
from r1ov.synthetic import run as synthesize
from r1ov.synthetic.offline_teacher import fetch_stats, serve
from r1ov.teachers import Reply, load_prompt


def formalized(tmp_path: Path, n: int = 10, seed: int = 4) -> str:
    """Synthetic records formalized the way the offline teacher formalizes them (the references)."""
    source = str(tmp_path / "synthetic")
    synthesize(SynthConfig(output_uri=source, n=n, seed=seed))
    rows = []
    for row in records.read_records(source):
        formalizer = REGISTRY[row["image_type"]]
        row.update(formal_language=formalizer.language, formalization=formalizer.reference(records.ground_truth(row)))
        rows.append(records.stamp(row, "formalize", "offline"))
    uri = str(tmp_path / "formalized")
    records.write_dataset(uri, rows)
    return uri


@pytest.fixture
def dataset(tmp_path: Path) -> str:
    return formalized(tmp_path)


def test_distill_writes_reasoning_and_answers(dataset: str, tmp_path: Path) -> None:
    inputs = records.read_records(dataset)
    with serve([dataset]) as url:
        cfg = DistillConfig(
            input_uri=dataset,
            output_uri=str(tmp_path / "out"),
            teacher=TeacherConfig(base_url=url, model="offline-r1"),
            shard_size=4,
        )
        summary = run(cfg)
        assert fetch_stats(url)["tasks"] == {"distill": len(inputs)}
    out = records.read_records(cfg.output_uri)
    assert summary["records"] == len(inputs) == len(out) and summary["rejected"] == 0
    prompt_sha = hashlib.sha256(load_prompt("distill").encode()).hexdigest()
    for row in out:
        parsed = parse(row["reasoning"])
        assert parsed.well_formed and row["predicted_answer"] == parsed.answer
        assert answers_match(row["predicted_answer"], row["answer"], row["options"])
        assert [p["stage"] for p in row["provenance"]] == ["formalize", "distill"]
        assert row["provenance"][-1]["model"] == "offline-r1"
        assert row["provenance"][-1]["prompt_sha256"] == prompt_sha
        # The chain walks through the image content, never through "the description".
        assert "description" not in row["reasoning"].lower()


def test_noise_is_kept_for_the_filter_and_broken_format_is_asked_again(dataset: str, tmp_path: Path) -> None:
    from r1ov.synthetic.offline_teacher import load_oracle

    broken = sum(f == "broken_format" for f in load_oracle([dataset], noise=0.6).distill_flaws.values())
    with serve([dataset], noise=0.6) as url:
        cfg = DistillConfig(
            input_uri=dataset, output_uri=str(tmp_path / "out"), teacher=TeacherConfig(base_url=url, model="m")
        )
        summary = run(cfg)
    out = records.read_records(cfg.output_uri)
    # Distill does not judge content: flawed chains are stored as they came for the filter. A
    # reply in the wrong shape is sent back once with what is wrong, and the second one is kept.
    assert summary["records"] == len(out) == 10
    assert broken > 0 and summary["teacher"]["corrections"] == broken
    assert all(parse(r["reasoning"]).well_formed for r in out)
    assert any(not answers_match(r["predicted_answer"], r["answer"], r["options"]) for r in out)


def test_rows_without_formalization_and_teacher_errors_are_rejected(dataset: str, tmp_path: Path) -> None:
    rows = records.read_records(dataset)
    rows[0]["formalization"] = None
    uri = str(tmp_path / "partial")
    records.write_dataset(uri, rows)
    with serve([dataset], fail_first=1, retry_after=0.05) as url:
        teacher = TeacherConfig(base_url=url, model="m", max_retries=0, max_concurrency=1)
        cfg = DistillConfig(input_uri=uri, output_uri=str(tmp_path / "out"), teacher=teacher)
        summary = run(cfg)
    rejected = {r["id"]: r["reject_reason"] for r in records.read_records(cfg.output_uri, records.REJECTED)}
    assert rejected[rows[0]["id"]].startswith("no_formalization: ")
    assert sum(reason.startswith("teacher_error: RateLimitError") for reason in rejected.values()) == 1
    assert summary["records"] == len(rows) - 2
    accepted = {r["id"] for r in records.read_records(cfg.output_uri)}
    assert accepted | set(rejected) == {r["id"] for r in rows} and not accepted & set(rejected)


def test_plain_prompt_when_role_play_is_off(dataset: str, tmp_path: Path) -> None:
    with serve([dataset]) as url:
        cfg = DistillConfig(
            input_uri=dataset,
            output_uri=str(tmp_path / "out"),
            teacher=TeacherConfig(base_url=url, model="m"),
            role_play=False,
        )
        run(cfg)
        assert fetch_stats(url)["tasks"] == {"distill_plain": 10}
    sha = hashlib.sha256(load_prompt("distill_plain").encode()).hexdigest()
    assert {r["provenance"][-1]["prompt_sha256"] for r in records.read_records(cfg.output_uri)} == {sha}


def test_completion_text_puts_r1_reasoning_content_in_think() -> None:
    r1 = Reply(text="<answer>B</answer>", model="deepseek-reasoner", reasoning_content="The bar for B is tallest.")
    text = completion_text(r1)
    assert parse(text).well_formed and parse(text).think == "The bar for B is tallest." and parse(text).answer == "B"
    plain = Reply(text="<think>x</think><answer>1</answer>", model="m")
    assert completion_text(plain) == plain.text
