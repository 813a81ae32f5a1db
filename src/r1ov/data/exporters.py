"""Datasets out: accepted records for trainers elsewhere.

TRL's conversational VLM format (``train.parquet``: ``messages`` + ``images``, read by
``datasets``) and LLaMA-Factory's ShareGPT format (``<name>.json``, the images beside it, and
the ``dataset_info.json`` entry that registers it). Rows without reasoning are skipped and counted.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from typing import Any

from r1ov.config import ConfigError
from r1ov.data import records, storage

FORMATS_OUT = ("trl", "sharegpt")


class _NoExample(ValueError):
    """A record that cannot be a training example; ``kind`` counts in the result."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def _png_name(record: dict[str, Any], image: bytes) -> str:
    from PIL import Image

    with Image.open(io.BytesIO(image)) as probe:
        extension = (probe.format or "png").lower().replace("jpeg", "jpg")
    return f"images/{record['id']}.{extension}"


def _user_text(record: dict[str, Any]) -> str:
    from r1ov.scoring.reasoning import format_question

    return format_question(record["question"], record.get("options") or None)


def _assistant_text(record: dict[str, Any]) -> str:
    if record.get("reasoning"):
        return record["reasoning"]
    raise _NoExample("no reasoning")


def export_dataset(fmt: str, dataset_uri: str, output_uri: str, name: str = "r1ov") -> dict[str, Any]:
    """Write the accepted records of ``dataset_uri`` for a trainer; returns what was written."""
    from r1ov.data import imaging

    if fmt not in FORMATS_OUT:
        raise ConfigError(f"unknown export format {fmt!r}; one of {', '.join(FORMATS_OUT)}")
    written, skipped = 0, Counter()
    trl_rows: list[dict[str, Any]] = []
    sharegpt: list[dict[str, Any]] = []
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
                trl_rows.append(
                    {
                        "messages": [
                            {
                                "role": "user",
                                "content": [{"type": "image"}, {"type": "text", "text": _user_text(record)}],
                            },
                            {"role": "assistant", "content": [{"type": "text", "text": assistant}]},
                        ],
                        "images": [{"bytes": image, "path": None}],
                        "id": record["id"],
                    }
                )
            else:
                relative = _png_name(record, image)
                storage.write_bytes(storage.join(output_uri, relative), image)
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
            written += 1
    files: list[str] = []
    if fmt == "trl":
        import datasets

        features = datasets.Features(
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
        buffer = io.BytesIO()
        datasets.Dataset.from_list(trl_rows, features=features).to_parquet(buffer)
        target = storage.join(output_uri, "train.parquet")
        storage.write_bytes(target, buffer.getvalue())
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
    digest = hashlib.sha256("".join(sorted(r["id"] for r in trl_rows or sharegpt)).encode()).hexdigest()[:16]
    return {"format": fmt, "examples": written, "skipped": dict(skipped), "files": files, "ids_sha256": digest}
