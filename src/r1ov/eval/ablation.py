"""The paper's ablation for one pipeline run: Base / +SFT / +SFT+RL on the same items, as data and as HTML.

:func:`collect` reads the pipeline run's MLflow story (the eval runs labelled ``base``, ``sft``
and ``sft+grpo``, the SFT loss and the GRPO reward histories); :func:`render_html` makes one
self-contained page of it: the table, the curves as inline PNGs, and each model's completions
behind ``<details>`` so a reader can open them.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import tempfile
from typing import Any

from matplotlib.figure import Figure
from mlflow.tracking import MlflowClient

from r1ov.data.records import read_parquet
from r1ov.eval.report import PREDICTIONS
from r1ov.scoring.paired import compare, format_p, format_percent
from r1ov.scoring.verdicts import VERDICTS, read_verdicts

LABELS = ("base", "sft", "sft+grpo")  # the paper's rows: Base, +SFT, +SFT+RL


def _history(client: MlflowClient, run_id: str, key: str) -> list[float]:
    return [m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))]


def quarter_means(values: list[float]) -> dict[str, float | None]:
    """Mean over the first and the last quarter of ``values`` (at least one value each)."""
    if not values:
        return {"first": None, "last": None, "steps": 0}
    k = max(1, len(values) // 4)
    return {"first": sum(values[:k]) / k, "last": sum(values[-k:]) / k, "steps": len(values)}


def _download(client: MlflowClient, run_id: str, path: str, into: str) -> str | None:
    try:
        return client.download_artifacts(run_id, path, into)
    except Exception:
        return None


def collect(client: MlflowClient, children: list[Any], samples: int = 6) -> dict[str, Any]:
    """Ablation rows, paired comparisons, curves and sample completions from a pipeline run's child runs."""
    by_stage: dict[str, Any] = {}
    evals: dict[str, Any] = {}
    for run in children:
        tags = run.data.tags
        if tags.get("r1ov.eval_label"):
            evals[tags["r1ov.eval_label"]] = run
        elif tags.get("r1ov.stage"):
            by_stage[tags["r1ov.stage"]] = run
    rows, verdicts, completions = [], {}, {}
    with tempfile.TemporaryDirectory(prefix="r1ov-ablation-") as tmp:
        for label in LABELS:
            run = evals.get(label)
            if run is None:
                continue
            m = run.data.metrics
            rows.append(
                {
                    "model": label,
                    "accuracy": m.get("overall/accuracy"),
                    "format_rate": m.get("overall/format_rate"),
                    "n": int(m.get("overall/n", 0)),
                    "ci95": [m.get("overall/accuracy_ci95_low"), m.get("overall/accuracy_ci95_high")],
                    "mlflow_run_id": run.info.run_id,
                }
            )
            path = _download(client, run.info.run_id, f"eval/{VERDICTS}", f"{tmp}/{len(rows)}v")
            if path:
                verdicts[label] = read_verdicts(path)
            path = _download(client, run.info.run_id, f"eval/{PREDICTIONS}", f"{tmp}/{len(rows)}p")
            if path:
                completions[label] = read_parquet(path).to_pylist()[:samples]
    comparisons = {}
    for a, b in (("base", "sft"), ("sft", "sft+grpo"), ("base", "sft+grpo")):
        if a in verdicts and b in verdicts:
            comparisons[f"{b} vs {a}"] = compare(verdicts[a], verdicts[b]).to_dict()
    sft, grpo = by_stage.get("sft"), by_stage.get("grpo")
    loss = _history(client, sft.info.run_id, "loss") if sft else []
    reward = _history(client, grpo.info.run_id, "reward") if grpo else []
    # TRL logs the share of prompt groups whose completions all scored alike (zero advantage).
    alike = _history(client, grpo.info.run_id, "frac_reward_zero_std") if grpo else []
    grpo_reward = quarter_means(reward)
    grpo_reward["groups_with_advantage"] = 1 - sum(alike) / len(alike) if alike else None
    return {
        "ablation": rows,
        "comparisons": comparisons,
        "sft_loss": {"first": loss[0] if loss else None, "last": loss[-1] if loss else None, "steps": len(loss)},
        "grpo_reward": grpo_reward,
        "curves": {"sft_loss": loss, "grpo_reward": reward},
        "completions": completions,
    }


def smoothed(values: list[float], weight: float = 0.9) -> list[float]:
    """Exponential moving average with TensorBoard's debiasing (its scalar dashboard's smoothing):
    a per-step GRPO reward is a handful of sampled groups, noise that hides the trend."""
    out, average = [], 0.0
    for step, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight**step))
    return out


def _plot(values: list[float], title: str, ylabel: str, smooth: bool = False) -> str:
    figure = Figure(figsize=(5, 2.8), dpi=100)
    axes = figure.add_subplot()
    steps = range(1, len(values) + 1)
    if smooth:  # the raw points faint, the trend on top
        axes.plot(steps, values, color="#4c72b0", alpha=0.25, linewidth=0.8, label="per step")
        axes.plot(steps, smoothed(values), color="#4c72b0", linewidth=2, label="smoothed (EMA 0.9)")
        axes.legend(loc="best", fontsize="small")
    else:
        axes.plot(steps, values, color="#4c72b0")
    axes.set_title(title)
    axes.set_xlabel("logged step")
    axes.set_ylabel(ylabel)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _fmt(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) and math.isfinite(value) else "n/a"


def render_html(data: dict[str, Any], title: str = "r1ov: base, +SFT, +SFT+RL") -> str:
    """One page: the ablation table, comparisons, curves, completions (no files beside it)."""
    pct = format_percent
    rows = "\n".join(
        f"<tr><td>{html.escape(r['model'])}</td><td class=num>{r['n']}</td>"
        f"<td class=num>{pct(r['accuracy'])}</td><td class=num>[{pct(r['ci95'][0])}, {pct(r['ci95'][1])}]</td>"
        f"<td class=num>{pct(r['format_rate'])}</td></tr>"
        for r in data["ablation"]
    )
    comparisons = "\n".join(
        f"<tr><td>{html.escape(name)}</td><td class=num>{pct(c['difference'], signed=True)}</td>"
        f"<td class=num>[{pct(c['ci95'][0], signed=True)}, {pct(c['ci95'][1], signed=True)}]</td>"
        f"<td class=num>{format_p(c['p_value'])}</td>"
        f"<td class=num>{c['only_b_correct']} / {c['only_a_correct']}</td></tr>"
        for name, c in data["comparisons"].items()
    )
    curves = "".join(
        f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{_plot(values, alt, unit, smooth)}">'
        for alt, unit, values, smooth in (
            ("SFT training loss", "loss", data["curves"]["sft_loss"], False),
            ("GRPO mean reward", "reward", data["curves"]["grpo_reward"], True),
        )
        if values
    )
    samples = []
    for label, items in data["completions"].items():
        for item in items:
            mark = "&#10003;" if item.get("correct") else "&#10007;"
            samples.append(
                f"<details><summary>{mark} <b>{html.escape(label)}</b>: {html.escape(item.get('question') or '')} "
                f"(truth {html.escape(str(item.get('answer')))}, "
                f"got {html.escape(str(item.get('extracted')))})</summary>"
                f"<pre>{html.escape(item.get('completion') or item.get('error') or '')}</pre></details>"
            )
    reward = data["grpo_reward"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #1b1f24; }}
table {{ border-collapse: collapse; font-size: 0.9rem; }} th, td {{ border: 1px solid #d0d7de; padding: .3rem .6rem; }}
th {{ background: #f6f8fa; }} td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
pre {{ white-space: pre-wrap; font-size: .8rem; }} img {{ max-width: 48%; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<h2>Ablation (same held-out items)</h2>
<table id="ablation"><thead>
<tr><th>model</th><th>n</th><th>accuracy (%)</th><th>95% interval</th><th>format rate (%)</th></tr></thead>
<tbody>{rows}</tbody></table>
<h2>Paired comparisons</h2>
<table id="comparisons"><thead><tr><th>comparison</th><th>accuracy difference (points)</th>
<th>95% interval (paired bootstrap)</th><th>McNemar p</th><th>items won / lost</th></tr></thead>
<tbody>{comparisons}</tbody></table>
<h2>Training curves</h2>
<p>SFT loss {_fmt(data["sft_loss"]["first"])} &rarr; {_fmt(data["sft_loss"]["last"])}
over {data["sft_loss"]["steps"]} logged steps; GRPO mean reward {_fmt(reward["first"])} (first quarter)
&rarr; {_fmt(reward["last"])} (last quarter).</p>
{curves}
<h2>Completions</h2>
{"".join(samples) or "<p>no predictions</p>"}
<script type="application/json" id="data">{html.escape(json.dumps(data["ablation"]))}</script>
</body></html>
"""
