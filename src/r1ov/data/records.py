"""The record: one example, one row, the same schema at every stage.

A *dataset* is a directory URI holding Parquet shards in two parts, so that every input
row of a stage ends in exactly one of them::

    <dataset>/records/part-00000.parquet    accepted rows, read by the next stage
    <dataset>/rejected/part-00000.parquet   rows set aside, each with ``reject_reason``
    <dataset>/manifest.json                 counts per part, written last

Shard names are deterministic, so a retried or resumed task overwrites or skips a shard
instead of duplicating rows.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from r1ov.data import storage

IMAGE_TYPES = (
    "circuit",  # -> SPICE netlist
    "flowchart",  # -> PlantUML
    "layout",  # web/UI layouts -> HTML
    "table",  # -> CSV
    "chart",  # -> JSON (series)
    "natural",  # -> detector boxes + caption
    "text",  # -> OCR + reconstruction
    "math",  # -> figure facts + solving strategy
    "clevr",  # -> object list (GRPO data)
    "unknown",  # router asks the teacher to classify
)

VERDICT = pa.struct([("name", pa.string()), ("passed", pa.bool_()), ("detail", pa.string())])
PROVENANCE = pa.struct(
    [("stage", pa.string()), ("model", pa.string()), ("prompt_sha256", pa.string()), ("at", pa.string())]
)

SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),  # stable content hash, see record_id()
        pa.field("source", pa.string(), nullable=False),  # dataset of origin, e.g. synthetic/circuit
        pa.field("image", pa.binary()),  # encoded image bytes (PNG/JPEG), or null with image_uri
        pa.field("image_uri", pa.string()),
        pa.field("image_type", pa.string(), nullable=False),  # one of IMAGE_TYPES
        pa.field("question", pa.string(), nullable=False),
        pa.field("options", pa.list_(pa.string())),  # empty for open questions
        pa.field("answer", pa.string()),  # ground-truth answer (option letter or value)
        pa.field("ground_truth", pa.string()),  # JSON: structured description, when known
        pa.field("formal_language", pa.string()),  # spice, plantuml, html, csv, json, ...
        pa.field("formalization", pa.string()),  # the image as formal text
        pa.field("reasoning", pa.string()),  # "<think>...</think><answer>...</answer>"
        pa.field("predicted_answer", pa.string()),  # answer extracted from reasoning
        pa.field("verdicts", pa.list_(VERDICT)),  # one per filter check
        pa.field("reject_reason", pa.string()),  # set only in rejected/
        pa.field("provenance", pa.list_(PROVENANCE)),  # one entry per stage that touched it
        pa.field("metadata", pa.string()),  # JSON: benchmark fields (category, level, ...)
    ]
)
COLUMNS = tuple(SCHEMA.names)
RECORDS, REJECTED = "records", "rejected"


def record_id(source: str, question: str, image: bytes | None, image_uri: str | None = None) -> str:
    digest = hashlib.sha256()
    for part in (source, question, image_uri or ""):
        digest.update(part.encode("utf-8") + b"\0")
    digest.update(image or b"")
    return digest.hexdigest()[:24]


def new_record(
    *,
    source: str,
    question: str,
    image_type: str,
    image: bytes | None = None,
    image_uri: str | None = None,
    options: list[str] | None = None,
    answer: str | None = None,
    ground_truth: dict | list | None = None,
    metadata: dict | None = None,
) -> dict[str, Any]:
    """A record with every column present; ids derive from content, so re-runs agree."""
    if image_type not in IMAGE_TYPES:
        raise ValueError(f"image_type {image_type!r} is not one of {IMAGE_TYPES}")
    record = dict.fromkeys(COLUMNS)
    record.update(
        id=record_id(source, question, image, image_uri),
        source=source,
        image=image,
        image_uri=image_uri,
        image_type=image_type,
        question=question,
        options=list(options or []),
        answer=answer,
        ground_truth=json.dumps(ground_truth, sort_keys=True) if ground_truth is not None else None,
        verdicts=[],
        provenance=[],
        metadata=json.dumps(metadata, sort_keys=True) if metadata is not None else None,
    )
    return record


def stamp(record: dict[str, Any], stage: str, model: str = "", prompt: str = "") -> dict[str, Any]:
    """Append a provenance entry for ``stage`` (returns the same record)."""
    entry = {
        "stage": stage,
        "model": model,
        "prompt_sha256": hashlib.sha256(prompt.encode("utf-8")).hexdigest() if prompt else "",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    record["provenance"] = [*(record.get("provenance") or []), entry]
    return record


def reject(record: dict[str, Any], reason: str) -> dict[str, Any]:
    record["reject_reason"] = reason
    return record


REQUIRED = tuple(f.name for f in SCHEMA if not f.nullable)


def problem(record: dict[str, Any], max_text_chars: int) -> str | None:
    """Why a row cannot enter a stage (``bad_record: ...``), or None. Rows come from anywhere
    (imported Parquet, older runs): nulls, wrong types and runaway text are caught here, before
    any request is paid for, instead of failing the whole shard at write time."""
    if record.get(UNFIT):  # found while reading the shard: a value Arrow or Python could not take
        return record[UNFIT]
    for name in REQUIRED:
        value = record.get(name)
        if value is None:
            return f"bad_record: {name} is null or missing"
        if not isinstance(value, str):
            return f"bad_record: {name} is a {type(value).__name__}, not a string"
        if not value.strip():
            return f"bad_record: {name} is empty"
    options = record.get("options") or []
    if not all(isinstance(o, str) for o in options):
        return "bad_record: options must be strings"
    longest = max([len(record["question"]), *(len(o) for o in options)])
    if longest > max_text_chars:
        return f"bad_record: text of {longest} characters exceeds max_text_chars={max_text_chars}"
    return None


def writable(record: dict[str, Any]) -> dict[str, Any]:
    """A copy of a set-aside row that the schema accepts: required fields that were null or of
    the wrong type become strings, other values of the wrong type become null (the reason says
    what they were)."""
    row = {name: _fitting(name, record.get(name)) for name in COLUMNS}
    for name in REQUIRED:
        if not isinstance(row.get(name), str):
            row[name] = "" if record.get(name) is None else str(record[name])
    if not row["id"]:
        row["id"] = content_digest(row)[:24]
    return row


def _fitting(name: str, value: Any) -> Any:
    """``value`` when it fits column ``name``'s type, else None (a list column: empty)."""
    kind = SCHEMA.field(name).type
    if value is None:
        return [] if pa.types.is_list(kind) else None
    if pa.types.is_string(kind):
        return value if isinstance(value, str) else None
    if pa.types.is_binary(kind):
        return value if isinstance(value, bytes) else None
    if pa.types.is_list(kind):
        if not isinstance(value, list):
            return []
        if pa.types.is_string(kind.value_type):
            return value if all(isinstance(v, str) for v in value) else []
        fields = [f.name for f in kind.value_type]
        ok = all(isinstance(v, dict) and set(v) <= set(fields) for v in value)
        return value if ok else []
    return value


def content_digest(record: dict[str, Any]) -> str:
    """SHA-256 of everything a record holds except its provenance (timestamps): two rows with
    the same digest are the same input to a stage, so a stage's output for one serves the other."""
    digest = hashlib.sha256()
    for name in COLUMNS:
        if name == "provenance":
            continue
        value = record.get(name)
        if isinstance(value, bytes | bytearray):
            value = hashlib.sha256(value).hexdigest()
        digest.update(name.encode() + b"=" + json.dumps(value, sort_keys=True, default=str).encode() + b"\0")
    return digest.hexdigest()


def ground_truth(record: dict[str, Any]) -> Any:
    return json.loads(record["ground_truth"]) if record.get("ground_truth") else None


def metadata(record: dict[str, Any]) -> dict[str, Any]:
    return json.loads(record["metadata"]) if record.get("metadata") else {}


def to_table(rows: Iterable[dict[str, Any]]) -> pa.Table:
    rows = [r if all(isinstance(r.get(n), str) for n in REQUIRED) and not r.get(UNFIT) else writable(r) for r in rows]
    return pa.Table.from_pylist([{c: r.get(c) for c in COLUMNS} for r in rows], schema=SCHEMA)


def shard_uri(dataset_uri: str, part: str, index: int) -> str:
    return storage.join(dataset_uri, part, f"part-{index:05d}.parquet")


def write_shard(dataset_uri: str, rows: Iterable[dict[str, Any]], index: int = 0, part: str = RECORDS) -> str:
    """Write one shard atomically; returns its URI. An empty shard is still written."""
    buffer = io.BytesIO()
    pq.write_table(to_table(rows), buffer, compression="zstd")
    uri = shard_uri(dataset_uri, part, index)
    storage.write_bytes(uri, buffer.getvalue())
    return uri


UNFIT = "_unfit"  # a row's reason, found while reading, to be set aside for (never written)


def unreadable_file_row(shard: str, exc: BaseException) -> dict[str, Any]:
    """A shard that cannot be opened at all (0 bytes, not Parquet) stands in the data as one row
    set aside for ``unreadable_file``, so the loss is counted and named, never silent."""
    row = dict.fromkeys(COLUMNS)
    message = " ".join(str(exc).split())[:200]
    row.update(
        id=hashlib.sha256(shard.encode("utf-8")).hexdigest()[:24],
        source="unknown",
        image_type="unknown",
        question="",
        options=[],
        verdicts=[],
        provenance=[],
        metadata=json.dumps({"location": shard}),
    )
    row[UNFIT] = f"unreadable_file: {shard}: {type(exc).__name__}: {message}"
    return row


def _salvaged(shard: str, data: bytes) -> list[dict[str, Any]]:
    """Rows of a shard the schema refuses (text that is not UTF-8, a column of the wrong type):
    read without the schema, value by value; each row that does not fit carries its reason."""
    try:
        table = pq.ParquetFile(pa.BufferReader(data)).read()
    except (pa.ArrowException, OSError, ValueError) as exc:
        return [unreadable_file_row(shard, exc)]
    rows = []
    for index in range(table.num_rows):
        one = table.slice(index, 1)
        row: dict[str, Any] = {}
        problems = []
        for name in COLUMNS:
            if name not in one.column_names:
                row[name] = _fitting(name, None)
                continue
            try:
                value = one.column(name).to_pylist()[0]
            except UnicodeDecodeError:
                problems.append(f"{name} is not UTF-8 text")
                row[name] = None
                continue
            except (pa.ArrowException, ValueError) as exc:
                problems.append(f"{name} is unreadable ({type(exc).__name__})")
                row[name] = None
                continue
            if isinstance(value, bytes) and pa.types.is_string(SCHEMA.field(name).type):
                try:
                    value = value.decode("utf-8")
                except UnicodeDecodeError:
                    problems.append(f"{name} is not UTF-8 text")
                    value = value.decode("utf-8", errors="replace")
            fitting = _fitting(name, value)
            if value is not None and fitting != value:
                problems.append(f"{name} is a {type(value).__name__}, not {SCHEMA.field(name).type}")
            row[name] = value if name in REQUIRED else fitting
        if problems:
            row[UNFIT] = f"bad_record: {'; '.join(problems)} ({shard}#row={index})"
        rows.append(row)
    return rows


def read_rows(shard: str) -> list[dict[str, Any]]:
    """The rows of one shard file. Rows written by other tools may not fit the schema; they come
    back marked (see :func:`problem`) instead of failing the whole shard."""
    data = storage.read_bytes(shard)
    try:
        return _fitted_table(data).to_pylist()
    except (pa.ArrowException, UnicodeDecodeError, ValueError, OSError):
        return _salvaged(shard, data)


def _fitted_table(data: bytes) -> pa.Table:
    """A shard's bytes as a table with the record schema, or an error when a value does not fit.

    Read from a native buffer (``pa.BufferReader``), never a Python file object: see
    :func:`read_parquet` for the exit-time abort a Python file handed to Arrow's threads causes.
    """
    table = _conform(pq.ParquetFile(pa.BufferReader(data)).read())
    table.validate(full=True)  # text that is not UTF-8 reads fine, then fails on first use
    return table


def read_parquet(uri: str, columns: list[str] | None = None) -> pa.Table:
    """One Parquet file, read in the calling thread from a native Arrow file.

    Not ``pq.read_table(io.BytesIO(...))``: that runs Arrow's dataset scanner, whose I/O threads
    call back into the Python file object (they take the GIL), and a scanner task still winding
    down when the interpreter finalizes turns into ``terminate called without an active
    exception`` (SIGABRT) after the work is done: apache/arrow#45017 (the backtrace: a pyarrow
    thread's GIL request during finalization, pthread_exit, std::terminate), #36389 (Weston Pace:
    "crashing on exit because the scanner is still running"), #39862. A native file and
    ``ParquetFile.read`` (no scanner, no pre-buffering) leave no Arrow task behind and never hand
    Arrow's threads a Python object.
    """
    fs, path = storage.filesystem(uri)
    with fs.open_input_file(path) as handle:
        return pq.ParquetFile(handle).read(columns=columns)


def _conform(table: pa.Table) -> pa.Table:
    """A shard as SCHEMA: columns in its order, a column the file lacks as nulls (older shards)."""
    arrays = [
        table.column(f.name) if f.name in table.column_names else pa.nulls(table.num_rows, f.type) for f in SCHEMA
    ]
    return pa.Table.from_arrays(arrays, names=SCHEMA.names).cast(SCHEMA)


def read_shard_table(shard: str) -> pa.Table:
    """One shard file as a table with the schema; rows that do not fit it come back marked (see read_rows)."""
    data = storage.read_bytes(shard)
    try:
        return _fitted_table(data)
    except (pa.ArrowException, UnicodeDecodeError, ValueError, OSError):
        return to_table(_salvaged(shard, data))


def shard_uris(dataset_uri: str, part: str = RECORDS) -> list[str]:
    """The shard files of one part, in order."""
    return storage.list_files(storage.join(dataset_uri, part), ".parquet")


def read_table(dataset_uri: str, part: str = RECORDS) -> pa.Table:
    """All shards of one part as a table (empty table with the schema when there are none)."""
    tables = [read_shard_table(shard) for shard in shard_uris(dataset_uri, part)]
    return pa.concat_tables(tables) if tables else SCHEMA.empty_table()


def read_records(dataset_uri: str, part: str = RECORDS) -> list[dict[str, Any]]:
    return read_table(dataset_uri, part).to_pylist()


def iter_shards(dataset_uri: str, part: str = RECORDS) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """(index, rows) per shard, in order; stages that fan out keep the shard index."""
    for index, shard in enumerate(storage.list_files(storage.join(dataset_uri, part), ".parquet")):
        yield index, read_rows(shard)


def write_dataset(
    dataset_uri: str,
    accepted: list[dict[str, Any]],
    rejected: list[dict[str, Any]] | None = None,
    shard_size: int = 1000,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write accepted and rejected rows as shards plus ``manifest.json``; returns the manifest."""
    rejected = rejected or []
    missing = [r["id"] for r in rejected if not r.get("reject_reason")]
    if missing:
        raise ValueError(f"rejected rows need a reject_reason: {missing[:5]}")
    for part, rows in ((RECORDS, accepted), (REJECTED, rejected)):
        chunks = [rows[i : i + shard_size] for i in range(0, len(rows), shard_size)] or [[]]
        for index, chunk in enumerate(chunks):
            write_shard(dataset_uri, chunk, index, part)
        delete_stale(dataset_uri, part, keep=len(chunks))
    manifest = {
        "records": len(accepted),
        "rejected": len(rejected),
        "reject_reasons": _reason_counts(rejected),
        **(extra or {}),
    }
    storage.write_text(storage.join(dataset_uri, "manifest.json"), json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def write_manifest(dataset_uri: str, manifest: dict[str, Any]) -> None:
    storage.write_text(storage.join(dataset_uri, "manifest.json"), json.dumps(manifest, indent=2, sort_keys=True))


def delete_stale(dataset_uri: str, part: str, keep: int) -> None:
    """Drop shards (or progress markers) past ``keep``: left by an earlier, larger run, they
    would otherwise be read as rows of this one."""
    suffix = ".json" if part == PROGRESS else ".parquet"
    for stale in storage.list_files(storage.join(dataset_uri, part), suffix)[keep:]:
        storage.delete(stale)


def count_rows(dataset_uri: str, part: str = RECORDS) -> int:
    """Rows of one part from the Parquet footers alone (no row, no image is read)."""
    total = 0
    for shard in storage.list_files(storage.join(dataset_uri, part), ".parquet"):
        fs, path = storage.filesystem(shard)
        try:
            with fs.open_input_file(path) as handle:
                total += pq.ParquetFile(handle).metadata.num_rows
        except (pa.ArrowException, OSError, ValueError):
            total += 1  # read back as one unreadable_file row (see unreadable_file_row)
    return total


def read_manifest(dataset_uri: str) -> dict[str, Any]:
    return json.loads(storage.read_text(storage.join(dataset_uri, "manifest.json")))


# --------------------------------------------------------------------------- batch-wise stages

PROGRESS = "_progress"  # one marker per finished output shard, so a re-run skips it


def iter_batches(dataset_uri: str, size: int, part: str = RECORDS) -> Iterator[list[dict[str, Any]]]:
    """Rows of ``part`` in order, regrouped into batches of ``size`` (the last may be shorter)."""
    batch: list[dict[str, Any]] = []
    for _, rows in iter_shards(dataset_uri, part):
        for row in rows:
            batch.append(row)
            if len(batch) == size:
                yield batch
                batch = []
    if batch:
        yield batch


def _reason_counts(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        key = row["reject_reason"].split(":", 1)[0]
        counts[key] = counts.get(key, 0) + 1
    return counts


Rows = list[dict[str, Any]]
# Accepted and rejected rows of one batch.
Outcome = tuple[Rows, Rows]
# Batches in, one outcome per batch out, in the same order. It may read ahead of what it has
# yielded (a pipelined stage works on several batches at once).
ProcessStream = Callable[[Iterator[Rows]], Iterator[Outcome]]


def map_dataset(
    input_uri: str,
    output_uri: str,
    process: Callable[[Rows], Outcome] | None = None,
    *,
    process_stream: ProcessStream | None = None,
    shard_size: int = 1000,
    fingerprint: str = "",
    redo_reasons: tuple[str, ...] = (),
    extra: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    max_text_chars: int = 20000,
) -> dict[str, Any]:
    """Run a stage batch by batch: input rows ``[k*size, (k+1)*size)`` -> shard ``k`` of both parts.

    ``process(batch)`` returns ``(accepted, rejected)`` and must account for every input row
    exactly once; rows that fail :func:`problem` are set aside before it sees them. A stage that
    overlaps batches passes ``process_stream`` instead: it is handed the batches to do and yields
    their outcomes in order, free to read ahead, so no batch waits for the one before it to end
    (shard ``k`` is still written only when all its rows are done). A batch whose
    marker in ``_progress/`` matches (same row contents, same ``fingerprint`` of the stage's
    settings) is skipped, unless it set rows aside for one of
    ``redo_reasons`` (transient failures worth another try). ``extra(manifest)`` returns
    fields merged into the manifest, which is written last. Returns the manifest.
    """
    if (process is None) == (process_stream is None):
        raise ValueError("map_dataset takes one of process and process_stream")
    stream: ProcessStream = process_stream or (lambda batches: ((process(b) if b else ([], [])) for b in batches))
    totals = {RECORDS: 0, REJECTED: 0}
    reasons: dict[str, int] = {}
    resumed, count = 0, 0
    # Rows done across the whole stage, with rate and ETA (the teacher client shows each batch).
    progress = tqdm(
        total=count_rows(input_uri), desc=posixpath.basename(output_uri.rstrip("/")), unit="row", disable=None
    )

    counting = threading.Lock()  # a pipelined stream reads (and counts resumed batches) on another thread

    def account(marker: dict[str, Any], rows: int) -> None:
        with counting:
            totals[RECORDS] += marker[RECORDS]
            totals[REJECTED] += marker[REJECTED]
            progress.update(rows)
            for reason, n in marker["reject_reasons"].items():
                reasons[reason] = reasons.get(reason, 0) + n

    # Batches handed to the stream and not yet written, oldest first: (index, key, input rows, unfit).
    # Appended before the batch is yielded, so the head always matches the next outcome.
    pending: deque[tuple[int, str, Rows, Rows]] = deque()

    def todo() -> Iterator[Rows]:
        nonlocal resumed, count
        for index, batch in enumerate(iter_batches(input_uri, shard_size)):
            count = index + 1
            # Contents, not ids: changed upstream text or images make the batch stale.
            key = hashlib.sha256("\0".join([fingerprint, *map(content_digest, batch)]).encode("utf-8")).hexdigest()
            marker_uri = storage.join(output_uri, PROGRESS, f"part-{index:05d}.json")
            marker = json.loads(storage.read_text(marker_uri)) if storage.exists(marker_uri) else None
            if (
                marker
                and marker["key"] == key
                and not set(redo_reasons) & set(marker["reject_reasons"])
                and all(storage.exists(shard_uri(output_uri, part, index)) for part in (RECORDS, REJECTED))
            ):
                resumed += 1
                account(marker, len(batch))
                continue
            problems = [problem(r, max_text_chars) for r in batch]
            batch = [writable(r) for r in batch]
            fit = [r for r, why in zip(batch, problems, strict=True) if why is None]
            unfit = [reject(dict(r), why) for r, why in zip(batch, problems, strict=True) if why]
            pending.append((index, key, batch, unfit))
            yield fit

    for accepted, rejected in stream(todo()):
        index, key, batch, unfit = pending.popleft()
        rejected = [*unfit, *rejected]
        seen = sorted(r["id"] for r in [*accepted, *rejected])
        if seen != sorted(r["id"] for r in batch):
            raise ValueError(f"batch {index}: every input row must end in exactly one of accepted/rejected")
        if any(not r.get("reject_reason") for r in rejected):
            raise ValueError(f"batch {index}: rejected rows need a reject_reason")
        write_shard(output_uri, accepted, index, RECORDS)
        write_shard(output_uri, rejected, index, REJECTED)
        marker = {RECORDS: len(accepted), REJECTED: len(rejected), "reject_reasons": _reason_counts(rejected)}
        storage.write_text(
            storage.join(output_uri, PROGRESS, f"part-{index:05d}.json"),
            json.dumps({"key": key, **marker}, sort_keys=True),
        )
        account(marker, len(batch))
    if pending:
        raise ValueError(f"batch {pending[0][0]}: the stage yielded no outcome for it")
    progress.close()
    if count == 0:  # an empty input still yields a readable, empty dataset
        for part in (RECORDS, REJECTED):
            write_shard(output_uri, [], 0, part)
    for part in (RECORDS, REJECTED, PROGRESS):
        delete_stale(output_uri, part, keep=max(count, 1))
    manifest = {
        RECORDS: totals[RECORDS],
        REJECTED: totals[REJECTED],
        "reject_reasons": reasons,
        "shards": max(count, 1),
        "resumed_shards": resumed,
    }
    manifest.update(extra(manifest) if extra else {})
    storage.write_text(storage.join(output_uri, "manifest.json"), json.dumps(manifest, indent=2, sort_keys=True))
    return manifest
