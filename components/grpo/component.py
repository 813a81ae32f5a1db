from kfp import dsl
from kfp.dsl import Input, Metrics, Model, Output

from components._image import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def grpo(
    sft_model: Input[Model],
    clevr_uri: str,
    model: Output[Model],
    metrics: Output[Metrics],
    learning_rate: float = 1e-6,
    num_generations: int = 8,
    beta: float = 0.04,
    max_prompt_length: int = 1024,
    max_completion_length: int = 4096,  # r1ov.config.REASONING_TOKENS (a test keeps them equal)
    per_device_train_batch_size: int = 8,
    gradient_accumulation_steps: int = 2,
    global_batch_size: int = 0,
    num_train_epochs: float = 1.0,
    max_steps: int = -1,
    rewards: str = "accuracy,format",
    generation: str = "vllm-server",
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
    """GRPO on CLEVR with accuracy and format rewards, rollouts from vLLM servers.

    Args:
        sft_model: Output of sft: the policy to start from.
        clevr_uri: CLEVR-style dataset (question, answer, image) in the r1ov record schema.
        learning_rate: Peers: 1e-6.
        num_generations: Completions per prompt (group size).
        beta: KL coefficient.
        max_prompt_length: Prompt token limit.
        max_completion_length: Completion token limit (SFT answers average ~960 tokens).
        per_device_train_batch_size: Completions per device step.
        gradient_accumulation_steps: Steps per optimizer update.
        global_batch_size: Peers: 128.
            Above 0, accumulation is derived from nodes x processes x per-device batch
            (an unreachable layout fails); 0 keeps gradient_accumulation_steps.
        num_train_epochs: Paper: 1 epoch on a 10K CLEVR subset.
        max_steps: Stop after this many steps; -1 lets epochs decide.
        rewards: Comma-separated reward names.
        generation: vllm-server (rollout pods), vllm-colocate, or hf.
        launcher: pytorchjob or trainjob (cluster) or local (torchrun in this pod).
        nnodes: Trainer nodes.
        nproc_per_node: Trainer processes (GPUs) per node.
        deepspeed: zero3, zero2 or none.
        checkpoint_root: Durable root (s3://...) for checkpoints; required by the cluster launchers.
        run_id: Pipeline run id, used in checkpoint paths and MLflow tags.
        mlflow_tracking_uri: MLflow tracking URI; empty turns tracking off.
        mlflow_experiment: MLflow experiment name.
        namespace: Namespace of the training job (and rollout servers); the run's own in a Kubeflow profile.
        task_gpus: GPUs this task's own pod holds (launcher=local on one GPU node; 0 otherwise).
        task_memory: this task pod's memory request and limit, as the pipeline sets them. Taken as an
            input so KFP's compiler hands the run parameter to the exit handler's sub-DAG, where the
            pod's resource placeholder reads it (a parameter used only as a resource is not passed down).
        extra_config: Mapping of further GRPOConfig fields.

    Returns:
        metrics: Steps, rewards, runtime.
        model: The GRPO-trained checkpoint.
    """
    from r1ov.pipeline.tasks import log_metrics, run_task, training_fields

    fields = training_fields(
        "grpo",
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
        "model_name_or_path": sft_model.path if launcher == "local" else sft_model.uri,
        "train_uri": clevr_uri,
        "output_dir": model.path,
        "learning_rate": learning_rate,
        "num_generations": num_generations,
        "beta": beta,
        "max_prompt_length": max_prompt_length,
        "max_completion_length": max_completion_length,
        "per_device_train_batch_size": per_device_train_batch_size,
        "gradient_accumulation_steps": gradient_accumulation_steps,
        "global_batch_size": global_batch_size or None,
        "num_train_epochs": num_train_epochs,
        "max_steps": max_steps,
        "rewards": [name.strip() for name in rewards.split(",") if name.strip()],
        "generation": generation,
    }
    summary = run_task("grpo", fields, extra_config)
    if summary.get("model_uri"):
        model.uri = summary["model_uri"]  # the durable copy the cluster job uploaded, not a second one
    log_metrics(metrics, summary)
