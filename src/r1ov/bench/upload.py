"""SFT steps/s while checkpoints upload to a slow bucket, against the same stage saving the same checkpoints with
no upload, in the same run.

``python -m r1ov.bench upload`` writes ``upload.json``. Both sides run the SFT stage as the pipeline does
(``r1ov.train.sft.run``: one process, the tiny model, ``SAVES`` checkpoints); one has a ``checkpoint_uri`` on
moto's S3 server behind a slow link (:class:`r1ov.testing.slow_link.SlowLink`), the other keeps its
checkpoints on the local disk. The save interval comes from a calibration run: one real upload of its
checkpoint through the link is timed (every request's latency and the server's work included, not only bytes
over the rate), and checkpoints are saved so that one upload takes ``UPLOAD_SHARE`` of the time between two
saves: an upload is under way for most of the run, as with a large checkpoint on a slow bucket, while staging
(one checkpoint) does not fill. Runs alternate, each in a fresh interpreter with one compute thread, and the
medians are compared. The main row is steps per second of the clock over the training loop
(``Trainer.train``), since a synchronous upload costs wall time, not CPU time; the wait for the last upload
after the loop is an end-of-run cost, outside it. The CPU-time ratio (the upload thread's own work) is a
context row. The goal: >= 0.9.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from r1ov.bench import training
from r1ov.bench.report import Result

SAVES = 3  # checkpoints per run, the last at the final step
PROBE_STEPS = 20  # the calibration run saves at 20 (its final step is the model): steps/s and a checkpoint
REPEATS = 3
UPLOAD_SHARE = 0.6  # of the time between two saves, one checkpoint's upload takes
LINK_RATE = 8e6  # bytes/s of the slow link
LINK_LATENCY_S = 0.01  # a chunk
BUCKET = "r1ov-bench"
# moto accepts any keys; the training processes get these and the endpoint, nothing of the caller's.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}


@contextlib.contextmanager
def _moto() -> Iterator[str]:
    """moto's S3 server on a free loopback port, with a bucket; yields its endpoint."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        import boto3

        boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        ).create_bucket(Bucket=BUCKET)  # fmt: skip
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


def _checkpoint_bytes(out: Path) -> float:
    """The mean size of the checkpoints a run with output ``out`` kept (checkpoints.local_dir)."""
    saved = list(Path(f"{out}-checkpoints").glob("checkpoint-*"))
    return sum(f.stat().st_size for d in saved for f in d.rglob("*") if f.is_file()) / len(saved)


def _timed_upload(checkpoint: Path, endpoint: str) -> float:
    """Seconds one real upload of ``checkpoint`` takes through ``endpoint`` (the slow link): every
    request's latency and the server's own work included, not only the bytes over the rate."""
    from r1ov.train import uploads

    saved = {k: os.environ.get(k) for k in (*CREDENTIALS, "R1OV_S3_ENDPOINT")}
    os.environ.update({**CREDENTIALS, "R1OV_S3_ENDPOINT": endpoint})
    try:
        uploads.upload_tree(checkpoint, f"s3://{BUCKET}/warm-up")  # the client's one-time start-up
        started = time.monotonic()
        uploads.upload_tree(checkpoint, f"s3://{BUCKET}/calibration")
        return time.monotonic() - started
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run() -> list[Result]:
    from r1ov.testing.slow_link import SlowLink
    from r1ov.testing.tiny_model import build_tiny_model

    load = os.getloadavg()[0]
    wall: dict[str, list[float]] = {"upload": [], "local": []}
    cpu: dict[str, list[float]] = {"upload": [], "local": []}
    with tempfile.TemporaryDirectory() as name, _moto() as endpoint:
        tmp = Path(name)
        model, data = build_tiny_model(tmp / "model"), training._sft_data(tmp)
        host, port = endpoint.removeprefix("http://").split(":")
        with SlowLink((host, int(port)), upload_bytes_per_s=LINK_RATE, latency_s=LINK_LATENCY_S) as link:
            env = {**CREDENTIALS, "R1OV_S3_ENDPOINT": link.url}
            # Calibration: the save interval is set so that one real upload through the link takes
            # UPLOAD_SHARE of it: an upload is under way for most of the run, staging never fills.
            probe = training._sft_config(model, data, tmp / "probe").model_copy(
                update={"max_steps": 2 * PROBE_STEPS, "save_steps": PROBE_STEPS, "checkpoint_uri": None}
            )
            steps_per_s = training._measure_rates("ours", "sft", probe, env)["WALL_STEPS_PER_S"]
            size = _checkpoint_bytes(tmp / "probe")
            upload_s = _timed_upload(next(Path(f"{tmp / 'probe'}-checkpoints").glob("checkpoint-*")), link.url)
            save_steps = math.ceil(upload_s / UPLOAD_SHARE * steps_per_s)
            for i in range(REPEATS):
                for kind in ("local", "upload") if i % 2 == 0 else ("upload", "local"):
                    out = tmp / f"{kind}-{i}"
                    cfg = training._sft_config(model, data, out).model_copy(
                        update={
                            "max_steps": SAVES * save_steps,
                            "save_steps": save_steps,
                            "checkpoint_uri": f"s3://{BUCKET}/run-{i}" if kind == "upload" else None,
                        }
                    )
                    rates = training._measure_rates("ours", "sft", cfg, env)
                    wall[kind].append(rates["WALL_STEPS_PER_S"])
                    cpu[kind].append(rates["STEPS_PER_S"])
    title = (
        f"SFT steps/s while checkpoints upload to S3 over a slow link vs no upload ({SAVES * save_steps} steps, a "
        f"{size / 1e6:.1f} MB checkpoint every {save_steps}, each upload {upload_s:.1f} s = {UPLOAD_SHARE:.0%} of "
        f"the time between saves, {LINK_RATE / 1e6:.0f} MB/s and {LINK_LATENCY_S * 1e3:.0f} ms a chunk, tiny model)"
    )
    return [
        Result.compare(title, statistics.median(wall["upload"]), statistics.median(wall["local"]), "steps/s", 0.9),
        Result.compare(
            "the same in steps per CPU-second (the upload thread's own work)",
            statistics.median(cpu["upload"]),
            statistics.median(cpu["local"]),
            "steps per CPU-second",
            None,
        ),
        training._load(load),
    ]
