from kfp import dsl
from kfp.dsl import Markdown, Metrics, Output

from components._image import DATA_IMAGE


@dsl.component(base_image=DATA_IMAGE, install_kfp_package=False)
def data_stage(
    stage: str,
    shard_uri: str,
    metrics: Output[Metrics],
    summary: Output[Markdown],
    teacher_base_url: str = "",
    teacher_model: str = "",
    teacher_max_concurrency: int = 8,
    require_answer_match: bool = True,
    extra_config: dict = {},  # noqa: B006 - KFP serializes the default; never mutated
    mlflow_tracking_uri: str = "",
    mlflow_experiment: str = "r1ov",
    run_id: str = "",
    task_gpus: int = 0,
) -> str:
    """Run one data stage (formalize, distill or filter) on one shard, writing straight to durable storage.

    Args:
        stage: formalize, distill or filter.
        shard_uri: The shard's folder (from shard_source); input and output folders follow its layout.
        teacher_base_url: OpenAI-compatible endpoint (key from OPENAI_API_KEY); for filter, a judge (empty: none).
        teacher_model: Model name sent to the teacher or judge.
        teacher_max_concurrency: Requests in flight at once.
        require_answer_match: filter only: reject reasoning whose answer disagrees with the ground truth.
        extra_config: Mapping of further fields of the stage's config.
        mlflow_tracking_uri: Log the shard's settings and counts as an MLflow run when set.
        mlflow_experiment: MLflow experiment name.
        run_id: Pipeline run id (the shard's MLflow run nests under the pipeline's).
        task_gpus: This task pod's GPU count, as the pipeline places it. Taken as an input so that KFP's
            compiler passes the run parameter into the shard loop's sub-DAG, where the placement reads it.

    Returns:
        metrics: Counts of accepted and rejected rows, teacher calls, cache hits, tokens.
        summary: Rows accepted and set aside by reason, with an example each, and the teacher's bill.
        Output: shard_uri, for the next stage of the same shard.
    """
    from r1ov.data.fanout import stage_uris
    from r1ov.data.outcome import summary_markdown
    from r1ov.pipeline.tasks import log_metrics, run_shard_stage, teacher_fields

    fields = teacher_fields(stage, teacher_base_url, teacher_model, teacher_max_concurrency)
    if stage == "filter":
        fields["require_answer_match"] = require_answer_match
    track = (mlflow_tracking_uri, mlflow_experiment, run_id)
    result = run_shard_stage(stage, shard_uri, fields, extra_config, track=track)
    log_metrics(metrics, result)
    with open(summary.path, "w", encoding="utf-8") as out:
        out.write(summary_markdown(f"{stage}: {shard_uri}", result, stage_uris(shard_uri, stage)[1]))
    return shard_uri
