"""R1-Onevision-Bench (``Fancy-MLLM/R1-Onevision-Bench``): one TSV, 942 rows.

Columns: ``index``, ``image`` (base64), ``question`` (already holding the hint and the
choices), ``choices``, ``answer``, ``level``, ``category`` (Mathematics, Physics,
Biology, Chemistry, Deduction). Scores are reported by level and by category.
"""

from __future__ import annotations

from typing import Any

from r1ov.eval.benchmarks._io import (
    base_dir,
    first,
    image_fields,
    option_columns,
    parse_options,
    read_rows,
    resolve_image_refs,
    text,
    to_record,
)

NAME = "r1ov-bench"


def load_r1ov_bench(uri: str) -> list[dict[str, Any]]:
    rows = read_rows(uri)
    resolve_image_refs(rows)
    root = base_dir(uri)
    records = []
    for row in rows:
        options = parse_options(row.get("choices")) or option_columns(row)
        records.append(
            to_record(
                NAME,
                question=text(row.get("question")),
                answer=text(row.get("answer")),
                options=options,
                image=image_fields(first(row, "image", "image_path"), root),
                image_type="unknown",
                metadata={
                    "benchmark_id": text(row.get("index")),
                    "category": text(row.get("category")) or None,
                    "level": text(row.get("level")) or None,
                    # The published question already lists the choices; the prompt must not repeat them.
                    "options_in_question": bool(options),
                },
            )
        )
    return records
