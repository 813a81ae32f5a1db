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

import logging
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


def split(source_uri: str, work: str, num_shards: int, rows_per_file: int = 1000) -> list[str]:
    """Write ``num_shards`` contiguous slices of ``source_uri`` under ``work``; returns shard URIs.

    Rows stream through (one input file and one output buffer per shard in memory), so a
    155K-row source with images never has to fit at once. Fewer rows than shards gives
    fewer shards; an empty source gives one empty shard.
    """
    total = records.count_rows(source_uri)
    count = max(1, min(num_shards, total))
    bounds = [round(k * total / count) for k in range(count + 1)]
    uris = [storage.join(work, f"shard-{k:05d}") for k in range(count)]
    buffers: list[list[dict[str, Any]]] = [[] for _ in range(count)]
    files = [0] * count

    def flush(k: int) -> None:
        records.write_shard(storage.join(uris[k], SOURCE), buffers[k], files[k])
        files[k] += 1
        buffers[k] = []

    shard = 0
    for position, row in enumerate(_rows(source_uri)):
        while position >= bounds[shard + 1]:
            shard += 1
        buffers[shard].append(row)
        if len(buffers[shard]) >= rows_per_file:
            flush(shard)
    for k in range(count):
        if buffers[k] or files[k] == 0:
            flush(k)
        records.write_manifest(storage.join(uris[k], SOURCE), {"records": bounds[k + 1] - bounds[k], "rejected": 0})
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
    """Concatenate ``stage``'s output of every shard into ``output_uri``; returns the manifest.

    Raises ValueError when an id occurs in two shards (a source split twice, or two runs'
    shards mixed): merging would silently train on duplicates.
    """
    seen: set[str] = set()
    index = {records.RECORDS: 0, records.REJECTED: 0}
    stages: dict[str, dict[str, Any]] = {}
    for shard in shard_uris:
        for name, (_, folder) in STAGE_FOLDERS.items():
            uri = storage.join(shard, folder)
            if storage.exists(storage.join(uri, "manifest.json")):
                stages[name] = _sum(stages.get(name, {}), records.read_manifest(uri))
        _, last = stage_uris(shard, stage)
        for part in (records.RECORDS, records.REJECTED):
            for _, rows in records.iter_shards(last, part):
                duplicates = seen.intersection(r["id"] for r in rows)
                if duplicates:
                    raise ValueError(f"ids in more than one shard, e.g. {sorted(duplicates)[:3]} (from {last})")
                seen.update(r["id"] for r in rows)
                records.write_shard(output_uri, rows, index[part], part)
                index[part] += 1
    for part in index:
        if index[part] == 0:
            records.write_shard(output_uri, [], 0, part)
        records.delete_stale(output_uri, part, keep=max(index[part], 1))
    final = stages.get(stage, {"records": 0, "rejected": 0, "reject_reasons": {}})
    manifest = {
        "records": final.get("records", 0),
        "rejected": final.get("rejected", 0),
        "reject_reasons": final.get("reject_reasons", {}),
        "shards": len(shard_uris),
        "stages": stages,
    }
    records.write_manifest(output_uri, manifest)
    log.info(
        "merged %d shards: %d accepted, %d rejected -> %s",
        len(shard_uris),
        manifest["records"],
        manifest["rejected"],
        output_uri,
    )
    return manifest
