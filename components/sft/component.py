from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components._image import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def sft(
    train_data: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    base_model: str = "Qwen/Qwen2.5-VL-7B-Instruct",
    learning_rate: float = 1e-5,
    per_device_train_batch_size: int = 1,
    gradient_accumulation_steps: int = 16,
    global_batch_size: int = 0,
    num_train_epochs: float = 1.0,
    max_steps: int = -1,
    lr_scheduler_type: str = "cosine",
    warmup_ratio: float = 0.05,
    max_length: int = 8192,
    launcher: str = "pytorchjob",
    nnodes: int = 1,
    nproc_per_node: int = 8,
    deepspeed: str = "zero3",
    checkpoint_root: str = "",
    run_id: str = "",
    mlflow_tracking_uri: str = "",
    mlflow_experiment: str = "r1ov",
    namespace: str = "r1ov",
    task_gpus: int = 0,
    task_memory: str = "4Gi",
    extra_config: dict = {},  # noqa: B006 - KFP serializes the default; never mutated
):
    """Supervised fine-tuning of Qwen2.5-VL on the filtered reasoning data (TRL + DeepSpeed ZeRO).

    Args:
        train_data: Output of filter_reasoning.
        base_model: HF model id or checkpoint path (paper: Qwen2.5-VL-7B/3B-Instruct).
        learning_rate: Paper: 1e-5.
        per_device_train_batch_size: Paper: 1.
        gradient_accumulation_steps: Paper: 16 (global batch 128 on 8 GPUs).
        global_batch_size: Paper: 128.
            Above 0, accumulation is derived from nodes x processes x per-device batch
            (an unreachable layout fails); 0 keeps gradient_accumulation_steps.
        num_train_epochs: Paper: 1.
        max_steps: Stop after this many steps; -1 lets epochs decide.
        lr_scheduler_type: Paper: cosine.
        warmup_ratio: Paper: 0.05.
        max_length: Paper: cutoff 8192 tokens.
        launcher: pytorchjob or trainjob (multi-node on the cluster) or local (torchrun in this pod).
        nnodes: Nodes for the training job.
        nproc_per_node: Processes (GPUs) per node.
        deepspeed: zero3 (7B) or zero2 (3B) or none.
        checkpoint_root: Durable root (s3://...) for checkpoints; required by the cluster launchers.
        run_id: Pipeline run id, used in checkpoint paths and MLflow tags.
        mlflow_tracking_uri: MLflow tracking URI; empty turns tracking off.
        mlflow_experiment: MLflow experiment name.
        namespace: Namespace of the training job (and rollout servers); the run's own in a Kubeflow profile.
        task_gpus: GPUs this task's own pod holds (launcher=local on one GPU node; 0 otherwise).
        task_memory: this task pod's memory request and limit, as the pipeline sets them. Taken as an
            input so KFP's compiler hands the run parameter to the exit handler's sub-DAG, where the
            pod's resource placeholder reads it (a parameter used only as a resource is not passed down).
        extra_config: Mapping of further SFTConfig fields.

    Returns:
        metrics: Steps, final loss, runtime.
        model: The fine-tuned checkpoint (save_pretrained directory with processor).
    """
    from r1ov.pipeline.tasks import log_metrics, run_task, training_fields

    fields = training_fields(
        "sft",
        launcher=launcher,
        nnodes=nnodes,
        nproc_per_node=nproc_per_node,
        deepspeed=deepspeed,
        checkpoint_root=checkpoint_root,
        run_id=run_id,
        mlflow_tracking_uri=mlflow_tracking_uri,
        mlflow_experiment=mlflow_experiment,
        namespace=namespace,
        task_gpus=task_gpus,
    )
    fields |= {
        "model_name_or_path": base_model,
        # Training pods elsewhere read the artifact from the object store; a local run reads the file.
        "train_uri": train_data.path if launcher == "local" else train_data.uri,
        "output_dir": model.path,
        "learning_rate": learning_rate,
        "per_device_train_batch_size": per_device_train_batch_size,
        "gradient_accumulation_steps": gradient_accumulation_steps,
        "global_batch_size": global_batch_size or None,
        "num_train_epochs": num_train_epochs,
        "max_steps": max_steps,
        "lr_scheduler_type": lr_scheduler_type,
        "warmup_ratio": warmup_ratio,
        "max_length": max_length,
    }
    summary = run_task("sft", fields, extra_config)
    if summary.get("model_uri"):
        model.uri = summary["model_uri"]  # the durable copy the cluster job uploaded, not a second one
    log_metrics(metrics, summary)
