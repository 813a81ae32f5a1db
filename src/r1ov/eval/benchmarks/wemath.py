"""WeMath (``We-Math/We-Math``): problems broken into one-step sub-problems by knowledge concept.

Published as ``testmini.json`` (a list) with ``ID``, ``split``, ``knowledge concept``,
``question``, ``option`` ("A. 200.96;B. 3215.36;..."), ``answer`` (a letter),
``image_path`` (relative, e.g. "3steps/image/165-3.png", or an HF image struct in the
Parquet export), ``key`` ("2steps_1", "2steps_multi", ...), ``question number`` and
``knowledge concept description``. The key and ID are kept in metadata for the
four-dimensional metrics (:func:`four_dimensional`); the level is the step count
("1steps", "2steps", "3steps") and the category the knowledge concept.
"""

from __future__ import annotations

import json
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

NAME = "wemath"


def load_wemath(uri: str) -> list[dict[str, Any]]:
    rows = read_rows(uri)
    resolve_image_refs(rows)
    root = base_dir(uri)
    records = []
    for row in rows:
        key = text(row.get("key"))
        concept = text(row.get("knowledge concept"))
        records.append(
            to_record(
                NAME,
                question=text(row.get("question")),
                answer=text(row.get("answer")),
                options=parse_options(row.get("option")) or option_columns(row),
                image=image_fields(first(row, "image_path", "image"), root),
                metadata={
                    "benchmark_id": text(first(row, "ID", "index")),
                    "wemath_id": text(row.get("ID")) or None,
                    "key": key or None,
                    "question_number": text(row.get("question number")) or None,
                    "knowledge_concept": concept or None,
                    "knowledge_concept_description": text(row.get("knowledge concept description")) or None,
                    "split": text(row.get("split")) or None,
                    "category": concept or None,
                    "level": key.split("_")[0] if key else None,
                },
            )
        )
    return records


def four_dimensional(rows: list[dict[str, Any]]) -> dict[str, float]:
    """WeMath's IK / IG / CM / RM over scored prediction rows (empty when none are WeMath's).

    Each two- or three-step problem has one-step sub-problems (key ``Nsteps_i``) and the
    composite (``Nsteps_multi``), sharing an ``ID``. With "all subs right" = S and
    "composite right" = M: IG = S and not M; IK = some sub wrong and not M; CM strict = S and
    M, CM loose = some sub right and M; RM strict = some sub wrong and M, RM loose = no sub
    right and M. IK, IG and CM are rates over problems, RM over CM + RM; the score is
    (problems - IK - 0.5 IG - RM) / problems. Problems missing a part are left out.
    """
    groups: dict[tuple[str, str], dict[str, bool]] = {}
    for row in rows:
        meta = json.loads(row["metadata"]) if row.get("metadata") else {}
        key, problem = meta.get("key") or "", meta.get("wemath_id")
        steps, _, part = key.partition("_")
        if steps in ("2steps", "3steps") and problem:
            groups.setdefault((steps, problem), {})[part] = bool(row["correct"])
    counts = dict.fromkeys(("IK", "IG", "CM_strict", "CM_loose", "RM_strict", "RM_loose"), 0)
    problems = 0
    for (steps, _), parts in groups.items():
        subs = [str(i) for i in range(1, int(steps[0]) + 1)]
        if "multi" not in parts or any(s not in parts for s in subs):
            continue
        problems += 1
        right = [parts[s] for s in subs]
        composite = parts["multi"]
        counts["IG"] += all(right) and not composite
        counts["IK"] += not all(right) and not composite
        counts["CM_strict"] += all(right) and composite
        counts["CM_loose"] += any(right) and composite
        counts["RM_strict"] += not all(right) and composite
        counts["RM_loose"] += not any(right) and composite
    if not problems:
        return {}
    out = {"four_dim/problems": float(problems)}
    out.update({f"four_dim/{k}_rate": counts[k] / problems for k in ("IK", "IG", "CM_strict", "CM_loose")})
    for mode in ("strict", "loose"):
        memorized, mastered = counts[f"RM_{mode}"], counts[f"CM_{mode}"]
        out[f"four_dim/RM_{mode}_rate"] = memorized / (memorized + mastered) if memorized + mastered else 0.0
        out[f"four_dim/score_{mode}"] = (problems - counts["IK"] - 0.5 * counts["IG"] - memorized) / problems
    return out
