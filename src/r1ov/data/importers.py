"""Datasets in: published layouts into the record schema, with a report of every row skipped and why.

- ``parquet``: the R1-Onevision release (``Fancy-MLLM/R1-Onevision``) and LLaVA-OneVision-style
  data: ``<root>/<source folder>/*.parquet`` (or ``<root>/*.parquet``), one row per example
  with an ``image`` (``{bytes, path}`` as ``datasets`` stores it, raw bytes, or a path) or a
  one-element ``images`` list, and ``conversations`` (``[{from, value}]``) or ``messages``
  (``[{role, content}]``): the first user turn is the question (``<image>`` tokens removed),
  the first assistant turn the answer, kept as ``reasoning`` when it holds a ``<think>`` block;
- ``jsonl``: images beside a JSONL (or JSON list) file whose rows name an image path relative
  to the file and give ``question``/``answer`` (optional ``options``, ``image_type``), or
  ``conversations``/``messages`` as above;
- ``hub``: a dataset ``datasets.load_dataset`` can open (a hub name with a local mirror or
  cache, or a local dataset folder), mapped like ``parquet`` rows.

Sources are local paths or ``s3://`` URIs (``r1ov.data.storage``).
"""

from __future__ import annotations

import json
import logging
import posixpath
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow.parquet as pq
from tqdm.auto import tqdm

from r1ov.config import ConfigError
from r1ov.data import records, storage
from r1ov.scoring.reasoning import parse

log = logging.getLogger(__name__)

FORMATS_IN = ("parquet", "jsonl", "hub")
_USER = {"human", "user"}
_ASSISTANT = {"gpt", "assistant", "model"}
_IMAGE_TOKEN = re.compile(r"<image>\s*", re.IGNORECASE)


class Skip(ValueError):
    """A source row that cannot become a record: ``kind`` counts in the report, ``detail`` explains."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


# --------------------------------------------------------------------------- row mapping


def _turns(row: dict[str, Any]) -> list[tuple[str, str]]:
    turns = row.get("conversations") or row.get("messages") or []
    out = []
    for turn in turns:
        if not isinstance(turn, dict):
            raise Skip("malformed conversation", "turns must be objects")
        role = str(turn.get("from") or turn.get("role") or "").lower()
        content = turn.get("value", turn.get("content"))
        if isinstance(content, list):  # [{type: text, text}, {type: image}] parts
            content = "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("text"))
        out.append((role, str(content or "")))
    return out


def _image_bytes(row: dict[str, Any], base_uri: str | None) -> bytes:
    image = row.get("image")
    images = row.get("images")
    if image is None and isinstance(images, list | tuple):
        if len(images) != 1:
            raise Skip("multiple images", f"{len(images)} in one example; a record holds one")
        image = images[0]
    if isinstance(image, dict):
        if image.get("bytes"):
            return bytes(image["bytes"])
        image = image.get("path")
    if isinstance(image, bytes | bytearray) and image:
        return bytes(image)
    if isinstance(image, str) and image:
        uri = (
            image
            if storage.is_remote(image) or image.startswith("/") or not base_uri
            else storage.join(base_uri, image)
        )
        try:
            return storage.read_bytes(uri)
        except (OSError, ValueError) as exc:
            raise Skip("image unreadable", f"{image!r}: {exc}") from exc
    raise Skip("no image")


def to_record(row: dict[str, Any], source: str, base_uri: str | None = None) -> dict[str, Any]:
    """One source row as a record; raises Skip with the reason when it cannot be one."""
    turns = _turns(row)
    question = row.get("question") or next((text for role, text in turns if role in _USER), None)
    reply = next((text for role, text in turns if role in _ASSISTANT), None)
    if not isinstance(question, str) or not _IMAGE_TOKEN.sub("", question).strip():
        raise Skip("no question", "no 'question' field and no user turn")
    question = _IMAGE_TOKEN.sub("", question).strip()
    image = _image_bytes(row, base_uri)
    answer = row.get("answer")
    reasoning = None
    if reply is not None:
        parsed = parse(reply)
        if parsed.think is not None:
            reasoning, answer = reply, answer or parsed.answer
        else:
            answer = answer or reply.strip()
    image_type = row.get("image_type") if row.get("image_type") in records.IMAGE_TYPES else "unknown"
    options = row.get("options") if isinstance(row.get("options"), list) else None
    record = records.new_record(
        source=source,
        question=question,
        image_type=image_type,
        image=image,
        options=[str(o) for o in options or []],
        answer=str(answer) if answer is not None else None,
        metadata={"imported_id": str(row["id"])} if row.get("id") is not None else None,
    )
    if reasoning is not None:
        record.update(reasoning=reasoning, predicted_answer=parse(reasoning).answer)
    return record


# --------------------------------------------------------------------------- readers


def _parquet_rows(root: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(source folder, location, row) for every Parquet file under ``root`` (one level of folders)."""
    files = [(posixpath.basename(root.rstrip("/")), f) for f in storage.list_files(root, ".parquet")]
    fs, path = storage.filesystem(root)
    import pyarrow.fs as pafs

    for info in sorted(fs.get_file_info(pafs.FileSelector(path, recursive=False)), key=lambda i: i.path):
        if info.type == pafs.FileType.Directory:
            folder = posixpath.basename(info.path)
            files += [(folder, f) for f in storage.list_files(storage.join(root, folder), ".parquet")]
    for folder, uri in files:
        # A native file, not a Python one: Arrow's threads never call back into Python
        # (see r1ov.data.records.read_parquet).
        fs, path = storage.filesystem(uri)
        with fs.open_input_file(path) as handle:
            offset = 0
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=256):
                for i, row in enumerate(batch.to_pylist()):
                    yield folder, f"{uri}#{offset + i}", row
                offset += batch.num_rows


def _jsonl_rows(uri: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    files = [uri] if uri.endswith((".jsonl", ".json")) else storage.list_files(uri, ".jsonl")
    for file in files:
        text = storage.read_text(file)
        folder = posixpath.basename(posixpath.dirname(file.rstrip("/"))) or "jsonl"
        if file.endswith(".json"):
            rows = json.loads(text)
            items = enumerate(rows if isinstance(rows, list) else [])
            for number, row in items:
                yield folder, f"{file}#{number}", row if isinstance(row, dict) else {"_bad": row}
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                row = {"_bad": f"line is not JSON: {exc.msg}"}
            yield folder, f"{file}:{number}", row if isinstance(row, dict) else {"_bad": "line is not an object"}


def _hub_rows(name: str, split: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    import datasets

    data = datasets.load_dataset(name, split=split)
    for column in ("image", "images"):
        if column in data.column_names and isinstance(data.features[column], datasets.Image):
            data = data.cast_column(column, datasets.Image(decode=False))  # bytes, not PIL objects
    folder = name.rstrip("/").split("/")[-1]
    for index, row in enumerate(data):
        yield folder, f"{name}[{split}]#{index}", row


def import_dataset(
    fmt: str,
    source_uri: str,
    output_uri: str,
    *,
    split: str = "train",
    limit: int | None = None,
    shard_size: int = 1000,
) -> dict[str, Any]:
    """Read ``source_uri`` in format ``fmt`` into a record dataset at ``output_uri``.

    Writes ``import_report.json`` beside the records: rows read, imported, skipped by reason
    with a few locations each, and duplicates dropped. Returns the report.
    """
    if fmt not in FORMATS_IN:
        raise ConfigError(f"unknown import format {fmt!r}; one of {', '.join(FORMATS_IN)}")
    rows: Iterable[tuple[str, str, dict[str, Any]]] = {
        "parquet": lambda: _parquet_rows(source_uri),
        "jsonl": lambda: _jsonl_rows(source_uri),
        "hub": lambda: _hub_rows(source_uri, split),
    }[fmt]()
    base = (
        source_uri if fmt != "jsonl" or not source_uri.endswith((".jsonl", ".json")) else posixpath.dirname(source_uri)
    )
    kept: list[dict[str, Any]] = []
    seen: set[str] = set()
    skipped: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    read = duplicates = 0
    # Rows read, with rate, on a terminal (disable=None: quiet in logs); the total is unknown up front.
    for folder, location, row in tqdm(rows, desc="import", unit="row", total=limit, disable=None):
        if limit is not None and read >= limit:
            break
        read += 1
        try:
            if "_bad" in row:
                raise Skip("malformed row", str(row["_bad"]))
            record = to_record(row, f"import/{folder}", base)
        except Exception as exc:  # one odd row is a line in the report, never the end of the import
            kind = exc.kind if isinstance(exc, Skip) else f"malformed row ({type(exc).__name__})"
            reason = str(exc)
            skipped[kind] += 1
            examples.setdefault(kind, [])
            if len(examples[kind]) < 3:
                examples[kind].append(f"{location}: {reason}")
            continue
        if record["id"] in seen:
            duplicates += 1
            continue
        seen.add(record["id"])
        kept.append(record)
    manifest = records.write_dataset(output_uri, kept, shard_size=shard_size, extra={"imported_from": source_uri})
    report = {
        "format": fmt,
        "source": source_uri,
        "read": read,
        "imported": manifest["records"],
        "duplicates": duplicates,
        "skipped": dict(skipped),
        "skipped_examples": examples,
    }
    storage.write_text(storage.join(output_uri, "import_report.json"), json.dumps(report, indent=2, sort_keys=True))
    log.info(
        "import: %d of %d rows from %s -> %s (skipped %s)",
        report["imported"],
        read,
        source_uri,
        output_uri,
        dict(skipped),
    )
    return report
