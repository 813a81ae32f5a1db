"""Which formalizer handles a record: by its image type, or by the teacher's classification."""

from __future__ import annotations

import re

from r1ov.formalize import charts, diagrams, documents, math_figures, scenes
from r1ov.formalize.base import Formalizer
from r1ov.teachers.protocol import CLASSIFY

# image type -> formalizer; every type of records.IMAGE_TYPES except "unknown".
REGISTRY: dict[str, Formalizer] = {
    f.name: f
    for f in (
        *diagrams.FORMALIZERS,
        *documents.FORMALIZERS,
        *charts.FORMALIZERS,
        *scenes.FORMALIZERS,
        *math_figures.FORMALIZERS,
    )
}
UNKNOWN = "unknown"
CLASSIFY_PROMPT = CLASSIFY

_TYPE_WORD = re.compile(r"\b(" + "|".join(sorted(REGISTRY, key=len, reverse=True)) + r")\b")


def formalizer_for(image_type: str) -> Formalizer | None:
    """The formalizer of ``image_type``; None for "unknown" or an unsupported type."""
    return REGISTRY.get(image_type)


def parse_image_type(reply: str) -> str | None:
    """The first known image type named in a classification reply ("Table." -> "table")."""
    match = _TYPE_WORD.search((reply or "").lower())
    return match.group(1) if match else None
