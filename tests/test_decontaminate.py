"""Decontamination against a benchmark in its published file: planted items (the same image
re-encoded or resized, the same question re-worded in case and spacing) are found and set aside
as benchmark_overlap naming the item; unrelated rows pass; a report counts them by source."""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from r1ov.cli import main
from r1ov.data import records


def _scene(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A smooth picture (a few soft blobs on a gradient), like a figure or photo rather than noise."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0 : size[1], 0 : size[0]].astype(float)
    canvas = np.zeros((size[1], size[0], 3)) + rng.uniform(0, 255, 3) * (xs / size[0])[..., None]
    for _ in range(5):
        cx, cy, radius = rng.uniform(0, size[0]), rng.uniform(0, size[1]), rng.uniform(20, 90)
        blob = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * radius**2))
        canvas += blob[..., None] * rng.uniform(-200, 200, 3)
    return Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))


def _encoded(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


QUESTIONS = [
    "In the figure, AB is parallel to CD and angle 1 is 40 degrees. What is the measure of angle 2?",
    "Which organism in the food web is a producer that the grasshopper eats?",
    "How many cubes are left after removing all the red cylinders and the small spheres?",
    "What is the value of the largest bar in the chart of annual rainfall?",
]


def _bench(path: Path) -> None:
    """R1-Onevision-Bench's published layout: one TSV, base64 images (Fancy-MLLM/R1-Onevision-Bench)."""
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, delimiter="\t")
        writer.writerow(["index", "image", "question", "choices", "answer", "level", "category"])
        for i, question in enumerate(QUESTIONS):
            image = base64.b64encode(_encoded(_scene(i))).decode("ascii")
            writer.writerow([i, image, question, "", "40", "junior", "Mathematics"])


def test_planted_benchmark_items_are_found_and_reported(tmp_path: Path, capsys) -> None:
    _bench(tmp_path / "bench.tsv")
    planted = {
        "reencoded": (_encoded(_scene(0), "JPEG", quality=70), "Find the area of the shaded region in the figure."),
        "resized": (_encoded(_scene(1).resize((160, 120))), "Name every consumer shown in the diagram of the pond."),
        "reworded": (
            _encoded(_scene(3), "JPEG", quality=80),
            "  WHICH organism in the  food web is a PRODUCER that the grasshopper eats ?",
        ),
    }
    clean = {
        f"clean-{i}": (_encoded(_scene(100 + i)), f"How many red objects are in picture number {i} of the set?")
        for i in range(4)
    }
    rows = []
    for name, (image, question) in {**planted, **clean}.items():
        source = "import/Geometry3K(MathV360K)" if name in planted else "import/ai2d"
        row = records.new_record(source=source, question=question, image_type="unknown", image=image)
        row["metadata"] = json.dumps({"imported_id": name})
        rows.append(row)
    records.write_dataset(str(tmp_path / "train"), rows)

    args = ["decontaminate", "--data", str(tmp_path / "train"), "--out", str(tmp_path / "clean")]
    assert main([*args, "--benchmark", f"r1ov-bench={tmp_path / 'bench.tsv'}"]) == 0
    summary = json.loads(capsys.readouterr().out)
    kept = {records.metadata(r)["imported_id"] for r in records.read_records(str(tmp_path / "clean"))}
    aside = {
        records.metadata(r)["imported_id"]: r["reject_reason"]
        for r in records.read_records(str(tmp_path / "clean"), records.REJECTED)
    }
    assert kept == set(clean)
    assert aside["reencoded"].startswith("benchmark_overlap: r1ov-bench/0 (image hash")
    assert aside["resized"].startswith("benchmark_overlap: r1ov-bench/1 (image hash")
    assert aside["reworded"].startswith("benchmark_overlap: r1ov-bench/3 (image hash")
    report = json.loads((tmp_path / "clean" / "decontamination_report.json").read_text())
    assert report == summary["overlaps"]
    assert report["by_source_and_benchmark"] == {"import/Geometry3K(MathV360K)": {"r1ov-bench": 3}}
    assert report["rows"] == 7 and report["benchmark_items"] == 4


def test_a_question_reworded_in_case_and_spacing_matches_its_item_not_a_template() -> None:
    from r1ov.data.decontaminate import BenchmarkIndex

    index = BenchmarkIndex()
    text_only = records.new_record(source="b", question=QUESTIONS[0], image_type="unknown")  # MathVerse's text-only
    with_image = records.new_record(source="b", question=QUESTIONS[2], image_type="unknown", image=_encoded(_scene(5)))
    index.add("mathverse", [text_only, with_image])
    reworded = "in the FIGURE, ab is parallel to cd   and angle 1 is 40 degrees ; what is the measure of angle 2"
    row = records.new_record(source="t", question=reworded, image_type="unknown", image=_encoded(_scene(60)))
    assert index.match(row) == f"mathverse/{text_only['id']} (question, 100% of its 8-word spans; a side without image)"
    # The same templated question over an unrelated picture is another item, not this one.
    template = records.new_record(
        source="t", question=QUESTIONS[2].upper(), image_type="unknown", image=_encoded(_scene(61))
    )
    assert index.match(template) is None
    # ... over the item's picture, drawn a little differently (brighter), it is this one.
    brighter = Image.eval(_scene(5), lambda v: min(255, v + 12))
    redrawn = records.new_record(
        source="t", question=QUESTIONS[2].upper(), image_type="unknown", image=_encoded(brighter)
    )
    assert (index.match(redrawn) or "").startswith(f"mathverse/{with_image['id']} (")


def test_an_identical_image_file_matches_exactly(tmp_path: Path) -> None:
    from r1ov.data.decontaminate import BenchmarkIndex

    index = BenchmarkIndex()
    item = records.new_record(source="b", question="Q?", image_type="unknown", image=_encoded(_scene(7)))
    index.add("mathvista", [item])
    same = records.new_record(source="t", question="Other?", image_type="unknown", image=_encoded(_scene(7)))
    lossless = records.new_record(
        source="t", question="Other?", image_type="unknown", image=_encoded(_scene(7), "PNG", compress_level=0)
    )
    assert index.match(same) == f"mathvista/{item['id']} (same image file)"
    assert index.match(lossless) == f"mathvista/{item['id']} (same image pixels)"
    assert (
        index.match(records.new_record(source="t", question="Q?", image_type="unknown", image=_encoded(_scene(8))))
        is None
    )


def test_the_pipeline_step_passes_the_source_through_without_benchmarks(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from components.decontaminate.component import decontaminate

    _bench(tmp_path / "bench.tsv")
    rows = [
        records.new_record(source="s", question="Where?", image_type="unknown", image=_encoded(_scene(2), "JPEG")),
        records.new_record(source="s", question="Is the sky blue in this photograph?", image_type="unknown",
                           image=_encoded(_scene(51))),
    ]  # fmt: skip
    records.write_dataset(str(tmp_path / "source"), rows)
    report = SimpleNamespace(path=str(tmp_path / "report.md"))
    run = {"data_root": str(tmp_path / "root"), "pipeline_root": "", "run_id": "run-1", "report": report}
    assert decontaminate.python_func(source_uri=str(tmp_path / "source"), benchmarks=[], **run) == str(
        tmp_path / "source"
    )
    benchmarks = [{"name": "r1ov-bench", "uri": str(tmp_path / "bench.tsv")}]
    clean = decontaminate.python_func(source_uri=str(tmp_path / "source"), benchmarks=benchmarks, **run)
    assert clean.startswith(str(tmp_path / "root")) and [r["id"] for r in records.read_records(clean)] == [
        rows[1]["id"]
    ]
    assert "1 of 2 rows overlap a benchmark item" in (tmp_path / "report.md").read_text()
