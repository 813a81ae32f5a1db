"""Fan-out that protects the run: shards by hash of id (every shard sees every source), ids made
unique before any teacher is paid, a merge whose rejected/ holds every stage's rejections and
whose floor is the overall yield naming the worst sources, and one reply cache for every run."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from r1ov.config import SynthConfig
from r1ov.data import fanout, records
from r1ov.data.outcome import StageFailed, check_floor
from r1ov.pipeline.tasks import run_shard_stage
from r1ov.synthetic import run as synthesize
from r1ov.synthetic.offline_teacher import fetch_stats, serve


def _png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (value % 256, value // 256, 7)).save(buffer, format="PNG")
    return buffer.getvalue()


def _folder_by_folder(uri: str, folders: dict[str, int]) -> None:
    """Rows written source folder after source folder, as an import writes them."""
    rows = [
        records.new_record(source=f"import/{folder}", question=f"{folder} {i}?", image_type="chart", image=_png(i))
        for folder, count in folders.items()
        for i in range(count)
    ]
    records.write_dataset(uri, rows, shard_size=25)


def test_every_shard_sees_every_source(tmp_path: Path) -> None:
    folders = {"ai2d": 40, "Geometry3K(MathV360K)": 40, "llava_cot_100k_natural_scene": 40}
    _folder_by_folder(str(tmp_path / "source"), folders)
    shards = fanout.split(str(tmp_path / "source"), str(tmp_path / "work"), 4, rows_per_file=7)
    for shard in shards:
        sources = {r["source"] for r in records.read_records(f"{shard}/source")}
        assert sources == {f"import/{f}" for f in folders}, shard
        assert sum(records.read_manifest(f"{shard}/source")["sources"].values()) == records.count_rows(
            f"{shard}/source"
        )


def test_duplicate_ids_are_settled_at_shard_time_never_at_merge(tmp_path: Path) -> None:
    rows = [records.new_record(source="s", question=f"Q{i}?", image_type="chart", image=_png(i)) for i in range(6)]
    twin = dict(rows[0])  # the same row twice: set aside
    other = {**rows[1], "question": "Another question under a reused id?"}  # same id, other content: renamed
    records.write_dataset(str(tmp_path / "source"), [*rows, twin, other])
    shards = fanout.split(str(tmp_path / "source"), str(tmp_path / "work"), 3)
    kept = [r for s in shards for r in records.read_records(f"{s}/source")]
    aside = [r for s in shards for r in records.read_records(f"{s}/source", records.REJECTED)]
    assert len(kept) == 7 and len({r["id"] for r in kept}) == 7
    [duplicate] = aside
    assert duplicate["reject_reason"] == f"duplicate: same id and content as an earlier row ({rows[0]['id']})"
    assert duplicate["id"] != rows[0]["id"] and duplicate["question"] == rows[0]["question"]
    [renamed] = [r for r in kept if r["question"] == other["question"]]
    assert renamed["id"] != rows[1]["id"] and records.metadata(renamed)["renamed_from"] == rows[1]["id"]
    again = fanout.split(str(tmp_path / "source"), str(tmp_path / "again"), 2)  # the same name in every run
    assert renamed["id"] in {r["id"] for s in again for r in records.read_records(f"{s}/source")}
    for shard in shards:  # every stage passes everything on: the merge meets no id twice
        for folder in ("formalized", "distilled", "filtered"):
            records.write_dataset(f"{shard}/{folder}", records.read_records(f"{shard}/source"))
    manifest = fanout.merge(shards, str(tmp_path / "merged"))
    assert manifest["records"] == 7 and manifest["rejected"] == 1 and manifest["reject_reasons"] == {"duplicate": 1}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> str:
    uri = str(tmp_path_factory.mktemp("floors") / "source")
    synthesize(SynthConfig(output_uri=uri, n=12, seed=11, kinds=["table", "chart", "math"]))
    return uri


def _stages(shards: list[str], url: str) -> int:
    """formalize, distill and filter on every shard; returns the teacher calls the stages sent."""
    teacher = {"teacher.base_url": url, "teacher.model": "offline"}
    sent = 0
    for shard in shards:
        sent += run_shard_stage("formalize", shard, teacher)["teacher"]["sent"]
        sent += run_shard_stage("distill", shard, teacher)["teacher"]["sent"]
        run_shard_stage("filter", shard, {"min_accepted_fraction": 0.0})
    return sent


def test_merge_holds_every_rejection_and_a_resubmitted_run_pays_nothing(source: str, tmp_path: Path) -> None:
    root = str(tmp_path / "durable")
    with serve([source], noise=0.3, formalize_noise=0.2, seed=1) as url:
        first = fanout.split(source, fanout.work_uri(root, "run-1"), 1)
        assert _stages(first, url) > 0
        calls_before = fetch_stats(url)
        # Re-submitted: a new run id, another shard count, the same data root.
        second = fanout.split(source, fanout.work_uri(root, "run-2"), 3)
        assert _stages(second, url) == 0
        assert fetch_stats(url) == calls_before  # counted at the server too: nothing was sent
    manifest = fanout.merge(second, str(tmp_path / "merged"))
    accepted = records.read_records(str(tmp_path / "merged"))
    rejected = records.read_records(str(tmp_path / "merged"), records.REJECTED)
    # Every source row ends once, accepted or set aside by the stage that refused it.
    assert sorted(r["id"] for r in [*accepted, *rejected]) == sorted(r["id"] for r in records.read_records(source))
    by_stage = {stage: manifest["stages"][stage]["rejected"] for stage in ("formalize", "distill", "filter")}
    assert by_stage["formalize"] > 0 and by_stage["filter"] > 0, by_stage
    assert manifest["rejected"] == len(rejected) == sum(by_stage.values())
    assert sum(s["rows"] for s in manifest["sources"].values()) == 12
    assert sum(s["accepted"] for s in manifest["sources"].values()) == manifest["records"] == len(accepted)
    # The floor is the overall yield against the source, and a failure names the worst sources.
    share = manifest["records"] / 12
    check_floor("merge", str(tmp_path / "merged"), manifest, share)
    worst = min(manifest["sources"], key=lambda name: manifest["sources"][name]["yield"])
    with pytest.raises(StageFailed, match=rf"of 12 rows accepted(.|\n)*lowest-yield sources: {worst} "):
        check_floor("merge", str(tmp_path / "merged"), manifest, min(1.0, share + 0.01))
