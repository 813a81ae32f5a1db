"""Checks on a stage's inputs before it starts, so a wrong path is one clear line, not a traceback.

A dataset is a folder (local or ``s3://``) holding ``records/part-*.parquet`` (the record
schema, :mod:`r1ov.data.records`). A model is a Hugging Face id (``org/name``) or a local
``save_pretrained`` directory; a local path that does not exist fails here at once instead of
after minutes of retries against the Hub.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from r1ov.data import storage
from r1ov.data.records import RECORDS
from r1ov.errors import UserError

DATASET_FIELDS = ("input_uri", "train_uri")  # config fields that name a dataset a stage reads
EXPECTED = f"a dataset folder with {RECORDS}/part-*.parquet (r1ov synth or an earlier stage writes one)"


def _what_is_there(uri: str) -> str:
    if not storage.exists(uri):
        return "nothing there (no such path or bucket)"
    try:
        files = storage.list_files(uri)
    except (OSError, NotADirectoryError):
        return "a file, not a folder"
    if not files:
        return "an empty folder"
    kinds = Counter(Path(f).suffix.lower() or "(no suffix)" for f in files)
    shown = ", ".join(f"{n} {suffix}" for suffix, n in kinds.most_common(4))
    return f"{len(files)} files ({shown}) but no {RECORDS}/*.parquet"


def check_dataset(uri: str, field: str) -> None:
    """Raise :class:`UserError` unless ``uri`` holds record shards."""
    try:
        if storage.list_files(storage.join(uri, RECORDS), ".parquet"):
            return
    except (OSError, NotADirectoryError):
        pass
    raise UserError(f"{field} {uri}: found {_what_is_there(uri)}; expected {EXPECTED}")


def looks_local(name: str) -> bool:
    """A model name that can only be a local path (a Hub id is ``org/name``, nothing more)."""
    return (
        name.startswith(("/", "./", "../", "~", "file://"))
        or name.count("/") > 1
        or (os.sep in name and Path(name.split(os.sep)[0]).exists())
    )


def check_model(name: str, field: str = "model_name_or_path") -> None:
    if storage.is_remote(name) or not looks_local(name):
        return
    path = Path(name.removeprefix("file://")).expanduser()
    if not path.is_dir():
        raise UserError(
            f"{field} {name}: no such local directory; give a save_pretrained folder or a Hub id (org/name)"
        )
    if not (path / "config.json").is_file():
        raise UserError(f"{field} {name}: the folder has no config.json; it is not a save_pretrained model directory")


def check(stage: str, config: Any) -> None:
    """Every input check that applies to ``stage``'s config."""
    for field in DATASET_FIELDS:
        uri = getattr(config, field, None)
        if isinstance(uri, str) and uri:
            check_dataset(uri, f"{stage}.{field}")
    model = getattr(config, "model_name_or_path", None)
    if isinstance(model, str) and model and not (stage == "eval" and config.backend == "openai"):
        check_model(model, f"{stage}.model_name_or_path")


def check_output(stage: str, config: Any, summary: dict[str, Any]) -> None:
    """A data stage that accepted nothing fails loudly, quoting the first reason it rejected a record."""
    if summary.get("records") != 0 or not summary.get("rejected"):
        return
    from r1ov.data.records import REJECTED, read_table

    first = "unknown"
    output = getattr(config, "output_uri", None)
    if output:
        reasons = read_table(output, REJECTED).column("reject_reason").to_pylist()
        first = next((r for r in reasons if r), first)
    raise UserError(f"every one of {summary['rejected']} records was rejected; the first: {first}")
