"""Datasets in: published layouts into the record schema, with every row set aside saying why and where.

- ``parquet``: the R1-Onevision release (``Fancy-MLLM/R1-Onevision``) and LLaVA-OneVision-Data
  folders: ``<root>/<source folder>/train-0000k-of-0000n.parquet`` (or ``<root>/*.parquet``),
  one row per example;
- ``jsonl``: images beside a JSONL (or JSON list) file whose rows name an image path relative
  to the file and give ``question``/``answer`` (optional ``options``, ``image_type``), or
  ``conversations``/``messages`` as below;
- ``hub``: a dataset ``datasets.load_dataset`` can open (a hub name with a local mirror or
  cache, or a local dataset folder), streamed; ``configs`` names its configs (LLaVA-OneVision-Data
  has named configs only, one per subset), ``("all",)`` every one of them.

The published layouts, as found upstream (early December 2026):

- R1-Onevision: https://huggingface.co/datasets/Fancy-MLLM/R1-Onevision/tree/main holds one
  folder per source (``ai2d``, ``Geometry3K(MathV360K)``, ``llava_cot_100k_natural_scene`` with
  ``train-00000-of-00002.parquet`` of 2.28 GB, ...), one ``default`` config, split ``train``;
  columns ``id``, ``image`` (a **base64 string**, the card lists the dataset's modality as Text)
  and ``conversations`` (``[{from: human|gpt, value}]``). Public converters call
  ``base64.b64decode(ex["image"].split(",", 1)[-1])`` (a ``data:image/...;base64,`` prefix
  occurs), and test ``ex["image"] is not None`` first.
- LLaVA-OneVision-Data: https://huggingface.co/datasets/lmms-lab/LLaVA-OneVision-Data, a
  README ``configs:`` entry per subset folder (``<subset>/train-*.parquet``), ``image`` as
  ``datasets.Image`` (``{bytes, path}``), ``conversations`` and ``data_source``; loaders pass the
  config by name (EvolvingLMMs-Lab/sae ``examples/data_process/llava_ov_clevr.py``:
  ``load_dataset("lmms-lab/LLaVA-OneVision-Data", "CLEVR-Math(MathV360K)", split="train")``).

A row's image may be any of: a base64 string (with or without the data-URL prefix), raw bytes,
a ``{bytes, path}`` struct, a path (relative to the source), or a one-element ``images`` list.
The first user turn is the question (``<image>`` tokens removed), the first assistant turn the
answer, kept as ``reasoning`` when it holds a ``<think>`` block.

Rows stream through in Arrow record batches (``ParquetFile.iter_batches``) and records leave in
shards as they fill, so memory stays flat whatever the file size. Every row that cannot become a
record is written to ``rejected/`` with its reason and location (``file#row=N``); a source that
yields no record at all fails with a table of the reasons. Ids are content hashes: a second row
with the same content is set aside as ``duplicate`` naming the first one's location.

Sources are local paths or ``s3://`` URIs (``r1ov.data.storage``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import logging
import posixpath
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from r1ov.config import ConfigError
from r1ov.data import imaging, records, storage
from r1ov.data.outcome import StageFailed, reasons_table
from r1ov.scoring.reasoning import parse

log = logging.getLogger(__name__)

FORMATS_IN = ("parquet", "jsonl", "hub")
ALL_CONFIGS = "all"
_USER = {"human", "user"}
_ASSISTANT = {"gpt", "assistant", "model"}
_IMAGE_TOKEN = re.compile(r"<image>\s*", re.IGNORECASE)
_DATA_URL = re.compile(r"data:image/[\w.+-]*;base64,", re.IGNORECASE)
# Base64 text (RFC 4648 alphabet, line breaks allowed). A path has a dot or is short.
_BASE64 = re.compile(r"[A-Za-z0-9+/\r\n]+={0,2}\s*")
_MIN_BASE64_CHARS = 64
BATCH_ROWS = 64  # rows per Arrow record batch: a few images in memory at a time
READ_BUFFER_BYTES = 1 << 20
MAX_BUFFERED_IMAGE_BYTES = 64 << 20  # a shard is written early when its images pass this


class Skip(ValueError):
    """A source row that cannot become a record: ``kind`` counts in the report, ``detail`` explains."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True)
class SourceRow:
    """One row of a source: its folder (the record's source), where it is, and its values or
    the reason it could not be read at all."""

    folder: str
    location: str
    row: dict[str, Any]
    unreadable: Skip | None = None


# --------------------------------------------------------------------------- row mapping


def _turns(row: dict[str, Any]) -> list[tuple[str, str]]:
    turns = row.get("conversations") or row.get("messages") or []
    if isinstance(turns, str):  # some dumps store the conversation as JSON text
        try:
            turns = json.loads(turns)
        except ValueError as exc:
            raise Skip("malformed conversation", f"not a list of turns: {exc}") from exc
    if not isinstance(turns, list | tuple):
        raise Skip("malformed conversation", f"a {type(turns).__name__}, not a list of turns")
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


def _from_base64(text: str) -> bytes | None:
    """The bytes of a base64 image string (data-URL prefix or not); None when it is not base64."""
    text = text.strip()
    prefix = _DATA_URL.match(text)
    if prefix:
        text = text[prefix.end() :]
    elif len(text) < _MIN_BASE64_CHARS or not _BASE64.fullmatch(text):
        return None
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError) as exc:
        if prefix:
            raise Skip("image unreadable", f"bad base64 after the data-URL prefix: {exc}") from exc
        return None


def _is_image(data: bytes) -> bool:
    """Whether Pillow recognises ``data``'s header as an image (nothing is decoded)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)):
            return True
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return False


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
    if isinstance(image, str) and image.strip():
        decoded = _from_base64(image)
        if decoded is not None and (_DATA_URL.match(image.strip()) or _is_image(decoded)):
            return decoded
        # Not an image once decoded: a long path made only of base64 letters ("images/0001"...).
        uri = (
            image
            if storage.is_remote(image) or image.startswith("/") or not base_uri
            else storage.join(base_uri, image)
        )
        try:
            return storage.read_bytes(uri)
        except (OSError, ValueError) as exc:
            if decoded is not None:  # no such file either: it was base64, of something else
                raise Skip("bad image", "base64 text that decodes to no image format Pillow knows") from exc
            raise Skip("image unreadable", f"{image[:120]!r}: {exc}") from exc
    raise Skip("no image")


def _options(row: dict[str, Any]) -> list[str]:
    options = row.get("options")
    if options is None:
        return []
    if isinstance(options, str):  # a JSON list written as text
        try:
            options = json.loads(options)
        except ValueError:
            raise Skip("malformed row", "options is a string, not a list") from None
    if not isinstance(options, list | tuple):
        raise Skip("malformed row", f"options is a {type(options).__name__}, not a list")
    return [str(o) for o in options]


def to_record(
    row: dict[str, Any], source: str, base_uri: str | None = None, min_side: int = imaging.DEFAULT_MIN_SIDE
) -> dict[str, Any]:
    """One source row as a record; raises Skip with the reason when it cannot be one."""
    turns = _turns(row)
    question = row.get("question") or next((text for role, text in turns if role in _USER), None)
    reply = next((text for role, text in turns if role in _ASSISTANT), None)
    if not isinstance(question, str) or not _IMAGE_TOKEN.sub("", question).strip():
        raise Skip("no question", "no 'question' field and no user turn")
    question = _IMAGE_TOKEN.sub("", question).strip()
    try:
        image, _ = imaging.trainable_bytes(_image_bytes(row, base_uri), min_side=min_side)
    except imaging.BadImage as exc:
        raise Skip("bad image", str(exc)) from exc
    answer = row.get("answer")
    reasoning = None
    if reply is not None:
        parsed = parse(reply)
        if parsed.think is not None:
            reasoning, answer = reply, answer or parsed.answer
        else:
            answer = answer or reply.strip()
    image_type = row.get("image_type") if row.get("image_type") in records.IMAGE_TYPES else "unknown"
    metadata = {"imported_id": str(row["id"])} if row.get("id") is not None else {}
    if isinstance(row.get("data_source"), str):  # LLaVA-OneVision-Data names each row's origin
        metadata["data_source"] = row["data_source"]
    record = records.new_record(
        source=source,
        question=question,
        image_type=image_type,
        image=image,
        options=_options(row),
        answer=str(answer) if answer is not None else None,
        metadata=metadata or None,
    )
    if reasoning is not None:
        record.update(reasoning=reasoning, predicted_answer=parse(reasoning).answer)
    return record


def set_aside(item: SourceRow, reason: Skip) -> dict[str, Any]:
    """A rejected row for ``rejected/``: the reason, the location, what could be kept of it.
    Its id derives from the location, so a re-import writes the same row again."""
    row = item.row
    question = row.get("question") if isinstance(row.get("question"), str) else ""
    record = dict.fromkeys(records.COLUMNS)
    record.update(
        id=hashlib.sha256(item.location.encode("utf-8")).hexdigest()[:24],
        source=f"import/{item.folder}",
        image_type="unknown",
        question=question,
        options=[],
        verdicts=[],
        provenance=[],
        metadata=json.dumps(
            {"location": item.location, "imported_id": None if row.get("id") is None else str(row.get("id"))},
            sort_keys=True,
        ),
    )
    detail = f"{reason.detail} " if reason.detail else ""
    return records.reject(record, f"{reason.kind}: {detail}at {item.location}")


# --------------------------------------------------------------------------- readers


def _batch_rows(batch: pa.RecordBatch) -> Iterator[dict[str, Any] | Skip]:
    """The rows of one record batch; a row whose values Arrow cannot give to Python (text that
    is not UTF-8, say) comes back as a Skip naming the column."""
    try:
        yield from batch.to_pylist()
        return
    except (UnicodeDecodeError, pa.ArrowException, ValueError) as exc:
        log.debug("batch of %d rows has an unreadable value (%s); reading row by row", batch.num_rows, exc)
    for index in range(batch.num_rows):
        one = batch.slice(index, 1)
        try:
            yield one.to_pylist()[0]
        except (UnicodeDecodeError, pa.ArrowException, ValueError) as exc:
            bad = []
            for name in one.schema.names:
                try:
                    one.column(name).to_pylist()
                except (UnicodeDecodeError, pa.ArrowException, ValueError):
                    bad.append(name)
            yield Skip("malformed row", f"column {', '.join(bad) or '?'} unreadable ({type(exc).__name__}: {exc})")


def _parquet_file_rows(folder: str, uri: str) -> Iterator[SourceRow]:
    """Rows of one Parquet file, streamed by record batches through a random-access handle (no
    whole-file read: the release has a 2.28 GB file). A file that cannot be opened, or that
    breaks part-way, gives one unreadable entry for what is left of it."""
    position = 0
    try:
        fs, path = storage.filesystem(uri)
        with fs.open_input_file(path) as handle:
            # pre_buffer (pyarrow's default) caches every column chunk it has read until the file
            # closes: a 2.28 GB file would end up whole in memory. Off, with a bounded read buffer,
            # memory holds one batch's pages at a time.
            parquet = pq.ParquetFile(handle, pre_buffer=False, buffer_size=READ_BUFFER_BYTES)
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
                for value in _batch_rows(batch):
                    location = f"{uri}#row={position}"
                    position += 1
                    if isinstance(value, Skip):
                        yield SourceRow(folder, location, {}, value)
                    else:
                        yield SourceRow(folder, location, value)
    except (OSError, pa.ArrowException, ValueError) as exc:
        where = "file" if position == 0 else f"rows from {position} on"
        yield SourceRow(folder, f"{uri}#row={position}", {}, Skip("unreadable file", f"{where}: {exc}"))


def _subfolders(root: str) -> list[str]:
    fs, path = storage.filesystem(root)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return []
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=False))
    return sorted(posixpath.basename(i.path) for i in infos if i.type == pafs.FileType.Directory)


def _parquet_rows(root: str, configs: Sequence[str] = ()) -> Iterator[SourceRow]:
    """Rows of every Parquet file under ``root`` (its own files and one level of source folders);
    ``configs`` keeps only the named folders (LLaVA-OneVision-Data's subsets)."""
    if root.endswith(".parquet"):
        yield from _parquet_file_rows(posixpath.basename(posixpath.dirname(root)) or "parquet", root)
        return
    folders = _subfolders(root)
    wanted = [] if not configs or ALL_CONFIGS in configs else list(configs)
    missing = [c for c in wanted if c not in folders]
    if missing:
        raise ConfigError(
            f"--config {', '.join(missing)}: no such folder under {root}; there are: {', '.join(folders)}"
        )
    files = [] if wanted else [(posixpath.basename(root.rstrip("/")), f) for f in storage.list_files(root, ".parquet")]
    for folder in wanted or folders:
        files += [(folder, f) for f in storage.list_files(storage.join(root, folder), ".parquet")]
    for folder, uri in files:
        yield from _parquet_file_rows(folder, uri)


def _jsonl_rows(uri: str) -> Iterator[SourceRow]:
    files = [uri] if uri.endswith((".jsonl", ".json")) else storage.list_files(uri, ".jsonl")
    for file in files:
        folder = posixpath.basename(posixpath.dirname(file.rstrip("/"))) or "jsonl"
        if file.endswith(".json"):
            try:
                rows = json.loads(storage.read_bytes(file).decode("utf-8"))
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                yield SourceRow(folder, file, {}, Skip("unreadable file", f"not a JSON list: {exc}"))
                continue
            for number, row in enumerate(rows if isinstance(rows, list) else []):
                bad = None if isinstance(row, dict) else Skip("malformed row", "not an object")
                yield SourceRow(folder, f"{file}#{number}", row if bad is None else {}, bad)
            continue
        fs, path = storage.filesystem(file)
        with fs.open_input_stream(path) as stream:
            # Line by line in constant memory; one undecodable byte costs one line, not the file.
            for number, line in enumerate(_lines(stream), start=1):
                if not line.strip():
                    continue
                location = f"{file}:{number}"
                try:
                    row = json.loads(line.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    yield SourceRow(folder, location, {}, Skip("malformed row", f"line is not UTF-8: {exc}"))
                    continue
                except ValueError as exc:
                    yield SourceRow(folder, location, {}, Skip("malformed row", f"line is not JSON: {exc}"))
                    continue
                if not isinstance(row, dict):
                    yield SourceRow(folder, location, {}, Skip("malformed row", "line is not an object"))
                    continue
                yield SourceRow(folder, location, row)


def _lines(stream: Any, chunk: int = 1 << 20) -> Iterator[bytes]:
    pending = b""
    while True:
        data = stream.read(chunk)
        if not data:
            break
        pending += data
        *complete, pending = pending.split(b"\n")
        yield from complete
    if pending:
        yield pending


def hub_configs(name: str, configs: Sequence[str]) -> list[str | None]:
    """The configs to read: ``[None]`` (the default) when none is named, every one for ``all``."""
    if not configs:
        return [None]
    if ALL_CONFIGS in configs:
        import datasets

        return list(datasets.get_dataset_config_names(name))
    return list(configs)


def _hub_rows(name: str, split: str, configs: Sequence[str] = ()) -> Iterator[SourceRow]:
    import datasets

    if not storage.is_remote(name) and Path(name).is_dir():
        name = str(Path(name).absolute())  # datasets names a relative "." folder None and fails

    for config in hub_configs(name, configs):
        try:
            # Streamed: rows arrive file by file, never a full Arrow copy of the release on disk.
            data = datasets.load_dataset(name, config, split=split, streaming=True)
        except ValueError as exc:
            if "config name is missing" in str(exc).lower():
                names = datasets.get_dataset_config_names(name)
                raise ConfigError(
                    f"{name} has named configs only: pass --config NAME (repeatable) or --config all; "
                    f"it has {len(names)}: {', '.join(names[:8])}{' ...' if len(names) > 8 else ''}"
                ) from exc
            raise
        data = data.decode(False)  # images as {bytes, path}, not PIL objects
        folder = config or name.rstrip("/").split("/")[-1]
        label = f"{name}[{config}]" if config else name
        for index, row in enumerate(data):
            yield SourceRow(folder, f"{label}[{split}]#row={index}", row)


# --------------------------------------------------------------------------- writing


class _ShardWriter:
    """Rows of one part leave in shards of ``size`` rows, or earlier once their images pass
    ``max_bytes``: memory holds one shard, whatever the source's size."""

    def __init__(self, dataset_uri: str, part: str, size: int, max_bytes: int = MAX_BUFFERED_IMAGE_BYTES) -> None:
        self.dataset_uri, self.part, self.size, self.max_bytes = dataset_uri, part, size, max_bytes
        self.rows: list[dict[str, Any]] = []
        self.bytes = 0
        self.shards = 0
        self.count = 0

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.bytes += len(row.get("image") or b"")
        self.count += 1
        if len(self.rows) >= self.size or self.bytes >= self.max_bytes:
            self.flush()

    def flush(self) -> None:
        if self.rows or self.shards == 0:
            records.write_shard(self.dataset_uri, self.rows, self.shards, self.part)
            self.shards += 1
        self.rows, self.bytes = [], 0

    def close(self) -> None:
        self.flush()
        records.delete_stale(self.dataset_uri, self.part, keep=self.shards)


def import_dataset(
    fmt: str,
    source_uri: str,
    output_uri: str,
    *,
    split: str = "train",
    configs: Sequence[str] = (),
    limit: int | None = None,
    shard_size: int = 1000,
    min_side: int = imaging.DEFAULT_MIN_SIDE,
) -> dict[str, Any]:
    """Read ``source_uri`` in format ``fmt`` into a record dataset at ``output_uri``.

    ``configs`` picks named configs (``hub``) or source folders (``parquet``); ``("all",)`` takes
    every one. Writes ``import_report.json`` beside the records: rows read, imported, set aside
    by reason with a few locations each, duplicates, and counts per source folder. Returns the
    report. Raises StageFailed (after writing everything) when no row could be imported.
    """
    if fmt not in FORMATS_IN:
        raise ConfigError(f"unknown import format {fmt!r}; one of {', '.join(FORMATS_IN)}")
    if configs and fmt == "jsonl":
        raise ConfigError("--config applies to --format hub (named configs) and parquet (source folders)")
    rows: Iterable[SourceRow] = {
        "parquet": lambda: _parquet_rows(source_uri, configs),
        "jsonl": lambda: _jsonl_rows(source_uri),
        "hub": lambda: _hub_rows(source_uri, split, configs),
    }[fmt]()
    base = (
        source_uri if fmt != "jsonl" or not source_uri.endswith((".jsonl", ".json")) else posixpath.dirname(source_uri)
    )
    accepted = _ShardWriter(output_uri, records.RECORDS, shard_size)
    rejected = _ShardWriter(output_uri, records.REJECTED, shard_size)
    first_seen: dict[str, str] = {}  # record id -> location of its first row
    skipped: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    per_source: dict[str, Counter[str]] = {}
    read = duplicates = 0
    # Rows read, with rate, on a terminal (disable=None: quiet in logs); the total is unknown up front.
    for item in tqdm(rows, desc="import", unit="row", total=limit, disable=None):
        if limit is not None and read >= limit:
            break
        read += 1
        counts = per_source.setdefault(item.folder, Counter())
        counts["read"] += 1
        try:
            if item.unreadable is not None:
                raise item.unreadable
            record = to_record(item.row, f"import/{item.folder}", base, min_side)
            if record["id"] in first_seen:
                duplicates += 1
                raise Skip("duplicate", f"same content as {first_seen[record['id']]}")
        except Exception as exc:  # one odd row is a line in the report, never the end of the import
            reason = exc if isinstance(exc, Skip) else Skip(f"malformed row ({type(exc).__name__})", str(exc))
            if reason.kind != "duplicate":
                skipped[reason.kind] += 1
                if len(examples.setdefault(reason.kind, [])) < 3:
                    examples[reason.kind].append(f"{item.location}: {reason.detail}")
            rejected.add(set_aside(item, reason))
            continue
        first_seen[record["id"]] = item.location
        record["metadata"] = json.dumps({**records.metadata(record), "location": item.location}, sort_keys=True)
        accepted.add(record)
        counts["imported"] += 1
    accepted.close()
    rejected.close()
    manifest = {
        "records": accepted.count,
        "rejected": rejected.count,
        "reject_reasons": {**dict(skipped), **({"duplicate": duplicates} if duplicates else {})},
        "imported_from": source_uri,
    }
    records.write_manifest(output_uri, manifest)
    report = {
        "format": fmt,
        "source": source_uri,
        "configs": list(configs),
        "read": read,
        "imported": accepted.count,
        "duplicates": duplicates,
        "skipped": dict(skipped),
        "skipped_examples": examples,
        "sources": {folder: {"read": c["read"], "imported": c["imported"]} for folder, c in sorted(per_source.items())},
    }
    storage.write_text(storage.join(output_uri, "import_report.json"), json.dumps(report, indent=2, sort_keys=True))
    log.info(
        "import: %d of %d rows from %s -> %s (set aside %s)",
        accepted.count,
        read,
        source_uri,
        output_uri,
        dict(skipped),
    )
    if accepted.count == 0:
        table = reasons_table(manifest, {kind: found[:1] for kind, found in examples.items()}) if read else ""
        raise StageFailed(
            f"import: nothing importable from {source_uri} ({read} rows read); rows set aside, by reason "
            f"(each with its location in {storage.join(output_uri, records.REJECTED)}):\n{table}"
            if read
            else f"import: {source_uri} has no rows to import"
        )
    return report
