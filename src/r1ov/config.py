"""Typed configs for every stage, loaded from YAML recipes with ``--set key=value`` overrides.

Each stage has one config class here; the stage module holds the behaviour. Validation
happens once, at load: an unknown key, a wrong type or a missing required value raises
:class:`ConfigError` naming the field (``sft.learning_rate: Input should be a valid number``).
Defaults follow the R1-Onevision paper where it names a value; the demo recipe shrinks them.
"""

from __future__ import annotations

import importlib.util
import os
import textwrap
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from r1ov.data import storage


class ConfigError(ValueError):
    """A config that cannot be used; the message names every offending field."""


class Strict(BaseModel):
    # extra="forbid": a misspelt key is an error, never a silently ignored setting.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


# --------------------------------------------------------------------------- shared parts


class TeacherConfig(Strict):
    """An OpenAI-compatible chat endpoint (GPT-4o, DeepSeek-R1, vLLM in-cluster, or offline)."""

    base_url: str = Field("https://api.openai.com/v1", description="OpenAI-compatible base URL, ending in /v1")
    model: str = Field("gpt-4o", description="model name sent in each request")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the API key")
    max_concurrency: int = Field(8, ge=1, description="requests in flight at once")
    max_retries: int = Field(5, ge=0, description="retries per request on 429/5xx/timeouts/broken bodies")
    timeout_s: float | None = Field(
        None, gt=0, description="seconds per attempt; none: timeout_base_s + max_tokens / min_tokens_per_s"
    )
    timeout_base_s: float = Field(60.0, gt=0, description="fixed part of the derived timeout (queueing, prompt)")
    min_tokens_per_s: float = Field(20.0, gt=0, description="slowest healthy generation rate, for the timeout")
    backoff_s: float = Field(0.5, ge=0, description="first retry waits up to this (doubling, full jitter)")
    max_backoff_s: float = Field(30.0, ge=0, description="longest wait between retries without Retry-After")
    temperature: float = Field(0.2, ge=0, description="sampling temperature")
    max_tokens: int = Field(4096, ge=1, description="completion token limit per request")
    cache: bool = Field(True, description="persist every answered call so no re-run pays for it again")
    cache_uri: str | None = Field(
        None, description="response cache location (content-hash keyed); none: <output_uri>/_cache of the stage"
    )
    max_requests: int | None = Field(None, ge=1, description="budget: refuse to send more requests than this")
    usd_per_million_prompt_tokens: float | None = Field(None, ge=0, description="price, for the cost estimate")
    usd_per_million_completion_tokens: float | None = Field(None, ge=0, description="price, for the cost estimate")


def _default_eval_backend() -> str:
    """vllm where it can run (an NVIDIA device and vLLM installed), else transformers. Looked up
    without importing torch or vllm, so loading a config stays fast."""
    gpu = os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia/version")
    return "vllm" if gpu and importlib.util.find_spec("vllm") is not None else "hf"


def _default_tracking_uri() -> str:
    # Never a file in the current directory unless asked: $MLFLOW_TRACKING_URI, else a per-user store.
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.home() / '.cache' / 'r1ov' / 'mlflow.db'}"


class TrackingConfig(Strict):
    """Where runs are tracked; a local SQLite file by default so nothing needs a server."""

    tracking_uri: str = Field(
        default_factory=_default_tracking_uri,
        description="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else ~/.cache/r1ov/mlflow.db)",
    )
    experiment: str = Field("r1ov", description="MLflow experiment name")
    artifact_location: str | None = Field(None, description="artifact root for a new experiment")
    run_name: str | None = Field(None, description="MLflow run name")
    parent_run_id: str | None = Field(None, description="nest this stage's run under a pipeline run")
    tags: dict[str, str] = Field(default_factory=dict, description="extra run tags (lineage)")


class ClusterJobConfig(Strict):
    """How a training stage runs on Kubernetes (PyTorchJob or TrainJob launchers)."""

    namespace: str = Field("r1ov", description="namespace of the job")
    image: str | None = Field(None, description="training image; defaults to the bundle's train image")
    gpus_per_node: int = Field(8, ge=0, description="nvidia.com/gpu per node")
    cpu: str = Field("32", description="CPU request per node")
    memory: str = Field("512Gi", description="memory request per node")
    pool: str = Field("train", description="GPU node pool (label r1ov.io/pool)")
    service_account: str | None = Field(
        "r1ov-pipeline",
        description="service account of the training and rollout pods: the platform chart's (serviceAccount.name), "
        "whose IRSA / GKE Workload Identity annotations give them object-store access without keys; "
        "none: the namespace's default account (then map Secret keys to the AWS variables with secret_key_env)",
    )
    secret_env: list[str] = Field(default_factory=list, description="Secrets exposed as env (envFrom)")
    active_deadline_s: int | None = Field(
        3 * 24 * 3600,
        ge=1,
        description="the job fails after this many seconds (a hung job would hold its GPUs for ever); "
        "the launcher gives up a little later; none: no deadline",
    )
    backoff_limit: int = Field(
        3,
        ge=0,
        description="pod restarts before the job fails; each restart resumes from the latest complete checkpoint "
        "(0: a failed or preempted pod fails the job)",
    )
    gpu_memory_gib: float | None = Field(
        80.0,
        gt=0,
        description="memory of one GPU of the pool (80: H100/A100-80G, 141: H200): the launcher refuses, before any "
        "GPU is requested, a plan whose estimate (r1ov sft|grpo --plan) does not fit; none: no check",
    )
    stop_grace_s: int = Field(
        900,
        ge=30,
        description="seconds a stopping training pod gets to save and upload its SIGTERM checkpoint: torchrun's "
        "worker stop timeout, and (plus 30 s) the pod's terminationGracePeriodSeconds; size it to one checkpoint "
        "save + upload (a 7B ZeRO-3 checkpoint with optimizer states is ~100 GB)",
    )
    ttl_after_finished_s: int = Field(3600, ge=0, description="keep finished jobs this long")
    trainjob_runtime: str = Field("torch-distributed", description="ClusterTrainingRuntime for TrainJob")
    poll_s: float = Field(10.0, gt=0, description="seconds between status checks")
    labels: dict[str, str] = Field(
        default_factory=dict, description="extra labels on every object launched (the pipeline sets its run id)"
    )
    clean_pod_policy: Literal["None", "Running", "All"] = Field(
        "Running", description="PyTorchJob: pods deleted when the job ends (Running frees GPUs, keeps logs)"
    )
    shm_size: str | None = Field(None, description="size limit of the in-memory /dev/shm; none leaves it to the node")
    secret_keys: dict[str, list[str]] = Field(
        default_factory=dict,
        description="TrainJob only: keys of each secret_env Secret to expose as env (its trainer has no envFrom)",
    )
    secret_key_env: dict[str, dict[str, str]] = Field(
        default_factory=lambda: {
            "r1ov-s3": {"access-key-id": "AWS_ACCESS_KEY_ID", "secret-access-key": "AWS_SECRET_ACCESS_KEY"},
            "r1ov-mlflow": {"username": "MLFLOW_TRACKING_USERNAME", "password": "MLFLOW_TRACKING_PASSWORD"},
        },
        description="Secret -> {key: ENV_NAME} mapped into job and rollout pods (optional: a missing Secret or key "
        "is skipped, so clusters with workload identity need none); the platform chart's names by default",
    )
    settings_config_map: str | None = Field(
        "r1ov-settings", description="ConfigMap whose S3 endpoint, region and MLflow settings the pods read (optional)"
    )
    work_dir: str = Field("/workspace", description="mount path of the pods' writable work volume (emptyDir)")
    work_size: str | None = Field(None, description="size limit of the work volume (model copy, checkpoints)")
    env: dict[str, str] = Field(default_factory=dict, description="extra env of the training containers")
    nccl_env: dict[str, str] = Field(
        default_factory=lambda: {"NCCL_DEBUG": "WARN", "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1"},
        description="NCCL settings of the training containers (e.g. NCCL_SOCKET_IFNAME, NCCL_IB_HCA)",
    )
    efa_devices: int = Field(
        0, ge=0, description="AWS EFA devices per node (vpc.amazonaws.com/efa) with the libfabric env NCCL needs"
    )
    extra_resources: dict[str, str] = Field(
        default_factory=dict, description="more resource limits per node, e.g. {'rdma/ib': '1'}"
    )
    annotations: dict[str, str] = Field(
        default_factory=dict,
        description="extra pod annotations; the Istio sidecar opt-out and karpenter.sh/do-not-disrupt are always set "
        "unless overridden here",
    )
    volumes: list[dict[str, Any]] = Field(default_factory=list, description="extra pod volumes (Kubernetes Volume)")
    volume_mounts: list[dict[str, Any]] = Field(
        default_factory=list, description="extra mounts in the training container (Kubernetes VolumeMount)"
    )


class DistributedConfig(Strict):
    """Process layout shared by SFT and GRPO."""

    launcher: Literal["local", "pytorchjob", "trainjob"] = Field(
        "local", description="local torchrun subprocess, Kubeflow PyTorchJob, or Kubeflow TrainJob"
    )
    nnodes: int = Field(1, ge=1, description="nodes (torchrun --nnodes)")
    nproc_per_node: int = Field(1, ge=1, description="processes per node (one per GPU)")
    deepspeed: Literal["none", "zero2", "zero3"] = Field("zero3", description="DeepSpeed ZeRO stage")
    offload_optimizer: Literal["none", "cpu"] = Field(
        "none", description="AdamW's states and step in CPU memory (DeepSpeed ZeRO-Offload; zero2 or zero3)"
    )
    offload_param: Literal["none", "cpu"] = Field(
        "none", description="parameters in CPU memory between their uses (DeepSpeed; zero3 only)"
    )
    deepspeed_config: str | None = Field(
        None,
        description="path or URI of a DeepSpeed JSON used instead of the packaged one for the deepspeed stage "
        "(its zero_optimization is checked before launch); offload settings apply on top",
    )
    backend: Literal["auto", "nccl", "gloo"] = Field("auto", description="auto: nccl with GPUs, gloo on CPU")
    rdzv_port: int = Field(29500, ge=1, le=65535, description="rendezvous port for the local launcher")
    cluster: ClusterJobConfig = Field(default_factory=ClusterJobConfig)

    @model_validator(mode="after")
    def _deepspeed_options(self) -> DistributedConfig:
        """Offload and a custom config need DeepSpeed, parameter offload its stage 3 (DeepSpeed's
        config-json docs: "Parameter offloading ... only with ZeRO stage 3")."""
        if self.deepspeed == "none":
            for name in ("offload_optimizer", "offload_param"):
                if getattr(self, name) != "none":
                    raise ValueError(f"{name}={getattr(self, name)} needs DeepSpeed: set deepspeed to zero2 or zero3")
            if self.deepspeed_config:
                raise ValueError("deepspeed_config needs DeepSpeed: set deepspeed to the config's stage (zero2/zero3)")
        if self.offload_param != "none" and self.deepspeed != "zero3":
            raise ValueError(f"offload_param={self.offload_param} needs deepspeed=zero3 (now {self.deepspeed})")
        return self

    @model_validator(mode="after")
    def _layout_fits(self) -> DistributedConfig:
        """Refuse, before anything starts, layouts the cluster cannot run as asked."""
        cluster = self.cluster
        if self.launcher == "local":
            return self
        if cluster.gpus_per_node and self.nproc_per_node > cluster.gpus_per_node:
            raise ValueError(
                f"nproc_per_node {self.nproc_per_node} > cluster.gpus_per_node {cluster.gpus_per_node}: "
                "one training process per GPU"
            )
        if self.launcher == "trainjob":
            missing = [s for s in cluster.secret_env if not cluster.secret_keys.get(s)]
            if missing:
                raise ValueError(
                    f"TrainJob takes Secret keys one by one: set cluster.secret_keys for {', '.join(missing)} "
                    "(e.g. secret_keys: {hf: [HF_TOKEN]}), or map keys with cluster.secret_key_env"
                )
        return self


# --------------------------------------------------------------------------- data stages


class SynthConfig(Strict):
    """Seeded synthetic records with ground truth (r1ov.synthetic)."""

    output_uri: str = Field(..., description="dataset URI to write")
    n: int = Field(64, ge=1, description="records to generate")
    seed: int = Field(0, description="RNG seed; same seed, same bytes")
    kinds: list[str] = Field(
        default_factory=lambda: ["circuit", "flowchart", "table", "chart", "natural", "text", "math"],
        min_length=1,
        description="generators to draw from, round-robin (add 'clevr' for GRPO data, 'layout' for web pages)",
    )
    shard_size: int = Field(1000, ge=1, description="rows per Parquet shard")


# The data image sets it to easyocr (its weights are baked there); elsewhere Tesseract is the default.
OCR_ENGINE_ENV = "R1OV_OCR_ENGINE"
# One reasoning length for every stage: GRPO's completion limit and eval's generation limit (the
# pipeline's max_reasoning_tokens). The authors' GRPO script sets none and so ran TRL's default of
# 256 (Fancy-MLLM/R1-Onevision VLM-R1/src/open-r1-multimodal/run_grpo.sh, trainer/grpo_config.py),
# which cuts off their own SFT model's answers (~960 tokens on average); 4096 leaves them room.
REASONING_TOKENS = 4096
# The authors' GRPO image bound: max_pixels=12845056 (Fancy-MLLM/R1-Onevision
# VLM-R1/src/open-r1-multimodal/src/open_r1/grpo_jsonl.py, not overridden by run_grpo.sh).
RL_MAX_PIXELS = 12845056


class PerceptionConfig(Strict):
    """The paper's perception tools: an open-vocabulary detector for natural scenes, OCR for text."""

    detector_model: str | None = Field(
        "IDEA-Research/grounding-dino-tiny",
        description="zero-shot object detector (HF id or local dir); empty or null: none",
    )
    detector_labels: list[str] = Field(
        default_factory=lambda: [
            "person", "car", "tree", "house", "building", "animal", "dog", "cat", "bird", "sun", "cloud",
            "table", "chair", "bottle", "cup", "book", "sign", "road", "boat", "bicycle",
        ],
        min_length=1,
        description="object names the detector looks for",
    )  # fmt: skip
    detector_device: str = Field(
        "auto", description="where the detector runs: auto (the pod's GPU when it has one, else cpu), cpu, cuda, cuda:1"
    )
    box_threshold: float = Field(0.35, ge=0, le=1, description="lowest detection score kept")
    max_detections: int = Field(20, ge=1, description="boxes sent to the teacher, best first")
    ocr_engine: Literal["tesseract", "easyocr", "none"] = Field(
        default_factory=lambda: os.environ.get(OCR_ENGINE_ENV) or "tesseract",
        validate_default=True,
        description=f"OCR for text-dominant images: tesseract (offline, apt package) or easyocr; default "
        f"${OCR_ENGINE_ENV} (the data image sets easyocr), else tesseract",
    )
    ocr_lang: str = Field("eng", description="Tesseract language pack(s), e.g. eng+deu")
    easyocr_langs: list[str] = Field(
        default_factory=lambda: ["en"], min_length=1, description="EasyOCR language codes, e.g. [en, de]"
    )
    easyocr_model_dir: str | None = Field(
        None,
        description="directory holding EasyOCR's detector and recognizer weights (never downloaded at run time); "
        "null: $EASYOCR_MODULE_PATH/model, which the data image bakes",
    )
    easyocr_gpu: bool = Field(False, description="run EasyOCR on a GPU when the pod has one")
    ocr_timeout_s: float = Field(60.0, gt=0, description="seconds per image before Tesseract gives up")
    min_ocr_confidence: float = Field(
        50.0,
        ge=0,
        le=100,
        description="OCR words below this confidence are dropped, on Tesseract's 0-100 scale "
        "(EasyOCR's 0-1 confidence is scaled by 100 to compare)",
    )
    min_text_words: int = Field(5, ge=0, description="a 'text' image with fewer OCR words is a type disagreement")
    workers: int = Field(
        1,
        ge=1,
        description="threads running the tools while teacher requests are in flight; one suits one detector on "
        "one device, more let OCR and detection overlap",
    )

    @field_validator("detector_model")
    @classmethod
    def _empty_means_none(cls, value: str | None) -> str | None:
        # KFP's mapping parameters cannot carry null, so "" is how a pipeline run turns the detector off.
        return value or None


class FormalizeConfig(Strict):
    input_uri: str = Field(..., description="dataset to formalize")
    output_uri: str = Field(..., description="dataset to write")
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    classify_unknown: bool = Field(True, description="ask the teacher for the type of untyped images")
    perception: PerceptionConfig = Field(default_factory=PerceptionConfig)
    max_image_pixels: int = Field(1024 * 1024, ge=1, description="downscale larger images before sending")
    max_decode_pixels: int = Field(
        89_478_485, ge=1, description="images with more pixels are rejected unread (decompression bombs)"
    )
    min_accepted_fraction: float = Field(
        0.5, ge=0, le=1, description="fail the stage (with a table of reasons) when fewer rows are accepted"
    )
    max_text_chars: int = Field(20000, ge=1, description="rows with a longer question or option are rejected")
    shard_size: int = Field(1000, ge=1, description="rows per output shard")


class DistillConfig(Strict):
    input_uri: str = Field(..., description="formalized dataset")
    output_uri: str = Field(..., description="dataset with reasoning")
    teacher: TeacherConfig = Field(
        default_factory=lambda: TeacherConfig(model="deepseek-reasoner", temperature=0.6, max_tokens=8192)
    )
    role_play: bool = Field(True, description="ask the teacher to reason as if it saw the image")
    min_accepted_fraction: float = Field(
        0.5, ge=0, le=1, description="fail the stage (with a table of reasons) when fewer rows are accepted"
    )
    max_text_chars: int = Field(20000, ge=1, description="rows with a longer question or option are rejected")
    shard_size: int = Field(1000, ge=1, description="rows per output shard")


class FilterConfig(Strict):
    input_uri: str = Field(..., description="dataset with reasoning")
    output_uri: str = Field(..., description="accepted and rejected records")
    min_think_chars: int = Field(20, ge=0, description="shorter reasoning is rejected")
    max_think_chars: int = Field(32000, ge=1, description="longer reasoning is rejected")
    max_repeated_ngram_ratio: float = Field(0.3, ge=0, le=1, description="share of repeated 8-grams allowed")
    require_answer_match: bool = Field(True, description="reject when the answer disagrees with ground truth")
    judge: TeacherConfig | None = Field(None, description="LLM judge for consistency; none skips it")
    judge_failed: bool = Field(
        False, description="also judge rows that failed a rule check (costs requests); else their verdict is skipped"
    )
    repetition_ngram: int = Field(8, ge=2, description="n of the word n-grams the repetition check counts")
    min_accepted_fraction: float = Field(
        0.5, ge=0, le=1, description="fail the stage (with a table of reasons) when fewer rows are accepted"
    )
    max_text_chars: int = Field(20000, ge=1, description="rows with a longer question or option are rejected")
    shard_size: int = Field(1000, ge=1, description="rows per output shard")


# --------------------------------------------------------------------------- training


def derive_accumulation(cfg: Any) -> Any:
    """Keep the global batch: gradient accumulation = global / (nodes x processes x per-device batch).

    A layout that cannot reach the global batch exactly is an error naming the numbers, instead of
    silently training at another batch size (and learning rate) on more or fewer GPUs.
    """
    if cfg.global_batch_size is None:
        return cfg
    dist = cfg.distributed
    per_step = dist.nnodes * dist.nproc_per_node * cfg.per_device_train_batch_size
    if cfg.global_batch_size % per_step:
        raise ValueError(
            f"global_batch_size {cfg.global_batch_size} is not reachable: {dist.nnodes} node(s) x "
            f"{dist.nproc_per_node} process(es) x per_device_train_batch_size {cfg.per_device_train_batch_size} "
            f"= {per_step} per step, which does not divide it; change the layout, the per-device batch or the "
            "global batch"
        )
    derived = cfg.global_batch_size // per_step
    if cfg.gradient_accumulation_steps != derived:  # assignment re-validates: set it once
        cfg.gradient_accumulation_steps = derived
    return cfg


class ModelIOConfig(Strict):
    model_name_or_path: str = Field(..., description="HF model id or checkpoint directory")
    output_dir: str = Field(..., description="where the final checkpoint (save_pretrained) goes")
    checkpoint_uri: str | None = Field(None, description="durable copy of the output (s3://...) for resume")
    save_steps: int = Field(
        200, ge=0, description="checkpoint every N optimizer steps (and on SIGTERM) for resume; 0: only on SIGTERM"
    )
    save_every_minutes: float = Field(
        30.0,
        ge=0,
        description="also checkpoint when this many minutes passed since the last save, so a preemption loses at "
        "most this much work however slow the steps are (0: by steps only)",
    )
    save_total_limit: int = Field(2, ge=1, description="complete checkpoints kept (oldest deleted first)")
    max_staged_checkpoints: int = Field(
        1,
        ge=1,
        description="checkpoints a node keeps on its disk while they upload to checkpoint_uri in the background; "
        "a save due while that many are still uploading waits for one to finish (bounds the local disk)",
    )
    max_pixels: int = Field(1003520, ge=784, description="image processor max_pixels (1280*28*28 in Qwen)")
    min_pixels: int = Field(3136, ge=56, description="image processor min_pixels")
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] | None = Field(
        None,
        description="attention kernel: flash_attention_2 on GPUs as the authors trained both stages "
        "(needs the flash-attn package); none: transformers' default (sdpa)",
    )


class SFTConfig(ModelIOConfig):
    train_uri: str = Field(..., description="filtered dataset (records with reasoning)")
    learning_rate: float = Field(1e-5, gt=0, description="paper: 1e-5")
    per_device_train_batch_size: int = Field(1, ge=1, description="paper: 1")
    gradient_accumulation_steps: int = Field(16, ge=1, description="paper: 16 (global batch 128 on 8 GPUs)")
    global_batch_size: int | None = Field(
        None, ge=1, description="paper: 128; when set, gradient_accumulation_steps is derived from the layout"
    )
    num_train_epochs: float = Field(1.0, gt=0, description="paper: 1")
    max_steps: int = Field(-1, description="stop after this many steps (-1: epochs decide)")
    lr_scheduler_type: str = Field("cosine", description="paper: cosine")
    warmup_ratio: float = Field(0.05, ge=0, le=1, description="paper: 0.05")
    max_length: int = Field(8192, ge=16, description="paper: cutoff 8192 tokens")
    bf16: bool = Field(True, description="bf16 on GPU; ignored on CPU")
    freeze_vision: bool = Field(False, description="paper fine-tunes the vision tower too")
    assistant_only_loss: bool = Field(True, description="loss on the answer tokens only")
    gradient_checkpointing: bool = Field(True, description="trade compute for memory")
    seed: int = Field(42, description="training seed")
    logging_steps: int = Field(1, ge=1, description="log every N steps")
    track: bool = Field(True, description="log params and metrics to MLflow (see tracking); false: no run")
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="after")
    def _global_batch(self) -> Any:
        return derive_accumulation(self)


class GRPOConfig(ModelIOConfig):
    train_uri: str = Field(..., description="CLEVR-style dataset (question, answer, image)")
    learning_rate: float = Field(1e-6, gt=0, description="peers: 1e-6")
    num_generations: int = Field(8, ge=2, description="completions per prompt (group size)")
    beta: float = Field(0.04, ge=0, description="KL coefficient")
    max_prompt_length: int = Field(1024, ge=16, description="prompt token limit")
    max_completion_length: int = Field(
        REASONING_TOKENS, ge=8, description="completion token limit (SFT answers average ~960 tokens)"
    )
    per_device_train_batch_size: int = Field(8, ge=1, description="prompts*generations per device step")
    gradient_accumulation_steps: int = Field(2, ge=1, description="steps per optimizer update")
    global_batch_size: int | None = Field(
        None, ge=1, description="peers: 128 (8 per device x 8 GPUs x 2); when set, accumulation is derived"
    )
    num_train_epochs: float = Field(1.0, gt=0, description="paper: 1 epoch on 10K CLEVR")
    max_steps: int = Field(-1, description="stop after this many steps (-1: epochs decide)")
    temperature: float = Field(1.0, gt=0, description="rollout sampling temperature")
    rewards: list[str] = Field(default_factory=lambda: ["accuracy", "format"], description="reward names")
    reward_weights: list[float] | None = Field(
        None, description="one weight per reward, in the order of rewards (default: 1.0 each)"
    )
    num_iterations: int = Field(
        1, ge=1, description="policy updates per generated batch (GRPO's mu; >1 reuses costly rollouts, clipped)"
    )
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group", description="advantage scaling: std within each group, across the batch, or none (Dr. GRPO)"
    )
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo"] = Field(
        # The authors average each completion's token losses, then the completions
        # (Fancy-MLLM/R1-Onevision VLM-R1/.../open_r1/trainer/grpo_trainer.py compute_loss): TRL's "grpo".
        "grpo",
        description="token-loss aggregation (TRL's loss_type); grpo: per-sequence mean, as the authors trained",
    )
    max_pixels: int = Field(RL_MAX_PIXELS, ge=784, description="image processor max_pixels (the authors' RL value)")
    freeze_vision: bool = Field(False, description="freeze the vision tower (the authors train it in GRPO too)")
    trl: dict[str, Any] = Field(
        default_factory=dict,
        description="further fields of TRL's GRPOConfig (e.g. epsilon_high, mask_truncated_completions), checked "
        "against the installed TRL before launch; fields r1ov sets from its own settings are refused",
    )
    bf16: bool = Field(True, description="bf16 on GPU; ignored on CPU")
    gradient_checkpointing: bool = Field(True, description="trade compute for memory")
    seed: int = Field(42, description="training seed")
    logging_steps: int = Field(1, ge=1, description="log every N steps")
    generation: Literal["hf", "vllm-server", "vllm-colocate"] = Field(
        "vllm-server", description="rollouts: transformers generate, vLLM server pods, or vLLM in-process"
    )
    vllm_server_base_url: str | None = Field(None, description="rollout server URL (vllm-server mode)")
    vllm_tensor_parallel_size: int = Field(1, ge=1, description="rollout server tensor parallelism")
    vllm_data_parallel_size: int = Field(1, ge=1, description="rollout server data parallelism")
    vllm_gpu_memory_utilization: float = Field(0.3, gt=0, le=1, description="GPU share for vLLM (vllm-colocate)")
    vllm_server_gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1, description="GPU share of each rollout server (vllm-server: the GPUs are its own)"
    )
    track: bool = Field(True, description="log params and metrics to MLflow (see tracking); false: no run")
    log_completions_steps: int = Field(
        0,
        ge=0,
        description="every N optimizer steps, the latest rollout batch (prompt, completion, each reward, advantage) "
        "as an MLflow table under completions/ (0: never; needs track)",
    )
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="after")
    def _global_batch(self) -> Any:
        return derive_accumulation(self)


# --------------------------------------------------------------------------- eval and registry


class BenchmarkSpec(Strict):
    name: str = Field(
        ...,
        description="benchmark name: mathvision, mathverse, mathvista, wemath, r1ov-bench, clevr, synthetic, "
        "records (r1ov.eval.benchmarks.LOADERS)",
    )
    uri: str = Field(..., description="dataset URI in the record schema, or the benchmark's own file")
    limit: int | None = Field(None, ge=1, description="score only the first N items")
    label: str | None = Field(None, description="name in metrics and reports; defaults to name")


class EndpointConfig(Strict):
    """An OpenAI-compatible chat endpoint the eval asks per item (the judge, the LLM extractor)."""

    base_url: str = Field(..., description="OpenAI-compatible endpoint")
    model: str = Field(..., description="the endpoint's model name")
    api_key_env: str = Field("OPENAI_API_KEY", description="variable holding the endpoint's API key")
    max_concurrency: int = Field(8, ge=1, description="requests in flight at once")
    max_retries: int = Field(3, ge=0, description="retries per request on 429/5xx/timeouts")


class JudgeConfig(EndpointConfig):
    """An LLM judge graded beside the rules (never instead of them)."""


class ExtractorConfig(EndpointConfig):
    """An LLM asked for the answer only where every extraction rule found none (rule ``llm``).

    Its answer is scored by the same matcher as the rules'; the GRPO rewards never use it.
    """


class EvalConfig(Strict):
    model_name_or_path: str = Field(..., description="checkpoint to evaluate (or served model name)")
    benchmarks: list[BenchmarkSpec] = Field(..., min_length=1, description="what to evaluate on")
    output_dir: str = Field(..., description="predictions, metrics.json and report.html")
    backend: Literal["hf", "vllm", "openai"] = Field(
        default_factory=lambda: _default_eval_backend(),
        description="generation backend; default: vllm where a GPU and vLLM are present, else hf",
    )
    base_url: str | None = Field(None, description="endpoint for the openai backend")
    api_key_env: str = Field("OPENAI_API_KEY", description="API key variable for the openai backend")
    max_new_tokens: int = Field(REASONING_TOKENS, ge=1, description="completion limit")
    temperature: float = Field(0.0, ge=0, description="0 = greedy")
    batch_size: int = Field(8, ge=1, description="prompts per generate call (hf)")
    max_pixels: int = Field(1003520, ge=784, description="image processor max_pixels")
    tracking: TrackingConfig | None = Field(None, description="log metrics to MLflow when set")
    max_concurrency: int = Field(8, ge=1, description="requests in flight at once (openai backend)")
    request_timeout_s: float = Field(600.0, gt=0, description="seconds per request (openai backend)")
    max_retries: int = Field(3, ge=0, description="retries per request on 429/5xx/timeouts (openai backend)")
    vllm_tensor_parallel_size: int = Field(1, ge=1, description="GPUs per engine (vllm backend)")
    vllm_gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="share of GPU memory (vllm backend)")
    vllm_max_model_len: int | None = Field(None, ge=256, description="context limit (vllm backend); none: the model's")
    bootstrap_samples: int = Field(1000, ge=0, description="resamples for the 95% accuracy interval (0: none)")
    seed: int = Field(0, description="seed of the bootstrap (and of sampling when temperature > 0)")
    report_samples: int = Field(24, ge=0, description="predictions shown in report.html")
    judge: JudgeConfig | None = Field(None, description="LLM judge scored beside the rules, with their agreement")
    extractor: ExtractorConfig | None = Field(
        None, description="LLM extractor for items no rule finds an answer in (off when unset)"
    )

    @model_validator(mode="after")
    def _openai_needs_url(self) -> EvalConfig:
        if self.backend == "openai" and not self.base_url:
            raise ValueError("base_url is required when backend is 'openai'")
        return self


class RegisterConfig(Strict):
    model_dir: str = Field(..., description="checkpoint directory to register")
    model_name: str = Field("r1ov-qwen2.5-vl", description="registered model name")
    metrics_uri: str | None = Field(None, description="eval metrics.json to attach to the version")
    verdicts_uri: str | None = Field(
        None, description="eval verdicts.jsonl (per item) for the promotion gate; none: the one beside metrics_uri"
    )
    alias: str = Field("challenger", description="alias set on the new version")
    lineage: dict[str, str] = Field(
        default_factory=dict, description="lineage tags on run and version, e.g. sft_data: s3://bucket/filtered"
    )
    git_commit: str | None = Field(None, description="source commit; none: $R1OV_GIT_COMMIT, else git rev-parse HEAD")
    description: str | None = Field(None, description="model version description")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)


class EndpointConfig(Strict):
    """The r1ov-inference endpoint that serves the target alias (promotion rolls it)."""

    deployment: str = Field(
        ..., description="name of the inference chart's Deployment or InferenceService (its release fullname)"
    )
    namespace: str = Field("r1ov", description="namespace of the endpoint")
    kind: Literal["Deployment", "InferenceService"] = Field(
        "Deployment", description="what the chart renders: its own Deployment, or KServe's InferenceService"
    )


class PromoteConfig(Strict):
    """The promotion gate: a given version against the champion (or the base model), item by item."""

    model_name: str = Field("r1ov-qwen2.5-vl", description="registered model name")
    version: str = Field(..., description="model version to consider (the one the pipeline run registered)")
    target_alias: str = Field("champion", description="alias to move when the gate passes")
    metric: str = Field("overall/accuracy", description="eval metric the floor applies to")
    min_value: float = Field(0.0, description="absolute floor for the metric")
    min_improvement: float = Field(0.0, ge=0, description="required accuracy gain over the champion (or base)")
    alpha: float = Field(0.05, gt=0, le=1, description="significance level of the paired test (McNemar exact)")
    bootstrap_samples: int = Field(2000, ge=0, description="resamples for the paired 95% interval")
    baseline_verdicts_uri: str | None = Field(
        None, description="the base model's verdicts.jsonl: what the first candidate must beat when no champion exists"
    )
    force: bool = Field(False, description="move the alias even if the gate refuses (needs reason)")
    reason: str | None = Field(None, description="why a forced promotion was needed; recorded on the version")
    endpoint: EndpointConfig | None = Field(None, description="inference Deployment to roll when the alias moves")
    track: bool = Field(True, description="log the decision as an MLflow run")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="after")
    def _force_needs_reason(self) -> PromoteConfig:
        if self.force and not (self.reason or "").strip():
            raise ValueError("force needs a reason (it is recorded on the version)")
        return self


# --------------------------------------------------------------------------- loading

C = TypeVar("C", bound=BaseModel)


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation).replace("typing.", "").replace(f"{__name__}.", "")
    return text.replace("NoneType", "None")


def describe_fields(cls: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str, str]]:
    """``(dotted name, type, default, description)`` of every field, nested configs expanded."""
    rows = []
    for name, info in cls.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows += describe_fields(annotation, f"{prefix}{name}.")
            continue
        if info.is_required():
            default = "required"
        elif info.default_factory is not None:
            try:
                default = repr(info.default_factory())
            except TypeError:  # a factory that needs the validated data
                default = "computed"
        else:
            default = repr(info.default)
        rows.append((f"{prefix}{name}", _type_name(annotation), default, info.description or ""))
    return rows


HELP_WIDTH = 100  # help text lines, wrapped: a terminal, a pager and a code review all read them


def _items_model(annotation: Any) -> type[BaseModel] | None:
    """The model inside ``list[Model]`` or ``Model | None`` (fields worth listing in the help)."""
    for arg in typing.get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
        inner = _items_model(arg)
        if inner is not None:
            return inner
    return None


def fields_help(cls: type[BaseModel]) -> str:
    """The config fields as a help text block (``r1ov <stage> --help``), wrapped to HELP_WIDTH.
    A list of configs or an optional config (benchmarks, judge, tracking) lists its own fields."""
    rows = []
    for row in describe_fields(cls):
        rows.append(row)
        inner = _items_model(cls.model_fields[row[0]].annotation) if row[0] in cls.model_fields else None
        if inner is not None:
            is_list = typing.get_origin(cls.model_fields[row[0]].annotation) is list
            rows += describe_fields(inner, f"{row[0]}[]." if is_list else f"{row[0]}.")
    width = min(max(len(name) for name, *_ in rows), 36)
    lines = ["config fields (set in a --config recipe or with --set NAME=VALUE):"]
    for name, kind, default, description in rows:
        head = f"  {name:<{width}}  {kind} = {default}"
        lines += textwrap.wrap(head, HELP_WIDTH, subsequent_indent=" " * (width + 8), break_on_hyphens=False)
        if description:
            indent = " " * (width + 6)
            lines += textwrap.wrap(
                description, HELP_WIDTH, initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False
            )
    return "\n".join(lines)


def _format_errors(prefix: str, error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(root)"
        got = f" (got {item['input']!r})" if item["type"] not in {"missing"} and "input" in item else ""
        lines.append(f"{prefix}{where}: {item['msg']}{got}")
    return "\n".join(lines)


def parse_override(override: str) -> tuple[list[str], Any]:
    """``a.b=3`` -> (['a', 'b'], 3); the value is read as YAML so types come through."""
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {override!r} must look like key=value (e.g. learning_rate=2e-5)")
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for override in overrides:
        path, value = parse_override(override)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {override!r}: {part} is not a mapping")
        node[path[-1]] = value
    return data


# The checkout this package runs from (an editable install), whose pipelines/recipes/ the README
# names by relative path; None for an installed wheel.
_CHECKOUT = Path(__file__).resolve().parents[2]


def _shipped_recipe(uri: str | Path) -> Path | None:
    """``pipelines/recipes/X.yaml`` typed outside the repository root: the checkout's own file."""
    relative = Path(str(uri))
    if storage.is_remote(str(uri)) or relative.is_absolute() or relative.exists():
        return None
    candidate = _CHECKOUT / relative
    return candidate if relative.parts[:2] == ("pipelines", "recipes") and candidate.is_file() else None


def read_recipe(uri: str | Path | None) -> dict[str, Any]:
    if uri is None:
        return {}
    uri = _shipped_recipe(uri) or uri
    if not storage.is_remote(str(uri)) and Path(str(uri)).is_dir():
        raise ConfigError(
            f"config file {uri} is a directory; pass a YAML recipe file (e.g. pipelines/recipes/demo.yaml)"
        )
    try:
        data = yaml.safe_load(storage.read_text(str(uri))) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {uri} does not exist") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {uri} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {uri} must hold a mapping, not {type(data).__name__}")
    return data


def build(cls: type[C], data: dict[str, Any], name: str = "") -> C:
    """Validate ``data`` as ``cls``; errors name each field, prefixed with ``name.``."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(f"{name}." if name else "", exc)) from None


def load(cls: type[C], path: str | Path | None = None, overrides: list[str] | None = None, name: str = "") -> C:
    """Load a recipe file (optional), apply ``key=value`` overrides, validate once."""
    return build(cls, apply_overrides(read_recipe(path), list(overrides or [])), name)
