from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from components._image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def filter_reasoning(
    distilled: Input[Dataset],
    filtered: Output[Dataset],
    metrics: Output[Metrics],
    require_answer_match: bool = True,
    min_think_chars: int = 20,
    extra_config: dict = {},  # noqa: B006 - KFP serializes the default; never mutated
    mlflow_tracking_uri: str = "",
    mlflow_experiment: str = "r1ov",
    run_id: str = "",
):
    """Keep accurate, consistent reasoning; set the rest aside with the failed check as reason.

    Args:
        distilled: Output of distill.
        require_answer_match: Reject reasoning whose answer disagrees with the ground truth.
        min_think_chars: Reject shorter reasoning.
        mlflow_tracking_uri: Log the stage's settings and counts as an MLflow run when set.
        mlflow_experiment: MLflow experiment name.
        run_id: Pipeline run id (the stage's MLflow run nests under the pipeline's).
        extra_config: Mapping of further FilterConfig fields (e.g. a judge teacher).

    Returns:
        filtered: Accepted records in records/, rejected ones in rejected/ with `reject_reason`.
        metrics: Acceptance rate and counts per rejection reason.
    """
    from r1ov.pipeline.tasks import log_metrics, run_task

    fields = {
        "input_uri": distilled.path,
        "output_uri": filtered.path,
        "require_answer_match": require_answer_match,
        "min_think_chars": min_think_chars,
    }
    log_metrics(
        metrics, run_task("filter", fields, extra_config, track=(mlflow_tracking_uri, mlflow_experiment, run_id))
    )
