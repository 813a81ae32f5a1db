"""No value crashes a stage: shards written by other tools (text that is not UTF-8, a column of
the wrong type, a 0-byte file) end as rows set aside with a reason, the rest goes on."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from r1ov.config import FilterConfig
from r1ov.data import records
from r1ov.filtering.stage import run as filter_reasoning


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _row(i: int) -> dict:
    row = records.new_record(
        source="t", question=f"How many bars are there in chart {i}?", image_type="chart", image=_png(i), answer="3"
    )
    row["reasoning"] = f"<think>I count the bars of chart {i} one by one: one, two, three.</think><answer>3</answer>"
    row["predicted_answer"] = "3"
    return row


def _not_utf8(texts: list[bytes]) -> pa.Array:
    """A string column holding bytes that are not UTF-8, as a writer that skips validation leaves it."""
    offsets = np.cumsum([0, *map(len, texts)], dtype=np.int32).tobytes()
    return pa.Array.from_buffers(pa.string(), len(texts), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(texts))])


def test_bad_values_and_files_are_set_aside_never_a_traceback(tmp_path: Path) -> None:
    uri = tmp_path / "distilled"
    (uri / "records").mkdir(parents=True)
    records.write_shard(str(uri), [_row(0), _row(1)], 0)
    # Part 1: one row's question is not UTF-8; its neighbour is fine.
    rows = [_row(2), _row(3)]
    loose = pa.schema([f.with_nullable(True) for f in records.SCHEMA])
    table = pa.Table.from_pylist(rows, schema=loose)
    question = _not_utf8([rows[0]["question"].encode(), b"How many \xff\xfe bars?"])
    table = table.set_column(table.schema.get_field_index("question"), "question", question)
    pq.write_table(table, uri / "records" / "part-00001.parquet")
    # Part 2: options written as one string per row instead of a list.
    typed = [{**_row(4), "options": "a, b"}, {**_row(5), "options": "c"}]
    pq.write_table(pa.Table.from_pylist(typed), uri / "records" / "part-00002.parquet")
    # Part 3: a 0-byte file, from a copy that died.
    (uri / "records" / "part-00003.parquet").write_bytes(b"")

    output = tmp_path / "filtered"
    manifest = filter_reasoning(FilterConfig(input_uri=str(uri), output_uri=str(output), min_accepted_fraction=0.0))
    accepted = {r["id"] for r in records.read_records(str(output))}
    rejected = {r["id"]: r["reject_reason"] for r in records.read_records(str(output), records.REJECTED)}
    assert accepted == {_row(i)["id"] for i in (0, 1, 2)}
    bad_text = rejected[rows[1]["id"]]
    assert bad_text.startswith("bad_record: question is not UTF-8 text") and "part-00001.parquet#row=1" in bad_text
    for i in (4, 5):
        assert rejected[_row(i)["id"]].startswith("bad_record: options is a str"), rejected[_row(i)["id"]]
    [file_reason] = [r for r in rejected.values() if r.startswith("unreadable_file")]
    assert "part-00003.parquet" in file_reason and "0 bytes" in file_reason
    assert manifest["records"] == 3 and manifest["rejected"] == 4  # 7 rows in, each in exactly one part
