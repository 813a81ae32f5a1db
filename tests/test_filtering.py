"""The filter's rule checks, and the stage end to end with an LLM judge.

The judge and the distilling teacher are the offline teacher (``r1ov.synthetic.offline_teacher``),
the local stand-in for GPT-4o / DeepSeek-R1: a real OpenAI-compatible HTTP server whose
seeded noise produces every kind of flawed chain the filter must catch.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from r1ov.config import DistillConfig, FilterConfig, SynthConfig, TeacherConfig
from r1ov.data import imaging, records
from r1ov.distill.stage import run as distill
from r1ov.filtering import role_play
from r1ov.filtering.stage import (
    CHECKS,
    check_answer_agreement,
    check_format,
    check_length,
    check_mentions_description,
    check_repetition,
    parse_judgement,
    parse_role_play,
    repeated_ngram_ratio,
    run,
)
from r1ov.formalize import REGISTRY
from r1ov.scoring.reasoning import compose, parse
from r1ov.synthetic import run as synthesize
from r1ov.synthetic.offline_teacher import fetch_stats, load_oracle, serve

# The check each flaw of the offline teacher must be caught by.
CAUGHT_BY = {
    "wrong_answer": "answer_agreement",
    "repetitive": "repetition",
    "too_short": "length",
    "mentions_description": "mentions_description",
    "ungrounded": "judge",
}
NOISE = 0.5


def cfg(**overrides) -> FilterConfig:
    return FilterConfig(input_uri="in", output_uri="out", **overrides)


def row(reasoning: str, answer: str | None = "B", options: list[str] | None = None) -> dict:
    return {"reasoning": reasoning, "predicted_answer": parse(reasoning).answer, "answer": answer, "options": options}


GOOD = compose("The tallest bar is the second one, labelled B, at 42 units.", "B")


def test_format() -> None:
    assert check_format(row(GOOD), cfg())[0]
    for bad in [
        "<think>x</think>",
        "<think>a</think><answer></answer>",
        "B",
        GOOD + GOOD,
        "<think>x<answer>B</answer>",
    ]:
        assert not check_format(row(bad), cfg())[0], bad


def test_answer_agreement() -> None:
    options = ["red", "blue", "green"]
    assert check_answer_agreement(row(compose("It is blue.", "B"), "B", options), cfg())[0]
    assert check_answer_agreement(row(compose("It is blue.", "blue"), "B", options), cfg())[0]
    assert not check_answer_agreement(row(compose("It is red.", "A"), "B", options), cfg())[0]
    assert not check_answer_agreement(row("no tags at all", "B", options), cfg())[0]
    assert check_answer_agreement(row(compose("x", "12.0"), "12"), cfg())[0]
    # No ground truth, or the check turned off: nothing to disagree with.
    assert check_answer_agreement(row(compose("x", "A"), None), cfg())[0]
    assert check_answer_agreement(row(compose("x", "A"), "B"), cfg(require_answer_match=False))[0]


def test_length() -> None:
    assert check_length(row(GOOD), cfg())[0]
    assert not check_length(row(compose("B.", "B")), cfg())[0]
    assert not check_length(row(GOOD), cfg(max_think_chars=10))[0]
    assert not check_length(row("<answer>B</answer>"), cfg())[0]


def test_repetition() -> None:
    assert repeated_ngram_ratio("a b c d e f g h i j") == 0.0
    assert repeated_ngram_ratio("short text") == 0.0
    looping = " ".join(["I look at the image again to be sure."] * 20)
    assert repeated_ngram_ratio(looping) > 0.8
    assert check_repetition(row(GOOD), cfg())[0]
    assert not check_repetition(row(compose(looping, "B")), cfg())[0]
    assert check_repetition(row(compose(looping, "B")), cfg(max_repeated_ngram_ratio=1.0))[0]


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("According to the description, the bar is tall.", "json"),
        ("The provided description lists three resistors.", "spice"),
        ("The description of the image shows two cubes.", "json"),
        ("Looking at the netlist, R1 is 100 ohm.", "spice"),
        ("The SPICE lines connect R1 to node 2.", "spice"),
        ("The formal text shows a loop.", "plantuml"),
        ("The PlantUML has an arrow from A to B.", "plantuml"),
        # the label MathVista's OCR prompt gives OCR output; chains written from it repeat it
        ("The image detected text shows 12 and 10.", None),
        # the record's own formal description's parts
        ("From the CSV data, Ann has 12.", "csv"),
        ("The JSON lists the bars as 3, 5 and 9.", "json"),
        ("The caption says a dog sits on the sofa.", "boxes"),
        ("The bounding boxes put the cup left of the plate.", "boxes"),
        ("The OCR text reads TOTAL 42.50.", "ocr"),
        ("The reconstruction lists three items.", "ocr"),
    ],
)
def test_role_play_breaks_are_rejected_by_rule(text: str, language: str | None) -> None:
    found = role_play.find(compose(text, "B"), language)
    assert found is not None and found.kind == "break", found
    passed, detail = check_mentions_description({**row(compose(text, "B")), "formal_language": language}, cfg())
    assert not passed and "role-play broken" in detail


@pytest.mark.parametrize(
    ("text", "language"),
    [
        (GOOD, "json"),
        ("Which description fits? The second option describes the tallest bar.", "json"),
        ("The table's second row reads 12.", "csv"),
        # Documents and screenshots: their text and code are what the image shows.
        ("The receipt's total appears in the text at the bottom: 42.50.", "ocr"),
        ("Based on the text in the second paragraph, the author disagrees.", "ocr"),
        # published chains by models that saw the image use these (docs/benchmarks/role_play.md)
        ("The options do not fit the description of arrow-shaped leaves.", "strategy"),
        ("A spice rack hangs above the stove.", "boxes"),
        ("The graph that best matches this description is B.", "strategy"),
        ("Comparing this description to the pieces, piece C has the curved top.", "strategy"),
        ("In the table, the coordinates of point A are (2, 3).", "csv"),
    ],
)
def test_role_play_lets_image_talk_pass(text: str, language: str) -> None:
    assert role_play.find(compose(text, "B"), language) is None
    assert check_mentions_description({**row(compose(text, "B")), "formal_language": language}, cfg())[0]


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("The caption under Figure 2 says the loss falls.", "ocr"),  # a document's figure caption
        ("The screenshot shows the HTML code of a form with two inputs.", "html"),
        ("OCR scores 44% and Rec 69%, so Rec is highest.", "json"),  # a bar labelled OCR on a chart
        ("The abstract says OCR errors fall by half.", "ocr"),  # a page about OCR, given as OCR
        ("The JSON file open in the editor has three keys.", "ocr"),  # a screenshot of an editor
    ],
)
def test_wording_the_image_may_show_is_a_question_for_the_judge(text: str, language: str) -> None:
    found = role_play.find(compose(text, "B"), language)
    assert found is not None and found.kind == "question"
    passed, detail = check_mentions_description({**row(compose(text, "B")), "formal_language": language}, cfg())
    assert passed and "no judge asked" in detail


def test_the_judge_settles_the_role_play_the_rule_cannot(tmp_path: Path) -> None:
    """Through the real protocol: a document's figure caption is kept, a caption written about a
    photo (the description's own labelled part) is broken; the judge's answer is the check's verdict."""
    image = imaging.to_png(Image.new("RGB", (64, 64), "white"))

    def item(question: str, language: str, formalization: str, think: str) -> dict:
        record = records.new_record(source="t", question=question, image_type="text", image=image, answer="B")
        return {**record, "formal_language": language, "formalization": formalization,
                "reasoning": compose(think, "B"), "predicted_answer": "B"}  # fmt: skip

    document = item(
        "Which curve falls fastest?",
        "ocr",
        "OCR:\nFigure 2: loss of curve B falls fastest\nReconstruction:\n# Loss",
        "The caption under Figure 2 says the loss of curve B falls fastest, so curve B.",
    )
    photo = item(
        "Which animal is on the sofa?",
        "strategy",
        "Strategy: count animals\nCaption: a dog B on a sofa",
        "The caption says a dog is on the sofa, so the dog, B.",
    )
    source = str(tmp_path / "in")
    records.write_dataset(source, [document, photo])
    with serve([source]) as url:
        config = FilterConfig(input_uri=source, output_uri=str(tmp_path / "out"),
                              judge=TeacherConfig(base_url=url, model="judge"), min_accepted_fraction=0)  # fmt: skip
        run(config)
    accepted, rejected = _parts(config.output_uri)
    assert set(accepted) == {document["id"]} and set(rejected) == {photo["id"]}
    assert rejected[photo["id"]]["reject_reason"].startswith("mentions_description: role-play broken")
    kept = next(v for v in accepted[document["id"]]["verdicts"] if v["name"] == "mentions_description")
    assert kept["passed"] and "the judge: role-play kept" in kept["detail"]


def test_parse_role_play() -> None:
    assert parse_role_play('{"verdict": "pass", "role_play": "kept", "reason": "x"}') is True
    assert parse_role_play('{"verdict": "pass", "role_play": "Broken"}') is False
    assert parse_role_play('{"verdict": "pass"}') is None


def test_parse_judgement() -> None:
    assert parse_judgement('{"verdict": "pass", "reason": "fine"}') == (True, "fine")
    assert parse_judgement('```json\n{"verdict": "FAIL", "reason": "misreads R2"}\n```') == (False, "misreads R2")
    passed, detail = parse_judgement("Looks good to me!")
    assert not passed and detail.startswith("unparseable judge reply")
    assert not parse_judgement('{"verdict": "maybe"}')[0]


# --------------------------------------------------------------------------- the stage


@pytest.fixture(scope="module")
def distilled(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    """Formalized synthetic records distilled by a noisy offline teacher; (uri, {id: flaw})."""
    tmp = tmp_path_factory.mktemp("filtering")
    source = str(tmp / "synthetic")
    synthesize(SynthConfig(output_uri=source, n=14, seed=6))
    rows = []
    for item in records.read_records(source):
        formalizer = REGISTRY[item["image_type"]]
        item.update(formal_language=formalizer.language, formalization=formalizer.reference(records.ground_truth(item)))
        rows.append(item)
    formalized = str(tmp / "formalized")
    records.write_dataset(formalized, rows)
    out = str(tmp / "distilled")
    with serve([formalized], noise=NOISE) as url:
        distill(DistillConfig(input_uri=formalized, output_uri=out, teacher=TeacherConfig(base_url=url, model="m")))
    # A chain in the wrong shape is asked again by distill (reply_problem) and comes back whole.
    flaws = load_oracle([formalized], noise=NOISE).distill_flaws
    return out, {rid: flaw for rid, flaw in flaws.items() if flaw != "broken_format"}


def _parts(uri: str) -> tuple[dict[str, dict], dict[str, dict]]:
    accepted = {r["id"]: r for r in records.read_records(uri)}
    rejected = {r["id"]: r for r in records.read_records(uri, records.REJECTED)}
    return accepted, rejected


def test_filter_with_judge_catches_every_flaw(distilled: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    uri, flaws = distilled
    inputs = records.read_records(uri)
    assert set(flaws.values()) == set(CAUGHT_BY), "the noise should produce every kind of flaw"
    with serve([uri]) as url:
        config = FilterConfig(
            input_uri=uri, output_uri=str(tmp_path / "out"), judge=TeacherConfig(base_url=url, model="judge")
        )
        summary = run(config)
        judged = fetch_stats(url)["tasks"]["judge"]
    accepted, rejected = _parts(config.output_uri)
    assert sorted([*accepted, *rejected]) == sorted(r["id"] for r in inputs)
    assert set(accepted) == {r["id"] for r in inputs} - set(flaws)
    for rid, flaw in flaws.items():
        assert rejected[rid]["reject_reason"].startswith(CAUGHT_BY[flaw] + ": "), (flaw, rejected[rid]["reject_reason"])
    for item in [*accepted.values(), *rejected.values()]:
        assert [v["name"] for v in item["verdicts"]] == [*CHECKS, "judge"]
        assert item["provenance"][-1]["stage"] == "filter"
    # Rows that failed a rule are not sent to the judge; their judge verdict says so.
    skipped = [v for r in rejected.values() for v in r["verdicts"] if v["name"] == "judge" and v["passed"] is None]
    assert len(skipped) == sum(1 for f in flaws.values() if f != "ungrounded")
    assert judged == len(inputs) - len(skipped)
    assert summary["reject_reasons"] == {CAUGHT_BY[f]: list(flaws.values()).count(f) for f in set(flaws.values())}
    assert summary["acceptance_rate"] == round(len(accepted) / len(inputs), 4)
    assert records.read_manifest(config.output_uri)["acceptance_rate"] == summary["acceptance_rate"]


def test_filter_without_judge_keeps_ungrounded_chains(distilled: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    uri, flaws = distilled
    summary = run(FilterConfig(input_uri=uri, output_uri=str(tmp_path / "out")))
    accepted, rejected = _parts(str(tmp_path / "out"))
    assert {rid for rid, f in flaws.items() if f == "ungrounded"} <= set(accepted)
    assert "judge" not in summary["reject_reasons"] and len(rejected) == sum(f != "ungrounded" for f in flaws.values())
    assert all([v["name"] for v in r["verdicts"]] == list(CHECKS) for r in accepted.values())


def test_judge_failed_judges_every_row(distilled: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    uri, _ = distilled
    with serve([uri]) as url:
        judge = TeacherConfig(base_url=url, model="judge")
        run(FilterConfig(input_uri=uri, output_uri=str(tmp_path / "out"), judge=judge, judge_failed=True))
        assert fetch_stats(url)["tasks"]["judge"] == len(records.read_records(uri))
    accepted, rejected = _parts(str(tmp_path / "out"))
    assert all(v["passed"] is not None for r in [*accepted.values(), *rejected.values()] for v in r["verdicts"])


def test_judge_errors_are_teacher_errors_and_redone(distilled: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    uri, _ = distilled
    with serve([uri], fail_first=1, retry_after=0.05) as url:
        judge = TeacherConfig(base_url=url, model="judge", max_retries=0, max_concurrency=1)
        # The fixture is mostly flawed on purpose: no acceptance floor here.
        config = FilterConfig(input_uri=uri, output_uri=str(tmp_path / "out"), judge=judge, min_accepted_fraction=0)
        first = run(config)
        second = run(config)  # the batch with a teacher error is redone; the fault is spent
        clean = run(config.model_copy(update={"output_uri": str(tmp_path / "clean")}))
    assert first["reject_reasons"]["teacher_error"] == 1
    assert second["resumed_shards"] == 0
    for key in ("records", "rejected", "reject_reasons"):
        assert second[key] == clean[key]
