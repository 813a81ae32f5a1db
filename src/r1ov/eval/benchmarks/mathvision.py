"""MathVision (``MathLLMs/MathVision``): competition problems, 16 subjects, 5 levels.

Published as Parquet (``data/test-*.parquet``, ``data/testmini-*.parquet``) with ``id``,
``question``, ``options`` (list; empty for free-form), ``image`` (path), ``decoded_image``
(HF image struct), ``answer`` (a letter for multiple choice), ``solution``, ``level``,
``subject``. The question's ``<image1>`` placeholders are dropped (the image is sent
beside the text); a question that is only a placeholder (item 528) asks the question shown
in the image, so no published item leaves the denominator. VLMEvalKit's TSV (``index``,
base64 ``image``, ``category``) also loads.
"""

from __future__ import annotations

from typing import Any

from r1ov.eval.benchmarks._io import (
    IN_IMAGE,
    base_dir,
    first,
    image_fields,
    option_columns,
    parse_options,
    read_rows,
    resolve_image_refs,
    text,
    to_record,
    without_image_tags,
)

NAME = "mathvision"


def load_mathvision(uri: str) -> list[dict[str, Any]]:
    rows = read_rows(uri)
    resolve_image_refs(rows)
    root = base_dir(uri)
    records = []
    for row in rows:
        subject = text(first(row, "subject", "category"))
        records.append(
            to_record(
                NAME,
                question=without_image_tags(text(row.get("question"))) or IN_IMAGE,
                answer=text(row.get("answer")),
                options=parse_options(first(row, "options", "choices")) or option_columns(row),
                image=image_fields(first(row, "decoded_image", "image"), root),
                metadata={
                    "benchmark_id": text(first(row, "id", "index")),
                    "subject": subject or None,
                    "category": subject or None,
                    "level": text(row.get("level")) or None,
                },
            )
        )
    return records
