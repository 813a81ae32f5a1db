"""Benchmarks already in the record schema: our synthetic sets, or any dataset URI we wrote."""

from __future__ import annotations

import json
from typing import Any

from r1ov.data.records import metadata, read_records, reject


def load_records(uri: str) -> list[dict[str, Any]]:
    """The accepted part of a dataset; ``category`` defaults to the image type for breakdowns."""
    rows = read_records(uri)
    for row in rows:
        meta = metadata(row)
        meta.setdefault("category", row["image_type"])
        meta.setdefault("benchmark_id", row["id"])
        row["metadata"] = json.dumps(meta, sort_keys=True)
        row["reject_reason"] = None
        if not (row.get("answer") or "").strip():
            reject(row, f"no_answer: record {row['id']} has no ground-truth answer")
    return rows
