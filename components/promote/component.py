from kfp import dsl
from kfp.dsl import Metrics, Output

from components._image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def promote(
    mlflow_tracking_uri: str,
    metrics: Output[Metrics],
    model_name: str = "r1ov-qwen2.5-vl",
    candidate_alias: str = "challenger",
    target_alias: str = "champion",
    metric: str = "overall/accuracy",
    min_value: float = 0.0,
    min_improvement: float = 0.0,
    extra_config: dict = {},  # noqa: B006 - KFP serializes the default; never mutated
) -> bool:
    """Move the champion alias to the candidate only if it passes the gate; say why either way.

    Args:
        mlflow_tracking_uri: MLflow tracking URI.
        model_name: Registered model name.
        candidate_alias: Alias of the version to consider.
        target_alias: Alias to move when the gate passes.
        metric: Eval metric the gate compares.
        min_value: Absolute floor for the metric.
        min_improvement: Required gain over the current champion.
        extra_config: Mapping of further PromoteConfig fields.

    Returns:
        metrics: 1.0 when promoted, the candidate's and the champion's metric.
        Output: Whether the candidate was promoted.
    """
    from r1ov.kfp_tasks import log_metrics, run_task

    fields = {
        "model_name": model_name,
        "candidate_alias": candidate_alias,
        "target_alias": target_alias,
        "metric": metric,
        "min_value": min_value,
        "min_improvement": min_improvement,
        "tracking.tracking_uri": mlflow_tracking_uri,
    }
    decision = run_task("promote", fields, extra_config)
    log_metrics(metrics, decision)
    return bool(decision["promoted"])
