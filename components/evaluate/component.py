from typing import Optional

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Metrics, Model, Output

from components._image import VLLM_IMAGE


@dsl.component(base_image=VLLM_IMAGE)
def evaluate(
    benchmarks: str,
    results: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
    model: Optional[Input[Model]] = None,  # noqa: UP045 - KFP reads Optional[...] to mark the input optional
    model_name_or_path: str = "",
    label: str = "",
    backend: str = "vllm",
    max_new_tokens: int = 4096,
    temperature: float = 0.0,
    base_url: str = "",
    mlflow_tracking_uri: str = "",
    mlflow_experiment: str = "r1ov",
    run_id: str = "",
    extra_config: str = "",
) -> float:
    """Score the model on reasoning benchmarks (MathVision, MathVerse, MathVista, WeMath, R1-Onevision-Bench).

    Args:
        benchmarks: JSON list of {"name": ..., "uri": ..., "limit": ...} benchmark specs.
        results: Directory with predictions, verdicts.jsonl (per item), metrics.json and report.html.
        report: The HTML report (tables and plot), shown in the KFP UI.
        metrics: Accuracy overall and per benchmark, category and level.
        model: Checkpoint to evaluate (a stage's output); or give model_name_or_path.
        model_name_or_path: HF model id or checkpoint path, when no model artifact is given (the base model).
        label: Which model this is in the ablation (base, sft, sft+grpo); names the MLflow run.
        backend: vllm (offline engine), hf (transformers) or openai (an OpenAI-compatible endpoint).
        max_new_tokens: Completion limit.
        temperature: 0 decodes greedily.
        base_url: Endpoint for the openai backend.
        mlflow_tracking_uri: Log metrics and the report to MLflow when set.
        mlflow_experiment: MLflow experiment name.
        run_id: Pipeline run id for MLflow tags.
        extra_config: YAML/JSON mapping of further EvalConfig fields.

    Returns:
        Overall accuracy (the promotion gate's default metric).
    """
    import json
    import shutil
    from pathlib import Path

    from r1ov.kfp_tasks import log_metrics, run_task, tracking_fields

    name = f"eval-{label}" if label else "eval"
    fields = {
        "model_name_or_path": model.path if model is not None else model_name_or_path,
        "benchmarks": json.loads(benchmarks),
        "output_dir": results.path,
        "backend": backend,
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "base_url": base_url or None,
        **tracking_fields(name, mlflow_tracking_uri, mlflow_experiment, run_id, {"r1ov.eval_label": label}),
    }
    summary = run_task("eval", fields, extra_config)
    shutil.copyfile(Path(results.path) / "report.html", report.path)
    log_metrics(metrics, summary.get("metrics", summary))
    return float(summary.get("metrics", summary).get("overall/accuracy", 0.0))
