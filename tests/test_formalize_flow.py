"""Formalize runs each row on its own: perception overlaps the teacher requests in flight, a
request starts as soon as its row is perceived, and a request that hangs holds up no other row.

The teacher is the offline one (real HTTP, a fixed latency per request). Perception is a stand-in
with a fixed cost per image: it does not model detection or OCR output quality (its tools find
nothing), only that a tool takes time on a worker thread. Overlap is asserted as an ordering of
events, never as a timing threshold; the rate it buys is measured by ``python -m r1ov.bench data``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from r1ov.config import FormalizeConfig, PerceptionConfig, SynthConfig, TeacherConfig
from r1ov.data import records
from r1ov.data.outcome import StageFailed
from r1ov.formalize import run as formalize_run
from r1ov.formalize.perception import Perception
from r1ov.formalize.stage import formalize_stream, image_payload
from r1ov.synthetic import run as synthesize
from r1ov.synthetic.offline_teacher import serve
from r1ov.teachers import TeacherClient, protocol


class SlowPerception(Perception):
    """Each tool run sleeps ``seconds`` and records when it ran; it finds nothing."""

    def __init__(self, cfg: PerceptionConfig, seconds: float) -> None:
        super().__init__(cfg)
        self.seconds = seconds
        self.runs: list[tuple[float, float]] = []
        self._runs_lock = threading.Lock()

    def _look(self, image: Image.Image) -> list:
        started = time.monotonic()
        time.sleep(self.seconds)
        with self._runs_lock:
            self.runs.append((started, time.monotonic()))
        return []

    _detect = _look
    _ocr = _look


class Timed(TeacherClient):
    """Records each request's prompt, image, start and end; ``hold(image_url, prompt)`` returns an
    awaitable the request waits on before it is sent (a hanging request), or None."""

    def __init__(self, cfg: TeacherConfig, hold=None) -> None:
        super().__init__(cfg)
        self.log: list[dict] = []
        self.hold = hold

    @contextlib.asynccontextmanager
    async def session(self):
        async with super().session() as ask:

            async def timed(request):
                [image] = [p["image_url"]["url"] for p in request.messages[1]["content"] if "image_url" in p]
                entry = {"prompt": protocol.identify(request.messages), "image": image, "start": time.monotonic()}
                self.log.append(entry)
                if self.hold and (waiting := self.hold(image, entry["prompt"])) is not None:
                    await waiting
                reply = await ask(request)
                entry["end"] = time.monotonic()
                return reply

            yield timed


def _url(row: dict) -> str:
    return protocol.image_part(*image_payload(row, 1024 * 1024))["image_url"]["url"]


def test_requests_start_while_later_rows_are_still_perceived(tmp_path: Path) -> None:
    source = str(tmp_path / "source")
    synthesize(SynthConfig(output_uri=source, n=12, seed=4, kinds=["natural", "text"]))
    rows = records.read_records(source)
    perception_cfg = PerceptionConfig(detector_model="stand-in", ocr_engine="tesseract", min_text_words=0)
    perception = SlowPerception(perception_cfg, seconds=0.15)
    with serve([source], delay_s=0.3) as url:
        teacher = TeacherConfig(base_url=url, model="offline", max_concurrency=4)
        client = Timed(teacher)
        # One batch: under a batch barrier every image would be perceived before any request.
        cfg = FormalizeConfig(input_uri=source, output_uri="unused", teacher=teacher, shard_size=len(rows))
        [(accepted, rejected)] = list(formalize_stream(iter([rows]), cfg, client, perception))
    assert not rejected and [r["id"] for r in accepted] == [r["id"] for r in rows]  # every row, input order
    assert len(perception.runs) == len(rows) and len(client.log) == len(rows)  # each image perceived once
    last_perceived = max(end for _, end in perception.runs)
    first_request = min(e["start"] for e in client.log)
    assert first_request < last_perceived, "requests waited for the whole batch's perception"
    # While requests were in flight the perception worker kept going: some tool run started after
    # a request had started and before it ended.
    assert any(e["start"] < started < e["end"] for e in client.log for started, _ in perception.runs)
    for row in accepted:  # each request carried its own row's tool section
        assert records.metadata(row)["detections" if row["image_type"] == "natural" else "ocr_words"] in ([], 0)


def test_a_hanging_request_holds_up_no_other_row(tmp_path: Path) -> None:
    source = str(tmp_path / "source")
    synthesize(SynthConfig(output_uri=source, n=9, seed=6, kinds=["table", "chart", "circuit"]))
    typed = records.read_records(source)
    rows = [{**r, "image_type": "unknown"} for r in typed]  # as import writes them: classified first
    stuck = _url(rows[0])
    seen: dict[str, bool] = {}

    class Watch(Timed):
        def hang(self, image: str, prompt: str):
            if image != stuck or prompt != "classify":
                return None

            async def until_the_rest_are_done() -> None:
                # Released when every other row's formalize request has been answered (a hang
                # that outlasts them all), or after 60 s: then the others were held up.
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    answered = {e["image"] for e in self.log if e["prompt"] != "classify" and "end" in e}
                    if len(answered) == len(rows) - 1:
                        seen["released_after_others"] = True
                        return
                    await asyncio.sleep(0.05)
                seen["released_after_others"] = False

            return until_the_rest_are_done()

    with serve([source], delay_s=0.1) as url:
        teacher = TeacherConfig(base_url=url, model="offline", max_concurrency=3)
        client = Watch(teacher)
        client.hold = client.hang
        perception = PerceptionConfig(detector_model=None, ocr_engine="none")
        # Shards of 3: the hung row is in the first, the others run on in the shards behind it.
        cfg = FormalizeConfig(
            input_uri=source, output_uri="unused", teacher=teacher, shard_size=3, perception=perception
        )
        batches = [rows[i : i + 3] for i in range(0, len(rows), 3)]
        outcomes = list(formalize_stream(iter(batches), cfg, client, Perception(perception)))
    assert seen == {"released_after_others": True}
    assert [[r["id"] for r in accepted] for accepted, _ in outcomes] == [[r["id"] for r in b] for b in batches]
    assert all(not rejected for _, rejected in outcomes)
    for row, original in zip([r for accepted, _ in outcomes for r in accepted], typed, strict=True):
        assert row["image_type"] == original["image_type"]  # classified by the teacher, then formalized
        assert [p["stage"] for p in row["provenance"]][-2:] == ["classify", "formalize"]


def test_a_tool_that_cannot_run_ends_the_stage_in_one_line(tmp_path: Path) -> None:
    """A stage-wide failure on a perception worker (weights missing) stops every row and reaches
    the caller as the stage's failure; nothing is written as if the rows were done."""
    source = str(tmp_path / "source")
    synthesize(SynthConfig(output_uri=source, n=6, seed=2, kinds=["natural"]))
    with serve([source], delay_s=0.05) as url:
        (tmp_path / "no-weights").mkdir()  # a local directory: nothing is looked up on the Hub
        perception = PerceptionConfig(detector_model=str(tmp_path / "no-weights"), ocr_engine="none")
        cfg = FormalizeConfig(
            input_uri=source,
            output_uri=str(tmp_path / "out"),
            teacher=TeacherConfig(base_url=url, model="offline", max_concurrency=2),
            perception=perception,
            shard_size=2,
        )
        with pytest.raises(StageFailed, match=r"^formalize: detector '.*no-weights' cannot be loaded"):
            formalize_run(cfg)
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert not list((tmp_path / "out").glob("records/*.parquet"))
