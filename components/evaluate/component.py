from typing import Optional

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Markdown, Metrics, Model, Output

from components._image import VLLM_IMAGE


@dsl.component(base_image=VLLM_IMAGE, install_kfp_package=False)
def evaluate(
    benchmarks: list,
    results: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
    tables: Output[Markdown],
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
    extra_config: dict = {},  # noqa: B006 - KFP serializes the default; never mutated
) -> float:
    """Score the model on reasoning benchmarks (MathVision, MathVerse, MathVista, WeMath, R1-Onevision-Bench).

    Args:
        benchmarks: List of {"name": ..., "uri": ..., "limit": ...} benchmark specs.
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
        extra_config: Mapping of further EvalConfig fields.

    Returns:
        metrics: Accuracy overall and per benchmark, category and level.
        report: The HTML report (tables and plot), shown in the KFP UI.
        results: Directory with predictions, verdicts.jsonl (per item), metrics.json and report.html.
        tables: The paper's two tables (math benchmarks; R1-Onevision-Bench by level and category), in the KFP UI.
        Output: Overall accuracy (the promotion gate's default metric).
    """
    import shutil
    from pathlib import Path

    from r1ov.pipeline.tasks import log_metrics, run_task, tracking_fields

    name = f"eval-{label}" if label else "eval"
    fields = {
        "model_name_or_path": model.path if model is not None else model_name_or_path,
        "benchmarks": benchmarks,
        "output_dir": results.path,
        "backend": backend,
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "base_url": base_url or None,
        **tracking_fields(name, mlflow_tracking_uri, mlflow_experiment, run_id, {"r1ov.eval_label": label}),
    }
    summary = run_task("eval", fields, extra_config)
    shutil.copyfile(Path(results.path) / "report.html", report.path)
    shutil.copyfile(Path(results.path) / "tables.md", tables.path)
    log_metrics(metrics, summary.get("metrics", summary))
    return float(summary.get("metrics", summary).get("overall/accuracy", 0.0))
