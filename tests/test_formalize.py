"""Formalizers' checks and the formalize stage.

The stage runs against the offline teacher (``r1ov.synthetic.offline_teacher``), the local stand-in
for GPT-4o: a real OpenAI-compatible HTTP server answering from the synthetic ground truth.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from PIL import Image

from r1ov.config import FormalizeConfig, PerceptionConfig, SynthConfig, TeacherConfig
from r1ov.data import imaging, records
from r1ov.data.outcome import StageFailed
from r1ov.formalize import REGISTRY, formalize_batch, parse_image_type
from r1ov.formalize import run as formalize_run
from r1ov.formalize.checks import strip_fences
from r1ov.formalize.stage import image_payload
from r1ov.synthetic import run as synthesize
from r1ov.synthetic.offline_teacher import fetch_stats, load_oracle, serve
from r1ov.teachers import TeacherClient, load_prompt

# The examples of docs/ground-truth.md, one per type.
EXAMPLES = {
    "circuit": {
        "kind": "circuit",
        "components": [
            {"name": "V1", "type": "V", "nodes": ["1", "0"], "value": "DC 9"},
            {"name": "R1", "type": "R", "nodes": ["1", "2"], "value": "100"},
            {"name": "R2", "type": "R", "nodes": ["2", "0"], "value": "4.7k"},
        ],
        "ground": "0",
    },
    "flowchart": {
        "kind": "flowchart",
        "nodes": [
            {"id": "n0", "label": "Start", "shape": "start"},
            {"id": "n1", "label": 'Is x "big"?', "shape": "decision"},
            {"id": "n2", "label": "End", "shape": "end"},
        ],
        "edges": [{"src": "n0", "dst": "n1", "label": ""}, {"src": "n1", "dst": "n2", "label": "yes"}],
    },
    "layout": {
        "kind": "layout",
        "elements": [
            {"tag": "header", "text": "Shop & Co", "box": [0, 0, 320, 40]},
            {"tag": "img", "text": "logo", "box": [0, 40, 60, 80]},
            {"tag": "button", "text": "Buy <now>", "box": [10, 90, 90, 120]},
        ],
    },
    "table": {"kind": "table", "columns": ["Name", "Q1"], "rows": [["Ann", "12"], ["Bob, Jr.", "7"]]},
    "chart": {
        "kind": "chart",
        "chart_type": "bar",
        "title": "Sales",
        "x": ["A", "B"],
        "series": [{"name": "sales", "values": [3, 5]}],
    },
    "natural": {
        "kind": "natural",
        "objects": [{"label": "tree", "box": [10, 20, 50, 90]}, {"label": "dog", "box": [60, 70, 90, 95]}],
        "caption": "A dog sits under a tree.",
    },
    "text": {"kind": "text", "lines": ["INVOICE 2031", "Total: 42.50"]},
    "math": {
        "kind": "math",
        "figure": "right_triangle",
        "facts": {"a": 3, "b": 4},
        "strategy": "Pythagorean theorem: c = sqrt(a^2 + b^2)",
    },
    "clevr": {
        "kind": "clevr",
        "objects": [{"shape": "cube", "color": "red", "size": "large", "material": "metal", "box": [1, 2, 30, 40]}],
    },
}

REFUSAL = "I'm sorry, but I can't describe this image."
GARBAGE = {
    "circuit": ["* netlist\nR1 1 2\n.end", "* netlist\nThe circuit has a battery.\n.end", "* only a title"],
    "flowchart": ["n0 --> n1", '@startuml\nrectangle "A" as n0\n@enduml', "@enduml\nn0 --> n1\n@startuml"],
    "layout": ["<html><body><div>text</body></html>", "<html><body><p>open", "just prose"],
    "table": ["Name,Q1\nAnn,12,13", "Sorry, no table.", 'Name,Q1\n"Ann,12'],
    "chart": ["{not json", '{"title": "x"}', "[1, 2]", '{"chart_type": "bar", "x": [], "series": []}'],
    "natural": [
        '[{"label": "tree", "box": [0, 0, 10, 10]}]',
        '[{"label": "tree"}]\nCaption: a tree',
        '[{"label": "tree", "box": [10, 0, 0, 10]}]\nCaption: a tree',
        "A tree.\nCaption: a tree",
    ],
    "text": ["Reconstruction:\n# x", "OCR:\n\nReconstruction:\nx"],
    "math": ["Figure: x\nFacts:\nStrategy: y", "Figure: x\nFacts:\n- a = 3"],
    "clevr": ['{"objects": []}', '{"scene": 1}'],
}


def test_registry_covers_every_image_type() -> None:
    assert set(REGISTRY) == set(records.IMAGE_TYPES) - {"unknown"}
    for formalizer in REGISTRY.values():
        assert load_prompt(formalizer.prompt)  # every prompt file exists


@pytest.mark.parametrize("image_type", sorted(EXAMPLES))
def test_check_accepts_the_reference_and_rejects_garbage(image_type: str) -> None:
    formalizer = REGISTRY[image_type]
    reference = formalizer.reference(EXAMPLES[image_type])
    assert formalizer.check(reference) == (True, formalizer.check(reference)[1])
    fenced = f"```{formalizer.language}\n{reference}\n```"
    assert formalizer.check(strip_fences(fenced))[0]
    for garbage in [REFUSAL, "", *GARBAGE[image_type]]:
        passed, detail = formalizer.check(strip_fences(garbage))
        assert not passed, (image_type, garbage)
        assert detail


def test_references_of_synthetic_ground_truth_pass_their_checks(tmp_path: Path) -> None:
    uri = str(tmp_path / "all")
    synthesize(SynthConfig(output_uri=uri, n=27, seed=11, kinds=sorted(REGISTRY)))
    for row in records.read_records(uri):
        formalizer = REGISTRY[row["image_type"]]
        passed, detail = formalizer.check(formalizer.reference(records.ground_truth(row)))
        assert passed, (row["image_type"], detail)


def test_parse_image_type() -> None:
    assert parse_image_type("Table.") == "table"
    assert parse_image_type("This is a flowchart") == "flowchart"
    assert parse_image_type("bar CHART") == "chart"
    assert parse_image_type("no idea") is None


def _png(size: tuple[int, int], fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format=fmt)
    return buffer.getvalue()


def test_image_payload_sends_originals_and_downscales_large_images() -> None:
    small = _png((40, 30))
    assert image_payload({"image": small}, 10_000) == (small, "image/png")
    data, mime = image_payload({"image": _png((400, 300))}, 10_000)
    width, height = Image.open(io.BytesIO(data)).size
    assert mime == "image/png" and width * height <= 10_000 and width > height
    data, mime = image_payload({"image": _png((40, 30), "BMP")}, 10_000)
    assert mime == "image/png" and Image.open(io.BytesIO(data)).format == "PNG"
    with pytest.raises(imaging.BadImage):
        image_payload({"image": b"\x89PNG\r\n\x1a\nbroken"}, 10_000)
    with pytest.raises(imaging.BadImage):
        image_payload({"image_uri": "/nonexistent/r1ov/image.png"}, 10_000)


# --------------------------------------------------------------------------- the stage


def _inputs(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """Synthetic records of every type plus rows that must be set aside; returns (uri, special ids)."""
    source = str(tmp_path / "synthetic")
    synthesize(SynthConfig(output_uri=source, n=9, seed=5, kinds=sorted(REGISTRY)))
    rows = records.read_records(source)
    first = rows[0]
    corrupt = records.new_record(
        source="test/corrupt", question="What is shown?", image_type="table", image=b"\x89PNG\r\n\x1a\nnot a png"
    )
    missing = records.new_record(
        source="test/missing", question="What is shown?", image_type="chart", image_uri=str(tmp_path / "gone.png")
    )
    untyped = records.new_record(
        source="test/untyped",
        question=first["question"],
        image_type="unknown",
        image=first["image"],
        options=first["options"],
        answer=first["answer"],
        ground_truth=records.ground_truth(first),
    )
    sketch = records.new_record(
        source="test/sketch", question="What is drawn?", image_type="natural", image=_png((8, 8))
    )
    sketch["image_type"] = "sketch"  # a type no formalizer knows (imported data)
    uri = str(tmp_path / "input")
    records.write_dataset(uri, [*rows, corrupt, missing, untyped, sketch])
    special = {"corrupt": corrupt["id"], "missing": missing["id"], "untyped": untyped["id"], "sketch": sketch["id"]}
    return uri, special


def _parts(uri: str) -> tuple[dict[str, dict], dict[str, dict]]:
    accepted = {r["id"]: r for r in records.read_records(uri)}
    rejected = {r["id"]: r for r in records.read_records(uri, records.REJECTED)}
    return accepted, rejected


def test_formalize_dataset(tmp_path: Path, tiny_detector_dir: Path) -> None:
    uri, special = _inputs(tmp_path)
    inputs = records.read_records(uri)
    oracle = load_oracle([uri], formalize_noise=0.25, seed=0)
    with serve([uri], formalize_noise=0.25, seed=0) as url:
        teacher = TeacherConfig(base_url=url, model="offline", cache_uri=str(tmp_path / "cache"))
        perception = PerceptionConfig(detector_model=str(tiny_detector_dir))
        cfg = FormalizeConfig(
            input_uri=uri, output_uri=str(tmp_path / "out"), teacher=teacher, shard_size=4, perception=perception
        )
        summary = formalize_run(cfg)
        requests = fetch_stats(url)["requests"]
        again = formalize_run(cfg)  # a re-run skips every finished shard
        assert fetch_stats(url)["requests"] == requests

    accepted, rejected = _parts(cfg.output_uri)
    assert sorted([*accepted, *rejected]) == sorted(r["id"] for r in inputs)  # each row in exactly one part
    assert not set(accepted) & set(rejected)
    assert rejected[special["corrupt"]]["reject_reason"].startswith("bad_image: ")
    assert rejected[special["missing"]]["reject_reason"].startswith("bad_image: ")
    assert rejected[special["sketch"]]["reject_reason"].startswith("unknown_type: ")

    set_aside = {special["corrupt"], special["missing"], special["sketch"]}
    refused = {
        r["id"]
        for r in inputs
        if r["id"] not in set_aside and oracle.find_by_image(r["image"])["id"] in oracle.formalize_flaws
    }
    assert refused and special["untyped"] not in refused, "seed 0 should refuse some images, not the untyped one"
    for rid in refused:
        assert rejected[rid]["reject_reason"].startswith("formalize_check: ")
    assert set(accepted) == {r["id"] for r in inputs} - set_aside - refused

    for row in accepted.values():
        formalizer = REGISTRY[row["image_type"]]
        assert row["formal_language"] == formalizer.language
        assert row["formalization"] == formalizer.reference(records.ground_truth(row))
        stamp = row["provenance"][-1]
        assert stamp["stage"] == "formalize" and stamp["model"] == "offline"
        assert stamp["prompt_sha256"] == hashlib.sha256(load_prompt(formalizer.prompt).encode()).hexdigest()
    if special["untyped"] not in refused:  # classified by the teacher, then formalized
        untyped = accepted[special["untyped"]]
        assert untyped["image_type"] == records.ground_truth(untyped)["kind"]
        assert [p["stage"] for p in untyped["provenance"]] == ["classify", "formalize"]
        assert untyped["provenance"][0]["prompt_sha256"] == hashlib.sha256(load_prompt("classify").encode()).hexdigest()

    assert summary["records"] == len(accepted) and summary["rejected"] == len(rejected)
    assert summary["shards"] == 4 and summary["resumed_shards"] == 0
    assert again["resumed_shards"] == 4 and again["teacher"]["sent"] == 0
    assert summary["reject_reasons"] == records.read_manifest(cfg.output_uri)["reject_reasons"]


def test_teacher_errors_are_rejections_and_their_shard_is_redone(tmp_path: Path) -> None:
    uri = str(tmp_path / "input")
    synthesize(SynthConfig(output_uri=uri, n=6, seed=2, kinds=["table", "chart", "circuit"]))
    with serve([uri], fail_first=1, retry_after=0.05) as url:
        teacher = TeacherConfig(base_url=url, model="offline", max_retries=0, max_concurrency=1)
        cfg = FormalizeConfig(input_uri=uri, output_uri=str(tmp_path / "out"), teacher=teacher, shard_size=3)
        first = formalize_run(cfg)
        second = formalize_run(cfg)
    assert first["reject_reasons"] == {"teacher_error": 1}
    assert second["reject_reasons"] == {} and second["records"] == 6
    # Only the failed call is sent again: the shard's answered calls come from the cache.
    assert second["resumed_shards"] == 1 and second["teacher"]["sent"] == 1
    assert second["teacher"]["cache_hits"] == 2


def test_teacher_error_reason_names_the_error(tmp_path: Path) -> None:
    uri = str(tmp_path / "input")
    synthesize(SynthConfig(output_uri=uri, n=2, seed=2, kinds=["table"]))
    with serve([uri], fail_first=100, retry_after=0.05) as url:
        teacher = TeacherConfig(base_url=url, model="offline", max_retries=1)
        cfg = FormalizeConfig(input_uri=uri, output_uri=str(tmp_path / "out"), teacher=teacher)
        with pytest.raises(StageFailed, match=r"0 of 2 rows accepted") as failed:
            formalize_run(cfg)
    assert "| teacher_error | 2 | 100.0% | teacher_error: RateLimitError: " in str(failed.value)
    assert records.read_manifest(cfg.output_uri)["rejected"] == 2
    for row in records.read_records(cfg.output_uri, records.REJECTED):
        assert row["reject_reason"].startswith("teacher_error: RateLimitError: ")


def test_unknown_types_are_set_aside_when_classification_is_off(tmp_path: Path) -> None:
    row = records.new_record(source="test", question="?", image_type="unknown", image=_png((8, 8)))
    # No request is made, so the endpoint is never contacted.
    teacher = TeacherConfig(base_url="http://127.0.0.1:9/v1", max_retries=0)
    cfg = FormalizeConfig(input_uri="unused", output_uri="unused", teacher=teacher, classify_unknown=False)
    accepted, rejected = formalize_batch([row], cfg, TeacherClient(teacher))
    assert accepted == [] and rejected[0]["reject_reason"].startswith("unknown_type: ")
