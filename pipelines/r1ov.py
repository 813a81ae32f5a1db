"""The R1-Onevision pipeline: formalize -> distill -> filter -> SFT -> GRPO -> eval -> register -> promote.

Compile (writes pipelines/r1ov.yaml and every components/*/component.yaml):

    make compile            # or: r1ov compile

Submit to Kubeflow Pipelines (paper settings are the defaults; override any parameter):

    kfp run create -e r1ov -f pipelines/r1ov.yaml source_uri=s3://... clevr_uri=s3://... \
        benchmarks='[{"name": "mathvista", "uri": "s3://..."}]' mlflow_tracking_uri=http://mlflow.r1ov.svc.cluster.local:5000

(or ``r1ov submit`` with the same ``key=value`` arguments, which also sets the run's service account).

Run locally end to end on the tiny model: ``make demo`` (the same compiled YAML under kfp.local).
"""

from kfp import dsl, kubernetes
from kfp.dsl.pipeline_channel import PipelineChannel

from components.cleanup.component import cleanup
from components.data_stage.component import data_stage
from components.decontaminate.component import decontaminate
from components.evaluate.component import evaluate
from components.grpo.component import grpo
from components.merge_shards.component import merge_shards
from components.promote.component import promote
from components.register.component import register
from components.sft.component import sft
from components.shard_source.component import shard_source
from r1ov.config import REASONING_TOKENS
from r1ov.k8s.bundle import CPU_POOL, GPU_RESOURCE, pool_selector, pool_tolerations
from r1ov.k8s.podspec import IMAGE_UID

# Kubernetes objects the platform chart (charts/r1ov-platform) creates in the run namespace.
TEACHER_SECRET = "r1ov-teachers"
S3_SECRET = "r1ov-s3"
MLFLOW_SECRET = "r1ov-mlflow"
SETTINGS_CONFIGMAP = "r1ov-settings"
# The keys of that ConfigMap (charts/r1ov-platform templates/configmap.yaml; a test compares).
SETTINGS_KEYS = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_DISABLE_TELEMETRY",
    "MLFLOW_S3_ENDPOINT_URL",
    "R1OV_S3_ENDPOINT",
    "AWS_REGION",
    "R1OV_IMAGE_REGISTRY",
    "R1OV_IMAGE_TAG",
    "R1OV_POOL_PREFIX",
)
DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"
MLFLOW_CLIENT_LABEL = "r1ov.io/mlflow-client"  # charts/r1ov-platform admits these pods to MLflow


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
    # Every key the platform chart publishes (optional: a key it leaves out is simply unset).
    kubernetes.use_config_map_as_env(task, SETTINGS_CONFIGMAP, {key: key for key in SETTINGS_KEYS}, optional=True)
    kubernetes.add_pod_label(task, MLFLOW_CLIENT_LABEL, "true")  # admitted by the MLflow NetworkPolicy
    return task


def _teacher_key(task: dsl.PipelineTask, key: str) -> dsl.PipelineTask:
    kubernetes.use_secret_as_env(task, TEACHER_SECRET, {key: "OPENAI_API_KEY"}, optional=True)
    return _object_store_access(task)


def _as_image_user(task: dsl.PipelineTask) -> None:
    """Run as the images' non-root user, as Pod Security "restricted" requires. KFP 2.17 hardens a task's
    container itself (no privilege escalation, capabilities dropped, seccomp RuntimeDefault) but leaves
    runAsNonRoot to the pipeline (kubeflow/pipelines backend/src/v2/compiler/argocompiler/
    security_context.go, applySecurityContextToExecutorTemplate); the driver sets these fields on the
    task's container (backend/src/v2/driver/k8s.go). A numeric user lets the kubelet verify non-root."""
    kubernetes.set_security_context(task, run_as_user=IMAGE_UID, run_as_group=IMAGE_UID, run_as_non_root=True)


def _on_pool(task: dsl.PipelineTask, pool: str, cpu: str, memory: str, memory_limit: str | None = None) -> None:
    """Place a task with the vocabulary the node-pool chart uses (r1ov.k8s.bundle), with requests that
    let the scheduler and the autoscaler size its node, and a memory limit (the request unless given):
    a namespace's ResourceQuota on limits.memory refuses a pod without one. CPU pools carry no GPU
    toleration."""
    for key, value in pool_selector(pool).items():
        kubernetes.add_node_selector(task, key, value)
    for toleration in pool_tolerations(pool):
        kubernetes.add_toleration(task, **toleration)
    task.set_cpu_request(cpu).set_memory_request(memory).set_memory_limit(memory_limit or memory)
    _as_image_user(task)


# Shard pods of the data fan-out running at once: each keeps teacher_max_concurrency requests in
# flight, so this times that is the load on a teacher endpoint (KFP needs a constant here).
DATA_PARALLELISM = 16
TRAINING_RETRIES = 2  # launcher retries of the SFT and GRPO tasks; each resumes from the last checkpoint


def data_stages(
    source_uri: str | PipelineChannel,
    run_id: str | PipelineChannel,
    *,
    data_root: str | PipelineChannel,
    data_shards: int | PipelineChannel,
    formalize_teacher_url: str | PipelineChannel,
    formalize_teacher_model: str | PipelineChannel,
    distill_teacher_url: str | PipelineChannel,
    distill_teacher_model: str | PipelineChannel,
    judge_url: str | PipelineChannel,
    judge_model: str | PipelineChannel,
    teacher_max_concurrency: int | PipelineChannel,
    require_answer_match: bool | PipelineChannel,
    min_accepted_fraction: float | PipelineChannel,
    mlflow_tracking_uri: str | PipelineChannel,
    mlflow_experiment: str | PipelineChannel,
    formalize_extra_config: dict | PipelineChannel,
    distill_extra_config: dict | PipelineChannel,
    filter_extra_config: dict | PipelineChannel,
    benchmarks: list | PipelineChannel | None = None,
    formalize_placement: tuple[int | PipelineChannel, dict | PipelineChannel, list | PipelineChannel] | None = None,
) -> dsl.PipelineTask:
    """Set aside the source's rows that are benchmark items (when ``benchmarks`` is given), split
    the rest into shards, run formalize -> distill -> filter per shard in parallel pods (each
    writing straight to durable storage under data_root, or the pipeline root), then merge.
    Returns the merge task; its ``filtered`` output is the training set.

    ``formalize_placement`` (GPUs, node selector, tolerations) places formalize's pods, where the
    detector and OCR run (the detector picks the pod's GPU when it has one); without it they go
    to the cpu pool with the other stages."""
    if benchmarks is not None:
        clean = decontaminate(
            source_uri=source_uri,
            benchmarks=benchmarks,
            data_root=data_root,
            pipeline_root=dsl.PIPELINE_ROOT_PLACEHOLDER,
            run_id=run_id,
        ).set_display_name("decontaminate")
        _object_store_access(clean).set_caching_options(False)
        _on_pool(clean, CPU_POOL, cpu="2", memory="4Gi", memory_limit="8Gi")
        source_uri = clean.outputs["Output"]
    shards = shard_source(
        source_uri=source_uri,
        num_shards=data_shards,
        data_root=data_root,
        pipeline_root=dsl.PIPELINE_ROOT_PLACEHOLDER,
        run_id=run_id,
    ).set_display_name("shard source")
    _object_store_access(shards).set_caching_options(False)
    _on_pool(shards, CPU_POOL, cpu="1", memory="4Gi", memory_limit="8Gi")
    with dsl.ParallelFor(shards.output, parallelism=DATA_PARALLELISM, name="data-shards") as shard:
        # Each stage of one shard: its teacher (the filter's is the LLM judge), the Secret key
        # holding that teacher's API key, and what the pod needs (the detector and OCR run in
        # formalize's pod next to its teacher calls).
        stages = (
            ("formalize", formalize_teacher_url, formalize_teacher_model, formalize_extra_config, "formalize-api-key",
             {}, ("4", "16Gi", "32Gi")),
            ("distill", distill_teacher_url, distill_teacher_model, distill_extra_config, "distill-api-key",
             {}, ("2", "4Gi", "8Gi")),
            ("filter", judge_url, judge_model, filter_extra_config, "judge-api-key",
             {"require_answer_match": require_answer_match}, ("2", "4Gi", "8Gi")),
        )  # fmt: skip
        shard_uri: str | PipelineChannel = shard
        for stage, url, model, extra_config, key, options, (cpu, memory, memory_limit) in stages:
            if stage == "formalize" and formalize_placement is not None:
                options = {**options, "task_gpus": formalize_placement[0]}
            task = data_stage(
                stage=stage,
                shard_uri=shard_uri,
                teacher_base_url=url,
                teacher_model=model,
                teacher_max_concurrency=teacher_max_concurrency,
                **options,
                extra_config=extra_config,
                mlflow_tracking_uri=mlflow_tracking_uri,
                mlflow_experiment=mlflow_experiment,
                run_id=run_id,
            ).set_display_name(f"{stage} shard")
            if stage == "formalize" and formalize_placement is not None:
                gpus, node_selector, tolerations = formalize_placement
                task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(gpus)
                kubernetes.add_node_selector_json(task, node_selector)
                kubernetes.add_toleration_json(task, tolerations)
                task.set_cpu_request(cpu).set_memory_request(memory).set_memory_limit(memory_limit)
                _as_image_user(task)
            else:
                _on_pool(task, CPU_POOL, cpu=cpu, memory=memory, memory_limit=memory_limit)
            # Progress and caches are durable: a retried pod resumes; KFP's own cache would skip it.
            _teacher_key(task, key).set_retry(2).set_caching_options(False)
            shard_uri = task.outputs["Output"]
    merged = merge_shards(
        shard_uris=dsl.Collected(shard_uri),
        min_accepted_fraction=min_accepted_fraction,
        mlflow_tracking_uri=mlflow_tracking_uri,
        mlflow_experiment=mlflow_experiment,
        run_id=run_id,
    ).set_display_name("merge shards")
    _object_store_access(merged).set_caching_options(False)
    _on_pool(merged, CPU_POOL, cpu="1", memory="4Gi", memory_limit="8Gi")
    return merged


def _keep_running(task: dsl.PipelineTask) -> None:
    """Consolidation must not evict a task that watches (or is) a long job: Karpenter waits for it."""
    kubernetes.add_pod_annotation(task, DO_NOT_DISRUPT, "true")


def _as_training_launcher(
    task: dsl.PipelineTask,
    gpus: PipelineChannel,
    memory: PipelineChannel,
    node_selector: PipelineChannel,
    tolerations: PipelineChannel,
) -> None:
    """A training task: a CPU launcher on the cpu pool by default (its PyTorchJob/TrainJob pods hold
    the GPUs and carry the train pool's selector and toleration, see r1ov.k8s.trainjobs); with
    launcher=local on one GPU node, submit train_task_gpus, train_task_memory, train_task_node_selector
    and train_task_tolerations so the task pod is that node."""
    task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(gpus)
    kubernetes.add_node_selector_json(task, node_selector)
    kubernetes.add_toleration_json(task, tolerations)
    # train_task_memory: a launcher's few GiB, or with launcher=local the node's memory it trains in.
    task.set_cpu_request("1").set_memory_request(memory).set_memory_limit(memory)
    _keep_running(task)
    _as_image_user(task)
    kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory")
    # A failed job (every pod restart spent) or a lost launcher pod runs again with the same run_id,
    # hence the same checkpoint_uri: the new job resumes from the latest complete checkpoint.
    task.set_retry(num_retries=TRAINING_RETRIES, backoff_duration="120s", backoff_factor=2)
    _object_store_access(task).set_caching_options(False)


def _on_gpu_pool(task: dsl.PipelineTask, pool: str, gpus: int, cpu: str, memory: str) -> dsl.PipelineTask:
    """Schedule on a GPU pool with the vocabulary the node-pool chart uses."""
    task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(gpus)
    _on_pool(task, pool, cpu, memory)
    _keep_running(task)
    # vLLM and NCCL need more shared memory than the container default.
    kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory")
    return _object_store_access(task)


@dsl.pipeline(name="r1ov", description="R1-Onevision: cross-modal formalization, CoT distillation, SFT, GRPO, eval")
def r1ov_pipeline(
    source_uri: str,
    clevr_uri: str,
    # Typed as the KFP CLI decodes `key=value`: JSON lists and mappings arrive as LIST and STRUCT.
    benchmarks: list,
    mlflow_tracking_uri: str,
    # data: teachers over any OpenAI-compatible endpoint
    formalize_teacher_url: str = "https://api.openai.com/v1",
    formalize_teacher_model: str = "gpt-4o",
    distill_teacher_url: str = "https://api.deepseek.com/v1",
    distill_teacher_model: str = "deepseek-reasoner",
    teacher_max_concurrency: int = 16,
    require_answer_match: bool = True,
    judge_url: str = "https://api.openai.com/v1",  # the filter's LLM judge (key: judge-api-key); empty: rules only
    judge_model: str = "gpt-4o",
    data_shards: int = 8,  # pods per data stage (DATA_PARALLELISM run at once)
    data_root: str = "",  # durable root (s3://...) for shards and response caches; empty: the pipeline root
    min_accepted_fraction: float = 0.5,  # fail before training when less of the data survives
    # Formalize's pods run the perception tools: with them on (the default), one GPU of the rollout
    # pool runs the detector. With perception off (formalize_extra_config turns detector_model to ""),
    # submit formalize_task_gpus=0 and the cpu pool's selector with no tolerations.
    formalize_task_gpus: int = 1,
    formalize_task_node_selector: dict = pool_selector("rollout"),  # noqa: B008
    formalize_task_tolerations: list = pool_tolerations("rollout"),  # noqa: B008
    # One reasoning length for every stage: GRPO's completion limit and eval's generation limit
    # (the SFT model's answers average ~960 tokens in the paper; a shorter limit cuts them off).
    max_reasoning_tokens: int = REASONING_TOKENS,
    # SFT (paper: full fine-tune, lr 1e-5, batch 1 x accum 16 x 8 GPUs, 1 epoch, cosine, warmup 0.05)
    base_model: str = "Qwen/Qwen2.5-VL-7B-Instruct",
    sft_learning_rate: float = 1e-5,
    sft_per_device_train_batch_size: int = 1,
    sft_gradient_accumulation_steps: int = 16,
    sft_global_batch_size: int = 128,
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
    grpo_global_batch_size: int = 128,
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
    # KFP writes defaults into the compiled YAML; these are never mutated. The training tasks watch
    # their jobs from the cpu pool; with launcher=local they train in place: submit the train pool's
    # selector and the GPU toleration (README, "On a cluster").
    train_task_node_selector: dict = pool_selector(CPU_POOL),  # noqa: B008
    train_task_tolerations: list = [],  # noqa: B006
    train_task_memory: str = "4Gi",
    # evaluation, registry, promotion
    eval_backend: str = "vllm",
    eval_temperature: float = 0.0,
    mlflow_experiment: str = "r1ov",
    model_name: str = "r1ov-qwen2.5-vl",
    promote_metric: str = "overall/accuracy",
    promote_min_value: float = 0.0,
    promote_min_improvement: float = 0.0,
    promote_alpha: float = 0.05,
    # any other config field, per stage, as a JSON mapping (`sft_extra_config='{"save_steps": 100}'`)
    formalize_extra_config: dict = {},  # noqa: B006
    distill_extra_config: dict = {},  # noqa: B006
    filter_extra_config: dict = {},  # noqa: B006
    sft_extra_config: dict = {},  # noqa: B006
    grpo_extra_config: dict = {},  # noqa: B006
    eval_extra_config: dict = {},  # noqa: B006
    # roll the endpoint on promotion: {"endpoint": {"deployment": "r1ov-serve-r1ov-inference", "namespace": "r1ov"}}
    promote_extra_config: dict = {},  # noqa: B006
):
    run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER
    # Runs however the stages end (success, failure, cancel): sweeps jobs and rollout servers, and
    # ends the run's MLflow story in the state the pipeline ended in.
    sweep = cleanup(
        run_id=run_id,
        launcher=launcher,
        namespace=namespace,
        mlflow_tracking_uri=mlflow_tracking_uri,
        mlflow_experiment=mlflow_experiment,
    ).set_display_name("clean up")
    _object_store_access(sweep)
    _on_pool(sweep, CPU_POOL, cpu="250m", memory="512Mi", memory_limit="1Gi")

    with dsl.ExitHandler(sweep, name="stages"):
        merged = data_stages(
            source_uri,
            run_id,
            data_root=data_root,
            data_shards=data_shards,
            formalize_teacher_url=formalize_teacher_url,
            formalize_teacher_model=formalize_teacher_model,
            distill_teacher_url=distill_teacher_url,
            distill_teacher_model=distill_teacher_model,
            judge_url=judge_url,
            judge_model=judge_model,
            teacher_max_concurrency=teacher_max_concurrency,
            require_answer_match=require_answer_match,
            min_accepted_fraction=min_accepted_fraction,
            mlflow_tracking_uri=mlflow_tracking_uri,
            mlflow_experiment=mlflow_experiment,
            formalize_extra_config=formalize_extra_config,
            distill_extra_config=distill_extra_config,
            filter_extra_config=filter_extra_config,
            benchmarks=benchmarks,  # the evaluation's benchmarks: no training row is one of their items
            formalize_placement=(formalize_task_gpus, formalize_task_node_selector, formalize_task_tolerations),
        )

        sft_task = sft(
            train_data=merged.outputs["filtered"],
            base_model=base_model,
            learning_rate=sft_learning_rate,
            per_device_train_batch_size=sft_per_device_train_batch_size,
            gradient_accumulation_steps=sft_gradient_accumulation_steps,
            global_batch_size=sft_global_batch_size,
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
            task_memory=train_task_memory,
            extra_config=sft_extra_config,
        ).set_display_name("SFT")
        _as_training_launcher(
            sft_task, train_task_gpus, train_task_memory, train_task_node_selector, train_task_tolerations
        )

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
            global_batch_size=grpo_global_batch_size,
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
            task_memory=train_task_memory,
            extra_config=grpo_extra_config,
        ).set_display_name("GRPO")
        _as_training_launcher(
            grpo_task, train_task_gpus, train_task_memory, train_task_node_selector, train_task_tolerations
        )

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
            _on_gpu_pool(evals[label], pool="rollout", gpus=1, cpu="8", memory="64Gi")

        register_task = register(
            model=grpo_task.outputs["model"],
            eval_results=evals["sft+grpo"].outputs["results"],
            sft_model=sft_task.outputs["model"],
            sft_data=merged.outputs["filtered"],
            grpo_data_uri=clevr_uri,
            base_model=base_model,
            mlflow_tracking_uri=mlflow_tracking_uri,
            model_name=model_name,
            mlflow_experiment=mlflow_experiment,
            run_id=run_id,
        ).set_display_name("register challenger")
        _object_store_access(register_task).set_caching_options(False)
        _on_pool(register_task, CPU_POOL, cpu="1", memory="4Gi", memory_limit="8Gi")

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
            extra_config=promote_extra_config,
        ).set_display_name("promote champion")
        _object_store_access(promote_task).set_caching_options(False)
        _on_pool(promote_task, CPU_POOL, cpu="500m", memory="1Gi", memory_limit="2Gi")
