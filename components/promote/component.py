from kfp import dsl
from kfp.dsl import Artifact, Input, Metrics, Output

from components._image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def promote(
    version: str,
    baseline_results: Input[Artifact],
    mlflow_tracking_uri: str,
    metrics: Output[Metrics],
    model_name: str = "r1ov-qwen2.5-vl",
    target_alias: str = "champion",
    metric: str = "overall/accuracy",
    min_value: float = 0.0,
    min_improvement: float = 0.0,
    alpha: float = 0.05,
    mlflow_experiment: str = "r1ov",
    run_id: str = "",
    extra_config: dict = {},  # noqa: B006 - KFP serializes the default; never mutated
) -> bool:
    """Move the champion alias to this run's version only if it beats the champion (or the base model) item by item.

    A refusal is a normal outcome (the task succeeds and says why); the decision and its
    numbers are recorded on the version.

    Args:
        version: The model version this pipeline run registered (register's output).
        baseline_results: The base model's evaluate output: what the first candidate must beat.
        mlflow_tracking_uri: MLflow tracking URI.
        model_name: Registered model name.
        target_alias: Alias to move when the gate passes.
        metric: Eval metric the floor applies to.
        min_value: Absolute floor for the metric.
        min_improvement: Required accuracy gain over the champion (or base).
        alpha: Significance level of the paired test (McNemar exact).
        mlflow_experiment: MLflow experiment name.
        run_id: Pipeline run id (the decision's MLflow run nests under the pipeline's).
        extra_config: Mapping of further PromoteConfig fields (e.g. the endpoint to roll).

    Returns:
        metrics: 1.0 when promoted, and the paired comparison's numbers.
        Output: Whether the version was promoted.
    """
    from pathlib import Path

    from r1ov.pipeline.tasks import log_metrics, run_task, tracking_fields

    fields = {
        "model_name": model_name,
        "version": version,
        "target_alias": target_alias,
        "metric": metric,
        "min_value": min_value,
        "min_improvement": min_improvement,
        "alpha": alpha,
        "baseline_verdicts_uri": str(Path(baseline_results.path) / "verdicts.jsonl"),
        **tracking_fields("promote", mlflow_tracking_uri, mlflow_experiment, run_id),
    }
    decision = run_task("promote", fields, extra_config)
    log_metrics(metrics, {"promoted": decision["promoted"], **(decision.get("comparison") or {})})
    return bool(decision["promoted"])
