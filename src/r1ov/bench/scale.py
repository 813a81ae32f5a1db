"""The data path at scale on one machine: import -> shard (32) -> filter -> merge -> export (trl).

A synthetic source in the R1-Onevision release's layout (base64 string images in per-source
folders, conversations with a ``<think>`` reply) goes through every step that does not need a
teacher; the filter stands in for the teacher stages' shard-by-shard read and write. Each step
runs in its own process, so its peak RSS is its own, and is timed from after its imports. Two
sizes measured in the same run, by default 15K rows and the release's 155K: rows/s at the large
size over rows/s at the small one says whether the path scales linearly (goal >= 0.8), and each
step's peak RSS, at both sizes, is held against 1.5 GB. ``R1OV_BENCH_SCALE_ROWS=SMALL,LARGE``
sets the sizes (``300,3000`` checks the benchmark itself in well under a minute). At 155K the
run writes about 8 GB under the temporary directory (the release, its import, the shards, the
merge and the export).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from r1ov.bench.report import Result

log = logging.getLogger(__name__)

SIZES = (15_000, 155_000)  # rows: 155K is the R1-Onevision release
SIZES_ENV = "R1OV_BENCH_SCALE_ROWS"
SHARDS = 32
FOLDERS = ("ai2d", "Geometry3K(MathV360K)", "llava_cot_100k_natural_scene", "scienceqa(nona_context)")
MAX_RSS_MB = 1536
STEPS = ("import", "shard", "filter", "merge", "export")


def write_release(root: Path, rows: int, seed: int = 0) -> None:
    """``rows`` rows over FOLDERS, 1000 a file, images small (48x48 PNG) so the run measures the path."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    schema = pa.schema(
        [
            ("id", pa.string()),
            ("image", pa.string()),
            ("conversations", pa.list_(pa.struct([("from", pa.string()), ("value", pa.string())]))),
        ]
    )
    rng = np.random.default_rng(seed)
    per_folder = rows // len(FOLDERS)
    for number, folder in enumerate(FOLDERS):
        count = per_folder if number < len(FOLDERS) - 1 else rows - per_folder * (len(FOLDERS) - 1)
        (root / folder).mkdir(parents=True)
        files = max(1, -(-count // 1000))
        for k in range(files):
            batch = []
            for i in range(k * 1000, min(count, (k + 1) * 1000)):
                buffer = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(buffer, format="PNG")
                chain = (
                    f"<think>\nCounting the marked parts of figure {i} in {folder}: there are {i % 7 + 2}.\n</think>"
                )
                batch.append(
                    {
                        "id": f"{folder}-{i}",
                        "image": base64.b64encode(buffer.getvalue()).decode("ascii"),
                        "conversations": [
                            {"from": "human", "value": f"<image>\nHow many marked parts does figure {i} show?"},
                            {"from": "gpt", "value": f"{chain}\n<answer>{i % 7 + 2}</answer>"},
                        ],
                    }
                )
            name = f"train-{k:05d}-of-{files:05d}.parquet"
            pq.write_table(pa.Table.from_pylist(batch, schema=schema), root / folder / name)


def step(name: str, work: str) -> None:
    """One step, in this process (``python -m r1ov.bench.scale STEP WORK``); prints its peak RSS."""
    import resource

    from r1ov.config import FilterConfig
    from r1ov.data import fanout
    from r1ov.data.exporters import export_dataset
    from r1ov.data.importers import import_dataset
    from r1ov.filtering.stage import run as filter_reasoning

    shards_file = Path(work) / "shards.json"
    started = time.perf_counter()  # after the imports: the interpreter's start is no part of the path
    if name == "import":
        import_dataset("parquet", f"{work}/release", f"{work}/source")
    elif name == "shard":
        shards_file.write_text(json.dumps(fanout.split(f"{work}/source", f"{work}/work", SHARDS)))
    elif name == "filter":
        for shard in json.loads(shards_file.read_text()):
            cfg = FilterConfig(input_uri=f"{shard}/source", output_uri=f"{shard}/filtered", min_accepted_fraction=0.0)
            filter_reasoning(cfg)
    elif name == "merge":
        fanout.merge(json.loads(shards_file.read_text()), f"{work}/merged")
    elif name == "export":
        export_dataset("trl", f"{work}/merged", f"{work}/trl")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(json.dumps({"seconds": time.perf_counter() - started, "rss_mb": peak}))


def _path(rows: int) -> dict[str, float]:
    """Seconds and peak RSS (MB) of each step for a source of ``rows`` rows."""
    with tempfile.TemporaryDirectory() as work:
        write_release(Path(work) / "release", rows)
        measured: dict[str, float] = {}
        for name in STEPS:
            done = subprocess.run(
                [sys.executable, "-m", "r1ov.bench.scale", name, work],
                check=True,
                capture_output=True,
                text=True,
                env={**os.environ, "TQDM_DISABLE": "1"},
            )
            reported = json.loads(done.stdout.strip().splitlines()[-1])
            measured[f"{name}_s"], measured[f"{name}_rss_mb"] = reported["seconds"], reported["rss_mb"]
        return measured


def sizes() -> tuple[int, int]:
    """(small, large) rows: ``$R1OV_BENCH_SCALE_ROWS`` ("SMALL,LARGE"), else :data:`SIZES`."""
    given = os.environ.get(SIZES_ENV)
    if not given:
        return SIZES
    try:
        small, large = (int(part) for part in given.split(","))
    except ValueError:
        raise SystemExit(f"{SIZES_ENV}={given!r}: expected two row counts, SMALL,LARGE (e.g. 300,3000)") from None
    if not 0 < small < large:
        raise SystemExit(f"{SIZES_ENV}={given!r}: expected 0 < SMALL < LARGE")
    return small, large


def run() -> list[Result]:
    small_rows, large_rows = sizes()
    measured = {}
    for rows in (small_rows, large_rows):
        started = time.perf_counter()
        measured[rows] = _path(rows)
        log.info("steps at %d rows (%.0f s with the source's writing): %s", rows, time.perf_counter() - started,
                 measured[rows])  # fmt: skip
    total = {rows: sum(m[f"{s}_s"] for s in STEPS) for rows, m in measured.items()}
    results = [
        Result.compare(
            f"import->shard({SHARDS})->filter->merge->export rows/s at {large_rows} rows (baseline: at {small_rows})",
            large_rows / total[large_rows],
            small_rows / total[small_rows],
            "rows/s",
            0.8,
            "linear",
        )
    ]
    for rows in (small_rows, large_rows):
        for name in STEPS:
            results.append(
                Result.absolute(
                    f"{name}: peak RSS at {rows} rows",
                    measured[rows][f"{name}_rss_mb"],
                    "MB",
                    MAX_RSS_MB,
                    "the 1.5 GB budget",
                    lower_is_better=True,
                )
            )
    return results


if __name__ == "__main__":
    step(sys.argv[1], sys.argv[2])
