"""The formalize stage: every image becomes formal text in the language of its type.

    r1ov formalize --set input_uri=data/train --set output_uri=data/formalized \
        --set teacher.base_url=https://api.openai.com/v1 --set teacher.model=gpt-4o

Per batch of ``shard_size`` records: decode each image (corrupt -> ``bad_image``), ask the
teacher to classify images typed "unknown", send each image with its type's prompt, check
the reply with the type's parser (failure -> ``formalize_check``) and keep the text with
its language and provenance. Failed requests are ``teacher_error`` rejections, and a batch
holding any is redone on the next run (cached replies make that cheap).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Any

from PIL import Image

from r1ov import imaging, records
from r1ov.config import FormalizeConfig
from r1ov.formalize.checks import strip_fences
from r1ov.formalize.router import CLASSIFY_PROMPT, REGISTRY, UNKNOWN, formalizer_for, parse_image_type
from r1ov.teachers import protocol
from r1ov.teachers import stage as teacher_stage
from r1ov.teachers.client import Reply, Request, TeacherClient, describe_error

log = logging.getLogger(__name__)

STAGE = "formalize"
# Formats every OpenAI-compatible vision endpoint accepts as data URLs; others are re-encoded.
_MIMES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}


@dataclass
class _Pending:
    row: dict[str, Any]
    image: bytes
    mime: str


def image_payload(row: dict[str, Any], max_pixels: int) -> tuple[bytes, str]:
    """The bytes to send and their MIME type: the original file when it is small enough and in
    a format the API takes, else a (downscaled) PNG. Raises BadImage for unreadable images."""
    try:
        raw = imaging.image_bytes(row)
    except OSError as exc:
        raise imaging.BadImage(f"cannot read {row.get('image_uri')}: {exc}") from exc
    image = imaging.load_image({"image": raw}, max_pixels)
    with Image.open(io.BytesIO(raw)) as probe:
        fmt, size = probe.format, probe.size
    if fmt in _MIMES and size == image.size:
        return raw, _MIMES[fmt]
    return imaging.to_png(image), "image/png"


def fingerprint(cfg: FormalizeConfig) -> str:
    """What decides this stage's output besides the input rows (for resuming)."""
    prompts = sorted({CLASSIFY_PROMPT, *(f.prompt for f in REGISTRY.values())})
    return teacher_stage.fingerprint(
        STAGE,
        cfg.teacher,
        classify_unknown=cfg.classify_unknown,
        max_image_pixels=cfg.max_image_pixels,
        prompts={name: protocol.load_prompt(name) for name in prompts},
    )


def _classify(pending: list[_Pending], client: TeacherClient) -> tuple[list[_Pending], list[dict[str, Any]]]:
    """Ask the teacher for the type of each image; (classified, rejected)."""
    requests = [Request(protocol.image_messages(CLASSIFY_PROMPT, p.image, p.mime)) for p in pending]
    replies = client.complete_all(requests, desc="classify")
    classified, rejected = [], []
    for item, reply in zip(pending, replies, strict=True):
        if isinstance(reply, Exception):
            rejected.append(records.reject(item.row, describe_error(reply)))
            continue
        image_type = parse_image_type(reply.text)
        if image_type is None:
            rejected.append(records.reject(item.row, f"unclassified: teacher replied {reply.text[:80]!r}"))
            continue
        item.row["image_type"] = image_type
        records.stamp(item.row, "classify", reply.model, protocol.load_prompt(CLASSIFY_PROMPT))
        classified.append(item)
    return classified, rejected


def _accept(row: dict[str, Any], reply: Reply) -> tuple[bool, str]:
    """Check one formalization reply and, when it passes, store it on the row."""
    formalizer = REGISTRY[row["image_type"]]
    text = strip_fences(reply.text)
    passed, detail = formalizer.check(text)
    if not passed:
        return False, f"formalize_check: {formalizer.language}: {detail}"
    row.update(formal_language=formalizer.language, formalization=text)
    records.stamp(row, STAGE, reply.model, protocol.load_prompt(formalizer.prompt))
    return True, detail


def formalize_batch(
    rows: list[dict[str, Any]], cfg: FormalizeConfig, client: TeacherClient
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Formalize one batch; returns (accepted, rejected), every input row in exactly one."""
    pending: list[_Pending] = []
    rejected: list[dict[str, Any]] = []
    unknown: list[_Pending] = []
    for original in rows:
        row = dict(original)
        try:
            image, mime = image_payload(row, cfg.max_image_pixels)
        except imaging.BadImage as exc:
            rejected.append(records.reject(row, f"bad_image: {exc}"))
            continue
        item = _Pending(row, image, mime)
        if row["image_type"] == UNKNOWN and cfg.classify_unknown:
            unknown.append(item)
        elif formalizer_for(row["image_type"]) is None:
            rejected.append(records.reject(row, f"unknown_type: no formalizer for image type {row['image_type']!r}"))
        else:
            pending.append(item)
    if unknown:
        classified, failed = _classify(unknown, client)
        pending += classified
        rejected += failed

    requests = [
        Request(protocol.image_messages(REGISTRY[p.row["image_type"]].prompt, p.image, p.mime)) for p in pending
    ]
    accepted: list[dict[str, Any]] = []
    for item, reply in zip(pending, client.complete_all(requests, desc=STAGE), strict=True):
        if isinstance(reply, Exception):
            rejected.append(records.reject(item.row, describe_error(reply)))
            continue
        passed, detail = _accept(item.row, reply)
        if passed:
            accepted.append(item.row)
        else:
            rejected.append(records.reject(item.row, detail))
    return accepted, rejected


def run(cfg: FormalizeConfig) -> dict[str, Any]:
    """Formalize ``cfg.input_uri`` into ``cfg.output_uri``; returns the manifest as summary."""
    return teacher_stage.run_teacher_stage(
        STAGE,
        cfg.input_uri,
        cfg.output_uri,
        cfg.teacher,
        lambda rows, client: formalize_batch(rows, cfg, client),
        shard_size=cfg.shard_size,
        settings_fingerprint=fingerprint(cfg),
    )
