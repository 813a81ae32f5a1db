"""GPU check: our SFT stage on Qwen2.5-VL-3B's architecture with random weights, tokens/s and MFU.

    python -m r1ov.bench.gpu --arch qwen2.5-vl-3b --steps 20 --max-length 4096   # scripts/gpu-check.sh
    python -m r1ov.bench.gpu --arch tiny --device cpu --steps 2 --max-length 256   # the CPU dry run (tests)

Nothing is downloaded: the model is built from Qwen2.5-VL-3B-Instruct's published config (below)
with random weights and the offline tokenizer of ``r1ov.testing.tiny_model`` (its small vocabulary
only indexes the first rows of the 151,936-row embedding: the compute per token is the real model's).
Records are synthetic, their reasoning long enough to fill ``max_length``. ``r1ov.train.sft.train``
runs as a pipeline pod would (bf16, gradient checkpointing, no DeepSpeed on one GPU).

tokens/s counts the tokens TRL trained on (``num_tokens``) over the training loop's time (first steps
included). MFU = (6 x parameters + 12 x layers x hidden x sequence) FLOPs per token x tokens/s over
the GPU's peak dense bf16 FLOPs (989 TFLOPS for an H100/H200 SXM; ``--peak-tflops``).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from r1ov.bench.report import Result, write

logger = logging.getLogger(__name__)

H200_PEAK_TFLOPS = 989.0
# Qwen/Qwen2.5-VL-3B-Instruct config.json (text and vision towers), as published.
QWEN25_VL_3B: dict[str, dict[str, Any]] = {
    "text": {
        "vocab_size": 151936,
        "hidden_size": 2048,
        "intermediate_size": 11008,
        "num_hidden_layers": 36,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "max_position_embeddings": 128000,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [16, 24, 24]},
    },
    "vision": {
        "depth": 32,
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "out_hidden_size": 2048,
        "fullatt_block_indexes": [7, 15, 23, 31],
        "window_size": 112,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    },
    "tie_word_embeddings": {"value": True},
}


def model_config(arch: str) -> Any:
    """The Qwen2.5-VL config of ``arch`` ("qwen2.5-vl-3b" or "tiny") with this tokenizer's special tokens."""
    from transformers import Qwen2_5_VLConfig

    from r1ov.testing import tiny_model

    tokenizer = tiny_model.build_tokenizer()
    if arch == "tiny":
        return tiny_model.build_config(tokenizer)
    if arch != "qwen2.5-vl-3b":
        raise ValueError(f"unknown arch {arch!r}; expected qwen2.5-vl-3b or tiny")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in tiny_model.SPECIAL_TOKENS}
    text = {
        **QWEN25_VL_3B["text"],
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=dict(QWEN25_VL_3B["vision"]),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=QWEN25_VL_3B["tie_word_embeddings"]["value"],
    )


def parameter_count(config: Any) -> int:
    """Parameters of the model ``config`` describes, counted without allocating them."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(config)
    return sum(p.numel() for p in model.parameters())


def build_model(arch: str, out: Path, device: str) -> tuple[Path, Any, int]:
    """Random weights of ``arch`` (bf16 on GPU) with the offline processor, saved to ``out``."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from r1ov.testing import tiny_model

    config = model_config(arch)
    torch.manual_seed(0)
    started = time.monotonic()
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration(config)
    if device != "cpu":
        model = model.to(torch.bfloat16)
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out)
    tiny_model.build_processor(tiny_model.build_tokenizer()).save_pretrained(out)
    logger.info("%s: %.2fB parameters built and saved in %.0f s", arch, params / 1e9, time.monotonic() - started)
    del model
    if device != "cpu":
        torch.cuda.empty_cache()
    return out, config, params


def image_side(max_length: int) -> int:
    """448 px (256 image tokens) at real lengths; 56 px (4 tokens) when the sequence is short."""
    return 448 if max_length >= 2048 else 56


def long_records(n: int, max_length: int) -> list[dict[str, Any]]:
    """SFT records whose reasoning fills about ``max_length`` tokens (truncated there by the trainer)."""
    from PIL import Image

    from r1ov.data import imaging, records
    from r1ov.scoring import reasoning

    # The offline tokenizer spends roughly one token per 2-3 characters of this text.
    sentence = "The segment AB is twice the radius, so the area follows from the formula. "
    thinking = sentence * max(1, (max_length * 3) // len(sentence))
    rows = []
    for i in range(n):
        side = image_side(max_length)
        image = Image.new("RGB", (side, side), (30 * i % 255, 120, 200))
        row = records.new_record(
            source="gpu-check", question=f"What is the area of figure {i}?", image_type="math",
            image=imaging.to_png(image), answer=str(i),
        )  # fmt: skip
        row["reasoning"] = reasoning.compose(thinking, str(i))
        rows.append(row)
    return rows


def flops_per_token(params: int, config: Any, seq: int) -> float:
    text = config.text_config
    return 6.0 * params + 12.0 * text.num_hidden_layers * text.hidden_size * seq


def run(arch: str, steps: int, max_length: int, device: str, peak_tflops: float, workdir: Path) -> list[Result]:
    from r1ov.config import SFTConfig
    from r1ov.data import records
    from r1ov.train import sft

    model_dir, config, params = build_model(arch, workdir / "model", device)
    data = str(workdir / "data")
    records.write_dataset(data, long_records(steps + 2, max_length))
    cfg = SFTConfig(
        model_name_or_path=str(model_dir), train_uri=data, output_dir=str(workdir / "out"), max_steps=steps,
        per_device_train_batch_size=1, gradient_accumulation_steps=1, max_length=max_length, learning_rate=1e-5,
        max_pixels=image_side(max_length) ** 2, bf16=True, gradient_checkpointing=device != "cpu", track=False,
        save_steps=0, distributed={"deepspeed": "none"},
    )  # fmt: skip
    summary = sft.train(cfg)
    tokens_s = summary["num_tokens"] / summary["train_runtime_s"]
    per_token = flops_per_token(params, config, max_length)
    achieved = tokens_s * per_token / 1e12
    logger.info("%s: %.0f tokens/s, %.1f TFLOPS, MFU %.3f", arch, tokens_s, achieved, achieved / peak_tflops)
    label = f"{arch} SFT, bf16, max_length {max_length}, {steps} steps, {device}"
    return [
        Result.compare(f"{label}: tokens/s (baseline: peak-FLOPS tokens/s)", tokens_s,
                       peak_tflops * 1e12 / per_token, "tokens/s", 0.3, "MFU on an H200"),
        Result.compare(f"{label}: model TFLOPS (baseline: peak dense bf16)", achieved, peak_tflops, "TFLOPS", 0.3,
                       "MFU on an H200"),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m r1ov.bench.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="qwen2.5-vl-3b", choices=["qwen2.5-vl-3b", "tiny"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--max-length", type=int, default=4096)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--peak-tflops", type=float, default=H200_PEAK_TFLOPS)
    parser.add_argument("--out", default="docs/benchmarks")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.exit(2, "python -m r1ov.bench.gpu: no CUDA device; use --device cpu --arch tiny for a dry run\n")
    with tempfile.TemporaryDirectory() as tmp:
        results = run(args.arch, args.steps, args.max_length, args.device, args.peak_tflops, Path(tmp))
    path = write("gpu", results, args.out, notes=__doc__ or "")
    logger.info("wrote %s", path)


if __name__ == "__main__":
    main()
