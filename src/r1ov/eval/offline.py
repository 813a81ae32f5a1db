"""Scoring predictions made elsewhere, and comparing two score files: ``r1ov eval score|compare``.

A predictions file is JSONL, one ``{"id": ..., "response": ...}`` per line, from any model or
tool. An id is the benchmark's own (MathVista's ``pid``, MathVerse's ``sample_index``, ...)
or our record id (``mathvista/12``). Nothing is generated: each response goes through the
same extraction and answer core as ``r1ov eval``, and the score file holds the summary
(accuracy in [0, 1] with 95% intervals, by category and level) and every item's verdict;
the verdicts also go beside it as JSONL, one line per item.

User mistakes (unknown benchmark, unreadable file, a line without an id, ids the benchmark
does not have, items without a prediction) raise :class:`ScoreError` with one line saying
what to fix; the CLI prints it and exits non-zero.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from r1ov.config import BenchmarkSpec
from r1ov.data.records import metadata
from r1ov.eval import benchmarks, judge, llm_extract, manifest
from r1ov.eval.chat import EndpointSettings
from r1ov.eval.score import score_row, summarize
from r1ov.scoring import paired

log = logging.getLogger(__name__)

MISSING_POLICIES = ("error", "wrong", "skip")


class ScoreError(ValueError):
    """A mistake in what was asked (names, files, ids): one line, no traceback."""


def read_predictions(path: str) -> dict[str, str]:
    """``id -> response`` from a JSONL file; ``response`` may also be called ``prediction``/``completion``."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ScoreError(f"cannot read predictions {path}: {exc.strerror or exc}") from exc
    predictions: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ScoreError(f"{path}:{number}: not JSON ({exc.msg})") from exc
        if not isinstance(item, dict) or item.get("id") in (None, ""):
            raise ScoreError(f'{path}:{number}: each line needs an "id" and a "response"')
        response = next((item[k] for k in ("response", "prediction", "completion") if k in item), None)
        if response is not None and not isinstance(response, str):
            raise ScoreError(f'{path}:{number}: "response" must be a string')
        key = str(item["id"])
        if key in predictions:
            raise ScoreError(f"{path}:{number}: id {key!r} appears twice")
        predictions[key] = response or ""
    if not predictions:
        raise ScoreError(f"{path}: no predictions")
    return predictions


def _load(benchmark: str, data: str) -> benchmarks.Loaded:
    try:
        return benchmarks.load(BenchmarkSpec(name=benchmark, uri=data))
    except (OSError, ValueError, KeyError) as exc:
        raise ScoreError(f"cannot read {benchmark} data {data}: {exc}") from exc


def _few(ids: list[str]) -> str:
    return ", ".join(repr(i) for i in ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")


def _match(loaded: benchmarks.Loaded, predictions: dict[str, str], missing: str) -> list[tuple[dict, str | None]]:
    """Each item with its response; ids resolve as the record id or the benchmark's own id.

    Items the loader set aside (no gold, say) are still the benchmark's: a prediction for
    one is no stranger, and the item stays in the denominator, scored wrong with its reason.
    """
    by_key: dict[str, dict[str, Any]] = {}
    for record in [*loaded.records, *loaded.rejected]:
        by_key[record["id"]] = record
        own = metadata(record).get("benchmark_id")
        if own is not None:
            by_key.setdefault(str(own), record)
    unknown = [key for key in predictions if key not in by_key]
    if unknown:
        raise ScoreError(f"{len(unknown)} prediction id(s) not in the benchmark data: {_few(unknown)}")
    answered = {by_key[key]["id"]: response for key, response in predictions.items()}
    pairs = [(record, answered.get(record["id"])) for record in [*loaded.records, *loaded.rejected]]
    unanswered = [metadata(r).get("benchmark_id") or r["id"] for r, response in pairs if response is None]
    if unanswered and missing == "error":
        raise ScoreError(
            f"{len(unanswered)} item(s) have no prediction: {_few([str(u) for u in unanswered])} "
            "(--missing wrong scores them wrong, --missing skip leaves them out)"
        )
    if missing == "skip":
        pairs = [(r, response) for r, response in pairs if response is not None]
    return pairs


def _row(label: str, record: dict[str, Any], response: str | None) -> dict[str, Any]:
    meta = metadata(record)
    return {
        "id": record["id"],
        "benchmark_id": meta.get("benchmark_id"),
        "benchmark": label,
        "question": record.get("question"),
        "options": list(record.get("options") or []),
        "answer": record.get("answer"),
        "completion": response,
        "error": _error(record, response),
        "finish_reason": None,
        "category": None if meta.get("category") is None else str(meta["category"]),
        "level": None if meta.get("level") is None else str(meta["level"]),
        "metadata": record.get("metadata"),
    }


def _error(record: dict[str, Any], response: str | None) -> str | None:
    if record.get("reject_reason"):
        return f"set_aside: {record['reject_reason']}"  # unscorable, yet counted: wrong
    return None if response is not None else "no_prediction"


def _group(stats: dict[str, Any]) -> dict[str, Any]:
    low, high = stats.get("accuracy_ci95_low", math.nan), stats.get("accuracy_ci95_high", math.nan)
    return {
        "accuracy": stats["accuracy"],
        "n": stats["n"],
        "correct": stats["correct"],
        "ci95": [low, high],
    }


def score_predictions(
    benchmark: str,
    data: str,
    predictions_path: str,
    out: str,
    *,
    missing: str = "error",
    bootstrap_samples: int = 2000,
    seed: int = 0,
    judge_settings: EndpointSettings | None = None,
    extractor_settings: EndpointSettings | None = None,
) -> dict[str, Any]:
    """Score a predictions file against ``benchmark`` read from ``data``; writes ``out`` and its verdicts.

    With ``judge_settings`` an LLM judge also grades every item; its verdicts sit beside the
    rules' (``judge``), with its accuracy and agreement in the summary. The rules' numbers
    are the score either way. With ``extractor_settings`` an LLM reads the answer of the items
    no rule found one in (``llm_extract``), scored by the same matcher; its use is counted
    (``extractor``) and its model, endpoint and prompt hash go into the manifest.
    """
    if missing not in MISSING_POLICIES:
        raise ScoreError(f"--missing must be one of {', '.join(MISSING_POLICIES)}, got {missing!r}")
    if benchmark not in benchmarks.LOADERS:
        raise ScoreError(f"unknown benchmark {benchmark!r}; choose from {', '.join(sorted(benchmarks.LOADERS))}")
    predictions = read_predictions(predictions_path)
    loaded = _load(benchmark, data)
    if not loaded.records:
        raise ScoreError(f"{data}: no scorable {benchmark} items ({len(loaded.rejected)} set aside)")
    pairs = _match(loaded, predictions, missing)
    rows = [score_row(_row(loaded.label, record, response)) for record, response in pairs]
    extracted = None if extractor_settings is None else llm_extract.fill(rows, extractor_settings)
    summary = summarize(rows, bootstrap_samples, seed)
    stats = summary["benchmarks"][loaded.label]
    overall = _group(stats) | {
        "format_rate": stats["format_rate"],
        "extraction_rate": stats["extraction_rate"],
        "no_prediction": sum(r["error"] == "no_prediction" for r in rows),
        "set_aside_scored_wrong": sum(str(r["error"]).startswith("set_aside") for r in rows),
    }
    verdicts = [
        {
            "id": r["id"],
            "benchmark_id": r["benchmark_id"],
            "correct": r["correct"],
            "extracted": r["extracted"],
            "rule": r["rule"],
            "answer": r["answer"],
            "category": r["category"],
            "level": r["level"],
        }
        for r in rows
    ]
    judged = None
    if judge_settings is not None:
        judged = judge.judge(rows, judge_settings)
        for verdict, decision in zip(verdicts, judged, strict=True):
            verdict["judge"] = decision
    result = {
        "benchmark": benchmark,
        "data": data,
        "predictions": predictions_path,
        "overall": overall,
        "by_category": {k: _group(v) for k, v in stats["categories"].items()},
        "by_level": {k: _group(v) for k, v in stats["levels"].items()},
        "extra": stats.get("extra", {}),
        "rules": summary["rules"],
        "extractor": extracted,
        "judge": None if judged is None else judge.summarize(rows, judged),
        "set_aside": [{"id": r["id"], "reason": r["reject_reason"]} for r in loaded.rejected],
        "verdicts": {v["id"]: v["correct"] for v in verdicts},
    }
    made = Path(predictions_path)
    result["manifest"] = manifest.build(
        # The predictions are the model here: scored as given, their prompt and sampling unknown.
        model=f"predictions {made.name} sha256:{manifest.sha256(made.read_bytes())}",
        benchmarks=[
            manifest.benchmark_entry(benchmark, loaded.label, data, len(loaded.records) + len(loaded.rejected))
        ],
        prompt_template=None,
        sampling=None,
        max_pixels=None,
        judge=None if judge_settings is None else {"model": judge_settings.model, "endpoint": judge_settings.base_url},
        llm_extractor=None if extractor_settings is None else llm_extract.manifest_entry(extractor_settings),
    )
    _write(out, result, verdicts)
    return result


def _write(out: str, result: dict[str, Any], verdicts: list[dict[str, Any]]) -> None:
    path = Path(out)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_finite(result), indent=2) + "\n", encoding="utf-8")
        beside = path.with_name(path.stem + ".verdicts.jsonl")
        beside.write_text("".join(json.dumps(v) + "\n" for v in verdicts), encoding="utf-8")
        path.with_name(path.stem + ".manifest.json").write_bytes(manifest.to_json(result["manifest"]))
    except OSError as exc:
        raise ScoreError(f"cannot write {out}: {exc.strerror or exc}") from exc


def _finite(value: Any) -> Any:
    """NaN (no items, no bootstrap) becomes null: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def read_verdicts(path: str) -> dict[str, bool]:
    """The ``verdicts`` of a score file written by :func:`score_predictions`."""
    return {str(k): bool(v) for k, v in _read_score(path)["verdicts"].items()}


def _read_score(path: str) -> dict[str, Any]:
    try:
        loaded = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ScoreError(f"cannot read score file {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ScoreError(f"{path}: not a score file (not JSON: {exc.msg})") from exc
    verdicts = loaded.get("verdicts") if isinstance(loaded, dict) else None
    if not isinstance(verdicts, dict) or not verdicts:
        raise ScoreError(f"{path}: not a score file from `r1ov eval score` (no verdicts)")
    return loaded


def compare_files(
    a: str, b: str, samples: int = 2000, seed: int = 0, allow_manifest_mismatch: bool = False
) -> dict[str, Any]:
    """Paired comparison (McNemar exact, paired bootstrap) of two score files on their shared items.

    Refused when their manifests differ in anything but the model (another benchmark file,
    extractor version, judge, code ...): such scores differ for reasons besides the models.
    ``allow_manifest_mismatch`` compares anyway, with the differences in the result and a warning.
    """
    score_a, score_b = _read_score(a), _read_score(b)
    mismatch = _manifest_mismatch(a, score_a, b, score_b)
    if mismatch and not allow_manifest_mismatch:
        raise ScoreError(
            f"{a} and {b} were scored under different conditions ({', '.join(mismatch)}): "
            "their difference is not the models' alone (--allow-manifest-mismatch compares anyway)"
        )
    if mismatch:
        log.warning("MANIFESTS DIFFER (%s): the comparison mixes models with scoring conditions", ", ".join(mismatch))
    try:
        result = paired.compare(read_verdicts(a), read_verdicts(b), samples=samples, seed=seed)
    except ValueError as exc:
        if isinstance(exc, ScoreError):
            raise
        raise ScoreError(str(exc)) from exc
    return {"a": a, "b": b, **result.to_dict(), "manifest_differences": mismatch}


def _manifest_mismatch(a: str, score_a: dict[str, Any], b: str, score_b: dict[str, Any]) -> list[str]:
    """Where the two manifests differ; a file without one (older r1ov) is named as such."""
    missing = [p for p, s in ((a, score_a), (b, score_b)) if not isinstance(s.get("manifest"), dict)]
    if missing:
        return [f"no manifest in {p}" for p in missing]
    return manifest.differences(score_a["manifest"], score_b["manifest"])
