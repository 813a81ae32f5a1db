from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from components._image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def distill(
    formalized: Input[Dataset],
    distilled: Output[Dataset],
    metrics: Output[Metrics],
    teacher_base_url: str = "https://api.deepseek.com/v1",
    teacher_model: str = "deepseek-reasoner",
    teacher_max_concurrency: int = 8,
    extra_config: dict = {},  # noqa: B006 - KFP serializes the default; never mutated
    mlflow_tracking_uri: str = "",
    mlflow_experiment: str = "r1ov",
    run_id: str = "",
):
    """Write role-played <think> chains over the formal text with a reasoning LLM.

    Args:
        formalized: Output of formalize.
        teacher_base_url: OpenAI-compatible endpoint of the reasoning teacher (key from OPENAI_API_KEY).
        teacher_model: Model name sent to the teacher.
        teacher_max_concurrency: Requests in flight at once.
        mlflow_tracking_uri: Log the stage's settings and counts as an MLflow run when set.
        mlflow_experiment: MLflow experiment name.
        run_id: Pipeline run id (the stage's MLflow run nests under the pipeline's).
        extra_config: Mapping of further DistillConfig fields.

    Returns:
        distilled: Records with `reasoning` and `predicted_answer`; teacher failures rejected with a reason.
        metrics: Counts of accepted and rejected records.
    """
    from r1ov.pipeline.tasks import log_metrics, run_task

    fields = {
        "input_uri": formalized.path,
        "output_uri": distilled.path,
        "teacher.base_url": teacher_base_url,
        "teacher.model": teacher_model,
        "teacher.max_concurrency": teacher_max_concurrency,
    }
    log_metrics(
        metrics, run_task("distill", fields, extra_config, track=(mlflow_tracking_uri, mlflow_experiment, run_id))
    )
