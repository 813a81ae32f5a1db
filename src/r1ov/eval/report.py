"""Eval outputs: predictions.parquet, metrics.json, a self-contained report.html, and MLflow.

report.html needs nothing beside it: the chart is an inline base64 PNG and the styles are in
the page. With tracking configured, the metrics go to an MLflow run (nested under the
pipeline's run when a parent is given) with the three files as artifacts.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
import random
import tempfile
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from matplotlib.figure import Figure

from r1ov.config import EvalConfig
from r1ov.data import storage
from r1ov.eval import tables
from r1ov.eval.manifest import MANIFEST, sha256
from r1ov.eval.manifest import to_json as manifest_json
from r1ov.scoring.verdicts import VERDICTS, verdicts_jsonl

log = logging.getLogger(__name__)

PREDICTIONS, METRICS, REPORT, REJECTED = "predictions.parquet", "metrics.json", "report.html", "rejected.jsonl"
TABLES = "tables.md"  # the paper's two tables (r1ov.eval.tables)

PREDICTION_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("benchmark", pa.string()),
        pa.field("question", pa.string()),
        pa.field("options", pa.list_(pa.string())),
        pa.field("answer", pa.string()),  # ground truth
        pa.field("completion", pa.string()),
        pa.field("extracted", pa.string()),
        pa.field("rule", pa.string()),  # extraction rule that fired, or failed/hedge/none
        pa.field("well_formed", pa.bool_()),
        pa.field("correct", pa.bool_()),
        pa.field("error", pa.string()),  # "<code>: detail" when generation failed
        pa.field("finish_reason", pa.string()),
        pa.field("category", pa.string()),
        pa.field("level", pa.string()),
        pa.field("metadata", pa.string()),  # JSON: the benchmark's own fields
    ]
)


def json_safe(value: Any) -> Any:
    """NaN and infinities become null, so metrics.json stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def predictions_parquet(rows: list[dict[str, Any]]) -> bytes:
    table = pa.Table.from_pylist([{c: r.get(c) for c in PREDICTION_SCHEMA.names} for r in rows], PREDICTION_SCHEMA)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def chart_png(summary: dict[str, Any]) -> bytes:
    """Accuracy per benchmark with its 95% interval as error bars."""
    names = list(summary["benchmarks"])
    stats = [summary["benchmarks"][n] for n in names]
    accuracy = [s["accuracy"] if math.isfinite(s["accuracy"]) else 0.0 for s in stats]
    errors = [
        [
            max(0.0, a - s["accuracy_ci95_low"]) if math.isfinite(s["accuracy_ci95_low"]) else 0.0
            for a, s in zip(accuracy, stats, strict=True)
        ],
        [
            max(0.0, s["accuracy_ci95_high"] - a) if math.isfinite(s["accuracy_ci95_high"]) else 0.0
            for a, s in zip(accuracy, stats, strict=True)
        ],
    ]
    # Figure without pyplot: no global state, no display backend needed.
    figure = Figure(figsize=(max(4.0, 1.2 * len(names) + 2), 3.2), dpi=100)
    axes = figure.add_subplot()
    bars = axes.bar(names, accuracy, yerr=errors, capsize=4, color="#4c72b0")
    axes.bar_label(bars, labels=[_pct(a) for a in accuracy], padding=2, fontsize=8)
    axes.set_ylim(0, 1)
    axes.set_ylabel("accuracy")
    axes.tick_params(axis="x", labelrotation=20)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _pct(value: float) -> str:
    return f"{100 * value:.1f}" if isinstance(value, int | float) and math.isfinite(value) else "n/a"


def _metric_rows(summary: dict[str, Any]) -> str:
    rows = []
    for name, s in [*summary["benchmarks"].items(), ("overall", summary["overall"])]:
        interval = f"[{_pct(s['accuracy_ci95_low'])}, {_pct(s['accuracy_ci95_high'])}]"
        cells = [
            f"<td>{html.escape(name)}</td>",
            f'<td class="num">{s["n"]}</td>',
            f'<td class="num">{_pct(s["accuracy"])}</td>',
            f'<td class="num">{interval}</td>',
            f'<td class="num">{_pct(s["format_rate"])}</td>',
            f'<td class="num">{_pct(s["extraction_rate"])}</td>',
            f'<td class="num">{_pct(s["truncated_rate"])}</td>',
            f'<td class="num">{s["failed"]}</td>',
        ]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return "\n".join(rows)


def _group_rows(summary: dict[str, Any]) -> str:
    rows = []
    for name, s in summary["benchmarks"].items():
        for kind in ("categories", "levels"):
            for group, g in s[kind].items():
                label = f"{kind[:-1] if kind == 'levels' else 'category'}: {group}"
                rows.append(
                    f"<tr><td>{html.escape(name)}</td><td>{html.escape(label)}</td>"
                    f'<td class="num">{g["n"]}</td><td class="num">{_pct(g["accuracy"])}</td></tr>'
                )
        for metric, value in s.get("extra", {}).items():
            shown = f"{value:.0f}" if metric.endswith("problems") else _pct(value)
            rows.append(
                f"<tr><td>{html.escape(name)}</td><td>{html.escape(metric)}</td>"
                f'<td class="num"></td><td class="num">{shown}</td></tr>'
            )
    return "\n".join(rows) or '<tr><td colspan="4">no categories or levels in these benchmarks</td></tr>'


def _rule_rows(summary: dict[str, Any]) -> str:
    return "\n".join(
        f'<tr><td>{html.escape(rule)}</td><td class="num">{count}</td></tr>' for rule, count in summary["rules"].items()
    )


def _extractor_line(summary: dict[str, Any]) -> str:
    counts = summary.get("extractor")
    if not counts:
        return "LLM extractor: off (only the rules above read answers)."
    return html.escape(
        f"LLM extractor: asked for {counts['asked']} item(s) no rule found an answer in; it read an answer in "
        f"{counts['answered']} (rule llm), found none in {counts['no_answer']}, and {counts['failed']} "
        "request(s) failed (no answer for those items)."
    )


def sample(rows: list[dict[str, Any]], k: int, seed: int) -> list[dict[str, Any]]:
    """Up to ``k`` rows, wrong and right alternating where both exist, chosen reproducibly."""
    rng = random.Random(seed)
    wrong = [r for r in rows if not r["correct"]]
    right = [r for r in rows if r["correct"]]
    rng.shuffle(wrong)
    rng.shuffle(right)
    picked: list[dict[str, Any]] = []
    while len(picked) < k and (wrong or right):
        for pool in (wrong, right):
            if pool and len(picked) < k:
                picked.append(pool.pop())
    return picked


def _short(text: str | None, limit: int) -> str:
    text = text or ""
    return html.escape(text if len(text) <= limit else text[:limit] + " …")


def _sample_rows(rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        completion = _short(r.get("completion"), 2000) if not r.get("error") else _short(r["error"], 500)
        mark = ("ok", "&#10003;") if r["correct"] else ("wrong", "&#10007;")
        out.append(
            f'<tr class="{mark[0]}"><td class="mark">{mark[1]}</td>'
            f"<td>{html.escape(r['benchmark'])}</td><td>{_short(r['question'], 400)}</td>"
            f"<td>{_short(r.get('answer'), 100)}</td><td>{_short(r.get('extracted'), 100)}</td>"
            f"<td><details><summary>{html.escape(r['rule'])}</summary><pre>{completion}</pre></details></td></tr>"
        )
    return "\n".join(out) or '<tr><td colspan="6">no predictions</td></tr>'


def _manifest_rows(manifest: dict[str, Any]) -> str:
    """The manifest as rows of field and value: what this score depends on besides the model."""
    prompt = manifest.get("prompt") or {}
    sampling = manifest.get("sampling") or {}
    judge = manifest.get("judge") or {}
    code = manifest.get("code") or {}
    fields = [
        ("prompt template sha256", prompt.get("sha256")),
        *((f"sampling: {k}", v) for k, v in sampling.items()),
        ("max_pixels", manifest.get("max_pixels")),
        *(
            (
                f"benchmark {b['label']}",
                f"{b['items']} items; " + ", ".join(f"{n} {h[:12]}" for n, h in b["files"].items()),
            )
            for b in manifest.get("benchmarks", [])
        ),
        ("extractor rules version", manifest["extractor"]["rules_version"]),
        ("LLM extractor", _llm_extractor(manifest["extractor"].get("llm"))),
        ("judge", f"{judge['model']} at {judge['endpoint']}" if judge else "none"),
        ("code", f"r1ov {code.get('r1ov')} {code.get('commit') or ''}".strip()),
    ]
    return "\n".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in fields)


def _llm_extractor(llm: dict[str, Any] | None) -> str:
    return f"{llm['model']} at {llm['endpoint']}, prompt {llm['prompt_sha256'][:12]}" if llm else "none"


def render_html(
    summary: dict[str, Any], rows: list[dict[str, Any]], cfg: EvalConfig, manifest: dict[str, Any] | None = None
) -> str:
    template = Template(resources.files("r1ov.eval").joinpath("report_template.html").read_text("utf-8"))
    return template.substitute(
        model=html.escape(cfg.model_name_or_path),
        backend=html.escape(cfg.backend),
        n_items=len(rows),
        written=datetime.now(UTC).isoformat(timespec="seconds"),
        metric_rows=_metric_rows(summary),
        bootstrap=cfg.bootstrap_samples,
        seed=cfg.seed,
        chart=base64.b64encode(chart_png(summary)).decode("ascii"),
        group_rows=_group_rows(summary),
        rule_rows=_rule_rows(summary),
        extractor_line=_extractor_line(summary),
        manifest_rows=_manifest_rows(manifest) if manifest else '<tr><td colspan="2">no manifest</td></tr>',
        sample_rows=_sample_rows(sample(rows, cfg.report_samples, cfg.seed)),
        paper_tables=tables.html_tables(summary, cfg.model_name_or_path),
    )


def write_outputs(
    cfg: EvalConfig,
    summary: dict[str, Any],
    rows: list[dict[str, Any]],
    rejected: list[dict[str, Any]],
    manifest: dict[str, Any],
) -> dict[str, bytes]:
    """Write every output under ``cfg.output_dir``; returns them by file name (for MLflow)."""
    files = {
        PREDICTIONS: predictions_parquet(rows),
        VERDICTS: verdicts_jsonl(rows),
        METRICS: json.dumps(json_safe(summary), indent=2, sort_keys=True).encode("utf-8"),
        MANIFEST: manifest_json(manifest),
        REPORT: render_html(summary, rows, cfg, manifest).encode("utf-8"),
        TABLES: tables.markdown(summary, cfg.model_name_or_path).encode("utf-8"),
    }
    if rejected:
        files[REJECTED] = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rejected).encode("utf-8")
    for name, data in files.items():
        storage.write_bytes(storage.join(cfg.output_dir, name), data)
    log.info("wrote %s under %s", ", ".join(files), cfg.output_dir)
    return files


def log_to_mlflow(cfg: EvalConfig, summary: dict[str, Any], files: dict[str, bytes]) -> str:
    """Log metrics, parameters and the output files to an MLflow run; returns the run id."""
    # mlflow is heavy: imported only when tracking is on.
    from mlflow.entities import Param

    from r1ov.registry import tracking as registry

    if cfg.tracking is None:
        raise ValueError("log_to_mlflow needs cfg.tracking")
    client = registry.client_for(cfg.tracking)
    run_id = registry.start_run(client, cfg.tracking, "eval", {"r1ov.stage": "eval"})
    manifest = json.loads(files[MANIFEST]) if MANIFEST in files else {}
    params = {
        "manifest.prompt_sha256": (manifest.get("prompt") or {}).get("sha256"),
        "manifest.extractor_rules_version": (manifest.get("extractor") or {}).get("rules_version"),
        "manifest.code_commit": (manifest.get("code") or {}).get("commit"),
        "manifest.llm_extractor": json.dumps((manifest.get("extractor") or {}).get("llm"), sort_keys=True),
        "manifest.benchmark_sha256": sha256(json.dumps(manifest.get("benchmarks"), sort_keys=True)),
        "max_pixels": cfg.max_pixels,
        "model": cfg.model_name_or_path,
        "backend": cfg.backend,
        "benchmarks": ",".join(f"{b.label or b.name}={b.uri}" for b in cfg.benchmarks)[:6000],
        "max_new_tokens": cfg.max_new_tokens,
        "temperature": cfg.temperature,
    }
    try:
        client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
        registry.log_metrics(client, run_id, {k: v for k, v in summary["metrics"].items() if math.isfinite(v)})
        with tempfile.TemporaryDirectory(prefix="r1ov-eval-") as tmp:
            for name, data in files.items():
                Path(tmp, name).write_bytes(data)
            client.log_artifacts(run_id, tmp, artifact_path="eval")
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id)
    return run_id
