"""MathVista (``AI4Math/MathVista``): testmini (1,000 items with answers) and test (no answers).

Published as Parquet (``data/testmini-*.parquet``) with ``pid``, ``question``, ``image``
(path), ``decoded_image``, ``choices`` (list or null), ``unit``, ``precision``, ``answer``
(the choice text for multiple choice), ``question_type`` (multi_choice / free_form),
``answer_type``, ``metadata`` (category, context, grade, skills, source, split, task) and
``query`` (the official prompt: hint, question and choices). ``annot_testmini.json``
(keyed by pid, same fields) also loads. The prompt is the official ``query``; the category
is the task (figure QA, geometry problem solving, math word problem, textbook QA, VQA).
"""

from __future__ import annotations

from typing import Any

from r1ov.eval.benchmarks._io import (
    base_dir,
    first,
    image_fields,
    parse_options,
    read_rows,
    text,
    to_record,
)

NAME = "mathvista"


def load_mathvista(uri: str) -> list[dict[str, Any]]:
    rows = read_rows(uri)
    root = base_dir(uri)
    records = []
    for row in rows:
        meta = row.get("metadata") if isinstance(row.get("metadata"), dict) else {}
        options = parse_options(row.get("choices"))
        query = text(row.get("query"))
        records.append(
            to_record(
                NAME,
                question=query or text(row.get("question")),
                answer=text(row.get("answer")),
                options=options,
                image=image_fields(first(row, "decoded_image", "image"), root),
                metadata={
                    "benchmark_id": text(first(row, "pid", "_key", "index")),
                    "question_type": text(row.get("question_type")) or None,
                    "answer_type": text(row.get("answer_type")) or None,
                    "unit": text(row.get("unit")) or None,
                    "precision": row.get("precision"),
                    "task": meta.get("task") or text(row.get("task")) or None,
                    "skills": meta.get("skills"),
                    "source": meta.get("source"),
                    "grade": meta.get("grade"),
                    "category": meta.get("task") or text(first(row, "task", "category")) or None,
                    "level": meta.get("grade") or None,
                    "options_in_question": bool(query and options),
                },
            )
        )
    return records
