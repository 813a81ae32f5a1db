"""What every teacher-driven stage (formalize, distill) does around its batch function:
one client for the run, a response cache on by default, shard-by-shard resumable output,
teacher failures redone next time, and a loud failure when too little comes through."""

from __future__ import annotations

import hashlib
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

from r1ov.config import TeacherConfig
from r1ov.data import records, storage
from r1ov.data.outcome import StageFailed, check_floor
from r1ov.teachers.client import TeacherClient

log = logging.getLogger(__name__)

Rows = list[dict[str, Any]]
BatchFn = Callable[[Rows, TeacherClient], tuple[Rows, Rows]]
# Batches in, (accepted, rejected) per batch out in order; see records.map_dataset's process_stream.
StreamFn = Callable[[Iterator[Rows], TeacherClient], Iterator[tuple[Rows, Rows]]]
CACHE_DIR = "_cache"


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


def default_cache_uri(output_uri: str, teacher: TeacherConfig) -> str:
    """The configured cache, else one beside the stage's output (durable where the output is)."""
    return teacher.cache_uri or storage.join(output_uri, CACHE_DIR)


def require_reachable(stage: str, teacher: TeacherConfig, timeout_s: float = 15.0) -> None:
    """Fail before any row is touched when nothing answers at the teacher's address. Any HTTP
    answer counts (some endpoints have no ``/models``, some want a key for it)."""
    try:
        with urllib.request.urlopen(teacher.base_url.rstrip("/") + "/models", timeout=timeout_s):
            pass
    except urllib.error.HTTPError:
        return  # it answered, if only to refuse
    except (OSError, ValueError) as exc:
        raise StageFailed(f"{stage}: teacher unreachable at {teacher.base_url}: {type(exc).__name__}: {exc}") from exc


def run_teacher_stage(
    stage: str,
    input_uri: str,
    output_uri: str,
    teacher: TeacherConfig,
    batch: BatchFn | None,
    *,
    stream: StreamFn | None = None,
    shard_size: int,
    settings_fingerprint: str,
    min_accepted_fraction: float = 0.5,
    max_text_chars: int = 20000,
    counters: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Map ``batch`` over the input shards with one client; returns the manifest as summary.

    ``batch`` processes one batch at a time; a stage that overlaps batches passes ``stream``
    instead (and ``batch=None``). ``counters()`` adds the stage's own counts to the manifest.
    Raises :class:`StageFailed` (after writing the output and its manifest) when the teacher
    cannot be reached or fewer than ``min_accepted_fraction`` of the rows are accepted.
    """
    require_reachable(stage, teacher)
    client = TeacherClient(teacher, cache_uri=default_cache_uri(output_uri, teacher))
    manifest = records.map_dataset(
        input_uri,
        output_uri,
        (lambda rows: batch(rows, client)) if batch else None,
        process_stream=(lambda batches: stream(batches, client)) if stream else None,
        shard_size=shard_size,
        fingerprint=settings_fingerprint,
        redo_reasons=("teacher_error",),
        extra=lambda _: {"stage": stage, "teacher": client.summary(), **(counters() if counters else {})},
        max_text_chars=max_text_chars,
    )
    log.info(
        "%s: %d accepted, %d rejected %s -> %s",
        stage,
        manifest["records"],
        manifest["rejected"],
        manifest["reject_reasons"],
        output_uri,
    )
    check_floor(stage, output_uri, manifest, min_accepted_fraction)
    return manifest
