"""The formalize stage: every image becomes formal text in the language of its type.

    r1ov formalize --set input_uri=data/train --set output_uri=data/formalized \
        --set teacher.base_url=https://api.openai.com/v1 --set teacher.model=gpt-4o

Each record on its own (no batch waits for another, see :mod:`r1ov.formalize.flow`): decode
its image (corrupt -> ``bad_image``), ask the teacher to classify it when typed "unknown", run
the type's perception tool on a perception worker, send the image with its type's prompt, check
the reply with the type's parser (failure -> ``formalize_check``) and keep the text with
its language and provenance. A reply that fails the check is sent back once with the
parser's words; a second failure is a ``formalize_check`` rejection. Records sharing an
image are formalized once. Output shards hold ``shard_size`` records in input order. Failed
requests are ``teacher_error`` rejections, and a shard holding any is redone on the next run
(every answered call is cached, so only those are sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from PIL import Image

from r1ov.config import FormalizeConfig
from r1ov.data import imaging, records
from r1ov.data.outcome import StageFailed
from r1ov.formalize import flow
from r1ov.formalize.checks import strip_fences
from r1ov.formalize.perception import Perception, PerceptionUnavailable, detections_section, ocr_section
from r1ov.formalize.router import CLASSIFY_PROMPT, REGISTRY, UNKNOWN, formalizer_for, parse_image_type
from r1ov.teachers import protocol
from r1ov.teachers import stage as teacher_stage
from r1ov.teachers.client import InvalidReply, Reply, Request, TeacherClient, describe_error

log = logging.getLogger(__name__)

STAGE = "formalize"
# Formats every OpenAI-compatible vision endpoint accepts as data URLs; others are re-encoded.
_MIMES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}


@dataclass
class _Pending:
    row: dict[str, Any]
    image: bytes  # what the teacher is sent
    mime: str
    picture: Image.Image | None  # the same pixels, decoded once, for the perception tools (then dropped)
    digest: str  # SHA-256 of ``image``: rows sharing an image share its requests
    sections: tuple[str, ...] = ()  # tool output sent beside the image


def _prepare(row: dict[str, Any], max_pixels: int, max_decode_pixels: int) -> tuple[bytes, str, Image.Image]:
    raw = imaging.image_bytes(row)
    decoded = imaging.decode(raw, max_decode_pixels)
    imaging.check_trainable(decoded)  # a row from anywhere: no teacher is paid for an image SFT cannot use
    image = imaging.downscale(decoded.image, max_pixels)
    if decoded.format in _MIMES and decoded.mode in ("RGB", "L") and image.size == decoded.size:
        return raw, _MIMES[decoded.format], image
    return imaging.to_png(image), "image/png", image


def image_payload(
    row: dict[str, Any], max_pixels: int, max_decode_pixels: int = imaging.DEFAULT_MAX_DECODE_PIXELS
) -> tuple[bytes, str]:
    """The bytes to send and their MIME type, from one decode: the original file when it is
    plain 8-bit RGB/grey, small enough and in a format the API takes, else a (downscaled) PNG
    of the faithfully converted pixels. Raises BadImage for unusable images."""
    raw, mime, _ = _prepare(row, max_pixels, max_decode_pixels)
    return raw, mime


def _add_metadata(row: dict[str, Any], **fields: Any) -> None:
    row["metadata"] = json.dumps({**records.metadata(row), **fields}, sort_keys=True, ensure_ascii=False)


def _perceive(item: _Pending, perception: Perception) -> None:
    """Run the type's tool on the image the teacher will see; its output joins the request.
    With the tool switched off the section says so, since the prompt announces it."""
    image_type = item.row["image_type"]
    if image_type == "natural":
        if perception.cfg.detector_model:
            detections = perception.detect(item.picture)
            body = detections_section(detections)
            _add_metadata(item.row, detections=detections)
        else:
            body = "(no detector ran: find and box the objects yourself)"
        item.sections = (protocol.section("detections", body),)
    elif image_type == "text":
        if perception.cfg.ocr_engine != "none":
            words = perception.ocr(item.picture)
            body = ocr_section(words)
            _add_metadata(item.row, ocr_words=len(words))
        else:
            body = "(no OCR ran: read the text yourself)"
        item.sections = (protocol.section("ocr_words", body),)


def fingerprint(cfg: FormalizeConfig) -> str:
    """What decides this stage's output besides the input rows (for resuming)."""
    prompts = sorted({CLASSIFY_PROMPT, *(f.prompt for f in REGISTRY.values())})
    return teacher_stage.fingerprint(
        STAGE,
        cfg.teacher,
        classify_unknown=cfg.classify_unknown,
        max_image_pixels=cfg.max_image_pixels,
        max_decode_pixels=cfg.max_decode_pixels,
        perception=cfg.perception.model_dump(exclude={"workers"}),  # how many run them decides nothing
        prompts={name: protocol.load_prompt(name) for name in prompts},
    )


def _classification_problem(reply: Reply) -> str | None:
    if parse_image_type(reply.text) is None:
        return f"no known image type ({', '.join(REGISTRY)}) named in {reply.text[:80]!r}"
    return None


def _formalization_problem(image_type: str) -> Callable[[Reply], str | None]:
    formalizer = REGISTRY[image_type]

    def problem(reply: Reply) -> str | None:
        passed, detail = formalizer.check(strip_fences(reply.text))
        return None if passed else f"{formalizer.language}: {detail}"

    return problem


def _accept(row: dict[str, Any], reply: Reply) -> None:
    """Store a checked formalization reply on the row."""
    formalizer = REGISTRY[row["image_type"]]
    row.update(formal_language=formalizer.language, formalization=strip_fences(reply.text))
    records.stamp(row, STAGE, reply.model, protocol.load_prompt(formalizer.prompt))


def _classified(item: _Pending, reply: Reply | Exception) -> str | None:
    """Apply the teacher's classification to the row; the reject reason when there is none."""
    if isinstance(reply, InvalidReply):
        return f"unclassified: {reply}"
    if isinstance(reply, Exception):
        return describe_error(reply)
    item.row["image_type"] = parse_image_type(reply.text)
    records.stamp(item.row, "classify", reply.model, protocol.load_prompt(CLASSIFY_PROMPT))
    return None


def _look(item: _Pending, perception: Perception, classified: bool) -> None:
    """A perception worker's job for one row: the cross-check of a teacher-given type, then the
    type's tool for the request (the check's tool run is remembered and reused)."""
    if classified:
        _add_metadata(item.row, type_signals=perception.type_signals(item.picture, item.row["image_type"]))
    _perceive(item, perception)
    # The decoded pixels are done with: a row waiting on its request keeps only the bytes it sends.
    item.picture = None


REMEMBERED_REPLIES = 4096  # (prompt, image) pairs kept, so rows sharing an image ask once
RowFn = Callable[[dict[str, Any]], Awaitable[tuple[dict[str, Any], bool]]]


@contextlib.asynccontextmanager
async def _row_session(cfg: FormalizeConfig, client: TeacherClient, perception: Perception) -> AsyncIterator[RowFn]:
    """The function that takes one row through the stage: decode, classify when untyped, perceive
    on a perception worker, formalize. Perception has its own worker threads (one by default: the
    detector is one model on one device), so it overlaps the requests in flight."""
    workers = ThreadPoolExecutor(cfg.perception.workers, thread_name_prefix="perception")
    # Rows sharing an image share one request, whether it is in flight or answered.
    asked: OrderedDict[tuple[str, str], asyncio.Future[Reply]] = OrderedDict()
    try:
        async with client.session() as ask:

            async def ask_once(item: _Pending, prompt: str, check: Callable[[Reply], str | None]) -> Reply:
                key = (prompt, item.digest)
                if key in asked:
                    asked.move_to_end(key)
                else:
                    messages = protocol.image_messages(prompt, item.image, item.mime, item.sections)
                    asked[key] = asyncio.ensure_future(ask(Request(messages, check=check)))
                    while len(asked) > REMEMBERED_REPLIES and next(iter(asked.values())).done():
                        asked.popitem(last=False)
                return await asyncio.shield(asked[key])

            async def one(original: dict[str, Any]) -> tuple[dict[str, Any], bool]:
                row = dict(original)
                try:
                    image, mime, picture = await asyncio.to_thread(
                        _prepare, row, cfg.max_image_pixels, cfg.max_decode_pixels
                    )
                except imaging.BadImage as exc:
                    return records.reject(row, f"bad_image: {exc}"), False
                except Exception as exc:  # a decoder bug on one file must not end the stage
                    return records.reject(row, f"bad_image: {type(exc).__name__}: {exc}"), False
                item = _Pending(row, image, mime, picture, hashlib.sha256(image).hexdigest())
                classified = row["image_type"] == UNKNOWN and cfg.classify_unknown
                if classified:
                    try:
                        answer: Reply | Exception = await ask_once(item, CLASSIFY_PROMPT, _classification_problem)
                    except Exception as exc:
                        answer = exc
                    if (reason := _classified(item, answer)) is not None:
                        return records.reject(row, reason), False
                elif formalizer_for(row["image_type"]) is None:
                    return records.reject(
                        row, f"unknown_type: no formalizer for image type {row['image_type']!r}"
                    ), False
                try:
                    await asyncio.get_running_loop().run_in_executor(workers, _look, item, perception, classified)
                except PerceptionUnavailable:
                    raise  # the stage cannot be faithful for any row: fail loudly
                except Exception as exc:  # one image that trips a tool is one record's problem
                    return records.reject(row, f"perception_error: {type(exc).__name__}: {exc}"), False
                try:
                    reply = await ask_once(
                        item, REGISTRY[row["image_type"]].prompt, _formalization_problem(row["image_type"])
                    )
                except InvalidReply as exc:
                    return records.reject(row, f"formalize_check: {exc}"), False
                except Exception as exc:
                    return records.reject(row, describe_error(exc)), False
                _accept(row, reply)
                return row, True

            yield one
    finally:
        workers.shutdown(wait=True, cancel_futures=True)


def in_flight_rows(cfg: FormalizeConfig) -> int:
    """Rows admitted at once: C waiting on the teacher plus as many perceived or queued for
    perception ahead of it (the bounded queue), so neither side starves while the other works."""
    return 2 * cfg.teacher.max_concurrency + cfg.perception.workers


def held_rows(cfg: FormalizeConfig) -> int:
    """Rows that may wait for their batch to be written: room for the batches behind a slow row."""
    return max(2 * cfg.shard_size, 4 * cfg.teacher.max_concurrency)


def formalize_stream(
    batches: Iterator[list[dict[str, Any]]],
    cfg: FormalizeConfig,
    client: TeacherClient,
    perception: Perception | None = None,
) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """(accepted, rejected) for each batch, in order, every input row in exactly one and rows in
    input order within each. Rows flow through one at a time (see :mod:`r1ov.formalize.flow`)."""
    perception = perception or Perception(cfg.perception)
    yield from flow.pipelined(
        batches,
        lambda: _row_session(cfg, client, perception),
        in_flight=in_flight_rows(cfg),
        window=held_rows(cfg),
    )


def formalize_batch(
    rows: list[dict[str, Any]], cfg: FormalizeConfig, client: TeacherClient, perception: Perception | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Formalize one batch; returns (accepted, rejected), every input row in exactly one."""
    [outcome] = formalize_stream(iter([rows]), cfg, client, perception)
    return outcome


def run(cfg: FormalizeConfig) -> dict[str, Any]:
    """Formalize ``cfg.input_uri`` into ``cfg.output_uri``; returns the manifest as summary."""
    perception = Perception(cfg.perception)
    try:
        return _run(cfg, perception)
    except PerceptionUnavailable as exc:
        raise StageFailed(f"{STAGE}: {exc}") from exc


def _run(cfg: FormalizeConfig, perception: Perception) -> dict[str, Any]:
    return teacher_stage.run_teacher_stage(
        STAGE,
        cfg.input_uri,
        cfg.output_uri,
        cfg.teacher,
        None,
        stream=lambda batches, client: formalize_stream(batches, cfg, client, perception),
        shard_size=cfg.shard_size,
        settings_fingerprint=fingerprint(cfg),
        min_accepted_fraction=cfg.min_accepted_fraction,
        max_text_chars=cfg.max_text_chars,
        counters=lambda: {"type_disagreements": perception.type_disagreements},
    )
