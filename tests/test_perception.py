"""The perception tools for real: Tesseract OCR on synthetic text images, EasyOCR's reader on
weights crafted offline, a tiny random Grounding DINO through its processor (every label in one
forward), their output in the teacher's request, and the type cross-check."""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from r1ov.config import FormalizeConfig, PerceptionConfig, SynthConfig, TeacherConfig
from r1ov.data import records
from r1ov.formalize import formalize_batch
from r1ov.formalize.checks import boxes
from r1ov.formalize.perception import (
    Perception,
    PerceptionUnavailable,
    _label_of_each_query,
    detector_device,
    easyocr_words,
)
from r1ov.formalize.stage import image_payload
from r1ov.synthetic import run as synthesize
from r1ov.synthetic.offline_teacher import serve
from r1ov.teachers import TeacherClient, protocol


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


def _forwards(perception: Perception) -> list[int]:
    """Counts the detector's forward passes (a hook on the loaded model)."""
    count = [0]
    _, model, _ = perception._load_detector()
    model.register_forward_hook(lambda *_: count.__setitem__(0, count[0] + 1))
    return count


def test_tiny_grounding_dino_detects_every_label_in_one_forward(tiny_detector_dir: Path) -> None:
    labels = ["person", "car", "tree", "house", "cloud", "sun"]
    cfg = PerceptionConfig(detector_model=str(tiny_detector_dir), detector_labels=labels, box_threshold=0.0)
    perception = Perception(cfg)
    forwards = _forwards(perception)
    image = Image.new("RGB", (120, 80), (90, 160, 90))
    found = perception.detect(image)
    assert forwards == [1]  # six labels, one forward (the pipeline ran one per label)
    assert 0 < len(found) <= cfg.max_detections and {d["label"] for d in found} <= set(labels)
    for detection in found:
        assert 0 <= detection["score"] <= 1
        x0, y0, x1, y1 = detection["box"]
        assert 0 <= x0 <= x1 <= 120 and 0 <= y0 <= y1 <= 80
    # The same pixels again (a second decode of the same file): the first result, no forward.
    assert perception.detect(Image.frombytes("RGB", image.size, image.tobytes())) == found and forwards == [1]
    assert detector_device("auto") == "cpu" and detector_device("cuda:1") == "cuda:1"


def test_the_labels_name_the_prompt_spans_they_score() -> None:
    """A query that scores the tokens of "tree" is a tree: the labels come from the one prompt's spans."""
    import torch

    class Tokens:
        cls_token_id, sep_token_id, pad_token_id = 101, 102, 0

        def convert_tokens_to_ids(self, token: str) -> int:
            return {".": 1012}[token]

    class Processor:
        tokenizer = Tokens()

    # [CLS] red car . tree . [UNK] . [SEP]: "red car" spans two tokens, an unknown word is still a label.
    ids = torch.tensor([101, 2417, 2482, 1012, 3392, 1012, 100, 1012, 102])
    logits = torch.full((3, 9), -9.0)
    logits[0, 2], logits[1, 4], logits[2, 6] = 3.0, 3.0, 3.0
    assert _label_of_each_query(logits, ids, Processor(), ["red car", "tree", "zebra"]) == ["red car", "tree", "zebra"]


def test_type_cross_check_runs_only_the_types_tool_once(tiny_detector_dir: Path) -> None:
    perception = Perception(PerceptionConfig(detector_model=str(tiny_detector_dir), min_text_words=3))
    blank = Image.new("RGB", (200, 100), "white")
    assert "OCR reads 0 words" in perception.type_signals(blank, "text")["disagrees"]
    page = _text_image(["alpha beta gamma", "delta epsilon zeta", "eta theta iota"])
    signals = perception.type_signals(page, "text")
    assert signals["ocr_words"] >= 6 and signals["disagrees"] is None
    assert perception.ocr(page) and perception.calls == {"detect": 0, "ocr": 2}  # the cross-check's words reused
    # Natural scenes get the detector, never OCR; charts, tables and the rest get neither.
    perception.cfg.box_threshold = 1.0  # nothing scores above 1: no object
    assert perception.type_signals(page, "natural")["disagrees"] == "typed natural, but the detector finds no object"
    assert perception.type_signals(page, "chart") == {"disagrees": None}
    assert perception.calls == {"detect": 1, "ocr": 2} and perception.type_disagreements == 2


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
    sent: dict[str, str] = {}  # the image sent -> the text beside it

    class Recording(TeacherClient):
        @contextlib.asynccontextmanager
        async def session(self):
            async with super().session() as ask:

                async def recording(request):
                    [image] = [p["image_url"]["url"] for p in request.messages[1]["content"] if "image_url" in p]
                    sent[image] = protocol.user_text(request.messages)
                    return await ask(request)

                yield recording

    with serve([source]) as url:
        teacher = TeacherConfig(base_url=url, model="offline")
        cfg = FormalizeConfig(
            input_uri=source, output_uri=str(tmp_path / "out"), teacher=teacher, perception=perception
        )
        accepted, rejected = formalize_batch(rows, cfg, Recording(teacher))
    assert not rejected and [a["id"] for a in accepted] == [r["id"] for r in rows]  # input order kept
    assert len(sent) == 4
    for row, done in zip(rows, accepted, strict=True):
        found = protocol.sections(
            sent[protocol.image_part(*image_payload(row, cfg.max_image_pixels))["image_url"]["url"]]
        )
        meta = records.metadata(done)
        if row["image_type"] == "natural":
            detections = [json.loads(line) for line in found["detections"][0].splitlines()]
            assert detections and detections == meta["detections"]
        else:
            assert found["ocr_words"][0] != "(no text read)" and meta["ocr_words"] > 0


# --------------------------------------------------------------------------- EasyOCR


def test_easyocr_results_become_the_tesseract_word_records() -> None:
    """readtext(detail=1) gives (corner points, text, confidence 0-1) per box, a box possibly holding a
    line's words: the records are Tesseract's (text, axis-aligned box, conf 0-100), in reading order."""
    found = [
        ([[300, 82], [420, 80], [421, 118], [301, 120]], "PAID CASH", 0.91),  # second line, two words
        ([[24, 24], [180, 24], [180, 60], [24, 60]], "TOTAL", 0.97),
        ([[200, 26], [330, 26], [330, 58], [200, 58]], "42.50", 0.88),
        ([[40, 150], [90, 150], [90, 170], [40, 170]], "~", 0.30),  # below the threshold
        ([[40, 200], [90, 200], [90, 220], [40, 220]], "  ", 0.99),  # nothing read
    ]
    words = easyocr_words(found, min_confidence=50.0)
    assert [w["text"] for w in words] == ["TOTAL", "42.50", "PAID", "CASH"]
    assert words[0] == {"text": "TOTAL", "box": [24, 24, 180, 60], "conf": 97.0}
    paid, cash = words[2]["box"], words[3]["box"]
    assert paid[0] == 300 and cash[2] == 421 and paid[2] < cash[0]  # the box split at the space
    assert paid[1] == cash[1] == 80 and paid[3] == cash[3] == 120
    assert {w["conf"] for w in words[2:]} == {91.0}
    # The one threshold reads on Tesseract's scale for both engines.
    assert [w["text"] for w in easyocr_words(found, min_confidence=90.0)] == ["TOTAL", "PAID", "CASH"]


def test_easyocr_engine_without_the_package_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "easyocr", None)  # import fails, as where it is not installed
    perception = Perception(PerceptionConfig(detector_model=None, ocr_engine="easyocr"))
    with pytest.raises(PerceptionUnavailable, match=r"pip install easyocr==1\.7\.2"):
        perception.ocr(Image.new("RGB", (64, 32), "white"))
    assert Perception(PerceptionConfig(detector_model=None, ocr_engine="none")).ocr(_text_image(["x"])) == []


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def crafted_easyocr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """EasyOCR's own CRAFT detector and English recognizer with weights set so the output is known:
    the detector calls every pixel text (one box around the image), the recognizer reads "H" in
    every column (CTC collapses it to one "H", probability ~1). The published weights cannot be
    fetched here; the data image bakes those."""
    pytest.importorskip("easyocr", reason="easyocr is not installed here (pip install easyocr==1.7.2)")
    import torch
    from easyocr.config import recognition_models
    from easyocr.craft import CRAFT
    from easyocr.model.vgg_model import Model

    model_dir = tmp_path_factory.mktemp("easyocr")
    detector = CRAFT()
    torch.nn.init.zeros_(detector.conv_cls[-1].weight)
    torch.nn.init.constant_(detector.conv_cls[-1].bias, 2.0)  # region and affinity scores over the thresholds
    torch.save(detector.state_dict(), model_dir / "craft_mlt_25k.pth")
    english = recognition_models["gen2"]["english_g2"]
    recognizer = Model(input_channel=1, output_channel=256, hidden_size=256, num_class=len(english["characters"]) + 1)
    torch.nn.init.zeros_(recognizer.Prediction.weight)
    bias = torch.zeros(len(english["characters"]) + 1)
    bias[1 + english["characters"].index("H")] = 20.0  # index 0 is CTC's blank
    recognizer.Prediction.bias.data = bias
    # Saved as EasyOCR's releases are: from a DataParallel wrapper, keys prefixed "module.".
    torch.save({f"module.{k}": v for k, v in recognizer.state_dict().items()}, model_dir / english["filename"])
    return model_dir


def test_easyocr_reader_runs_offline_and_maps_its_output(
    crafted_easyocr: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from easyocr import easyocr as reader_module

    # The reader checks each weight file's MD5 against its registry: register the crafted files'.
    detection = {**reader_module.detection_models["craft"], "md5sum": _md5(crafted_easyocr / "craft_mlt_25k.pth")}
    monkeypatch.setitem(reader_module.detection_models, "craft", detection)
    english = reader_module.recognition_models["gen2"]["english_g2"]
    recognition = {**english, "md5sum": _md5(crafted_easyocr / english["filename"])}
    monkeypatch.setitem(reader_module.recognition_models["gen2"], "english_g2", recognition)

    cfg = PerceptionConfig(detector_model=None, ocr_engine="easyocr", easyocr_model_dir=str(crafted_easyocr))
    perception = Perception(cfg)
    image = _text_image(["HELLO"])
    words = perception.ocr(image)
    assert [w["text"] for w in words] == ["H"] and words[0]["conf"] >= 99.0
    x0, y0, x1, y1 = words[0]["box"]
    assert 0 <= x0 < x1 <= image.width and 0 <= y0 < y1 <= image.height
    assert (x1 - x0) * (y1 - y0) > 0.5 * image.width * image.height  # the detector's one box
    assert perception.type_signals(image, "text")["ocr_words"] == 1  # the cross-check counts EasyOCR's words

    # Weights missing (an image built without baking them): one line naming the directory and the remedy.
    empty = crafted_easyocr.parent / "no-weights"
    empty.mkdir(exist_ok=True)
    missing = Perception(cfg.model_copy(update={"easyocr_model_dir": str(empty)}))
    with pytest.raises(PerceptionUnavailable, match=r"EasyOCR weights for \['en'\] are not in .*no-weights.*bakes"):
        missing.ocr(image)
