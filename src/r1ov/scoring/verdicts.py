"""Per-item verdicts: the file every paired comparison of two models reads.

One JSON line per scored item, ``{"benchmark", "id", "correct", "rule", "extracted"}`` (the
extraction rule that read the answer, and the answer it read), without the completions.
Eval writes it beside ``metrics.json``; the register step logs it with the model version; the
promotion gate and the ablation table read it back (:mod:`r1ov.scoring.paired`).
"""

from __future__ import annotations

import json
from typing import Any

from r1ov.data import storage

VERDICTS = "verdicts.jsonl"


def verdicts_jsonl(rows: list[dict[str, Any]]) -> bytes:
    lines = (
        json.dumps(
            {
                "benchmark": r["benchmark"],
                "id": r["id"],
                "correct": bool(r["correct"]),
                "rule": r.get("rule"),
                "extracted": r.get("extracted"),
            }
        )
        for r in rows
    )
    return "".join(line + "\n" for line in lines).encode("utf-8")


def read_verdicts(uri: str) -> dict[str, bool]:
    """``benchmark/id -> correct`` from a verdicts.jsonl; the key keeps equal ids of two benchmarks apart."""
    verdicts: dict[str, bool] = {}
    for line in storage.read_text(uri).splitlines():
        if line.strip():
            item = json.loads(line)
            verdicts[f"{item['benchmark']}/{item['id']}"] = bool(item["correct"])
    return verdicts
