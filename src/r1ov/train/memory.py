"""Per-GPU memory of a training stage, estimated before any GPU is requested (``r1ov sft|grpo --plan``).

    r1ov grpo --config pipelines/recipes/grpo-clevr.yaml --plan --set distributed.nnodes=2

The model's shape comes from its ``config.json`` alone (the architecture is built on the meta
device, so nothing is downloaded but the config and no weights are read). Per GPU:

- weights: parameters x bytes of the training dtype (bf16 on GPU, fp32 on CPU); ZeRO-3
  partitions them over every rank. GRPO with ``beta > 0`` holds a frozen reference copy too.
- gradients: trainable parameters x dtype bytes; ZeRO-2 and ZeRO-3 partition them.
- optimizer: AdamW's two fp32 moments, plus an fp32 master copy in mixed precision
  (12 bytes per trainable parameter in bf16, 8 in fp32); ZeRO-1 and above partition them.
  ``distributed.offload_optimizer=cpu`` moves them to host memory (0 on the GPU), and
  ``offload_param=cpu`` the weights (ZeRO-3 gathers a layer's at a time, within ``overhead``).
- activations: what autograd keeps for the backward pass of one micro-batch. Per token and
  decoder layer a Qwen2 block stores about ``7 h + 2 kv + 4 i`` values (norm inputs, q/k/v,
  attention output, o_proj input, gate/up/act/down inputs); with activation checkpointing only
  each layer's input (``h``) plus one layer recomputed in full; either way the layer being
  back-propagated holds the gradients of its activations as well. Flash/SDPA attention keeps no
  ``seq x seq`` scores; eager attention does. The logits (``tokens x vocab``, upcast to fp32
  for the loss) and their gradient come on top, and dominate for long GRPO completions.
  The vision tower adds the same per patch for the images of the micro-batch.
- vLLM (GRPO rollouts): weights / tensor parallelism plus the KV cache for the rollout batch
  (``2 x layers x kv_heads x head_dim x bytes`` per token). Colocated, it shares the trainer's
  GPU; in server mode it is checked against the rollout GPU on its own.

The terms follow Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large
Transformer Models") and the ZeRO paper's per-stage partitioning; transient buffers
(allocator fragmentation, communication buckets, CUDA context) are covered by ``overhead``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from r1ov.config import ConfigError

logger = logging.getLogger(__name__)

GIB = 2**30
# What a GPU process holds beyond the tensors: CUDA context, NCCL and DeepSpeed buffers, allocator slack.
GPU_OVERHEAD_BYTES = 3 * GIB
# Image tokens seen by the language model per patch: Qwen2.5-VL merges 2 x 2 patches into one token.
SPATIAL_MERGE = 4


@dataclass(frozen=True)
class Shape:
    """What the estimate needs of a Qwen2.5-VL-style architecture (text decoder + vision tower)."""

    parameters: int
    vision_parameters: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    vision_hidden: int
    vision_intermediate: int
    vision_layers: int
    patch_size: int

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


def model_shape(model_name_or_path: str) -> Shape:
    """The architecture of a checkpoint, from its config only (built on the meta device, no weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    from r1ov.config import ConfigError

    # The plan needs only the architecture; without a readable config.json there is nothing to
    # plan, which is the user's to fix (a path, credentials), not a traceback.
    try:
        if "://" in model_name_or_path:  # s3:// etc.: transformers cannot read it; the config alone is copied
            import tempfile
            from pathlib import Path

            from r1ov.data import storage

            with tempfile.TemporaryDirectory() as local:
                text = storage.read_text(storage.join(model_name_or_path, "config.json"))
                (Path(local) / "config.json").write_text(text)
                config = AutoConfig.from_pretrained(local)
        else:
            config = AutoConfig.from_pretrained(model_name_or_path)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"model_name_or_path: cannot read {model_name_or_path}/config.json for the plan ({first[:200]}); "
            "point it at a checkpoint folder or URI holding the model's config.json"
        ) from exc
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    text, vision = config.text_config, config.vision_config
    return Shape(
        parameters=sum(p.numel() for p in model.parameters()),
        vision_parameters=sum(p.numel() for p in model.model.visual.parameters()),
        hidden=text.hidden_size,
        intermediate=text.intermediate_size,
        layers=text.num_hidden_layers,
        heads=text.num_attention_heads,
        kv_heads=text.num_key_value_heads,
        vocab=text.vocab_size,
        vision_hidden=vision.hidden_size,
        vision_intermediate=vision.intermediate_size,
        vision_layers=vision.depth,
        patch_size=vision.patch_size,
    )


@dataclass(frozen=True)
class Batch:
    """One micro-batch per device: sequences, tokens per sequence, images (patches each), attention kind."""

    sequences: int
    tokens: int
    logit_tokens: int  # tokens whose logits are computed (all for SFT, the completion for GRPO)
    images: int
    patches_per_image: int
    eager_attention: bool = False


@dataclass
class Estimate:
    """Bytes per GPU by term, their total and what they are checked against."""

    terms: dict[str, int]
    gpu_bytes: int | None
    advice: list[str] = field(default_factory=list)
    rollout_terms: dict[str, int] = field(default_factory=dict)
    rollout_gpu_bytes: int | None = None

    @property
    def total(self) -> int:
        return sum(self.terms.values())

    @property
    def rollout_total(self) -> int:
        return sum(self.rollout_terms.values())

    @property
    def fits(self) -> bool:
        trainer = self.gpu_bytes is None or self.total <= self.gpu_bytes
        rollout = (
            self.rollout_gpu_bytes is None or not self.rollout_terms or self.rollout_total <= self.rollout_gpu_bytes
        )
        return trainer and rollout

    def summary(self) -> dict[str, Any]:
        gib = {name: round(value / GIB, 2) for name, value in self.terms.items()}
        out: dict[str, Any] = {"per_gpu_gib": gib, "total_gib": round(self.total / GIB, 2)}
        if self.gpu_bytes is not None:
            out["gpu_gib"] = round(self.gpu_bytes / GIB, 2)
        if self.rollout_terms:
            out["rollout_gpu"] = {name: round(value / GIB, 2) for name, value in self.rollout_terms.items()}
            out["rollout_total_gib"] = round(self.rollout_total / GIB, 2)
        out["fits"] = self.fits
        if self.advice:
            out["advice"] = self.advice
        return out


def model_states(
    shape: Shape, dtype_bytes: int, zero: str, ranks: int, trainable: int, reference: bool
) -> dict[str, int]:
    """Weights, gradients and AdamW states per GPU under the ZeRO stage (``none``, ``zero2``, ``zero3``)."""
    mixed = dtype_bytes < 4  # bf16 weights train against an fp32 master copy
    optimizer_per_param = 8 + (4 if mixed else 0)
    weights = shape.parameters * dtype_bytes
    grads = trainable * dtype_bytes
    optimizer = trainable * optimizer_per_param
    if zero in ("zero2", "zero3"):
        grads //= ranks
        optimizer //= ranks
    if zero == "zero3":
        weights //= ranks
    terms = {"weights": weights, "gradients": grads, "optimizer": optimizer}
    if reference:
        terms["reference_model"] = weights  # frozen, partitioned like the policy under ZeRO-3
    return terms


def activations(shape: Shape, batch: Batch, dtype_bytes: int, checkpointing: bool) -> dict[str, int]:
    """Bytes autograd keeps for one micro-batch's backward pass (decoder, vision tower, logits)."""
    tokens = batch.sequences * batch.tokens
    kv = 2 * shape.kv_heads * shape.head_dim
    per_token_layer = 7 * shape.hidden + kv + 4 * shape.intermediate
    scores = batch.sequences * shape.heads * batch.tokens**2 if batch.eager_attention else 0
    full_layer = tokens * per_token_layer + scores
    # checkpointing keeps each layer's input, and recomputes one layer in full during its backward
    decoder = tokens * shape.hidden * shape.layers + full_layer if checkpointing else full_layer * shape.layers
    decoder += full_layer  # the gradients of the layer being back-propagated, beside its activations
    patches = batch.images * batch.patches_per_image
    vision_layer = patches * (7 * shape.vision_hidden + 4 * shape.vision_intermediate)
    vision = vision_layer * (1 if checkpointing else shape.vision_layers)
    if checkpointing:
        vision += patches * shape.vision_hidden * shape.vision_layers
    # logits in the training dtype, their fp32 upcast for the loss, and its gradient
    logits = batch.sequences * batch.logit_tokens * shape.vocab * (dtype_bytes + 4 + 4)
    return {"activations": (decoder + vision) * dtype_bytes, "logits": logits}


def vllm_rollout(
    shape: Shape, sequences: int, tokens: int, tensor_parallel: int, dtype_bytes: int = 2
) -> dict[str, int]:
    """vLLM's weights and the KV cache of one rollout batch, per GPU of its tensor-parallel group."""
    kv_per_token = 2 * shape.layers * shape.kv_heads * shape.head_dim * dtype_bytes
    return {
        "vllm_weights": shape.parameters * dtype_bytes // tensor_parallel,
        "vllm_kv_cache": sequences * tokens * kv_per_token // tensor_parallel,
    }


def estimate(stage: str, cfg: Any, shape: Shape, gpu_gib: float | None, cuda: bool = True) -> Estimate:
    """Per-GPU memory of ``stage`` ("sft" or "grpo") with ``cfg`` on GPUs of ``gpu_gib`` (None: no check)."""
    dist = cfg.distributed
    ranks = dist.nnodes * dist.nproc_per_node
    dtype_bytes = 2 if cuda and cfg.bf16 else 4
    frozen_vision = cfg.freeze_vision
    trainable = shape.parameters - (shape.vision_parameters if frozen_vision else 0)
    eager = (cfg.attn_implementation or "sdpa") == "eager"
    patches = cfg.max_pixels // shape.patch_size**2
    if stage == "sft":
        batch = Batch(cfg.per_device_train_batch_size, cfg.max_length, cfg.max_length,
                      cfg.per_device_train_batch_size, patches, eager)  # fmt: skip
        reference = False
    else:
        tokens = cfg.max_prompt_length + cfg.max_completion_length
        batch = Batch(cfg.per_device_train_batch_size, tokens, cfg.max_completion_length,
                      cfg.per_device_train_batch_size, patches, eager)  # fmt: skip
        reference = cfg.beta > 0
    terms = model_states(shape, dtype_bytes, dist.deepspeed, ranks, trainable, reference)
    # offloaded states live in host memory: AdamW's (and its step) with offload_optimizer, the
    # parameters between their uses with offload_param (the few gathered at once are in overhead)
    if dist.offload_optimizer != "none":
        terms["optimizer"] = 0
    if dist.offload_param != "none":
        for name in ("weights", "reference_model"):  # TRL prepares the reference model with the same config
            if name in terms:
                terms[name] = 0
    terms.update(activations(shape, batch, dtype_bytes, cfg.gradient_checkpointing))
    if cuda:
        terms["overhead"] = GPU_OVERHEAD_BYTES
    gpu_bytes = int(gpu_gib * GIB) if gpu_gib else None
    result = Estimate(terms=terms, gpu_bytes=gpu_bytes)
    if stage == "grpo" and cfg.generation != "hf":
        # one rollout batch: every process's prompts x generations, the full context each
        sequences = cfg.per_device_train_batch_size * ranks * cfg.gradient_accumulation_steps
        rollout = vllm_rollout(shape, sequences, tokens, cfg.vllm_tensor_parallel_size)
        if cfg.generation == "vllm-colocate":
            # vLLM claims its share of the GPU up front, whatever it needs
            terms["vllm_colocated"] = int((gpu_bytes or 0) * cfg.vllm_gpu_memory_utilization)
            result.rollout_terms = rollout
            result.rollout_gpu_bytes = terms["vllm_colocated"] or None
        else:
            result.rollout_terms = rollout
            result.rollout_gpu_bytes = int(gpu_bytes * cfg.vllm_server_gpu_memory_utilization) if gpu_bytes else None
    result.advice = advice(stage, cfg, result)
    return result


def advice(stage: str, cfg: Any, result: Estimate) -> list[str]:
    """The settings that would bring an estimate that does not fit under the GPU's memory."""
    if result.fits:
        return []
    terms, tips = result.terms, []
    states = sum(terms.get(name, 0) for name in ("weights", "gradients", "optimizer", "reference_model"))
    transient = terms.get("activations", 0) + terms.get("logits", 0)
    # each group that is a good part of the total has settings that shrink it
    if result.gpu_bytes is not None and result.total > result.gpu_bytes and transient >= result.total / 4:
        if not cfg.gradient_checkpointing:
            tips.append(f"{stage}.gradient_checkpointing=true")
        tips.append(f"{stage}.per_device_train_batch_size (now {cfg.per_device_train_batch_size}): lower it and "
                    "raise gradient_accumulation_steps")  # fmt: skip
        if stage == "grpo":
            tips.append(f"grpo.max_completion_length (now {cfg.max_completion_length})")
        else:
            tips.append(f"sft.max_length (now {cfg.max_length})")
    if result.gpu_bytes is not None and result.total > result.gpu_bytes and states >= result.total / 4:
        if cfg.distributed.deepspeed != "zero3":
            tips.append(f"distributed.deepspeed=zero3 (now {cfg.distributed.deepspeed})")
        tips.append("distributed.nnodes: more ranks share the partitioned states")
    if result.rollout_terms and result.rollout_gpu_bytes and result.rollout_total > result.rollout_gpu_bytes:
        tips.append(f"grpo.vllm_tensor_parallel_size (now {cfg.vllm_tensor_parallel_size}) or "
                    "grpo.per_device_train_batch_size: the rollout batch's KV cache does not fit")  # fmt: skip
    return tips


def plan(stage: str, cfg: Any, gpu_gib: float | None) -> dict[str, Any]:
    """``r1ov sft|grpo --plan``: the estimate, and a ConfigError naming the settings when it cannot fit."""
    shape = model_shape(cfg.model_name_or_path)
    result = estimate(stage, cfg, shape, gpu_gib)
    summary = {"stage": stage, "parameters": shape.parameters, "shape": asdict(shape), **result.summary()}
    if not result.fits:
        where = f"{gpu_gib:g} GiB GPUs"
        raise ConfigError(
            f"{stage}: the plan needs {summary['total_gib']} GiB per GPU"
            + (f" and {summary['rollout_total_gib']} GiB per rollout GPU" if result.rollout_terms else "")
            + f" on {where} ({summary['per_gpu_gib']}); change "
            + "; or ".join(result.advice)
        )
    return summary
