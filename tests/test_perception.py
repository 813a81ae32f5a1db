"""The perception tools for real: Tesseract OCR on synthetic text images, a tiny random
Grounding DINO through transformers' zero-shot detection pipeline, their output in the
teacher's request, and the type cross-check."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from r1ov import records
from r1ov.config import FormalizeConfig, PerceptionConfig, SynthConfig, TeacherConfig
from r1ov.formalize import formalize_batch
from r1ov.formalize.checks import boxes
from r1ov.formalize.perception import Perception
from r1ov.synthetic import run as synthesize
from r1ov.teachers import TeacherClient, protocol
from r1ov.teachers.offline import serve


def _text_image(lines: list[str]) -> Image.Image:
    image = Image.new("RGB", (640, 60 + 56 * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=36)
    for i, line in enumerate(lines):
        draw.text((24, 24 + 56 * i), line, fill="black", font=font)
    return image


def test_tesseract_reads_words_with_positions() -> None:
    perception = Perception(PerceptionConfig(detector_model=None))
    words = perception.ocr(_text_image(["TOTAL 42.50", "PAID CASH"]))
    texts = [w["text"] for w in words]
    assert texts == ["TOTAL", "42.50", "PAID", "CASH"], texts
    total, amount = words[0]["box"], words[1]["box"]
    assert total[2] < amount[0] and abs(total[1] - amount[1]) < 10  # same line, left to right
    assert words[2]["box"][1] > total[3]  # next line below


def test_tiny_grounding_dino_detects_through_the_pipeline(tiny_detector_dir: Path) -> None:
    cfg = PerceptionConfig(detector_model=str(tiny_detector_dir), detector_labels=["car", "tree"], box_threshold=0.0)
    found = Perception(cfg).detect(Image.new("RGB", (120, 80), (90, 160, 90)))
    assert 0 < len(found) <= cfg.max_detections
    for detection in found:
        assert detection["label"] in ("car", "tree") and 0 <= detection["score"] <= 1
        x0, y0, x1, y1 = detection["box"]
        assert 0 <= x0 <= x1 <= 120 and 0 <= y0 <= y1 <= 80


def test_type_cross_check_records_disagreements(tiny_detector_dir: Path) -> None:
    perception = Perception(PerceptionConfig(detector_model=None, min_text_words=3))
    blank = Image.new("RGB", (200, 100), "white")
    assert "OCR reads 0 words" in perception.type_signals(blank, "text")["disagrees"]
    page = _text_image(["alpha beta gamma", "delta epsilon zeta", "eta theta iota"])
    signals = perception.type_signals(page, "text")
    assert signals["ocr_words"] >= 6 and signals["disagrees"] is None
    perception.cfg.text_words_per_megapixel = 10.0
    assert "typed natural, but OCR reads" in perception.type_signals(page, "natural")["disagrees"]
    assert perception.type_disagreements == 2


def test_captions_must_cite_their_boxes() -> None:
    listed = '[{"label": "red car", "box": [1, 2, 30, 40]}]'
    assert boxes(f"{listed}\nCaption: A red car parked by the road.")[0]
    passed, detail = boxes(f"{listed}\nCaption: A quiet street at noon.")
    assert not passed and "cites none" in detail


def test_formalize_sends_tool_output_with_the_image(tiny_detector_dir: Path, tmp_path: Path) -> None:
    source = str(tmp_path / "source")
    synthesize(SynthConfig(output_uri=source, n=4, seed=3, kinds=["natural", "text"]))
    rows = records.read_records(source)
    perception = PerceptionConfig(detector_model=str(tiny_detector_dir), box_threshold=0.0, max_detections=5)
    sent: list[list[str]] = []

    class Recording(TeacherClient):
        def complete_all(self, requests, desc="teacher"):
            sent.extend([protocol.user_text(r.messages) for r in requests])
            return super().complete_all(requests, desc)

    with serve([source]) as url:
        teacher = TeacherConfig(base_url=url, model="offline")
        cfg = FormalizeConfig(
            input_uri=source, output_uri=str(tmp_path / "out"), teacher=teacher, perception=perception
        )
        accepted, rejected = formalize_batch(rows, cfg, Recording(teacher))
    assert not rejected and len(accepted) == 4
    for row, text in zip(rows, sent, strict=True):
        found = protocol.sections(text)
        meta = records.metadata(next(a for a in accepted if a["id"] == row["id"]))
        if row["image_type"] == "natural":
            detections = [json.loads(line) for line in found["detections"][0].splitlines()]
            assert detections and detections == meta["detections"]
        else:
            assert found["ocr_words"][0] != "(no text read)" and meta["ocr_words"] > 0
