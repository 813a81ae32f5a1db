"""Evaluation: benchmarks in, predictions, metrics.json and report.html out.

    r1ov eval --config recipe.yaml --set backend=openai --set base_url=http://endpoint/v1

``run`` loads each benchmark (``benchmarks.LOADERS``), asks the model with the chosen
backend (``generate.BACKENDS``), extracts and scores answers (``extract``, ``score``) and
writes the outputs (``report``). An item whose image cannot be read is a failed generation
with a ``bad_image`` reason and counts as wrong; items without a question or a ground truth
are listed in rejected.jsonl with their reason. Nothing stops the run but a broken config.

May import ``r1ov.registry`` (tracking), ``r1ov.data``, ``r1ov.scoring``, ``r1ov.teachers``
(the judge's client), ``r1ov.config``, ``r1ov.errors``.
"""

from __future__ import annotations

import logging
from typing import Any

from r1ov.config import EndpointConfig, EvalConfig
from r1ov.data import storage
from r1ov.data.imaging import BadImage, load_image
from r1ov.data.records import metadata
from r1ov.eval import benchmarks, generate, judge, llm_extract, manifest, report, score
from r1ov.eval.chat import EndpointSettings
from r1ov.eval.generate import Generation, Prompt
from r1ov.scoring.reasoning import format_question

log = logging.getLogger(__name__)

__all__ = ["run"]


def _prompt(record: dict[str, Any], max_pixels: int) -> Prompt:
    """The question as asked; raises BadImage for an unreadable image."""
    meta = metadata(record)
    options = None if meta.get("options_in_question") else record.get("options")
    image = None if meta.get("text_only") else load_image(record, max_pixels)
    return Prompt(record["id"], format_question(record["question"], options), image)


def _generate(cfg: EvalConfig, items: list[tuple[str, dict[str, Any]]]) -> list[Generation]:
    """One generation per item, in order; bad images fail here without reaching the model."""
    generations: list[Generation | None] = [None] * len(items)
    prompts: list[tuple[int, Prompt]] = []
    for index, (_, record) in enumerate(items):
        try:
            prompts.append((index, _prompt(record, cfg.max_pixels)))
        except BadImage as exc:
            generations[index] = Generation(None, f"bad_image: {exc}")
    if prompts:
        outputs = generate.build(cfg).generate([p for _, p in prompts])
        if len(outputs) != len(prompts):
            raise RuntimeError(f"backend {cfg.backend} returned {len(outputs)} generations for {len(prompts)} prompts")
        for (index, _), output in zip(prompts, outputs, strict=True):
            generations[index] = output
    return [g for g in generations if g is not None]


def _row(label: str, record: dict[str, Any], generation: Generation) -> dict[str, Any]:
    meta = metadata(record)
    return {
        "id": record["id"],
        "benchmark": label,
        "question": record["question"],
        "options": list(record.get("options") or []),
        "answer": record.get("answer"),
        "completion": generation.completion,
        "error": generation.error,
        "finish_reason": generation.finish_reason,
        "category": None if meta.get("category") is None else str(meta["category"]),
        "level": None if meta.get("level") is None else str(meta["level"]),
        "metadata": record.get("metadata"),
    }


def _settings(cfg: EvalConfig, endpoint: EndpointConfig) -> EndpointSettings:
    return EndpointSettings(
        endpoint.base_url, endpoint.model, endpoint.api_key_env, endpoint.max_concurrency, cfg.request_timeout_s,
        endpoint.max_retries,
    )  # fmt: skip


def _judge(cfg: EvalConfig, rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """The LLM judge's verdicts beside the rules': per row, and its accuracy and agreement as metrics."""
    assert cfg.judge is not None
    verdicts = judge.judge(rows, _settings(cfg, cfg.judge))
    for row, verdict in zip(rows, verdicts, strict=True):
        row["judge"] = verdict
    summary["judge"] = judge.summarize(rows, verdicts)
    for key in ("accuracy", "agreement_with_rules", "n", "failed"):
        if summary["judge"][key] is not None:
            summary["metrics"][f"judge/{key}"] = float(summary["judge"][key])


def run(cfg: EvalConfig) -> dict[str, Any]:
    """Evaluate ``cfg.model_name_or_path`` on ``cfg.benchmarks``; returns the metrics summary."""
    loaded = [benchmarks.load(spec) for spec in cfg.benchmarks]
    labels = [b.label for b in loaded]
    if len(set(labels)) != len(labels):
        raise ValueError(f"benchmark labels must be unique, got {labels}; set label on repeated benchmarks")
    items = [(b.label, record) for b in loaded for record in b.records]
    rejected = [
        {
            "id": r["id"],
            "benchmark": b.label,
            "benchmark_id": metadata(r).get("benchmark_id"),
            "reason": r["reject_reason"],
        }
        for b in loaded
        for r in b.rejected
    ]
    log.info("evaluating %s on %d items (%d set aside)", cfg.model_name_or_path, len(items), len(rejected))

    generations = _generate(cfg, items)
    rows = [score.score_row(_row(label, record, g)) for (label, record), g in zip(items, generations, strict=True)]
    extractor = _settings(cfg, cfg.extractor) if cfg.extractor is not None else None
    # Before the summary: the items the LLM reads count under their rule, "llm".
    extracted = llm_extract.fill(rows, extractor) if extractor is not None else None
    summary = score.summarize(rows, cfg.bootstrap_samples, cfg.seed)
    score.add_extractor_counts(summary, extracted)
    if cfg.judge is not None:
        _judge(cfg, rows, summary)
    summary.update(
        model=cfg.model_name_or_path,
        backend=cfg.backend,
        n_items=len(rows),
        rejected={b.label: len(b.rejected) for b in loaded},
    )
    built = manifest.build(
        model=cfg.model_name_or_path,
        benchmarks=[
            manifest.benchmark_entry(spec.name, b.label, spec.uri, len(b.records) + len(b.rejected), spec.limit)
            for spec, b in zip(cfg.benchmarks, loaded, strict=True)
        ],
        prompt_template=manifest.PROMPT_TEMPLATE,
        sampling={
            "backend": cfg.backend,
            "temperature": cfg.temperature,
            "max_new_tokens": cfg.max_new_tokens,
            "seed": cfg.seed,
        },
        max_pixels=cfg.max_pixels,
        judge=None if cfg.judge is None else {"model": cfg.judge.model, "endpoint": cfg.judge.base_url},
        llm_extractor=None if extractor is None else llm_extract.manifest_entry(extractor),
    )
    files = report.write_outputs(cfg, summary, rows, rejected, built)
    summary["files"] = {name: storage.join(cfg.output_dir, name) for name in files}
    if cfg.tracking is not None:
        summary["mlflow_run_id"] = report.log_to_mlflow(cfg, summary, files)
    log.info("overall accuracy %.4f on %d items", summary["overall"]["accuracy"], len(rows))
    return report.json_safe(summary)
