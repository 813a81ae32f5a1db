"""Benchmark loaders on fixtures in each published layout, and WeMath's metrics against its script."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from r1ov.config import BenchmarkSpec
from r1ov.data.records import metadata
from r1ov.eval import benchmarks
from r1ov.eval.benchmarks.wemath import four_dimensional
from r1ov.testing import layouts


def _load(name: str, uri: Path) -> benchmarks.Loaded:
    return benchmarks.load(BenchmarkSpec(name=name, uri=str(uri)))


def test_mathvista_parquet_keeps_query_precision_and_unit(tmp_path: Path) -> None:
    loaded = _load("mathvista", layouts.write_mathvista_parquet(tmp_path).parent)
    assert len(loaded.records) == len(layouts.MATHVISTA_ITEMS) and not loaded.rejected
    by_id = {r["id"]: r for r in loaded.records}
    float_item, choice_item = by_id["mathvista/1"], by_id["mathvista/2"]
    assert float_item["question"].startswith("Hint: Please answer the question requiring a floating-point")
    meta = metadata(float_item)
    assert (meta["precision"], meta["answer_type"], meta["category"]) == (1.0, "float", "geometry problem solving")
    assert metadata(by_id["mathvista/4"])["unit"] == "cm"
    assert choice_item["options"] == ["3/11", "8/11", "6/11", "3/5"] and choice_item["answer"] == "8/11"
    assert metadata(choice_item)["options_in_question"] and "(B) 8/11" in choice_item["question"]
    assert choice_item["image"] == layouts.png()


def test_mathvista_repo_json_reads_the_same_items(tmp_path: Path) -> None:
    from_json = _load("mathvista", layouts.write_mathvista_json(tmp_path / "repo")).records
    from_parquet = _load("mathvista", layouts.write_mathvista_parquet(tmp_path / "hub")).records
    assert [r["id"] for r in from_json] == [r["id"] for r in from_parquet]
    assert [r["question"] for r in from_json] == [r["question"] for r in from_parquet]
    assert from_json[0]["image_uri"] == str(tmp_path / "repo" / "images" / "1.jpg")


def test_mathverse_reads_all_five_versions_with_unique_ids(tmp_path: Path) -> None:
    loaded = _load("mathverse", layouts.write_mathverse_parquet(tmp_path))
    assert not loaded.rejected  # Vision Only rows are no longer refused for their empty question
    records = loaded.records
    assert len(records) == 15 and len({r["id"] for r in records}) == 15
    versions = {metadata(r)["category"] for r in records}
    assert versions == set(layouts.MATHVERSE_VERSIONS)
    vision_only = [r for r in records if metadata(r)["vision_only"]]
    assert len(vision_only) == 3
    assert all(r["question"].startswith("According to the question shown in the image") for r in vision_only)
    assert all(r["options"] == [] for r in vision_only)  # choices are in the image: letters compare with letters
    choice_row = next(
        r for r in records if metadata(r)["problem_index"] == "3" and metadata(r)["category"] == "Text Lite"
    )
    assert choice_row["options"] == ["x^2", "2x", "\\frac{1}{2}x^2", "x"]  # written "Choice:" in the file


def test_mathverse_text_only_file_does_not_collide(tmp_path: Path) -> None:
    rows = layouts.mathverse_rows()[:2]
    text_only = [dict(r, problem_version="Text Only", image=None) for r in rows]
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "testmini.parquet")
    pq.write_table(pa.Table.from_pylist(text_only), tmp_path / "testmini_text_only.parquet")
    loaded = _load("mathverse", tmp_path)
    assert len({r["id"] for r in loaded.records}) == 4 and not loaded.rejected
    assert sum(metadata(r)["text_only"] for r in loaded.records) == 2


def test_mathvision_drops_image_placeholders(tmp_path: Path) -> None:
    test = _load("mathvision", layouts.write_mathvision_parquet(tmp_path, "test").parent).records
    assert all("<image" not in r["question"] for r in test)
    assert test[0]["question"] == "Which shape comes next?"
    assert test[1]["question"] == "How long is x in the figure ?"
    assert [metadata(r)["level"] for r in test] == ["2", "5", "3", "1", "4"]
    assert test[0]["id"] == "mathvision/1"


def test_wemath_ids_are_unique_per_part(tmp_path: Path) -> None:
    records = _load("wemath", layouts.write_wemath_json(tmp_path)).records
    assert len(records) == 8 and len({r["id"] for r in records}) == 8
    assert records[1]["id"] == "wemath/2steps_2/2steps_1"
    assert records[1]["options"] == ["200.96", "3215.36", "6280", "32", "No correct answer"]


def test_r1ov_bench_levels_and_categories(tmp_path: Path) -> None:
    records = _load("r1ov-bench", layouts.write_r1ov_bench_tsv(tmp_path)).records
    assert {metadata(r)["category"] for r in records} == {"Mathematics", "Physics", "Biology", "Chemistry", "Deduction"}
    assert metadata(records[2])["level"] == "junior high school"
    assert all(r["image"] == layouts.png("blue") for r in records)  # "0" points at row 0's image


def test_duplicate_ids_are_set_aside_with_a_reason(tmp_path: Path) -> None:
    path = layouts.write_wemath_json(tmp_path)
    rows = json.loads(path.read_text())
    path.write_text(json.dumps([*rows, rows[0]]))
    loaded = _load("wemath", path)
    assert len(loaded.records) == 8 and loaded.rejected[0]["reject_reason"].startswith("duplicate_id:")


# --------------------------------------------------------------------------- WeMath's script


def official_wemath(rows: list[dict[str, Any]], total: int = 525) -> dict[str, float]:
    """WeMath's four_dimensional_metrics.py and accuracy.py rules, re-stated with pandas joins.

    Sub-problem tables are left-joined on the first sub-problem's ID; a missing part is NaN,
    which compares neither ``== True`` nor ``== False``; counts are divided by 525.
    """
    df = pd.DataFrame(rows)

    def merged(steps: int) -> pd.DataFrame:
        part = {i: df[df.key == f"{steps}steps_{i}"].add_suffix(f"_{i}") for i in range(1, steps + 1)}
        multi = df[df.key == f"{steps}steps_multi"].add_suffix("_multi")
        out = part[1]
        for i in range(2, steps + 1):
            out = out.merge(part[i], left_on="ID_1", right_on=f"ID_{i}", how="left")
        return out.merge(multi, left_on="ID_1", right_on="ID_multi", how="left")

    counts = dict.fromkeys(("IK", "IG", "CM_strict", "CM_loose", "RM_strict", "RM_loose"), 0)
    s1: list[pd.Series] = []
    for steps in (2, 3):
        m = merged(steps)
        subs_true = [m[f"joker_{i}"] == True for i in range(1, steps + 1)]  # noqa: E712 - NaN-aware, as the script
        subs_false = [m[f"joker_{i}"] == False for i in range(1, steps + 1)]  # noqa: E712
        multi_true, multi_false = m["joker_multi"] == True, m["joker_multi"] == False  # noqa: E712
        all_true = pd.concat(subs_true, axis=1).all(axis=1)
        any_true = pd.concat(subs_true, axis=1).any(axis=1)
        all_false = pd.concat(subs_false, axis=1).all(axis=1)
        any_false = pd.concat(subs_false, axis=1).any(axis=1)
        counts["IG"] += int((all_true & multi_false).sum())
        counts["IK"] += int((any_false & multi_false).sum())
        counts["CM_strict"] += int((all_true & multi_true).sum())
        counts["CM_loose"] += int((any_true & multi_true).sum())
        counts["RM_strict"] += int((any_false & multi_true).sum())
        counts["RM_loose"] += int((all_false & multi_true).sum())
        s1 += [m[f"joker_{i}"] for i in range(1, steps + 1)]
        counts[f"S{steps}"] = m["joker_multi"].dropna().astype(float).mean()
    out = {f"four_dim/{k}": float(v) for k, v in counts.items() if not k.startswith("S")}
    for k in ("IK", "IG", "CM_strict", "CM_loose"):
        out[f"four_dim/{k}_rate"] = counts[k] / total
    for mode in ("strict", "loose"):
        rm, cm = counts[f"RM_{mode}"], counts[f"CM_{mode}"]
        out[f"four_dim/RM_{mode}_rate"] = rm / (rm + cm)
        out[f"four_dim/score_{mode}"] = (total - 0.5 * counts["IG"] - rm - counts["IK"]) / total
    out["steps/S1_accuracy"] = pd.concat(s1).dropna().astype(float).mean()
    out["steps/S2_accuracy"], out["steps/S3_accuracy"] = counts["S2"], counts["S3"]
    return out


# A worked example: (steps, problem) -> part verdicts; a missing key is a missing row.
WORKED = {
    (2, "a"): {"1": True, "2": True, "multi": True},  # complete mastery
    (2, "b"): {"1": True, "2": False, "multi": True},  # rote memorization (strict), mastery (loose)
    (2, "c"): {"1": True, "2": True, "multi": False},  # inadequate generalization
    (2, "d"): {"1": False, "2": False, "multi": False},  # insufficient knowledge
    (2, "e"): {"1": True, "multi": True},  # sub 2 missing: neither mastery nor memorization strictly
    (2, "f"): {"1": False, "2": True},  # composite missing: counted nowhere
    (3, "g"): {"1": False, "2": False, "3": False, "multi": True},  # rote memorization (both)
    (3, "h"): {"2": True, "3": True, "multi": True},  # first sub missing: the join never sees it
    (3, "i"): {"1": True, "2": False, "3": True, "multi": False},  # insufficient knowledge
}


def _scored(worked: dict) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    ours, theirs = [], []
    for (steps, problem), parts in worked.items():
        for part, right in parts.items():
            key, problem_id = f"{steps}steps_{part}", f"{steps}steps_{problem}"
            ours.append({"correct": right, "metadata": json.dumps({"key": key, "wemath_id": problem_id})})
            theirs.append({"ID": problem_id, "key": key, "joker": right})
    return ours, theirs


def test_wemath_metrics_match_the_official_script_with_missing_rows() -> None:
    ours, theirs = _scored(WORKED)
    got, expected = four_dimensional(ours), official_wemath(theirs)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value), name
    # By hand: IK = d, i; IG = c; CM strict = a; CM loose = a, b, e; RM strict = b, g; RM loose = g.
    assert (got["four_dim/IK"], got["four_dim/IG"], got["four_dim/CM_strict"], got["four_dim/CM_loose"]) == (
        2,
        1,
        1,
        3,
    )
    assert got["four_dim/score_strict"] == pytest.approx((525 - 2 - 0.5 - 2) / 525)
    assert got["four_dim/score_loose"] == pytest.approx((525 - 2 - 0.5 - 1) / 525)
    assert got["four_dim/total"] == 525 and got["four_dim/problems"] == 8


def test_wemath_metrics_are_empty_without_composites() -> None:
    ours, _ = _scored({(2, "a"): {"1": True, "2": True}})
    assert four_dimensional(ours) == {}
