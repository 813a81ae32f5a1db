"""GRPO on CLEVR-style records (question + image + answer) with TRL's GRPOTrainer.

    r1ov grpo --config pipelines/recipes/grpo.yaml --set generation=vllm-server \\
        --set vllm_server_base_url=http://r1ov-rollout:8000

``run(cfg)`` is the stage: it checks the settings that would otherwise fail inside every
worker, then hands the config to the launcher, whose processes each call ``train(cfg)``.
Rollouts come from transformers' ``generate`` (``hf``), vLLM rollout servers
(``vllm-server``, ``trl vllm-serve`` pods) or vLLM inside the trainer (``vllm-colocate``);
rewards are chosen by name from :mod:`r1ov.train.rewards`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from PIL import Image

from r1ov.config import ConfigError, GRPOConfig
from r1ov.scoring import lengths, reasoning
from r1ov.train import checkpoints, common, completions, dataset, rewards, tracking

logger = logging.getLogger(__name__)


def generation_arguments(cfg: GRPOConfig) -> dict[str, Any]:
    """GRPOConfig fields for the rollout backend."""
    if cfg.generation == "hf":
        return {"use_vllm": False}
    if cfg.generation == "vllm-server":
        if not cfg.vllm_server_base_url:
            raise ConfigError(
                "grpo.vllm_server_base_url: required when generation is 'vllm-server' with the local launcher "
                "(the pytorchjob and trainjob launchers start rollout servers themselves)"
            )
        return {"use_vllm": True, "vllm_mode": "server", "vllm_server_base_url": cfg.vllm_server_base_url}
    return {
        "use_vllm": True,
        "vllm_mode": "colocate",
        "vllm_tensor_parallel_size": cfg.vllm_tensor_parallel_size,
        "vllm_gpu_memory_utilization": cfg.vllm_gpu_memory_utilization,
        # TRL no longer truncates prompts; bound the engine's context by what we admit instead.
        "vllm_max_model_length": cfg.max_prompt_length + cfg.max_completion_length,
    }


def trl_fields(cfg: GRPOConfig, runtime: common.Runtime) -> dict[str, Any]:
    """TRL GRPOConfig fields for this stage, as every worker passes them (before build_arguments)."""
    return {
        **cfg.trl,  # checked by check(): known to this TRL, none of the fields below
        **common.trainer_arguments(cfg, runtime, track=cfg.track),
        **generation_arguments(cfg),
        **algorithm_arguments(cfg),
        **dataset.TRAINER_FIELDS,
    }


def algorithm_arguments(cfg: GRPOConfig) -> dict[str, Any]:
    """GRPOConfig fields of the algorithm itself: groups, KL, rollout sampling, reward mix, loss."""
    return {
        "num_generations": cfg.num_generations,
        "beta": cfg.beta,
        "max_completion_length": cfg.max_completion_length,
        "temperature": cfg.temperature,
        "reward_weights": cfg.reward_weights,
        "num_iterations": cfg.num_iterations,
        "scale_rewards": cfg.scale_rewards,
        "loss_type": cfg.loss_type,
    }


def own_fields(cfg: GRPOConfig) -> set[str]:
    """TRL GRPOConfig fields the stage sets from its own settings (the ``trl`` mapping may not repeat them)."""
    anyone = common.Runtime(cuda=False, backend="gloo", rank=1, local_rank=0, world_size=1)
    generation = {"use_vllm", "vllm_mode", "vllm_server_base_url", "vllm_tensor_parallel_size"}
    generation |= {"vllm_gpu_memory_utilization", "vllm_max_model_length"}
    ours = set(common.trainer_arguments(cfg, anyone, track=False)) | set(algorithm_arguments(cfg)) | generation
    return ours | set(dataset.TRAINER_FIELDS)


def check_trl_fields(cfg: GRPOConfig) -> None:
    """The ``trl`` mapping names fields of the installed TRL's GRPOConfig that r1ov does not set itself."""
    if not cfg.trl:
        return
    import trl

    known = {f.name for f in dataclasses.fields(trl.GRPOConfig)}
    unknown = sorted(set(cfg.trl) - known)
    if unknown:
        raise ConfigError(f"grpo.trl: the installed TRL {trl.__version__} GRPOConfig has no field(s) {unknown}")
    ours = sorted(set(cfg.trl) & own_fields(cfg))
    if ours:
        raise ConfigError(f"grpo.trl: {ours} come from r1ov's own settings; set them as grpo.<field> instead")


def check(cfg: GRPOConfig) -> None:
    """Fail before launching on settings every worker would reject."""
    rewards.get_rewards(cfg.rewards)
    check_trl_fields(cfg)
    if cfg.reward_weights is not None and len(cfg.reward_weights) != len(cfg.rewards):
        raise ConfigError(
            f"grpo.reward_weights: {len(cfg.reward_weights)} weight(s) for {len(cfg.rewards)} reward(s) {cfg.rewards}"
        )
    # Cluster launchers start rollout servers and fill in their URL (launch.rollout_servers).
    if cfg.distributed.launcher == "local" or cfg.generation != "vllm-server":
        generation_arguments(cfg)
    if cfg.log_completions_steps and not cfg.track:
        raise ConfigError("grpo.log_completions_steps: the tables go to the stage's MLflow run; set track=true or 0")
    if cfg.log_completions_steps % cfg.logging_steps:
        raise ConfigError(
            f"grpo.log_completions_steps: {cfg.log_completions_steps} must be a multiple of logging_steps "
            f"({cfg.logging_steps}), the steps at which the trainer logs"
        )
    processes = cfg.distributed.nnodes * cfg.distributed.nproc_per_node
    batch = cfg.per_device_train_batch_size * processes * cfg.gradient_accumulation_steps
    if batch % cfg.num_generations:
        raise ConfigError(
            f"grpo.num_generations: {cfg.num_generations} must divide the generation batch "
            f"per_device_train_batch_size x processes x gradient_accumulation_steps = {batch}"
        )


def prompt_tokens(processor: Any, prompt: list[dict[str, Any]], image: Image.Image) -> int:
    """Prompt length in tokens, image placeholders included, without running the image processor."""
    text_tokens = prompt_tokens_text(processor, prompt)
    image_processor = processor.image_processor
    patches = image_processor.get_number_of_image_patches(image.height, image.width)
    # The placeholder is one token in the text and expands to patches / merge^2 tokens.
    return text_tokens - 1 + patches // image_processor.merge_size**2


def prompt_lengths(processor: Any, batch: list[dict[str, Any]], sizes: list[tuple[int, int]]) -> list[int]:
    """:func:`prompt_tokens` of many records at once, from their images' (width, height).

    The chat template puts the question between special tokens (``<|vision_end|>`` before it,
    ``<|im_end|>`` after), and the tokenizer splits text at special tokens before it merges, so
    the question's tokens do not depend on the rest of the prompt: the prompt is the template's
    tokens around an empty question plus the question's own, counted in one batched call.
    """
    around = prompt_tokens_text(processor, common.prompt_messages({"question": "", "options": []}))
    questions = [reasoning.format_question(record["question"], record.get("options")) for record in batch]
    counted = processor.tokenizer(questions, add_special_tokens=False)["input_ids"] if questions else []
    image_processor = processor.image_processor
    merged = image_processor.merge_size**2
    return [
        around + len(ids) - 1 + image_processor.get_number_of_image_patches(height, width) // merged
        for ids, (width, height) in zip(counted, sizes, strict=True)
    ]


def prompt_tokens_text(processor: Any, prompt: list[dict[str, Any]]) -> int:
    """Tokens of the prompt's text, the image placeholder counted as one."""
    text = processor.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    return len(processor.tokenizer(text, add_special_tokens=False)["input_ids"])


def train(cfg: GRPOConfig) -> dict[str, Any]:
    """Train in this process (one rank of a torchrun world, or alone); returns the summary."""
    from trl import GRPOConfig as TRLGRPOConfig
    from trl import GRPOTrainer

    started = time.monotonic()
    check(cfg)
    runtime = common.detect_runtime(cfg.distributed)

    # 1. trainer settings first: under ZeRO-3 they make from_pretrained load partitioned weights
    args = common.build_arguments(TRLGRPOConfig, trl_fields(cfg, runtime))
    common.join_deepspeed(args, runtime)
    model, processor = common.load_model_and_processor(cfg, bf16=cfg.bf16, freeze_vision=cfg.freeze_vision)
    # TRL left-pads prompt ids but takes the per-token image mask (mm_token_type_ids) from the
    # processor: padded on the other side, the 3D rotary positions of every shorter prompt in a
    # device batch come from the wrong tokens (silently, or a shape error). Qwen's tokenizer
    # config names no side, so it pads right unless told.
    processor.tokenizer.padding_side = "left"

    # 2. data: prompt (instruction + image + question), the image, and what rewards compare with;
    # prompt lengths are checked from each image's header, rows built and images decoded on access
    def to_row(record: dict[str, Any], image: Image.Image) -> dict[str, Any]:
        # the gold with what the reward needs to judge it: options, precision, unit
        return {"prompt": common.prompt_messages(record), "images": [image], **rewards.columns(record)}

    def fits(batch: list[dict[str, Any]], sizes: list[tuple[int, int]]) -> list[str | None]:
        found = prompt_lengths(processor, batch, sizes)
        limit = cfg.max_prompt_length
        return [f"prompt_too_long: {n} > max_prompt_length {limit} tokens" if n > limit else None for n in found]

    examples = dataset.build(cfg.train_uri, to_row, required=("question", "answer"), check=fits)

    # 3. train (tracked by the main process), save once, close the world
    tags = {"r1ov.train_uri": cfg.train_uri, "r1ov.base_model": cfg.model_name_or_path}
    with tracking.stage_run(cfg.tracking, cfg.track and runtime.is_main, "grpo", tags) as run_id:
        reward_funcs = rewards.get_rewards(cfg.rewards)
        trainer = checkpoints.resumable(GRPOTrainer)(
            model=model,
            reward_funcs=reward_funcs,
            args=args,
            train_dataset=examples.rows,
            processing_class=processor,
        )
        common.use_log_callback(trainer, "grpo")
        if cfg.log_completions_steps and run_id:
            trainer.add_callback(completions.CompletionsTable(trainer, cfg.log_completions_steps))
        result, resumed_from = checkpoints.train(trainer, cfg)
        history = trainer.state.log_history
        summary = common.summarize(
            "grpo", cfg, trainer, result, examples, runtime, started, run_id, resumed_from_step=resumed_from,
            reward=common.last_logged(history, "reward"),
            # TRL logs each reward under its function's name
            rewards={
                name: common.last_logged(history, f"rewards/{func.__name__}/mean")
                for name, func in zip(cfg.rewards, reward_funcs, strict=True)
            },
            generation=cfg.generation,
            # the SFT reasoning this model was trained on, for eval's length check
            reasoning_tokens=lengths.trained_reasoning_tokens(cfg.model_name_or_path),
        )  # fmt: skip
        tracking.log_metrics({"train_records": len(examples.rows), "skipped_records": examples.skipped_total})
        return common.finish(trainer, processor, cfg, runtime, summary)


def run(cfg: GRPOConfig) -> dict[str, Any]:
    """The GRPO stage: check the settings, then launch ``train`` as configured."""
    from r1ov.train.launch import launch

    check(cfg)
    return launch("grpo", cfg)
