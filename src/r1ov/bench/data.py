"""Data stage throughput: formalize against a teacher with a fixed latency L = 1 s.

The offline teacher runs in its own process (``python -m r1ov.synthetic.offline_teacher --delay 1``),
standing in for a remote model whose every answer takes a second. A stage that keeps C
requests in flight approaches the bound C / L requests per second; what keeps it below is
the client's own CPU time per request (building, sending, parsing, caching, writing). Each
concurrency level formalizes its own ``ROUNDS * C`` distinct records with a fresh output and
cache. Two rates per level: the request phase (the stage's time inside the teacher client:
requests built, sent, answered, checked and cached), which is what C / L bounds, and the
whole stage end to end (reading, decoding every image, writing shards: fixed costs a longer
run amortizes). The sequential loop (C = 1) is the baseline, measured in the same run. CPU
time per request is this process's CPU time over the whole stage (the server's is apart)
divided by the requests sent. The cores are shared with the server process (and with
whatever else runs on the machine: a loaded machine shows in the CPU-bound levels).

Formalize with perception on: untyped rows (as import writes them), half natural scenes and
half text images, C = 128, the same teacher at L = 1 s. Each row is classified by the teacher,
then its type's tool runs (the detector on natural scenes: a tiny random Grounding DINO through
the real processor and model, since the real weights are not downloaded here; Tesseract OCR on
text images), then it is formalized. Perception alone (the tools on the same images, one after
the other on one worker, the images decoded beforehand; half the images just before the stage
and half just after) is measured in the same run. The stage is as fast as its slowest resource
when its rows/s reach min(C / L, perception alone), rather than the rate of the two one after
the other. ``R1OV_BENCH_PERCEPTION_ROWS`` sets the row count (default 512).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from r1ov.bench.report import Result
from r1ov.config import FormalizeConfig, PerceptionConfig, SynthConfig, TeacherConfig
from r1ov.data import records
from r1ov.formalize import run as formalize
from r1ov.synthetic import run as synthesize
from r1ov.synthetic.offline_teacher import DEFAULT_MODEL

LATENCY_S = 1.0
LEVELS = (1, 4, 16, 64, 128, 256)
ROUNDS = 10  # requests per level = ROUNDS * C: the stage's fixed costs are small next to the calls
SEQUENTIAL_REQUESTS = 6

log = logging.getLogger(__name__)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_server(source: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    command = [sys.executable, "-m", "r1ov.synthetic.offline_teacher", "--data", source, "--port", str(port)]
    process = subprocess.Popen([*command, "--delay", str(LATENCY_S)], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2):
                return process, url
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the offline teacher did not start") from None
            time.sleep(0.2)


def _level(source_rows: list[dict], url: str, tmp: str, concurrency: int, count: int) -> tuple[float, float, float]:
    """(request-phase requests/s, whole-stage requests/s, CPU seconds per request) at ``concurrency``."""
    source = f"{tmp}/in-{concurrency}"
    records.write_dataset(source, source_rows[:count])
    teacher = TeacherConfig(
        base_url=url,
        model=DEFAULT_MODEL,
        max_concurrency=concurrency,
        timeout_s=60,
        cache_uri=f"{tmp}/cache-{concurrency}",
    )
    cfg = FormalizeConfig(
        input_uri=source,
        output_uri=f"{tmp}/out-{concurrency}",
        teacher=teacher,
        perception=PerceptionConfig(detector_model=None, ocr_engine="none"),
        shard_size=max(count, 1),
    )
    cpu, wall = time.process_time(), time.perf_counter()
    manifest = formalize(cfg)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    sent, phase = manifest["teacher"]["sent"], manifest["teacher"]["seconds"]
    assert manifest["records"] == count and sent == count, manifest
    log.info(
        "C=%d: %d requests, %.1f/s in the request phase (%.2f s), %.1f/s whole stage (%.2f s), bound %.0f/s, "
        "%.2f ms CPU each",
        concurrency, sent, sent / phase, phase, sent / wall, wall, concurrency / LATENCY_S, 1000 * cpu / sent,
    )  # fmt: skip
    return sent / phase, sent / wall, cpu / sent


PERCEPTION_ROWS = 512
PERCEPTION_CONCURRENCY = 128


def _perception_alone(rows: list[dict], perception_cfg: PerceptionConfig, max_pixels: int) -> float:
    """Seconds of the type's tool alone on the rows' images, decoded beforehand, one after the other."""
    from r1ov.data import imaging
    from r1ov.formalize.perception import Perception

    perception = Perception(perception_cfg)
    pictures = [(imaging.load_image(row, max_pixels), records.ground_truth(row)["kind"]) for row in rows]

    def tools() -> float:
        started = time.perf_counter()
        for picture, kind in pictures:
            perception.detect(picture) if kind == "natural" else perception.ocr(picture)
        return time.perf_counter() - started

    # On one worker thread, as the stage runs its tools: torch's CPU forward is several times
    # slower on the main thread of a busy machine than on a worker, which would flatter the stage.
    with ThreadPoolExecutor(1) as worker:
        seconds = worker.submit(tools).result()
    log.info("perception alone: %d images in %.1f s, %s", len(rows), seconds, perception.calls)
    return seconds


def perception_results(count: int | None = None) -> list[Result]:
    """Formalize of ``count`` untyped natural and text rows with perception on, against the bound
    min(C / L, perception alone) measured in the same run."""
    from r1ov.testing.tiny_detector import build_tiny_detector

    count = count or int(os.environ.get("R1OV_BENCH_PERCEPTION_ROWS") or PERCEPTION_ROWS)
    concurrency = PERCEPTION_CONCURRENCY
    with tempfile.TemporaryDirectory() as tmp:
        typed = f"{tmp}/typed"
        synthesize(SynthConfig(output_uri=typed, n=count, seed=1, kinds=["natural", "text"]))
        rows = records.read_records(typed)
        source = f"{tmp}/untyped"
        records.write_dataset(source, [{**row, "image_type": "unknown"} for row in rows])
        perception = PerceptionConfig(
            detector_model=str(build_tiny_detector(f"{tmp}/detector")), ocr_engine="tesseract"
        )
        cfg = FormalizeConfig(
            input_uri=source,
            output_uri=f"{tmp}/out",
            teacher=TeacherConfig(
                base_url="unset",
                model=DEFAULT_MODEL,
                max_concurrency=concurrency,
                timeout_s=60,
                cache_uri=f"{tmp}/cache",
            ),
            perception=perception,
        )
        # Half the images just before the stage and half just after: a machine whose load
        # changes during the run weighs on the bound as it weighs on the stage.
        half = count // 2
        alone_s = _perception_alone(rows[:half], perception, cfg.max_image_pixels)
        server, url = _start_server(typed)
        try:
            cfg = cfg.model_copy(update={"teacher": cfg.teacher.model_copy(update={"base_url": url})})
            wall = time.perf_counter()
            manifest = formalize(cfg)
            wall = time.perf_counter() - wall
            tools_ran = sum(
                ("detections" if row["image_type"] == "natural" else "ocr_words") in records.metadata(row)
                for row in records.read_records(cfg.output_uri)
            )
        finally:
            server.terminate()
            server.wait(timeout=30)
        alone_s += _perception_alone(rows[half:], perception, cfg.max_image_pixels)
    alone = count / alone_s
    rate = count / wall
    teacher = manifest["teacher"]
    log.info(
        "formalize with perception: %d rows in %.1f s, %.2f rows/s; %d requests, %s; perception alone %.2f rows/s",
        count, wall, rate, teacher["sent"], manifest["reject_reasons"], alone,
    )  # fmt: skip
    assert manifest["records"] + manifest["rejected"] == count, manifest
    assert tools_ran == manifest["records"], "every accepted row carries its tool's output"
    bound = min(concurrency / LATENCY_S, alone)
    return [
        Result.compare(
            f"formalize with perception rows/s at C={concurrency} vs min(C/L, perception alone)",
            rate,
            bound,
            "rows/s",
            0.9,
            f"{count} untyped rows, half natural (detector), half text (Tesseract); classify + formalize per row",
        ),
        Result.absolute(
            "perception alone rows/s (the tools on the same images, one after the other)",
            alone,
            "rows/s",
            None,
            "what bounds the stage when it is below C/L",
        ),
        Result.absolute(
            "formalize with perception: rows accepted",
            manifest["records"] / count,
            "fraction",
            None,
            f"reasons set aside: {manifest['reject_reasons']}",
        ),
    ]


def run() -> list[Result]:
    # A log line per HTTP request would be a cost of the benchmark, not of the stage.
    for noisy in ("httpx", "httpx2", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        source = f"{tmp}/source"
        synthesize(SynthConfig(output_uri=source, n=ROUNDS * max(LEVELS), seed=0, kinds=["table", "chart"]))
        rows = records.read_records(source)
        server, url = _start_server(source)
        try:
            load = os.getloadavg()[0]
            _, sequential, sequential_cpu = _level(rows, url, tmp, 1, SEQUENTIAL_REQUESTS)
            for concurrency in LEVELS[1:]:
                rate, stage_rate, cpu = _level(rows, url, tmp, concurrency, ROUNDS * concurrency)
                bound = concurrency / LATENCY_S
                goal = 0.9 if concurrency == 128 else None
                results.append(
                    Result.compare(f"formalize requests/s at C={concurrency} vs bound C/L", rate, bound, "req/s", goal)
                )
                results.append(
                    Result.compare(
                        f"whole formalize stage rows/s at C={concurrency} vs bound C/L",
                        stage_rate,
                        bound,
                        "rows/s",
                        None,
                        "includes reading, decoding and writing",
                    )
                )
                results.append(
                    Result.compare(
                        f"client CPU per request at C={concurrency} vs the sequential loop's",
                        1000 * cpu,
                        1000 * sequential_cpu,
                        "ms",
                        None,
                        "the stage's CPU per row (decoding included), this process only",
                    )
                )
                if concurrency == 128:
                    results.append(
                        Result.compare(
                            "whole formalize stage rows/s at C=128 vs the sequential loop, same run",
                            stage_rate,
                            sequential,
                            "rows/s",
                            50,
                        )
                    )
        finally:
            server.terminate()
            server.wait(timeout=30)
    results += perception_results()
    cores = os.cpu_count() or 1
    results.append(
        Result.compare(
            "machine load average (1 min) when the run started, vs cores",
            load,
            cores,
            "processes",
            None,
            "above 1 the cores were shared with other work, which slows the CPU-bound levels",
        )
    )
    return results
