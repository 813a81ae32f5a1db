"""Fan-out of the data stages: split a source into shards, run each shard's stages apart
(one pod each on a cluster), merge the shards back into one dataset.

Every shard lives under one durable root (``s3://`` on a cluster), in a fixed layout, so a
retried pod finds its own progress and response cache there instead of starting over::

    <work>/shard-00003/source/         the rows of this shard (written by split)
    <work>/shard-00003/formalized/     formalize output (+ _cache/, _progress/)
    <work>/shard-00003/distilled/
    <work>/shard-00003/filtered/

``merge`` concatenates the shards' last stage into one dataset: ids must be unique across
shards, counts and reasons are summed, and each stage's manifest is summed under ``stages``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
from collections import Counter
from collections.abc import Iterator
from typing import Any

from r1ov.data import records, storage

log = logging.getLogger(__name__)

# stage -> (input folder, output folder) inside a shard.
STAGE_FOLDERS: dict[str, tuple[str, str]] = {
    "formalize": ("source", "formalized"),
    "distill": ("formalized", "distilled"),
    "filter": ("distilled", "filtered"),
}
SOURCE = "source"
CACHE = "_cache"
MAX_BUFFER_BYTES = 8 << 20  # per shard being written: memory stays under shards x this, whatever the source


def work_uri(data_root: str, run_id: str) -> str:
    """The run's durable folder for shards: ``<data_root>/r1ov-data/<run id>``."""
    if not data_root:
        raise ValueError("a durable data root is needed for the shards (data_root or the pipeline root)")
    return storage.join(data_root.rstrip("/"), "r1ov-data", run_id or "local")


def stage_uris(shard_uri: str, stage: str) -> tuple[str, str]:
    """(input, output) URIs of ``stage`` inside a shard."""
    source, target = STAGE_FOLDERS[stage]
    return storage.join(shard_uri, source), storage.join(shard_uri, target)


def _rows(dataset_uri: str) -> Iterator[dict[str, Any]]:
    for _, rows in records.iter_shards(dataset_uri):
        yield from rows


def shard_of(record_id: str, count: int) -> int:
    """The shard a row goes to: a hash of its id, so every shard gets its share of every source
    folder (an import writes folder by folder; contiguous slices gave one shard one source)."""
    return int(hashlib.sha256(record_id.encode("utf-8")).hexdigest()[:12], 16) % count


def shared_cache_uri(shard_uri: str) -> str:
    """The teacher reply cache every run and every shard count shares: ``<data_root>/r1ov-data/_cache``.
    Keys are content hashes of (model, messages with the image, sampling), so a row answered by
    any earlier run is answered again from here, whatever shard it lands in."""
    # <data_root>/r1ov-data/<run id>/shard-k -> <data_root>/r1ov-data/_cache (see work_uri)
    return storage.join(posixpath.dirname(posixpath.dirname(shard_uri.rstrip("/"))), CACHE)


def split(source_uri: str, work: str, num_shards: int, rows_per_file: int = 1000) -> list[str]:
    """Write ``num_shards`` shards of ``source_uri`` under ``work``, each row to :func:`shard_of`
    its id; returns shard URIs.

    Rows stream through (one input file and one output buffer per shard, of at most
    ``rows_per_file`` rows and MAX_BUFFER_BYTES of images, in memory), so a 155K-row source with
    images never has to fit at once. Fewer rows than shards gives
    fewer shards; an empty source gives one empty shard. Ids are made unique here, before any
    teacher is paid: a second row with the same id and the same content is set aside
    (``duplicate``, in the shard's ``source/rejected/``); one with other content is kept under a
    new id derived from the old one and its content, the same in every run.
    """
    total = records.count_rows(source_uri)
    count = max(1, min(num_shards, total))
    uris = [storage.join(work, f"shard-{k:05d}") for k in range(count)]
    parts = {part: [[] for _ in range(count)] for part in (records.RECORDS, records.REJECTED)}
    files = {part: [0] * count for part in parts}
    written = {part: [0] * count for part in parts}
    buffered = {part: [0] * count for part in parts}  # image bytes waiting in each buffer
    sources: list[Counter[str]] = [Counter() for _ in range(count)]
    seen: dict[str, str] = {}  # id -> content digest of the first row with it
    copies: Counter[str] = Counter()

    def flush(part: str, k: int) -> None:
        records.write_shard(storage.join(uris[k], SOURCE), parts[part][k], files[part][k], part)
        files[part][k] += 1
        parts[part][k] = []
        buffered[part][k] = 0

    def add(part: str, row: dict[str, Any]) -> None:
        k = shard_of(row["id"], count)
        parts[part][k].append(row)
        buffered[part][k] += len(row.get("image") or b"")
        written[part][k] += 1
        if part == records.RECORDS:
            sources[k][row.get("source") or "unknown"] += 1
        # Rows or bytes: 32 buffers of 1000 rows of images would hold a third of the release at once.
        if len(parts[part][k]) >= rows_per_file or buffered[part][k] >= MAX_BUFFER_BYTES:
            flush(part, k)

    for row in _rows(source_uri):
        digest = records.content_digest(row)
        first = seen.get(row["id"])
        if first == digest:
            # Set aside under an id of its own (the n-th copy of this id), so it never meets the kept row.
            copies[row["id"]] += 1
            aside = hashlib.sha256(f"{row['id']}\0copy\0{copies[row['id']]}".encode()).hexdigest()[:24]
            reason = f"duplicate: same id and content as an earlier row ({row['id']})"
            add(records.REJECTED, records.reject({**row, "id": aside}, reason))
            continue
        if first is not None:
            renamed = hashlib.sha256(f"{row['id']}\0{digest}".encode()).hexdigest()[:24]
            log.warning("id %s occurs twice with other content; the later row is %s", row["id"], renamed)
            row = {**row, "id": renamed, "metadata": json.dumps({**records.metadata(row), "renamed_from": row["id"]})}
            digest = records.content_digest(row)
        seen[row["id"]] = digest
        add(records.RECORDS, row)
    for k in range(count):
        for part in parts:
            if parts[part][k] or files[part][k] == 0:
                flush(part, k)
        manifest = {
            "records": written[records.RECORDS][k],
            "rejected": written[records.REJECTED][k],
            "reject_reasons": {"duplicate": written[records.REJECTED][k]} if written[records.REJECTED][k] else {},
            "sources": dict(sorted(sources[k].items())),
        }
        records.write_manifest(storage.join(uris[k], SOURCE), manifest)
    log.info("split %d rows of %s into %d shards under %s", total, source_uri, count, work)
    return uris


def _sum(into: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    """Numbers added, dicts summed recursively, other values kept when all parts agree."""
    for key, value in part.items():
        if isinstance(value, bool) or not isinstance(value, int | float | dict):
            into[key] = value if into.get(key, value) == value else "(differs between shards)"
        elif isinstance(value, dict):
            into[key] = _sum(dict(into.get(key) or {}), value)
        else:
            into[key] = into.get(key, 0) + value
    return into


def merge(shard_uris: list[str], output_uri: str, stage: str = "filter") -> dict[str, Any]:
    """Concatenate the shards into ``output_uri``; returns the manifest.

    ``records/`` holds ``stage``'s accepted rows; ``rejected/`` every row any stage set aside
    (split's duplicates, formalize, distill, filter), so accepted + rejected is the source and
    the accepted share is the run's overall yield. ``sources`` gives each source's rows and
    yield, for a floor that names the worst. Raises ValueError when an id occurs in two shards
    (two runs' shards mixed): split gives each id one shard, so this is never a source's doing.
    """
    seen: set[str] = set()
    index = {records.RECORDS: 0, records.REJECTED: 0}
    stages: dict[str, dict[str, Any]] = {}
    reasons: Counter[str] = Counter()
    source_rows: Counter[str] = Counter()
    accepted: Counter[str] = Counter()
    last = list(STAGE_FOLDERS).index(stage)
    for shard in shard_uris:
        source_manifest = storage.join(shard, SOURCE, "manifest.json")
        if storage.exists(source_manifest):
            split_manifest = records.read_manifest(storage.join(shard, SOURCE))
            source_rows.update(split_manifest.get("sources", {}))
            reasons.update(split_manifest.get("reject_reasons", {}))
        # Rejections in pipeline order: the split's, then each stage's up to ``stage``.
        parts = [(storage.join(shard, SOURCE), records.REJECTED)]
        for name, (_, folder) in list(STAGE_FOLDERS.items())[: last + 1]:
            uri = storage.join(shard, folder)
            if storage.exists(storage.join(uri, "manifest.json")):
                stage_manifest = records.read_manifest(uri)
                stages[name] = _sum(stages.get(name, {}), stage_manifest)
                reasons.update(stage_manifest.get("reject_reasons", {}))
            parts.append((uri, records.REJECTED))
        parts.append((stage_uris(shard, stage)[1], records.RECORDS))
        for uri, part in parts:
            for _, rows in records.iter_shards(uri, part):
                duplicates = seen.intersection(r["id"] for r in rows)
                if duplicates:
                    raise ValueError(f"ids in more than one shard, e.g. {sorted(duplicates)[:3]} (from {uri})")
                seen.update(r["id"] for r in rows)
                if part == records.RECORDS:
                    accepted.update(r["source"] for r in rows)
                records.write_shard(output_uri, rows, index[part], part)
                index[part] += 1
    for part in index:
        if index[part] == 0:
            records.write_shard(output_uri, [], 0, part)
        records.delete_stale(output_uri, part, keep=max(index[part], 1))
    total_accepted = sum(accepted.values())
    manifest = {
        "records": total_accepted,
        "rejected": sum(reasons.values()),
        "reject_reasons": dict(reasons),
        "shards": len(shard_uris),
        "stages": stages,
        "sources": {
            name: {"rows": rows, "accepted": accepted[name], "yield": round(accepted[name] / rows, 4)}
            for name, rows in sorted(source_rows.items())
        },
    }
    records.write_manifest(output_uri, manifest)
    log.info(
        "merged %d shards: %d accepted, %d set aside by some stage -> %s",
        len(shard_uris),
        manifest["records"],
        manifest["rejected"],
        output_uri,
    )
    return manifest
