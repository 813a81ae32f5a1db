"""The formalize stage: every image becomes formal text in the language of its type.

    r1ov formalize --set input_uri=data/train --set output_uri=data/formalized \
        --set teacher.base_url=https://api.openai.com/v1 --set teacher.model=gpt-4o

Per batch of ``shard_size`` records: decode each image (corrupt -> ``bad_image``), ask the
teacher to classify images typed "unknown", send each image with its type's prompt, check
the reply with the type's parser (failure -> ``formalize_check``) and keep the text with
its language and provenance. A reply that fails the check is sent back once with the
parser's words; a second failure is a ``formalize_check`` rejection. Records sharing an
image are formalized once. Failed requests are ``teacher_error`` rejections, and a batch
holding any is redone on the next run (every answered call is cached, so only those are sent).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image

from r1ov.config import FormalizeConfig
from r1ov.data import imaging, records
from r1ov.data.outcome import StageFailed
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
    picture: Image.Image  # the same pixels, decoded once, for the perception tools
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
        perception=cfg.perception.model_dump(),
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


def _ask_once_per_image(
    items: list[_Pending],
    prompt_of: Callable[[_Pending], str],
    check_of: Callable[[_Pending], Any],
    client: TeacherClient,
    desc: str,
) -> list[Reply | Exception]:
    """One request per distinct (prompt, image) in ``items``; each item gets its image's reply."""
    slots: dict[tuple[str, str], int] = {}
    requests: list[Request] = []
    for item in items:
        key = (prompt_of(item), hashlib.sha256(item.image).hexdigest())
        if key not in slots:
            slots[key] = len(requests)
            messages = protocol.image_messages(key[0], item.image, item.mime, item.sections)
            requests.append(Request(messages, check=check_of(item)))
    replies = client.complete_all(requests, desc=desc)
    return [replies[slots[(prompt_of(i), hashlib.sha256(i.image).hexdigest())]] for i in items]


def _classify(
    pending: list[_Pending], client: TeacherClient, perception: Perception
) -> tuple[list[_Pending], list[dict[str, Any]]]:
    """Ask the teacher for the type of each image; (classified, rejected). The answer is checked
    against cheap signals (OCR words, detector hits); a disagreement is recorded, not fatal."""
    replies = _ask_once_per_image(
        pending, lambda _: CLASSIFY_PROMPT, lambda _: _classification_problem, client, "classify"
    )
    classified, rejected = [], []
    for item, reply in zip(pending, replies, strict=True):
        if isinstance(reply, InvalidReply):
            rejected.append(records.reject(item.row, f"unclassified: {reply}"))
            continue
        if isinstance(reply, Exception):
            rejected.append(records.reject(item.row, describe_error(reply)))
            continue
        item.row["image_type"] = parse_image_type(reply.text)
        _add_metadata(item.row, type_signals=perception.type_signals(item.picture, item.row["image_type"]))
        records.stamp(item.row, "classify", reply.model, protocol.load_prompt(CLASSIFY_PROMPT))
        classified.append(item)
    return classified, rejected


def _accept(row: dict[str, Any], reply: Reply) -> None:
    """Store a checked formalization reply on the row."""
    formalizer = REGISTRY[row["image_type"]]
    row.update(formal_language=formalizer.language, formalization=strip_fences(reply.text))
    records.stamp(row, STAGE, reply.model, protocol.load_prompt(formalizer.prompt))


def formalize_batch(
    rows: list[dict[str, Any]], cfg: FormalizeConfig, client: TeacherClient, perception: Perception | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Formalize one batch; returns (accepted, rejected), every input row in exactly one."""
    perception = perception or Perception(cfg.perception)
    pending: list[_Pending] = []
    rejected: list[dict[str, Any]] = []
    unknown: list[_Pending] = []
    for original in rows:
        row = dict(original)
        try:
            image, mime, picture = _prepare(row, cfg.max_image_pixels, cfg.max_decode_pixels)
        except imaging.BadImage as exc:
            rejected.append(records.reject(row, f"bad_image: {exc}"))
            continue
        except Exception as exc:  # a decoder bug on one file must not end the stage
            rejected.append(records.reject(row, f"bad_image: {type(exc).__name__}: {exc}"))
            continue
        item = _Pending(row, image, mime, picture)
        if row["image_type"] == UNKNOWN and cfg.classify_unknown:
            unknown.append(item)
        elif formalizer_for(row["image_type"]) is None:
            rejected.append(records.reject(row, f"unknown_type: no formalizer for image type {row['image_type']!r}"))
        else:
            pending.append(item)
    if unknown:
        classified, failed = _classify(unknown, client, perception)
        pending += classified
        rejected += failed
    ready = []
    for item in pending:
        try:
            _perceive(item, perception)
        except PerceptionUnavailable:
            raise  # the stage cannot be faithful for any row: fail loudly
        except Exception as exc:  # one image that trips a tool is one record's problem
            rejected.append(records.reject(item.row, f"perception_error: {type(exc).__name__}: {exc}"))
            continue
        ready.append(item)
    pending = ready

    replies = _ask_once_per_image(
        pending,
        lambda p: REGISTRY[p.row["image_type"]].prompt,
        lambda p: _formalization_problem(p.row["image_type"]),
        client,
        STAGE,
    )
    accepted: list[dict[str, Any]] = []
    for item, reply in zip(pending, replies, strict=True):
        if isinstance(reply, InvalidReply):
            rejected.append(records.reject(item.row, f"formalize_check: {reply}"))
        elif isinstance(reply, Exception):
            rejected.append(records.reject(item.row, describe_error(reply)))
        else:
            _accept(item.row, reply)
            accepted.append(item.row)
    return accepted, rejected


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
        lambda rows, client: formalize_batch(rows, cfg, client, perception),
        shard_size=cfg.shard_size,
        settings_fingerprint=fingerprint(cfg),
        min_accepted_fraction=cfg.min_accepted_fraction,
        max_text_chars=cfg.max_text_chars,
        counters=lambda: {"type_disagreements": perception.type_disagreements},
    )
