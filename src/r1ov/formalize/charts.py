"""Charts as JSON: chart type, title, x labels and one value list per series."""

from __future__ import annotations

import json
from typing import Any

from r1ov.formalize import checks
from r1ov.formalize.base import Formalizer

CHART_KEYS = ("chart_type", "title", "x", "series")


def chart_reference(truth: dict[str, Any]) -> str:
    return json.dumps({key: truth.get(key, "") for key in CHART_KEYS}, ensure_ascii=False)


FORMALIZERS = (
    Formalizer(
        "chart",
        "json",
        "formalize_chart",
        checks.json_object("chart_type", "x", "series", list_key="series"),
        chart_reference,
    ),
)
