from kfp import dsl
from kfp.dsl import Dataset, Markdown, Metrics, Output

from components._image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def merge_shards(
    shard_uris: list[str],
    filtered: Output[Dataset],
    metrics: Output[Metrics],
    summary: Output[Markdown],
    min_accepted_fraction: float = 0.5,
    mlflow_tracking_uri: str = "",
    mlflow_experiment: str = "r1ov",
    run_id: str = "",
):
    """Merge the shards into one dataset: the filter's accepted rows, every stage's rejections, counts summed.

    Args:
        shard_uris: The shards, collected from the fan-out.
        min_accepted_fraction: Fail before training starts when fewer of the source's rows came through
            every stage (the overall yield); the failure names the lowest-yield sources.
        mlflow_tracking_uri: Where the summary is logged as a run (empty: not logged).
        mlflow_experiment: MLflow experiment of that run.
        run_id: The pipeline run id, tagged on the MLflow run.

    Returns:
        filtered: The merged dataset (records/, rejected/, manifest.json with every stage's sums).
        metrics: Merged counts per stage.
        summary: The merged rows by reason, with the teacher bills of every stage.
    """
    import logging

    from r1ov.data.fanout import merge
    from r1ov.data.outcome import check_floor, summary_markdown
    from r1ov.pipeline.tasks import log_metrics
    from r1ov.registry.tracking import log_summary_to_mlflow

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    manifest = merge(sorted(shard_uris), filtered.path)
    log_metrics(metrics, manifest)
    text = summary_markdown(f"merged {len(shard_uris)} shards", manifest, filtered.path)
    for stage, stats in manifest["stages"].items():
        text += f"\n### {stage}: {stats.get('records', 0)} accepted, {stats.get('rejected', 0)} set aside\n"
    with open(summary.path, "w", encoding="utf-8") as out:
        out.write(text)
    if mlflow_tracking_uri:
        tags = {"r1ov.pipeline_run_id": run_id, "r1ov.stage": "data"}
        log_summary_to_mlflow(
            manifest,
            text,
            tracking_uri=mlflow_tracking_uri,
            experiment=mlflow_experiment,
            run_name=f"data-{run_id}",
            tags=tags,
        )
    check_floor("merge", filtered.path, manifest, min_accepted_fraction)
