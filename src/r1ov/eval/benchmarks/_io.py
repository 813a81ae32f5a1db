"""Reading benchmark files in their published layouts: Parquet, TSV (base64 images), JSON, JSONL.

Loaders turn each row into a record; these helpers do the parts every benchmark shares:
reading rows, turning an image cell (HF ``{"bytes", "path"}`` struct, raw bytes, base64
text, or a path beside the file) into record image fields, and splitting option lists that
arrive as lists, dicts, Python literals or lettered strings (``"A. 3;B. 4"``).
"""

from __future__ import annotations

import ast
import base64
import binascii
import csv
import io
import json
import math
import posixpath
import re
from typing import Any

from r1ov.data import storage
from r1ov.data.records import new_record, read_parquet, reject

SUFFIXES = (".parquet", ".tsv", ".jsonl", ".json")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff")
# An option marker: "A.", "A:", "(A)", "A)" at the start or after a separator; full-width
# forms too (We-Math ``2steps_59`` writes "A．" with U+FF0E).
_MARKER = re.compile(r"(?:^|(?<=[\s;,；，]))[(（]?([A-Z])[)）]?\s*[.:：．)）]\s*")
_IMAGE_TAG = re.compile(r"\s*<image\d*>\s*")
_LETTERED = re.compile(r"^[(（]?([A-Z])[)）]?\s*[.:：．)）]\s*(.*)$", re.DOTALL)
# What a question that is only its image asks (MathVerse Vision Only rows, MATH-V item 528,
# whose question is just "<image1>"): the item stays, its text is in the image.
IN_IMAGE = "Answer the question shown in the image."


def base_dir(uri: str) -> str:
    """Where relative image paths resolve: the file's directory, or ``uri`` itself for a directory."""
    if not uri.endswith(SUFFIXES):
        return uri.rstrip("/")
    if storage.is_remote(uri):
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://{posixpath.dirname(rest.rstrip('/'))}"
    return str(storage.local_path(uri).parent)


def read_rows(uri: str) -> list[dict[str, Any]]:
    """All rows of a benchmark file, or of every supported file directly inside a directory."""
    if not uri.endswith(SUFFIXES):
        files = [f for f in storage.list_files(uri) if f.endswith(SUFFIXES)]
        if not files:
            raise FileNotFoundError(f"{uri}: no {'/'.join(SUFFIXES)} file found")
        return [row for f in files for row in read_rows(f)]
    if uri.endswith(".parquet"):
        return read_parquet(uri).to_pylist()  # native file, in this thread (see read_parquet)
    data = storage.read_bytes(uri)
    if uri.endswith(".tsv"):
        return _read_tsv(data.decode("utf-8"))
    if uri.endswith(".jsonl"):
        return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    loaded = json.loads(data)
    if isinstance(loaded, dict):
        # MathVista's annotation file is keyed by problem id.
        return [{"_key": key, **value} for key, value in loaded.items()]
    return list(loaded)


def _read_tsv(text: str) -> list[dict[str, Any]]:
    # Base64 images make single cells far larger than csv's 128 KiB default.
    csv.field_size_limit(2**31 - 1)
    return list(csv.DictReader(io.StringIO(text, newline=""), delimiter="\t"))


def resolve_image_refs(rows: list[dict[str, Any]], key: str = "image", index: str = "index") -> None:
    """VLMEvalKit TSVs store a repeated image once; other rows hold the index of that row."""
    by_index = {str(r.get(index)): r.get(key) for r in rows}
    for row in rows:
        value = row.get(key)
        if isinstance(value, str) and value.isdigit() and len(value) < 16 and value in by_index:
            row[key] = by_index[value]


def image_fields(value: Any, root: str) -> dict[str, Any]:
    """``{"image": bytes}`` or ``{"image_uri": uri}`` for one image cell; ``{}`` when empty.

    Undecodable base64 is kept as raw bytes, so the item reaches generation and fails there
    with a ``bad_image`` reason instead of vanishing.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return {}
    if isinstance(value, dict):
        if value.get("bytes"):
            return {"image": bytes(value["bytes"])}
        return image_fields(value.get("path"), root)
    if isinstance(value, bytes | bytearray):
        return {"image": bytes(value)} if value else {}
    if isinstance(value, list):
        return image_fields(value[0], root) if value else {}
    text = str(value).strip()
    if not text:
        return {}
    if text.lower().endswith(_IMAGE_SUFFIXES) and len(text) < 1024:
        if "://" in text or text.startswith("/"):
            return {"image_uri": text}
        return {"image_uri": storage.join(root, text)}
    try:
        return {"image": base64.b64decode(text, validate=True)}
    except (binascii.Error, ValueError):
        return {"image": text.encode("utf-8")}


def parse_options(value: Any) -> list[str]:
    """Option texts without letters, from any of the shapes benchmarks publish."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if isinstance(value, dict):
        return [str(value[k]).strip() for k in sorted(value)]
    if isinstance(value, list | tuple) or hasattr(value, "tolist"):
        items = [str(v).strip() for v in (value.tolist() if hasattr(value, "tolist") else value)]
        return _strip_letters(items)
    text = str(value).strip()
    if not text:
        return []
    if text[0] in "[{(":
        for parse in (json.loads, ast.literal_eval):
            try:
                parsed = parse(text)
            except (ValueError, SyntaxError, TypeError):
                continue
            if isinstance(parsed, list | tuple | dict):
                return parse_options(parsed)
    return split_lettered(text)


def split_lettered(text: str) -> list[str]:
    """``"A. 200.96;B. 3215.36; C. 6280"`` -> ``["200.96", "3215.36", "6280"]``.

    Only markers in sequence (A, then B, ...) count, so a capital letter inside an option
    ("point A. lies on ...") does not split it; of several "A" markers before "B", the
    last one starts the list (a preamble may mention point A).
    """
    starts: list[tuple[int, int]] = []
    for match in _MARKER.finditer(text):
        if match.group(1) == chr(ord("A") + len(starts)):
            starts.append((match.start(), match.end()))
        elif match.group(1) == "A" and len(starts) == 1:
            starts[0] = (match.start(), match.end())
    if not starts:
        return []
    ends = [s for s, _ in starts[1:]] + [len(text)]
    return [text[body:end].strip().rstrip(";,；，").strip() for (_, body), end in zip(starts, ends, strict=True)]


def _strip_letters(items: list[str]) -> list[str]:
    # ["A. 3", "B. 4"] -> ["3", "4"], only when every item carries its own letter in order.
    stripped = []
    for i, item in enumerate(items):
        match = _LETTERED.match(item)
        if not match or match.group(1) != chr(ord("A") + i):
            return items
        stripped.append(match.group(2).strip())
    return stripped


def without_image_tags(question: str) -> str:
    """``"<image1> Which shape ...?"`` -> ``"Which shape ...?"``: the image travels beside the text."""
    return _IMAGE_TAG.sub(" ", question).strip()


def text(value: Any) -> str:
    """A cell as text ('' for missing values), integral floats without '.0'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def plain(value: Any) -> Any:
    """A cell made JSON-serialisable for record metadata."""
    if isinstance(value, bytes | bytearray):
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def option_columns(row: dict[str, Any]) -> list[str]:
    """Options spread over columns ``A``, ``B``, ... (VLMEvalKit's multiple-choice TSVs)."""
    options = []
    for letter in "ABCDEFGH":
        value = text(row.get(letter))
        if not value:
            break
        options.append(value)
    return options


def first(row: dict[str, Any], *keys: str) -> Any:
    """The first present, non-empty value among ``keys`` (layouts name the same field differently)."""
    for key in keys:
        value = row.get(key)
        if value is not None and not (isinstance(value, float) and math.isnan(value)) and value != "":
            return value
    return None


def to_record(
    benchmark: str,
    *,
    question: str,
    answer: str,
    options: list[str],
    image: dict[str, Any],
    metadata: dict[str, Any],
    image_type: str = "math",
) -> dict[str, Any]:
    """One benchmark item as a record; items that cannot be scored carry a ``reject_reason``."""
    record = new_record(
        source=benchmark,
        question=question,
        image_type=image_type,
        options=options,
        answer=answer or None,
        metadata={k: plain(v) for k, v in metadata.items()},
        **image,
    )
    # The benchmark's own id names the item (prediction files use it); content hashes collide
    # where a benchmark asks one question in several versions over the same image (MathVerse).
    if metadata.get("benchmark_id"):
        record["id"] = f"{benchmark}/{metadata['benchmark_id']}"
    if not question:
        reject(record, f"no_question: {benchmark} item {metadata.get('benchmark_id')} has no question")
    elif not answer:
        reject(record, f"no_answer: {benchmark} item {metadata.get('benchmark_id')} has no ground-truth answer")
    return record
