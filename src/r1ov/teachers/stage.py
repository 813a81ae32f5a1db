"""What every teacher-driven stage (formalize, distill) does around its batch function:
one client for the run, shard-by-shard resumable output, teacher failures redone next time."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

from r1ov import records
from r1ov.config import TeacherConfig
from r1ov.teachers.client import TeacherClient

log = logging.getLogger(__name__)

Rows = list[dict[str, Any]]
BatchFn = Callable[[Rows, TeacherClient], tuple[Rows, Rows]]


def fingerprint(stage: str, teacher: TeacherConfig, **settings: Any) -> str:
    """What decides a stage's output besides its input rows: a resumed run reuses a shard only
    when this is unchanged (the endpoint and concurrency do not count; model and sampling do)."""
    decided_by = {
        "stage": stage,
        "model": teacher.model,
        "temperature": teacher.temperature,
        "max_tokens": teacher.max_tokens,
        **settings,
    }
    return hashlib.sha256(json.dumps(decided_by, sort_keys=True).encode("utf-8")).hexdigest()


def run_teacher_stage(
    stage: str,
    input_uri: str,
    output_uri: str,
    teacher: TeacherConfig,
    batch: BatchFn,
    *,
    shard_size: int,
    settings_fingerprint: str,
) -> dict[str, Any]:
    """Map ``batch`` over the input shards with one client; returns the manifest as summary."""
    client = TeacherClient(teacher)
    manifest = records.map_dataset(
        input_uri,
        output_uri,
        lambda rows: batch(rows, client),
        shard_size=shard_size,
        fingerprint=settings_fingerprint,
        redo_reasons=("teacher_error",),
        extra=lambda _: {"stage": stage, "teacher": client.summary()},
    )
    log.info(
        "%s: %d accepted, %d rejected %s -> %s",
        stage,
        manifest["records"],
        manifest["rejected"],
        manifest["reject_reasons"],
        output_uri,
    )
    return manifest
