"""Dataset I/O: Parquet shards (zstd) against a JSON-lines baseline, same rows, same run."""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path

from r1ov.bench.report import Result, best_of, timed
from r1ov.config import SynthConfig
from r1ov.data import records

ROWS = 2000


def _rows() -> list[dict]:
    from r1ov.synthetic import run as synthesize

    with tempfile.TemporaryDirectory() as tmp:
        synthesize(SynthConfig(output_uri=tmp, n=ROWS, seed=0))
        return records.read_records(tmp)


def _jsonl_roundtrip(rows: list[dict], path: Path) -> None:
    with path.open("w") as out:
        for row in rows:
            out.write(json.dumps({**row, "image": base64.b64encode(row["image"] or b"").decode()}) + "\n")
    with path.open() as src:
        back = [json.loads(line) for line in src]
    for row in back:
        row["image"] = base64.b64decode(row["image"])


def run() -> list[Result]:
    rows = _rows()
    with tempfile.TemporaryDirectory() as tmp:
        parquet = best_of(3, lambda: timed(lambda: (records.write_dataset(tmp, rows), records.read_records(tmp))))
        jsonl = best_of(3, lambda: timed(lambda: _jsonl_roundtrip(rows, Path(tmp) / "rows.jsonl")))
        parquet_bytes = sum(p.stat().st_size for p in Path(tmp, "records").glob("*.parquet"))
        jsonl_bytes = Path(tmp, "rows.jsonl").stat().st_size
    return [
        Result.compare(
            "write+read rows/s (parquet shards)",
            ROWS / parquet,
            ROWS / jsonl,
            "rows/s",
            1,
            "shards no slower than JSON lines",
        ),
        Result.compare(
            "bytes on disk (parquet shards)",
            parquet_bytes,
            jsonl_bytes,
            "bytes",
            1,
            "smaller than JSON lines with base64 images",
            lower_is_better=True,
        ),
    ]
