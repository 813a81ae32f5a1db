from kfp import dsl

from components._image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def cleanup(
    run_id: str,
    status: dsl.PipelineTaskFinalStatus,
    launcher: str = "pytorchjob",
    namespace: str = "r1ov",
    mlflow_tracking_uri: str = "",
    mlflow_experiment: str = "r1ov",
) -> str:
    """Exit handler: delete the training jobs and rollout servers a run launched and left behind,
    and end the run's MLflow story in the state the pipeline ended in.

    Args:
        run_id: Pipeline run id; launched objects carry it in the label r1ov.io/pipeline-run.
        status: The pipeline's final state (KFP fills it in for an exit handler).
        launcher: The run's training launcher; nothing to delete for local.
        namespace: Namespace the run launched objects in.
        mlflow_tracking_uri: MLflow server; empty: nothing was tracked.
        mlflow_experiment: Experiment holding the pipeline's MLflow run.

    Returns:
        Output: JSON object: the deleted objects (kind/name) and the MLflow runs ended.
    """
    import json

    from r1ov.pipeline.tasks import cleanup_run, end_tracking

    deleted = cleanup_run(run_id, launcher, namespace)
    ended = end_tracking(run_id, status.state, mlflow_tracking_uri, mlflow_experiment)
    return json.dumps({"deleted": deleted, "mlflow_runs_ended": ended})
