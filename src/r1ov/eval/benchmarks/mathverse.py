"""MathVerse (``AI4Math/MathVerse``): each problem in up to six versions, text- to vision-only.

Published as Parquet (``testmini.parquet``, ``testmini_text_only.parquet``) with
``sample_index``, ``problem_index``, ``problem_version``, ``question``, ``image``,
``answer``, ``question_type`` (multi-choice / free-form), ``metadata`` (split, source,
subject, subfield), ``query_wo``, ``query_cot``. Multiple-choice questions carry their
choices inside the question text ("Choices:\\nA:...", in a few rows "Choice:"). The
paper's headline breakdown is by problem version, so that is the category here; "Vision
Only" is also the paper's separate column.

Vision Only rows publish an empty ``question``: their text lives in the image. They are asked
with the official ``query_wo`` (the instruction without chain of thought, which names the
question in the image and, for multiple choice, asks for a letter) and their choices are
read from the image by the model, so they carry no option texts: a letter is compared with
the gold letter. Record ids are ``mathverse/<sample_index>``, unique across versions.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from r1ov.eval.benchmarks._io import (
    IN_IMAGE,
    base_dir,
    first,
    image_fields,
    read_rows,
    resolve_image_refs,
    split_lettered,
    text,
    to_record,
)

NAME = "mathverse"
_CHOICES = re.compile(r"\bchoices?\s*:", re.IGNORECASE)
VISION_ONLY = "vision only"


def _options_in(question: str) -> list[str]:
    parts = _CHOICES.split(question, maxsplit=1)
    return split_lettered(parts[1]) if len(parts) == 2 else []


def _metadata(value: Any) -> dict[str, Any]:
    """The ``metadata`` cell: a struct in Parquet, a Python-literal string in VLMEvalKit's TSV."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def load_mathverse(uri: str) -> list[dict[str, Any]]:
    rows = read_rows(uri)
    resolve_image_refs(rows)
    root = base_dir(uri)
    records = []
    for row in rows:
        version = text(row.get("problem_version"))
        question = text(row.get("question"))
        if not question and version.lower() == VISION_ONLY:
            question = text(first(row, "query_wo", "query_cot")) or IN_IMAGE
        meta = _metadata(row.get("metadata"))
        options = _options_in(question) if "choice" in text(row.get("question_type")) else []
        records.append(
            to_record(
                NAME,
                question=question,
                answer=text(row.get("answer")),
                options=options,
                image=image_fields(row.get("image"), root),
                metadata={
                    # testmini_text_only.parquet numbers its rows 1..788 again.
                    "benchmark_id": ("text-only-" if version.lower() == "text only" else "")
                    + text(first(row, "sample_index", "index")),
                    "problem_index": text(row.get("problem_index")) or None,
                    "problem_version": version or None,
                    "vision_only": version.lower() == VISION_ONLY,
                    "question_type": text(row.get("question_type")) or None,
                    "subject": meta.get("subject") or text(row.get("subject")) or None,
                    "subfield": meta.get("subfield") or text(row.get("subfield")) or None,
                    "category": version or None,
                    "options_in_question": bool(options),
                    # The text-only version has no image by design: ask without one.
                    "text_only": version.lower() == "text only",
                },
            )
        )
    return records
