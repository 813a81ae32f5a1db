from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output

from components._image import DATA_IMAGE


@dsl.component(base_image=DATA_IMAGE, install_kfp_package=False)
def formalize(
    source_uri: str,
    formalized: Output[Dataset],
    metrics: Output[Metrics],
    teacher_base_url: str = "https://api.openai.com/v1",
    teacher_model: str = "gpt-4o",
    teacher_max_concurrency: int = 8,
    extra_config: dict = {},  # noqa: B006 - KFP serializes the default; never mutated
    mlflow_tracking_uri: str = "",
    mlflow_experiment: str = "r1ov",
    run_id: str = "",
):
    """Turn each image into formal text by type (SPICE, PlantUML, HTML, CSV/JSON, boxes, OCR, strategy).

    Args:
        source_uri: Dataset in the r1ov record schema (local path or s3://).
        teacher_base_url: OpenAI-compatible endpoint of the vision teacher (key from OPENAI_API_KEY).
        teacher_model: Model name sent to the teacher.
        teacher_max_concurrency: Requests in flight at once.
        mlflow_tracking_uri: Log the stage's settings and counts as an MLflow run when set.
        mlflow_experiment: MLflow experiment name.
        run_id: Pipeline run id (the stage's MLflow run nests under the pipeline's).
        extra_config: Mapping of further FormalizeConfig fields.

    Returns:
        formalized: Records with `formalization` set; failures in its rejected/ part with a reason.
        metrics: Counts of accepted and rejected records.
    """
    from r1ov.pipeline.tasks import log_metrics, run_task

    fields = {
        "input_uri": source_uri,
        "output_uri": formalized.path,
        "teacher.base_url": teacher_base_url,
        "teacher.model": teacher_model,
        "teacher.max_concurrency": teacher_max_concurrency,
    }
    log_metrics(
        metrics, run_task("formalize", fields, extra_config, track=(mlflow_tracking_uri, mlflow_experiment, run_id))
    )
