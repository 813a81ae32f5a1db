"""Datasets out: accepted records for trainers elsewhere.

TRL's conversational VLM format (``train.parquet``: ``messages`` + ``images``, read by
``datasets``) and LLaMA-Factory's ShareGPT format (``<name>.json``, the images beside it, and
the ``dataset_info.json`` entry that registers it). Rows without reasoning are skipped and counted.

Rows stream through: TRL rows leave in Parquet row groups of ``ROWS_PER_GROUP`` (a few images in
memory at a time), ShareGPT images are written as they come. Image files are named by their
content (``images/<sha256>.<ext>``), so two records never write over each other's image, even
under one id.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections import Counter
from typing import Any

from r1ov.config import ConfigError
from r1ov.data import records, storage

FORMATS_OUT = ("trl", "sharegpt")
ROWS_PER_GROUP = 256


class _NoExample(ValueError):
    """A record that cannot be a training example; ``kind`` counts in the result."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def _image_name(image: bytes) -> str:
    from PIL import Image

    with Image.open(io.BytesIO(image)) as probe:
        extension = (probe.format or "png").lower().replace("jpeg", "jpg")
    return f"images/{hashlib.sha256(image).hexdigest()[:32]}.{extension}"


def _trl_features() -> Any:
    import datasets

    return datasets.Features(
        {
            "messages": [
                {
                    "role": datasets.Value("string"),
                    "content": [{"type": datasets.Value("string"), "text": datasets.Value("string")}],
                }
            ],
            "images": datasets.Sequence(datasets.Image()),
            "id": datasets.Value("string"),
        }
    )


def _user_text(record: dict[str, Any]) -> str:
    from r1ov.scoring.reasoning import format_question

    return format_question(record["question"], record.get("options") or None)


def _assistant_text(record: dict[str, Any]) -> str:
    if record.get("reasoning"):
        return record["reasoning"]
    raise _NoExample("no reasoning")


def _local_file(output_uri: str, name: str) -> str:
    """A temporary local file to stream ``name`` into: beside the target when it is local (then
    renamed into place, atomically), else in the temp folder (then uploaded)."""
    import tempfile

    folder = None
    if not storage.is_remote(output_uri):
        folder = storage.local_path(output_uri)
        folder.mkdir(parents=True, exist_ok=True)
    handle, path = tempfile.mkstemp(prefix=f"{name}.tmp-", dir=folder)
    os.close(handle)
    return path


def _put(local: str, uri: str) -> None:
    """Move a finished local file to ``uri``: a rename locally, a streamed upload to S3."""
    if not storage.is_remote(uri):
        os.replace(local, storage.local_path(uri))
        return
    import pyarrow.fs as pafs

    fs, path = storage.filesystem(uri)
    try:
        pafs.copy_files(local, path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
    finally:
        os.unlink(local)


def export_dataset(fmt: str, dataset_uri: str, output_uri: str, name: str = "r1ov") -> dict[str, Any]:
    """Write the accepted records of ``dataset_uri`` for a trainer; returns what was written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from r1ov.data import imaging

    if fmt not in FORMATS_OUT:
        raise ConfigError(f"unknown export format {fmt!r}; one of {', '.join(FORMATS_OUT)}")
    written, skipped = 0, Counter()
    exported: list[str] = []
    sharegpt: list[dict[str, Any]] = []  # text only: the images are already on disk
    # The schema datasets writes (with its features in the metadata), so load_dataset reads images back.
    schema = _trl_features().arrow_schema
    trl_file = _local_file(output_uri, "train.parquet") if fmt == "trl" else None
    writer = pq.ParquetWriter(trl_file, schema) if trl_file else None
    pending: list[dict[str, Any]] = []

    def flush() -> None:
        if writer is not None and pending:
            writer.write_table(pa.Table.from_pylist(pending, schema=schema))
            pending.clear()

    for _, rows in records.iter_shards(dataset_uri):
        for record in rows:
            try:
                assistant = _assistant_text(record)
                image = imaging.image_bytes(record)
            except _NoExample as exc:
                skipped[exc.kind] += 1
                continue
            except imaging.BadImage:
                skipped["no image"] += 1
                continue
            if fmt == "trl":
                pending.append(
                    {
                        "messages": [
                            {
                                "role": "user",
                                "content": [
                                    {"type": "image", "text": None},
                                    {"type": "text", "text": _user_text(record)},
                                ],
                            },
                            {"role": "assistant", "content": [{"type": "text", "text": assistant}]},
                        ],
                        "images": [{"bytes": image, "path": None}],
                        "id": record["id"],
                    }
                )
                if len(pending) >= ROWS_PER_GROUP:
                    flush()
            else:
                relative = _image_name(image)
                target = storage.join(output_uri, relative)
                if not storage.exists(target):  # same name, same bytes: written once
                    storage.write_bytes(target, image)
                sharegpt.append(
                    {
                        "messages": [
                            {"role": "user", "content": "<image>" + _user_text(record)},
                            {"role": "assistant", "content": assistant},
                        ],
                        "images": [relative],
                        "id": record["id"],
                    }
                )
            exported.append(record["id"])
            written += 1
    files: list[str] = []
    if writer is not None:
        flush()
        writer.close()
        target = storage.join(output_uri, "train.parquet")
        _put(trl_file, target)
        files.append(target)
    else:
        target = storage.join(output_uri, f"{name}.json")
        storage.write_text(target, json.dumps(sharegpt, ensure_ascii=False, indent=1))
        info = {
            name: {
                "file_name": f"{name}.json",
                "formatting": "sharegpt",
                "columns": {"messages": "messages", "images": "images"},
                "tags": {
                    "role_tag": "role",
                    "content_tag": "content",
                    "user_tag": "user",
                    "assistant_tag": "assistant",
                },
            }
        }
        storage.write_text(storage.join(output_uri, "dataset_info.json"), json.dumps(info, indent=2))
        files += [target, storage.join(output_uri, "dataset_info.json")]
    digest = hashlib.sha256("".join(sorted(exported)).encode()).hexdigest()[:16]
    return {"format": fmt, "examples": written, "skipped": dict(skipped), "files": files, "ids_sha256": digest}
