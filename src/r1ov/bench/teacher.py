"""Teacher-bound stages: formalize throughput at concurrency C against C = 1, same run.

The offline teacher answers after a fixed latency L, standing in for a remote model; a stage
that keeps C requests in flight approaches the bound C / L requests per second. The first
requests get 429 with Retry-After, so the measurement includes the retry path.
"""

from __future__ import annotations

import tempfile

from r1ov.bench.report import Result, timed
from r1ov.config import FormalizeConfig, PerceptionConfig, SynthConfig, TeacherConfig
from r1ov.formalize import run as formalize
from r1ov.synthetic import run as synthesize
from r1ov.synthetic.offline_teacher import serve

RECORDS = 96
LATENCY_S = 0.05  # per request, server side
CONCURRENCY = 8
FAULTS = 3  # first requests answered 429 + Retry-After


def _rate(source: str, out: str, concurrency: int) -> float:
    with serve([source], delay_s=LATENCY_S, fail_first=FAULTS, retry_after=0.1) as url:
        teacher = TeacherConfig(base_url=url, model="r1ov-offline-teacher", max_concurrency=concurrency)
        # Teacher throughput only: the perception tools are measured apart (they run per image, not per call).
        cfg = FormalizeConfig(
            input_uri=source,
            output_uri=out,
            teacher=teacher,
            perception=PerceptionConfig(detector_model=None, ocr_engine="none"),
        )
        seconds = timed(lambda: formalize(cfg))
    return RECORDS / seconds


def run() -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        source = f"{tmp}/source"
        synthesize(SynthConfig(output_uri=source, n=RECORDS, seed=0))
        serial = _rate(source, f"{tmp}/serial", 1)
        concurrent = _rate(source, f"{tmp}/concurrent", CONCURRENCY)
    bound = CONCURRENCY / LATENCY_S
    return [
        Result.compare(
            f"formalize records/s at concurrency {CONCURRENCY}",
            concurrent,
            serial,
            "records/s",
            0.6 * CONCURRENCY,
            f"bound C/L = {bound:.0f}/s; serial bound {1 / LATENCY_S:.0f}/s",
        ),
        Result.absolute(
            "share of the concurrency bound reached",
            concurrent / bound,
            "fraction",
            0.6,
            "client overhead small next to teacher latency",
        ),
    ]
