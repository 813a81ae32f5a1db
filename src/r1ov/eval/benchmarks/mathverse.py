"""MathVerse (``AI4Math/MathVerse``): each problem in up to six versions, text- to vision-only.

Published as Parquet (``testmini.parquet``, ``testmini_text_only.parquet``) with
``sample_index``, ``problem_index``, ``problem_version``, ``question``, ``image``,
``answer``, ``question_type`` (multi-choice / free-form), ``metadata`` (split, source,
subject, subfield), ``query_wo``, ``query_cot``. Multiple-choice questions carry their
choices inside the question text ("Choices:\\nA:..."). The paper's headline breakdown is
by problem version, so that is the category here.
"""

from __future__ import annotations

import re
from typing import Any

from r1ov.eval.benchmarks._io import (
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
_CHOICES = re.compile(r"choices\s*:", re.IGNORECASE)


def _options_in(question: str) -> list[str]:
    parts = _CHOICES.split(question, maxsplit=1)
    return split_lettered(parts[1]) if len(parts) == 2 else []


def load_mathverse(uri: str) -> list[dict[str, Any]]:
    rows = read_rows(uri)
    resolve_image_refs(rows)
    root = base_dir(uri)
    records = []
    for row in rows:
        question = text(row.get("question"))
        version = text(row.get("problem_version"))
        meta = row.get("metadata") if isinstance(row.get("metadata"), dict) else {}
        options = _options_in(question) if "choice" in text(row.get("question_type")) else []
        records.append(
            to_record(
                NAME,
                question=question,
                answer=text(row.get("answer")),
                options=options,
                image=image_fields(row.get("image"), root),
                metadata={
                    "benchmark_id": text(first(row, "sample_index", "index")),
                    "problem_index": text(row.get("problem_index")) or None,
                    "problem_version": version or None,
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
