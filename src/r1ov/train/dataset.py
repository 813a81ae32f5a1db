"""Training data per rank: the records' text in an Arrow file on local disk, images read from their
shards and decoded on access.

A rank reads the dataset's shards one at a time, checks each record and writes the text columns
training needs, with each record's place in its shard, to an Arrow stream file that ``datasets``
memory-maps (``Dataset.from_file``). The image bytes are not copied then: writing them is the one
cost of that pass that grows with the data (20,000 small images are 240 MB). A shard's images are
copied to a local Arrow file, memory-mapped, the first time a batch draws one of its rows
(:class:`ShardImages`), so the copy is spread over the first epoch and time-to-first-step is the
text pass plus the shards the first batch touches. A remote shard is therefore read twice (the
pass and the first draw); local disk then holds the text and the images of the shards drawn so far,
resident memory one shard while it is copied and the pages a batch touches. Each rank writes its
own files, in a temporary folder (under ``TMPDIR``) removed with the data when training ends.

Nothing is decoded before step 1: a record is checked by its columns (a required one empty), its
image's header (corrupt bytes, a decompression bomb) and, for GRPO, its prompt's length from the
header's size and the question's tokens; the chat rows and the decoded images are built batch by
batch when the trainer's dataloader asks for them (``Dataset.with_transform``). Records set aside
are counted and logged with their reason.

An image that passes the header check but cannot be decoded fails the step that draws it, naming
the record: the import and formalize stages decode every image in full before a record is
accepted (``imaging.trainable_bytes``, ``formalize.stage``), so an accepted record whose pixels
are corrupt means the dataset was changed outside them. So does a shard whose row count changed
between the pass and the draw.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image, UnidentifiedImageError

from r1ov.data import imaging, records

logger = logging.getLogger(__name__)

# The record columns a training row is built from (the rest stay in the shards).
COLUMNS = ("id", "image", "image_uri", "question", "options", "answer", "reasoning", "metadata")
# Where a record's image bytes are: its shard's index and its row in that shard (-1: no bytes, the
# record names its image by ``image_uri``).
SHARD, ROW = "_shard", "_row"
TEXT_COLUMNS = tuple(name for name in COLUMNS if name != "image")
# Trainer fields the lazy dataset needs: the Trainer must not drop the record columns the
# transform builds rows from (with remove_unused_columns it keeps only its signature columns,
# which exist only after the transform).
TRAINER_FIELDS = {"remove_unused_columns": False}

# A stage's check of a shard's remaining records: one reason ("<code>: detail") or None per row.
Check = Callable[[list[dict[str, Any]], list[tuple[int, int]]], list[str | None]]
# A stage's training row from one record and its decoded image(s).
RowBuilder = Callable[[dict[str, Any], Image.Image], dict[str, Any]]


@dataclass
class TrainData:
    """The training rows (a memory-mapped ``datasets.Dataset`` built on access) and what was set aside."""

    rows: Any
    skipped: Counter[str] = field(default_factory=Counter)
    folder: Any = None  # the TemporaryDirectory holding the Arrow file, removed with this object

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


def header_size(data: bytes | None) -> tuple[int, int]:
    """(width, height) from the image's header alone (no pixels decoded); raises BadImage."""
    if not data:
        raise imaging.BadImage("corrupt image: zero bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:  # reads the header; pixels wait for load()
                width, height = image.size
    except Image.DecompressionBombError as exc:
        raise imaging.BadImage(f"decompression bomb: {exc}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, EOFError, ValueError) as exc:
        raise imaging.BadImage(f"corrupt image: {type(exc).__name__}: {exc}") from exc
    problem = _size_problem((width, height))
    if problem:
        raise imaging.BadImage(problem)
    return width, height


def _missing(table: pa.Table, required: tuple[str, ...]) -> list[str | None]:
    """Per row, why a required column is empty (as ``not record.get(name)``), from columnar operations."""
    empty = {name: pc.fill_null(pc.equal(pc.utf8_length(table.column(name)), 0), True).to_pylist() for name in required}
    reasons: list[str | None] = []
    for index in range(table.num_rows):
        missing = [name for name in required if empty[name][index]]
        reasons.append(f"missing_{missing[0]}: no {', '.join(missing)}" if missing else None)
    return reasons


# PNG: an 8-byte signature, then the IHDR chunk first (4-byte length, "IHDR", width and height as
# 4-byte big-endian integers at bytes 16-24): W3C PNG Specification (Third Edition), 5.2 "PNG
# signature", 5.6 "Chunk ordering" (IHDR shall be first) and 11.2.1 "IHDR Image header".
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG: the SOI marker then a marker segment (ITU-T T.81, B.1.1.3 and B.2.1: 0xFFD8, then 0xFF).
JPEG_START = b"\xff\xd8\xff"


def _starts_with(column: pa.ChunkedArray, offset: int, value: bytes) -> list[bool]:
    sliced = pc.binary_slice(column, offset, offset + len(value))
    return pc.fill_null(pc.equal(sliced, pa.scalar(value, pa.binary())), False).to_pylist()


def _image_sizes(images: pa.ChunkedArray, need_size: bool) -> list[tuple[int, int] | None]:
    """Per row, the image's (width, height) read from its header without decoding pixels, or None where
    the size is not needed and the bytes start as a JPEG does; raises nothing: a bad header is a
    BadImage in the list's place (see :func:`_shard_rows`).

    PNGs, which most records hold (the import stage re-encodes any other format than PNG and JPEG),
    are read column-wise (their size sits at a fixed offset); others open their header with PIL.
    """
    png = [
        a and b for a, b in zip(_starts_with(images, 0, PNG_SIGNATURE), _starts_with(images, 12, b"IHDR"), strict=True)
    ]
    png = [
        flag and length >= 24
        for flag, length in zip(png, pc.fill_null(pc.binary_length(images), 0).to_pylist(), strict=True)
    ]
    jpeg = _starts_with(images, 0, JPEG_START) if not need_size else [False] * len(images)
    dims = pc.binary_slice(images, 16, 24).to_pylist()
    sizes: list[Any] = []
    for index, (is_png, is_jpeg) in enumerate(zip(png, jpeg, strict=True)):
        if is_png:
            sizes.append((int.from_bytes(dims[index][:4], "big"), int.from_bytes(dims[index][4:], "big")))
        elif is_jpeg:
            sizes.append(None)
        else:
            try:
                sizes.append(header_size(images[index].as_py()))
            except imaging.BadImage as exc:
                sizes.append(exc)
    return sizes


def _size_problem(size: tuple[int, int]) -> str | None:
    width, height = size
    if width * height > imaging.DEFAULT_MAX_DECODE_PIXELS:
        return (
            f"decompression bomb: {width}x{height} pixels exceeds max_decode_pixels={imaging.DEFAULT_MAX_DECODE_PIXELS}"
        )
    if width == 0 or height == 0:
        return "corrupt image: zero width or height"
    return None


def _shard_rows(
    table: pa.Table, required: tuple[str, ...], check: Check | None, shard_index: int
) -> tuple[pa.Table, list[tuple[str, str]]]:
    """The text columns of one shard's rows that train, each with its place (SHARD, ROW), and
    (id, reason) for each row set aside."""
    table = table.select(list(COLUMNS))
    reasons = _missing(table, required)
    uris = table.column("image_uri")
    sizes = _image_sizes(table.column("image"), need_size=check is not None)
    has_bytes = pc.fill_null(pc.greater(pc.binary_length(table.column("image")), 0), False).to_pylist()
    candidates, candidate_sizes = [], []
    for index, size in enumerate(sizes):
        if reasons[index]:
            continue
        try:
            if not has_bytes[index] and uris[index].is_valid:
                if check is None:
                    continue  # an image by reference is fetched when its row is drawn, unless a check needs its size
                size = header_size(imaging.image_bytes({"image_uri": uris[index].as_py()}))
            elif not has_bytes[index] and table.column("image")[index].is_valid:
                raise imaging.BadImage("corrupt image: zero bytes")
            elif not has_bytes[index]:
                raise imaging.BadImage("record has neither image bytes nor image_uri")
            if isinstance(size, imaging.BadImage):
                raise size
            problem = _size_problem(size) if size is not None else None
            if problem:
                raise imaging.BadImage(problem)
        except imaging.BadImage as exc:
            reasons[index] = f"bad_image: {exc}"
            continue
        candidates.append(index)
        candidate_sizes.append(size)
    if check is not None and candidates:
        subset = table.take(candidates).drop_columns(["image"]).to_pylist()  # the text columns only
        for index, reason in zip(candidates, check(subset, candidate_sizes), strict=True):
            reasons[index] = reason
    ids = table.column("id").to_pylist()
    kept = [index for index, reason in enumerate(reasons) if reason is None]
    skipped = [(ids[index], reason) for index, reason in enumerate(reasons) if reason is not None]
    places = pa.array([index if has_bytes[index] else -1 for index in kept], pa.int32())
    text = table.select(list(TEXT_COLUMNS)).take(pa.array(kept, pa.int64()))
    text = text.append_column(SHARD, pa.array([shard_index] * len(kept), pa.int32())).append_column(ROW, places)
    return text, skipped


def build(uri: str, to_row: RowBuilder, required: tuple[str, ...], check: Check | None = None) -> TrainData:
    """The dataset's accepted records as lazily built training rows (see the module's docstring).

    A record is set aside with a warning and counted under its reason when it lacks a ``required``
    column (``missing_<column>``), its image's header is unreadable (``bad_image``) or ``check``
    gives a reason (its code). Nothing is dropped silently.
    """
    import datasets

    folder = tempfile.TemporaryDirectory(prefix="r1ov-train-data-")
    path = Path(folder.name) / "records.arrow"
    skipped: Counter[str] = Counter()
    kept_rows = 0
    schema = records.SCHEMA.empty_table().select(list(TEXT_COLUMNS)).schema
    schema = schema.append(pa.field(SHARD, pa.int32())).append(pa.field(ROW, pa.int32()))
    shards = records.shard_uris(uri)
    # datasets reads an Arrow *stream* file (datasets/table.py, _memory_mapped_record_batch_reader_from_file)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for shard_index, shard in enumerate(shards):
            kept, set_aside = _shard_rows(records.read_shard_table(shard), required, check, shard_index)
            writer.write_table(kept)
            kept_rows += kept.num_rows
            for record_id, reason in set_aside:
                logger.warning("skipping record %s: %s", record_id, reason)
                skipped[reason.split(":", 1)[0]] += 1
    logger.info("%d training examples from %s (%d skipped)", kept_rows, uri, sum(skipped.values()))
    if not kept_rows:
        raise ValueError(f"no usable training records in {uri} (skipped: {dict(skipped) or 'none'})")
    dataset = datasets.Dataset.from_file(str(path), in_memory=False)
    images = ShardImages(shards, Path(folder.name))
    return TrainData(rows=dataset.with_transform(rows_on_access(to_row, images)), skipped=skipped, folder=folder)


class ShardImages:
    """Image bytes by (shard, row), each shard's image column copied to a memory-mapped local Arrow
    file the first time one of its rows is drawn.

    The copy is written under a temporary name and renamed, so dataloader workers (forked, each
    with its own instance) that draw from the same shard at once both end with a whole file.
    """

    def __init__(self, shards: list[str], folder: Path) -> None:
        self.shards = shards
        self.folder = folder
        self._columns: dict[int, pa.ChunkedArray] = {}

    def get(self, shard_index: int, row: int) -> bytes | None:
        if row < 0:
            return None
        column = self._columns.get(shard_index)
        if column is None:
            column = self._columns[shard_index] = self._load(shard_index)
        if row >= len(column):
            raise RuntimeError(
                f"shard {self.shards[shard_index]} has {len(column)} rows, fewer than when training began "
                "(the dataset was changed outside the pipeline's stages)"
            )
        return column[row].as_py()

    def _load(self, shard_index: int) -> pa.ChunkedArray:
        path = self.folder / f"images-{shard_index:05d}.arrow"
        if not path.exists():
            column = records.read_shard_table(self.shards[shard_index]).select(["image"])
            partial = path.with_suffix(f".{os.getpid()}.partial")
            with pa.OSFile(str(partial), "wb") as sink, pa.ipc.new_file(sink, column.schema) as writer:
                writer.write_table(column)
            os.replace(partial, path)
        # zero-copy: the column's buffers point into the mapped file
        return pa.ipc.open_file(pa.memory_map(str(path))).read_all().column("image")


def decode_image(record: dict[str, Any]) -> Image.Image:
    """The record's image as the trainer saw it when rows held ``datasets.Image`` cells: that
    feature's own decode of the stored bytes (the processor converts the mode)."""
    import datasets

    try:
        data = imaging.image_bytes(record)
        return datasets.Image().decode_example({"bytes": data, "path": None})
    except (imaging.BadImage, UnidentifiedImageError, OSError, SyntaxError, EOFError, ValueError) as exc:
        raise RuntimeError(
            f"record {record.get('id')}: its image passed the header check but cannot be decoded ({exc}); "
            "accepted records come from stages that decode every image, so the dataset was changed outside them"
        ) from exc


def rows_on_access(to_row: RowBuilder, images: ShardImages) -> Callable[[dict[str, list[Any]]], dict[str, list[Any]]]:
    """The ``with_transform`` function: a batch of record columns -> a batch of training rows."""

    def transform(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        names = [name for name in batch if name not in (SHARD, ROW)]
        built = []
        for index, values in enumerate(zip(*(batch[name] for name in names), strict=True)):
            record = dict(zip(names, values, strict=True))
            record["image"] = images.get(batch[SHARD][index], batch[ROW][index])
            built.append(to_row(record, decode_image(record)))
        return {key: [row[key] for row in built] for key in built[0]} if built else {}

    return transform
