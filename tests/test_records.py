"""The record schema and dataset shards, on local disk and on a real S3-compatible server."""

from __future__ import annotations

from pathlib import Path

import pytest

from r1ov.data import records, storage


def _row(i: int) -> dict:
    return records.new_record(
        source="test",
        question=f"q{i}?",
        image_type="table",
        image=bytes([i]) * 4,
        answer=str(i),
        ground_truth={"kind": "table", "columns": ["a"], "rows": [[str(i)]]},
    )


def test_ids_are_content_hashes() -> None:
    assert _row(1)["id"] == _row(1)["id"]
    assert _row(1)["id"] != _row(2)["id"]


def test_unknown_image_type_is_refused() -> None:
    with pytest.raises(ValueError, match="image_type"):
        records.new_record(source="s", question="q", image_type="hologram")


def test_dataset_roundtrip_with_rejects(tmp_path: Path) -> None:
    uri = str(tmp_path / "ds")
    accepted = [_row(i) for i in range(5)]
    rejected = [records.reject(_row(9), "bad_image: truncated")]
    manifest = records.write_dataset(uri, accepted, rejected, shard_size=2)
    assert manifest == {"records": 5, "rejected": 1, "reject_reasons": {"bad_image": 1}}
    assert len(storage.list_files(storage.join(uri, "records"), ".parquet")) == 3
    back = records.read_records(uri)
    assert [r["id"] for r in back] == [r["id"] for r in accepted]
    assert records.read_records(uri, records.REJECTED)[0]["reject_reason"] == "bad_image: truncated"
    assert records.ground_truth(back[0])["kind"] == "table"


def test_rewrite_removes_stale_shards(tmp_path: Path) -> None:
    uri = str(tmp_path / "ds")
    records.write_dataset(uri, [_row(i) for i in range(6)], shard_size=2)
    records.write_dataset(uri, [_row(i) for i in range(2)], shard_size=2)
    assert len(records.read_records(uri)) == 2


def test_rejected_rows_need_a_reason(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reject_reason"):
        records.write_dataset(str(tmp_path / "ds"), [], [_row(1)])


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b.txt"
    storage.write_text(str(target), "hello")
    storage.write_text(str(target), "again")
    assert target.read_text() == "again"
    assert [p.name for p in target.parent.iterdir()] == ["b.txt"]


def test_dataset_roundtrip_on_s3(s3_endpoint: str, tmp_path: Path) -> None:
    uri = "s3://r1ov/datasets/test"
    records.write_dataset(uri, [_row(i) for i in range(3)], [records.reject(_row(7), "teacher_error: 500")])
    assert records.read_manifest(uri)["records"] == 3
    assert len(records.read_records(uri)) == 3
    assert records.read_records(uri, records.REJECTED)[0]["reject_reason"].startswith("teacher_error")
    # Checkpoints travel to and from object storage with the same helper.
    local = tmp_path / "ckpt"
    local.mkdir()
    (local / "config.json").write_text("{}")
    storage.copy_tree(str(local), "s3://r1ov/ckpt")
    storage.copy_tree("s3://r1ov/ckpt", str(tmp_path / "back"))
    assert (tmp_path / "back" / "config.json").read_text() == "{}"
