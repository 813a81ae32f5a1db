from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Markdown, Metrics, Model, Output

from components._image import VLLM_IMAGE


@dsl.component(base_image=VLLM_IMAGE, install_kfp_package=False)
def evaluate(
    model: Input[Model],
    benchmarks: list,
    results: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
    tables: Output[Markdown],
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
        model: Checkpoint to evaluate.
        benchmarks: List of {"name": ..., "uri": ..., "limit": ...} benchmark specs.
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
        results: Directory with predictions, metrics.json and report.html.
        tables: The paper's two tables (math benchmarks; R1-Onevision-Bench by level and category), in the KFP UI.
        Output: Overall accuracy (the promotion gate's default metric).
    """
    import shutil
    from pathlib import Path

    from r1ov.kfp_tasks import log_metrics, run_task

    fields = {
        "model_name_or_path": model.path,
        "benchmarks": benchmarks,
        "output_dir": results.path,
        "backend": backend,
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "base_url": base_url or None,
        "tracking": {
            "tracking_uri": mlflow_tracking_uri,
            "experiment": mlflow_experiment,
            "run_name": f"eval-{run_id}" if run_id else None,
            "tags": {"r1ov.pipeline_run_id": run_id} if run_id else {},
        }
        if mlflow_tracking_uri
        else None,
    }
    summary = run_task("eval", fields, extra_config)
    shutil.copyfile(Path(results.path) / "report.html", report.path)
    shutil.copyfile(Path(results.path) / "tables.md", tables.path)
    log_metrics(metrics, summary.get("metrics", summary))
    return float(summary.get("metrics", summary).get("overall/accuracy", 0.0))
