from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model

from components._image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def register(
    model: Input[Model],
    eval_results: Input[Artifact],
    mlflow_tracking_uri: str,
    sft_model: Input[Model],
    sft_data: Input[Dataset],
    grpo_data_uri: str = "",
    base_model: str = "",
    model_name: str = "r1ov-qwen2.5-vl",
    alias: str = "challenger",
    mlflow_experiment: str = "r1ov",
    run_id: str = "",
    extra_config: dict = {},  # noqa: B006 - KFP serializes the default; never mutated
) -> str:
    """Register the checkpoint as a new MLflow model version with lineage, eval metrics and per-item verdicts.

    Args:
        model: Checkpoint directory to register.
        eval_results: Output of evaluate (its metrics.json and verdicts.jsonl go with the version).
        mlflow_tracking_uri: MLflow tracking URI.
        sft_model: The SFT checkpoint the model was trained from (its MLflow run id is lineage).
        sft_data: The SFT training data (URI and content fingerprint are lineage).
        grpo_data_uri: The GRPO training data (URI and content fingerprint are lineage).
        base_model: The base model SFT started from.
        model_name: Registered model name.
        alias: Alias set on the new version.
        mlflow_experiment: MLflow experiment name.
        run_id: Pipeline run id for lineage tags.
        extra_config: Mapping of further RegisterConfig fields.

    Returns:
        Output: The new model version.
    """
    from pathlib import Path

    from r1ov.pipeline.tasks import run_task, tracking_fields
    from r1ov.registry.models import pipeline_lineage

    fields = {
        "model_dir": model.path,
        "model_name": model_name,
        "metrics_uri": str(Path(eval_results.path) / "metrics.json"),
        "verdicts_uri": str(Path(eval_results.path) / "verdicts.jsonl"),
        "alias": alias,
        "lineage": pipeline_lineage(
            pipeline_run_id=run_id,
            base_model=base_model,
            models={"sft": sft_model.path, "grpo": model.path},
            data={"sft_data": sft_data.path, "grpo_data": grpo_data_uri},
        ),
        **tracking_fields("register", mlflow_tracking_uri, mlflow_experiment, run_id),
    }
    return str(run_task("register", fields, extra_config)["version"])
