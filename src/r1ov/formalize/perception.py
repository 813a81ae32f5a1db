"""The paper's perception tools, run for real before the teacher is asked.

Natural scenes go through an open-vocabulary detector (Grounding DINO by default, through
transformers' zero-shot object detection pipeline; the data image carries its weights) and
text-dominant images through OCR (Tesseract via pytesseract). Their output travels to the
teacher in tagged sections of the request, so the teacher corrects and cites measured boxes
and words instead of inventing them. The same cheap signals (OCR word count, detector hits)
cross-check the type a teacher gives an untyped image.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from PIL import Image

from r1ov.config import PerceptionConfig

log = logging.getLogger(__name__)


class PerceptionUnavailable(RuntimeError):
    """A configured tool cannot run here (weights or binary missing): the stage cannot be faithful."""


class Perception:
    """Detector and OCR for one stage run; the detector loads once, on first use."""

    def __init__(self, cfg: PerceptionConfig) -> None:
        self.cfg = cfg
        self._detector: Any = None
        self._lock = threading.Lock()
        self.type_disagreements = 0  # untyped images whose teacher-given type the signals contradict

    # ------------------------------------------------------------------ detection

    def _load_detector(self) -> Any:
        with self._lock:
            if self._detector is None:
                from transformers import pipeline

                try:
                    self._detector = pipeline("zero-shot-object-detection", model=self.cfg.detector_model, device="cpu")
                except (OSError, ValueError) as exc:
                    raise PerceptionUnavailable(
                        f"detector {self.cfg.detector_model!r} cannot be loaded ({exc}); the data image carries its "
                        "weights, or set perception.detector_model to a local copy (null turns detection off)"
                    ) from exc
        return self._detector

    def detect(self, image: Image.Image) -> list[dict[str, Any]]:
        """Boxes ``{label, box: [x0, y0, x1, y1], score}`` above the threshold, best first."""
        if not self.cfg.detector_model:
            return []
        found = self._load_detector()(
            image, candidate_labels=list(self.cfg.detector_labels), threshold=self.cfg.box_threshold
        )
        found = sorted(found, key=lambda d: -d["score"])[: self.cfg.max_detections]
        return [
            {
                "label": d["label"],
                "box": [int(d["box"][k]) for k in ("xmin", "ymin", "xmax", "ymax")],
                "score": round(float(d["score"]), 3),
            }
            for d in found
        ]

    # ------------------------------------------------------------------ OCR

    def ocr(self, image: Image.Image) -> list[dict[str, Any]]:
        """Words ``{text, box: [x0, y0, x1, y1], conf}`` in reading order (Tesseract's)."""
        if self.cfg.ocr_engine == "none":
            return []
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

    # ------------------------------------------------------------------ type cross-check

    def type_signals(self, image: Image.Image, image_type: str) -> dict[str, Any]:
        """Cheap evidence about an image's type, and whether it contradicts ``image_type``."""
        words = len(self.ocr(image))
        megapixels = max(image.width * image.height / 1e6, 1e-6)
        density = words / megapixels
        signals: dict[str, Any] = {"ocr_words": words, "ocr_words_per_megapixel": round(density, 1)}
        if self.cfg.detector_model and image_type == "natural":
            signals["detections"] = len(self.detect(image))
        disagreement = None
        if image_type == "text" and words < self.cfg.min_text_words:
            disagreement = f"typed text, but OCR reads {words} words (< {self.cfg.min_text_words})"
        elif (
            image_type == "natural"
            and words >= self.cfg.min_text_words
            and density >= self.cfg.text_words_per_megapixel
        ):
            disagreement = f"typed natural, but OCR reads {words} words ({density:.0f} per megapixel)"
        elif image_type == "natural" and signals.get("detections") == 0:
            disagreement = "typed natural, but the detector finds no object"
        signals["disagrees"] = disagreement
        self.type_disagreements += disagreement is not None
        return signals


def detections_section(detections: list[dict[str, Any]]) -> str:
    return "\n".join(json.dumps(d, ensure_ascii=False) for d in detections) or "(no object detected)"


def ocr_section(words: list[dict[str, Any]]) -> str:
    return "\n".join(f"{w['text']}\t{' '.join(map(str, w['box']))}" for w in words) or "(no text read)"
