"""The R1-Onevision pipeline: formalize -> distill -> filter -> SFT -> GRPO -> eval -> register -> promote.

Compile (writes pipelines/r1ov.yaml and every components/*/component.yaml):

    make compile            # or: r1ov compile

Submit to Kubeflow Pipelines (paper settings are the defaults; override any parameter):

    kfp run create -e r1ov -f pipelines/r1ov.yaml source_uri=s3://... clevr_uri=s3://... \
        benchmarks='[{"name": "mathvista", "uri": "s3://..."}]' mlflow_tracking_uri=http://mlflow.r1ov.svc.cluster.local:5000

Run locally end to end on the tiny model: ``make demo`` (the same compiled YAML under kfp.local).
"""

from kfp import dsl, kubernetes
from kfp.dsl.pipeline_channel import PipelineChannel

from components.cleanup.component import cleanup
from components.distill.component import distill
from components.evaluate.component import evaluate
from components.filter.component import filter_reasoning
from components.formalize.component import formalize
from components.grpo.component import grpo
from components.promote.component import promote
from components.register.component import register
from components.sft.component import sft
from r1ov.bundle import GPU_RESOURCE, GPU_TAINT, POOL_LABEL

# Kubernetes objects the platform chart (charts/r1ov-platform) creates in the run namespace.
TEACHER_SECRET = "r1ov-teachers"
S3_SECRET = "r1ov-s3"
MLFLOW_SECRET = "r1ov-mlflow"
SETTINGS_CONFIGMAP = "r1ov-settings"


def _object_store_access(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """S3 credentials and endpoint, and MLflow credentials, from the namespace; never literals."""
    kubernetes.use_secret_as_env(
        task,
        S3_SECRET,
        {"access-key-id": "AWS_ACCESS_KEY_ID", "secret-access-key": "AWS_SECRET_ACCESS_KEY"},
        optional=True,
    )
    kubernetes.use_secret_as_env(
        task,
        MLFLOW_SECRET,
        {"username": "MLFLOW_TRACKING_USERNAME", "password": "MLFLOW_TRACKING_PASSWORD"},
        optional=True,
    )
    kubernetes.use_config_map_as_env(
        task, SETTINGS_CONFIGMAP, {"R1OV_S3_ENDPOINT": "R1OV_S3_ENDPOINT", "AWS_REGION": "AWS_REGION"}, optional=True
    )
    return task


def _teacher_key(task: dsl.PipelineTask, key: str) -> dsl.PipelineTask:
    kubernetes.use_secret_as_env(task, TEACHER_SECRET, {key: "OPENAI_API_KEY"}, optional=True)
    return _object_store_access(task)


def _tolerate_gpu_taint(task: dsl.PipelineTask) -> None:
    kubernetes.add_toleration(task, key=GPU_TAINT["key"], operator=GPU_TAINT["operator"], effect=GPU_TAINT["effect"])


def _as_training_launcher(task: dsl.PipelineTask, gpus: PipelineChannel, node_selector: PipelineChannel) -> None:
    """A training task: a CPU launcher by default (its PyTorchJob/TrainJob pods hold the GPUs and
    carry the train pool's selector and toleration, see r1ov.k8s.trainjobs); with launcher=local
    on one GPU node, submit train_task_gpus and train_task_node_selector so the task pod is that node."""
    task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(gpus)
    kubernetes.add_node_selector_json(task, node_selector)
    _tolerate_gpu_taint(task)
    kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory")
    _object_store_access(task).set_caching_options(False)


def _on_gpu_pool(task: dsl.PipelineTask, pool: str, gpus: int) -> dsl.PipelineTask:
    """Schedule on the GPU pool with the vocabulary the node-pool chart uses."""
    task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(gpus)
    kubernetes.add_node_selector(task, POOL_LABEL, pool)
    _tolerate_gpu_taint(task)
    # vLLM and NCCL need more shared memory than the container default.
    kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory")
    return _object_store_access(task)


@dsl.pipeline(name="r1ov", description="R1-Onevision: cross-modal formalization, CoT distillation, SFT, GRPO, eval")
def r1ov_pipeline(
    source_uri: str,
    clevr_uri: str,
    benchmarks: str,
    mlflow_tracking_uri: str,
    # data: teachers over any OpenAI-compatible endpoint
    formalize_teacher_url: str = "https://api.openai.com/v1",
    formalize_teacher_model: str = "gpt-4o",
    distill_teacher_url: str = "https://api.deepseek.com/v1",
    distill_teacher_model: str = "deepseek-reasoner",
    teacher_max_concurrency: int = 16,
    require_answer_match: bool = True,
    # One reasoning length for every stage: GRPO's completion limit and eval's generation limit
    # (the SFT model's answers average ~960 tokens in the paper; a shorter limit cuts them off).
    max_reasoning_tokens: int = 4096,
    # SFT (paper: full fine-tune, lr 1e-5, batch 1 x accum 16 x 8 GPUs, 1 epoch, cosine, warmup 0.05)
    base_model: str = "Qwen/Qwen2.5-VL-7B-Instruct",
    sft_learning_rate: float = 1e-5,
    sft_per_device_train_batch_size: int = 1,
    sft_gradient_accumulation_steps: int = 16,
    sft_num_train_epochs: float = 1.0,
    sft_max_steps: int = -1,
    sft_lr_scheduler_type: str = "cosine",
    sft_warmup_ratio: float = 0.05,
    sft_max_length: int = 8192,
    sft_deepspeed: str = "zero3",
    # GRPO on CLEVR (peers: 8 generations, beta 0.04, lr 1e-6, prompt 1024)
    grpo_learning_rate: float = 1e-6,
    grpo_num_generations: int = 8,
    grpo_beta: float = 0.04,
    grpo_max_prompt_length: int = 1024,
    grpo_per_device_train_batch_size: int = 8,
    grpo_gradient_accumulation_steps: int = 2,
    grpo_num_train_epochs: float = 1.0,
    grpo_max_steps: int = -1,
    grpo_rewards: str = "accuracy,format",
    grpo_generation: str = "vllm-server",
    grpo_deepspeed: str = "zero3",
    # where training runs
    launcher: str = "pytorchjob",
    nnodes: int = 1,
    nproc_per_node: int = 8,
    checkpoint_root: str = "",
    namespace: str = "r1ov",
    train_task_gpus: int = 0,
    # KFP writes defaults into the compiled YAML; these are never mutated.
    train_task_node_selector: dict = {},  # noqa: B006 - e.g. {"r1ov.io/pool": "train"} with launcher=local
    # evaluation, registry, promotion
    eval_backend: str = "vllm",
    eval_temperature: float = 0.0,
    mlflow_experiment: str = "r1ov",
    model_name: str = "r1ov-qwen2.5-vl",
    promote_metric: str = "overall/accuracy",
    promote_min_value: float = 0.0,
    promote_min_improvement: float = 0.0,
    promote_alpha: float = 0.05,
    # any other config field, per stage, as a YAML/JSON mapping
    formalize_extra_config: str = "",
    distill_extra_config: str = "",
    filter_extra_config: str = "",
    sft_extra_config: str = "",
    grpo_extra_config: str = "",
    eval_extra_config: str = "",
):
    run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER
    # Runs however the stages end (success, failure, cancel): sweeps jobs and rollout servers.
    sweep = cleanup(run_id=run_id, launcher=launcher, namespace=namespace).set_display_name("clean up")
    _object_store_access(sweep)

    with dsl.ExitHandler(sweep, name="stages"):
        formalized = formalize(
            source_uri=source_uri,
            teacher_base_url=formalize_teacher_url,
            teacher_model=formalize_teacher_model,
            teacher_max_concurrency=teacher_max_concurrency,
            extra_config=formalize_extra_config,
            mlflow_tracking_uri=mlflow_tracking_uri,
            mlflow_experiment=mlflow_experiment,
            run_id=run_id,
        ).set_display_name("formalize images")
        _teacher_key(formalized, "formalize-api-key").set_retry(2)

        distilled = distill(
            formalized=formalized.outputs["formalized"],
            teacher_base_url=distill_teacher_url,
            teacher_model=distill_teacher_model,
            teacher_max_concurrency=teacher_max_concurrency,
            extra_config=distill_extra_config,
            mlflow_tracking_uri=mlflow_tracking_uri,
            mlflow_experiment=mlflow_experiment,
            run_id=run_id,
        ).set_display_name("distill reasoning")
        _teacher_key(distilled, "distill-api-key").set_retry(2)

        filtered = filter_reasoning(
            distilled=distilled.outputs["distilled"],
            require_answer_match=require_answer_match,
            extra_config=filter_extra_config,
            mlflow_tracking_uri=mlflow_tracking_uri,
            mlflow_experiment=mlflow_experiment,
            run_id=run_id,
        ).set_display_name("filter reasoning")
        _object_store_access(filtered)

        sft_task = sft(
            train_data=filtered.outputs["filtered"],
            base_model=base_model,
            learning_rate=sft_learning_rate,
            per_device_train_batch_size=sft_per_device_train_batch_size,
            gradient_accumulation_steps=sft_gradient_accumulation_steps,
            num_train_epochs=sft_num_train_epochs,
            max_steps=sft_max_steps,
            lr_scheduler_type=sft_lr_scheduler_type,
            warmup_ratio=sft_warmup_ratio,
            max_length=sft_max_length,
            launcher=launcher,
            nnodes=nnodes,
            nproc_per_node=nproc_per_node,
            deepspeed=sft_deepspeed,
            checkpoint_root=checkpoint_root,
            run_id=run_id,
            mlflow_tracking_uri=mlflow_tracking_uri,
            mlflow_experiment=mlflow_experiment,
            namespace=namespace,
            task_gpus=train_task_gpus,
            extra_config=sft_extra_config,
        ).set_display_name("SFT")
        _as_training_launcher(sft_task, train_task_gpus, train_task_node_selector)

        grpo_task = grpo(
            sft_model=sft_task.outputs["model"],
            clevr_uri=clevr_uri,
            learning_rate=grpo_learning_rate,
            num_generations=grpo_num_generations,
            beta=grpo_beta,
            max_prompt_length=grpo_max_prompt_length,
            max_completion_length=max_reasoning_tokens,
            per_device_train_batch_size=grpo_per_device_train_batch_size,
            gradient_accumulation_steps=grpo_gradient_accumulation_steps,
            num_train_epochs=grpo_num_train_epochs,
            max_steps=grpo_max_steps,
            rewards=grpo_rewards,
            generation=grpo_generation,
            launcher=launcher,
            nnodes=nnodes,
            nproc_per_node=nproc_per_node,
            deepspeed=grpo_deepspeed,
            checkpoint_root=checkpoint_root,
            run_id=run_id,
            mlflow_tracking_uri=mlflow_tracking_uri,
            mlflow_experiment=mlflow_experiment,
            namespace=namespace,
            task_gpus=train_task_gpus,
            extra_config=grpo_extra_config,
        ).set_display_name("GRPO")
        _as_training_launcher(grpo_task, train_task_gpus, train_task_node_selector)

        # The paper's ablation rows, scored on the same items: base, +SFT, +SFT+RL.
        evals = {}
        models = {"base": {"model_name_or_path": base_model}, "sft": {"model": sft_task.outputs["model"]},
                  "sft+grpo": {"model": grpo_task.outputs["model"]}}  # fmt: skip
        for label, model in models.items():
            evals[label] = evaluate(
                **model,
                label=label,
                benchmarks=benchmarks,
                backend=eval_backend,
                max_new_tokens=max_reasoning_tokens,
                temperature=eval_temperature,
                mlflow_tracking_uri=mlflow_tracking_uri,
                mlflow_experiment=mlflow_experiment,
                run_id=run_id,
                extra_config=eval_extra_config,
            ).set_display_name(f"evaluate {label}")
            _on_gpu_pool(evals[label], pool="rollout", gpus=1)

        register_task = register(
            model=grpo_task.outputs["model"],
            eval_results=evals["sft+grpo"].outputs["results"],
            sft_model=sft_task.outputs["model"],
            sft_data=filtered.outputs["filtered"],
            grpo_data_uri=clevr_uri,
            base_model=base_model,
            mlflow_tracking_uri=mlflow_tracking_uri,
            model_name=model_name,
            mlflow_experiment=mlflow_experiment,
            run_id=run_id,
        ).set_display_name("register challenger")
        _object_store_access(register_task).set_caching_options(False)

        # Promote acts on the version this run registered, never on whoever holds `challenger` now.
        promote_task = promote(
            version=register_task.output,
            baseline_results=evals["base"].outputs["results"],
            mlflow_tracking_uri=mlflow_tracking_uri,
            model_name=model_name,
            metric=promote_metric,
            min_value=promote_min_value,
            min_improvement=promote_min_improvement,
            alpha=promote_alpha,
            mlflow_experiment=mlflow_experiment,
            run_id=run_id,
        ).set_display_name("promote champion")
        _object_store_access(promote_task).set_caching_options(False)
