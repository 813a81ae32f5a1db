"""The eval manifest: everything a score depends on besides the model, written beside it.

"My score doesn't match the reported one" is the first question in these benchmarks' issue
trackers; the answer is nearly always a different prompt, sampling setting, image size,
benchmark file, extraction rule or judge. ``r1ov eval`` writes ``manifest.json`` beside
``metrics.json`` (and logs it to MLflow), ``r1ov eval score`` writes ``<out>.manifest.json``
beside its score file and embeds it, and ``r1ov eval compare`` refuses two scores whose
manifests differ in anything but the model (:func:`differences`).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import r1ov
from r1ov.data import storage
from r1ov.eval.benchmarks._io import SUFFIXES
from r1ov.eval.extract import RULES, RULES_VERSION
from r1ov.scoring.reasoning import INSTRUCTION

MANIFEST = "manifest.json"
# Keys that name what is being compared, not the conditions it was measured under.
MODEL_KEYS = ("model",)
# The prompt as sent: the system instruction, then the image and the user turn that
# reasoning.format_question builds.
PROMPT_TEMPLATE = f"system: {INSTRUCTION}\nuser: <image>{{question}}\nOptions:\n({{letter}}) {{option}}"


def sha256(data: bytes | str) -> str:
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def benchmark_files(uri: str) -> dict[str, str]:
    """sha256 of every file the loader reads for ``uri`` (one file, or the supported files in a folder)."""
    try:
        files = [uri] if uri.endswith(SUFFIXES) else [f for f in storage.list_files(uri) if f.endswith(SUFFIXES)]
        return {Path(f).name: sha256(storage.read_bytes(f)) for f in files}
    except (OSError, FileNotFoundError):
        return {}  # a record-schema dataset in shards: its manifest entry has the item count only


def benchmark_entry(name: str, label: str, uri: str, items: int, limit: int | None = None) -> dict[str, Any]:
    """One benchmark as the manifest lists it: what was read, and how many items it has."""
    return {"name": name, "label": label, "uri": uri, "files": benchmark_files(uri), "items": items, "limit": limit}


@lru_cache(maxsize=1)
def code_version() -> dict[str, str | None]:
    """The package version and, from a git checkout, its commit (None elsewhere, e.g. an image)."""
    commit = None
    try:
        done = subprocess.run(
            ["git", "-C", str(Path(r1ov.__file__).parent), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        commit = done.stdout.strip() or None if done.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"r1ov": r1ov.__version__, "commit": commit}


def build(
    *,
    model: str,
    benchmarks: list[dict[str, Any]],
    prompt_template: str | None,
    sampling: dict[str, Any] | None,
    max_pixels: int | None,
    judge: dict[str, Any] | None,
    llm_extractor: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One manifest. ``benchmarks``: name, label, uri, files (name -> sha256), items (published count).

    ``llm_extractor``: the LLM extractor's model, endpoint and prompt hash, None when off.
    ``prompt_template``/``sampling``/``max_pixels`` are None for predictions scored as given
    (``eval score``): they were made elsewhere, and the manifest says so rather than guess.
    """
    return {
        "model": model,
        "prompt": None if prompt_template is None else {"template": prompt_template, "sha256": sha256(prompt_template)},
        "sampling": sampling,
        "max_pixels": max_pixels,
        "benchmarks": benchmarks,
        # The LLM extractor (model, endpoint, prompt hash) is part of the extractor: items it
        # reads are scored, so another extractor is another score.
        "extractor": {"rules_version": RULES_VERSION, "rules": list(RULES), "llm": llm_extractor},
        "judge": judge,
        "code": code_version(),
    }


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Dotted names of the fields where two manifests differ, the model aside."""
    found: list[str] = []

    def walk(x: Any, y: Any, where: str) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            for key in sorted(set(x) | set(y)):
                if not where and key in MODEL_KEYS:
                    continue
                walk(x.get(key), y.get(key), f"{where}.{key}" if where else key)
        elif x != y:
            found.append(where)

    walk(a, b, "")
    return found


def to_json(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
