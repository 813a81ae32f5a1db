"""Scenes: natural images as detector boxes + caption, CLEVR renders as an object list."""

from __future__ import annotations

import json
from typing import Any

from r1ov.formalize import checks
from r1ov.formalize.base import Formalizer


def boxes_reference(truth: dict[str, Any]) -> str:
    """Grounding-DINO-style output: a JSON list of ``{label, box}`` (one per line), then the caption."""
    items = [json.dumps({"label": o["label"], "box": o["box"]}, ensure_ascii=False) for o in truth["objects"]]
    return "[\n" + ",\n".join(items) + "\n]\nCaption: " + str(truth.get("caption", "")).strip()


CLEVR_KEYS = ("shape", "color", "size", "material", "box")


def clevr_reference(truth: dict[str, Any]) -> str:
    objects = [{key: o[key] for key in CLEVR_KEYS if key in o} for o in truth["objects"]]
    return json.dumps({"objects": objects}, ensure_ascii=False)


FORMALIZERS = (
    Formalizer("natural", "boxes", "formalize_natural", checks.boxes, boxes_reference),
    Formalizer("clevr", "json", "formalize_clevr", checks.json_object("objects", list_key="objects"), clevr_reference),
)
