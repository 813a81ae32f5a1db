from kfp import dsl
from kfp.dsl import Artifact, Input, Model

from components._image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def register(
    model: Input[Model],
    eval_results: Input[Artifact],
    mlflow_tracking_uri: str,
    model_name: str = "r1ov-qwen2.5-vl",
    alias: str = "challenger",
    mlflow_experiment: str = "r1ov",
    run_id: str = "",
    extra_config: dict = {},  # noqa: B006 - KFP serializes the default; never mutated
) -> str:
    """Register the checkpoint as a new MLflow model version with lineage and eval metrics.

    Args:
        model: Checkpoint directory to register.
        eval_results: Output of evaluate (its metrics.json is attached to the version).
        mlflow_tracking_uri: MLflow tracking URI.
        model_name: Registered model name.
        alias: Alias set on the new version.
        mlflow_experiment: MLflow experiment name.
        run_id: Pipeline run id for lineage tags.
        extra_config: Mapping of further RegisterConfig fields.

    Returns:
        Output: The new model version.
    """
    from pathlib import Path

    from r1ov.kfp_tasks import run_task

    fields = {
        "model_dir": model.path,
        "model_name": model_name,
        "metrics_uri": str(Path(eval_results.path) / "metrics.json"),
        "alias": alias,
        "tracking.tracking_uri": mlflow_tracking_uri,
        "tracking.experiment": mlflow_experiment,
        "tracking.run_name": f"register-{run_id}" if run_id else None,
        "tracking.tags": {"r1ov.pipeline_run_id": run_id} if run_id else None,
    }
    return str(run_task("register", fields, extra_config)["version"])
