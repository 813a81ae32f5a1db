"""The paper's perception tools, run for real before the teacher is asked.

Natural scenes go through an open-vocabulary detector (Grounding DINO by default; the data image
carries its weights) and text-dominant images through OCR (Tesseract via pytesseract, the offline
engine; or EasyOCR, the data image's, with weights baked in and never downloaded at run time).
Their output travels to the teacher in tagged sections of the request, so the teacher corrects and cites measured boxes
and words instead of inventing them. The same cheap signals (OCR word count, detector hits)
cross-check the type a teacher gives an untyped image.

Each tool runs once per image and only where the image's type calls for it: the detector on
natural scenes, OCR on text images. Grounding DINO takes every label in one prompt
(``"person. car. tree."``): transformers' ``GroundingDinoProcessor`` merges a list of candidate
labels into that form and ``post_process_grounded_object_detection`` turns the one forward's
logits into boxes (transformers ``models/grounding_dino/processing_grounding_dino.py``), where the
zero-shot-object-detection pipeline runs one forward per label. Results are kept per image, so
the type cross-check and the formalize request share one detection. The detector runs on the
pod's GPU when it has one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from PIL import Image

from r1ov.config import PerceptionConfig

log = logging.getLogger(__name__)


class PerceptionUnavailable(RuntimeError):
    """A configured tool cannot run here (weights or binary missing): the stage cannot be faithful."""


REMEMBERED_IMAGES = 512  # tool results kept per image, so a second look at one costs nothing


def image_key(image: Image.Image) -> str:
    """The pixels' identity: the same picture decoded twice gets the same key."""
    return hashlib.sha256(f"{image.mode}{image.size}".encode() + image.tobytes()).hexdigest()


def detector_device(setting: str) -> str:
    """``auto``: the pod's GPU when torch sees one, else the CPU; anything else as given."""
    if setting != "auto":
        return setting
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Perception:
    """Detector and OCR for one stage run; the detector loads once, on first use."""

    def __init__(self, cfg: PerceptionConfig) -> None:
        self.cfg = cfg
        self._detector: Any = None  # (processor, model, device)
        self._reader: Any = None  # EasyOCR's, loaded on first use
        self._lock = threading.Lock()
        self._seen: dict[str, OrderedDict[str, list[dict[str, Any]]]] = {"detect": OrderedDict(), "ocr": OrderedDict()}
        self.calls = {"detect": 0, "ocr": 0}  # tool runs, not counting results reused
        self.type_disagreements = 0  # untyped images whose teacher-given type the signals contradict

    def _once(self, tool: str, image: Image.Image, run: Callable[[Image.Image], list[dict[str, Any]]]) -> list:
        key = image_key(image)
        seen = self._seen[tool]
        with self._lock:
            if key in seen:
                seen.move_to_end(key)
                return seen[key]
        found = run(image)
        with self._lock:
            self.calls[tool] += 1
            seen[key] = found
            while len(seen) > REMEMBERED_IMAGES:
                seen.popitem(last=False)
        return found

    # ------------------------------------------------------------------ detection

    def _load_detector(self) -> Any:
        with self._lock:
            if self._detector is None:
                from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

                device = detector_device(self.cfg.detector_device)
                try:
                    processor = AutoProcessor.from_pretrained(self.cfg.detector_model)
                    model = AutoModelForZeroShotObjectDetection.from_pretrained(self.cfg.detector_model)
                except (OSError, ValueError) as exc:
                    raise PerceptionUnavailable(
                        f"detector {self.cfg.detector_model!r} cannot be loaded ({exc}); the data image carries its "
                        "weights, or set perception.detector_model to a local copy (null turns detection off)"
                    ) from exc
                self._detector = (processor, model.to(device).eval(), device)
                log.info("detector %s on %s", self.cfg.detector_model, device)
        return self._detector

    def detect(self, image: Image.Image) -> list[dict[str, Any]]:
        """Boxes ``{label, box: [x0, y0, x1, y1], score}`` above the threshold, best first; one
        forward per image whatever the number of labels, run once per image."""
        if not self.cfg.detector_model:
            return []
        return self._once("detect", image, self._detect)

    def _detect(self, image: Image.Image) -> list[dict[str, Any]]:
        import torch

        processor, model, device = self._load_detector()
        labels = [label.strip().lower() for label in self.cfg.detector_labels]
        # A list of labels is merged by the processor into the model's own prompt, "a. b. c."
        inputs = processor(images=image, text=[labels], return_tensors="pt").to(device)
        with torch.inference_mode():
            outputs = model(**inputs)
        [result] = processor.post_process_grounded_object_detection(
            outputs,
            inputs["input_ids"],
            threshold=self.cfg.box_threshold,
            text_threshold=self.cfg.box_threshold,
            target_sizes=[(image.height, image.width)],
        )
        named = _label_of_each_query(outputs.logits[0], inputs["input_ids"][0], processor, labels)
        kept = torch.sigmoid(outputs.logits[0]).max(dim=-1).values > self.cfg.box_threshold
        # post_process keeps the queries over the threshold in query order: name them the same way.
        names = [name for name, keep in zip(named, kept.tolist(), strict=True) if keep]
        found = [
            {"label": name, "box": [int(v) for v in box.tolist()], "score": round(float(score), 3)}
            for name, box, score in zip(names, result["boxes"], result["scores"], strict=True)
        ]
        return sorted(found, key=lambda d: -d["score"])[: self.cfg.max_detections]

    # ------------------------------------------------------------------ OCR

    def ocr(self, image: Image.Image) -> list[dict[str, Any]]:
        """Words ``{text, box: [x0, y0, x1, y1], conf}`` in reading order; ``conf`` on a 0-100 scale.
        Run once per image."""
        if self.cfg.ocr_engine == "none":
            return []
        return self._once("ocr", image, self._ocr)

    def _ocr(self, image: Image.Image) -> list[dict[str, Any]]:
        if self.cfg.ocr_engine == "easyocr":
            return self._easyocr(image)
        import pytesseract

        try:
            data = pytesseract.image_to_data(
                image, lang=self.cfg.ocr_lang, output_type=pytesseract.Output.DICT, timeout=self.cfg.ocr_timeout_s
            )
        except pytesseract.TesseractNotFoundError as exc:
            raise PerceptionUnavailable(
                "tesseract is not installed (apt-get install tesseract-ocr; `make test` does it)"
            ) from exc
        words = []
        for i, text in enumerate(data["text"]):
            conf = float(data["conf"][i])
            if text.strip() and conf >= self.cfg.min_ocr_confidence:
                x, y, w, h = (int(data[k][i]) for k in ("left", "top", "width", "height"))
                words.append({"text": text.strip(), "box": [x, y, x + w, y + h], "conf": round(conf, 1)})
        return words

    def easyocr_model_dir(self) -> str:
        """Where EasyOCR's weights are read from: the configured directory, else EasyOCR's own default."""
        if self.cfg.easyocr_model_dir:
            return os.path.expanduser(self.cfg.easyocr_model_dir)
        home = os.environ.get("EASYOCR_MODULE_PATH") or os.environ.get("MODULE_PATH") or "~/.EasyOCR"
        return os.path.join(os.path.expanduser(home), "model")

    def _load_reader(self) -> Any:
        with self._lock:
            if self._reader is None:
                try:
                    import easyocr
                except ImportError as exc:
                    raise PerceptionUnavailable(
                        "easyocr is not installed (pip install easyocr==1.7.2; the data image has it), "
                        "or set perception.ocr_engine=tesseract"
                    ) from exc
                model_dir = self.easyocr_model_dir()
                try:
                    self._reader = easyocr.Reader(
                        list(self.cfg.easyocr_langs),
                        gpu=self.cfg.easyocr_gpu,
                        model_storage_directory=model_dir,
                        download_enabled=False,  # a pod never fetches weights: the image carries them
                        verbose=False,
                    )
                except FileNotFoundError as exc:
                    raise PerceptionUnavailable(
                        f"EasyOCR weights for {list(self.cfg.easyocr_langs)} are not in {model_dir} ({exc}); the data "
                        "image bakes them (build arg EASYOCR_LANGS), or copy the detector and recognizer .pth files "
                        "there and set perception.easyocr_model_dir"
                    ) from exc
        return self._reader

    def _easyocr(self, image: Image.Image) -> list[dict[str, Any]]:
        import numpy as np

        # RGB, as EasyOCR's detector reads an image file.
        found = self._load_reader().readtext(np.asarray(image.convert("RGB")), detail=1)
        return easyocr_words(found, self.cfg.min_ocr_confidence)

    # ------------------------------------------------------------------ type cross-check

    def type_signals(self, image: Image.Image, image_type: str) -> dict[str, Any]:
        """Cheap evidence about an image's type, and whether it contradicts ``image_type``. Only the
        type's own tool runs (OCR for text, the detector for natural scenes), and its result is
        the one the formalize request reuses."""
        signals: dict[str, Any] = {}
        disagreement = None
        if image_type == "text" and self.cfg.ocr_engine != "none":
            words = len(self.ocr(image))
            megapixels = max(image.width * image.height / 1e6, 1e-6)
            signals.update(ocr_words=words, ocr_words_per_megapixel=round(words / megapixels, 1))
            if words < self.cfg.min_text_words:
                disagreement = f"typed text, but OCR reads {words} words (< {self.cfg.min_text_words})"
        elif image_type == "natural" and self.cfg.detector_model:
            signals["detections"] = len(self.detect(image))
            if signals["detections"] == 0:
                disagreement = "typed natural, but the detector finds no object"
        signals["disagrees"] = disagreement
        self.type_disagreements += disagreement is not None
        return signals


def _label_of_each_query(logits: Any, input_ids: Any, processor: Any, labels: list[str]) -> list[str]:
    """Each query's label: the one whose tokens in the merged prompt it scores highest. The prompt
    is the labels joined by " . ", so the tokens between two dots belong to one label."""
    import torch

    tokenizer = processor.tokenizer
    dot = tokenizer.convert_tokens_to_ids(".")
    special = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id}  # not [UNK]: a word
    spans: list[list[int]] = [[]]
    for position, token in enumerate(input_ids.tolist()):
        if token == dot:
            spans.append([])
        elif token not in special:
            spans[-1].append(position)
    spans = [span for span in spans if span][: len(labels)]
    probs = torch.sigmoid(logits)
    per_label = torch.stack([probs[:, span].max(dim=-1).values for span in spans], dim=-1)
    return [labels[i] for i in per_label.argmax(dim=-1).tolist()]


def easyocr_words(found: Iterable[Sequence[Any]], min_confidence: float) -> list[dict[str, Any]]:
    """EasyOCR's ``readtext(detail=1)`` results as the word records the Tesseract path returns.

    Each result is ``(four corner points, text, confidence in 0-1)`` for one detected text box,
    which may hold several words (EasyOCR merges nearby boxes of a line). Confidence is scaled to
    Tesseract's 0-100 so one threshold (``min_ocr_confidence``) serves both engines; a box becomes
    its axis-aligned bounds; a multi-word box is split at spaces, each word getting the share of
    the box's width its characters take (an estimate: EasyOCR reports no per-word positions).
    Words come back in reading order: lines top to bottom, each left to right.
    """
    words = []
    for points, text, confidence in found:
        conf = float(confidence) * 100
        text = str(text).strip()
        if not text or conf < min_confidence:
            continue
        xs, ys = [float(p[0]) for p in points], [float(p[1]) for p in points]
        x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
        width = (x1 - x0) / len(text)
        for token in re.finditer(r"\S+", text):
            box = [round(x0 + width * token.start()), round(y0), round(x0 + width * token.end()), round(y1)]
            words.append({"text": token.group(), "box": box, "conf": round(conf, 1)})
    return _reading_order(words)


def _reading_order(words: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Words grouped into lines (a word whose vertical centre falls inside a line's first box joins
    it), lines top to bottom, words left to right."""
    lines: list[list[dict[str, Any]]] = []
    for word in sorted(words, key=lambda w: (w["box"][1], w["box"][0])):
        centre = (word["box"][1] + word["box"][3]) / 2
        line = next((ln for ln in lines if ln[0]["box"][1] <= centre <= ln[0]["box"][3]), None)
        if line is None:
            lines.append([word])
        else:
            line.append(word)
    return [word for line in lines for word in sorted(line, key=lambda w: w["box"][0])]


def detections_section(detections: list[dict[str, Any]]) -> str:
    return "\n".join(json.dumps(d, ensure_ascii=False) for d in detections) or "(no object detected)"


def ocr_section(words: list[dict[str, Any]]) -> str:
    return "\n".join(f"{w['text']}\t{' '.join(map(str, w['box']))}" for w in words) or "(no text read)"
