"""WeMath (``We-Math/We-Math``): problems broken into one-step sub-problems by knowledge concept.

Published as ``testmini.json`` (a list) with ``ID``, ``split``, ``knowledge concept``,
``question``, ``option`` ("A. 200.96;B. 3215.36;..."), ``answer`` (a letter),
``image_path`` (relative, e.g. "3steps/image/165-3.png", or an HF image struct in the
Parquet export), ``key`` ("2steps_1", "2steps_multi", ...), ``question number`` and
``knowledge concept description``. The key and ID are kept in metadata for the
four-dimensional metrics (:func:`four_dimensional`); the level is the step count
("1steps", "2steps", "3steps") and the category the knowledge concept. Record ids are ``wemath/<ID>/<key>``
(the ``ID`` is shared by a problem's parts).
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
                    "benchmark_id": text(row.get("index")) or f"{text(row.get('ID'))}/{key}",
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


# WeMath's testmini holds 525 composite (two- and three-step) problems; the official script
# divides by this number whatever the predictions cover, so missing answers lower no count.
COMPOSITE_PROBLEMS = 525


def four_dimensional(rows: list[dict[str, Any]], total: int = COMPOSITE_PROBLEMS) -> dict[str, float]:
    """WeMath's four dimensions (strict and loose) and S1/S2/S3 over scored rows, as its script does.

    Each two- or three-step problem has one-step sub-problems (key ``Nsteps_i``) and the
    composite (``Nsteps_multi``), sharing an ``ID``. Problems are read from their first
    sub-problem, the other parts joined to it; a missing part is neither right nor wrong. With
    subs s_i and composite m: IG = all s_i right, m wrong; IK = some s_i wrong, m wrong;
    CM strict = all s_i right, m right; CM loose = some s_i right, m right; RM strict = some
    s_i wrong, m right; RM loose = every s_i wrong, m right. IK, IG and CM are rates over the
    fixed ``total`` (525), RM over CM + RM; score = (total - IK - 0.5 IG - RM) / total.
    S1 is the accuracy over the sub-problems of those composite problems, S2 and S3 over
    the two- and three-step composites. Empty when the rows hold no WeMath composite.

    The paper's WeMath column reads as the loose score: its values (61.0 base, 61.8 trained)
    sit where 7B models' loose scores do, far above their strict scores.
    """
    parts_by_problem: dict[tuple[int, str], dict[str, bool]] = {}
    for row in rows:
        meta = json.loads(row["metadata"]) if row.get("metadata") else {}
        key, problem = meta.get("key") or "", meta.get("wemath_id")
        steps, _, part = key.partition("_")
        if steps in ("2steps", "3steps") and problem:
            # A repeated part keeps its first verdict.
            parts_by_problem.setdefault((int(steps[0]), str(problem)), {}).setdefault(part, bool(row["correct"]))
    if not any("multi" in parts for parts in parts_by_problem.values()):
        return {}
    counts = dict.fromkeys(("IK", "IG", "CM_strict", "CM_loose", "RM_strict", "RM_loose"), 0)
    subs_seen: list[bool] = []
    composites: dict[int, list[bool]] = {2: [], 3: []}
    problems = 0
    for (steps, _), parts in parts_by_problem.items():
        if "1" not in parts:
            continue  # the official join starts from the first sub-problem
        problems += 1
        subs = [parts.get(str(i)) for i in range(1, steps + 1)]
        composite = parts.get("multi")
        subs_seen += [s for s in subs if s is not None]
        if composite is not None:
            composites[steps].append(composite)
        some_wrong, some_right = any(s is False for s in subs), any(s is True for s in subs)
        all_right, all_wrong = all(s is True for s in subs), all(s is False for s in subs)
        if composite is False:
            counts["IG"] += all_right
            counts["IK"] += some_wrong
        elif composite is True:
            counts["CM_strict"] += all_right
            counts["CM_loose"] += some_right
            counts["RM_strict"] += some_wrong
            counts["RM_loose"] += all_wrong
    out = {"four_dim/problems": float(problems), "four_dim/total": float(total)}
    out.update({f"four_dim/{k}": float(v) for k, v in counts.items()})
    out.update({f"four_dim/{k}_rate": counts[k] / total for k in ("IK", "IG", "CM_strict", "CM_loose")})
    for mode in ("strict", "loose"):
        memorized, mastered = counts[f"RM_{mode}"], counts[f"CM_{mode}"]
        out[f"four_dim/RM_{mode}_rate"] = memorized / (memorized + mastered) if memorized + mastered else 0.0
        out[f"four_dim/score_{mode}"] = (total - counts["IK"] - 0.5 * counts["IG"] - memorized) / total
    if subs_seen:
        out["steps/S1_accuracy"] = sum(subs_seen) / len(subs_seen)
    for steps in (2, 3):
        if composites[steps]:
            out[f"steps/S{steps}_accuracy"] = sum(composites[steps]) / len(composites[steps])
    return out
