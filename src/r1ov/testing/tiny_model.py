"""A tiny random-weight Qwen2.5-VL, built offline, for tests and the local demo.

    r1ov tiny-model --out models/tiny

The directory it writes is an ordinary ``save_pretrained`` checkpoint (config, weights,
tokenizer, image/video processors, chat template), so every stage loads it exactly as it
would load ``Qwen/Qwen2.5-VL-7B-Instruct``: ``AutoProcessor.from_pretrained`` and
``AutoModelForImageTextToText.from_pretrained``. Nothing is downloaded.

The tokenizer is a byte-level BPE trained here on text that covers the project's prompts,
so the model can at least spell ``<think>``/``<answer>`` and the answers it is graded on.
"""

from __future__ import annotations

import logging
import random
import string
from pathlib import Path

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2TokenizerFast,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
)
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX
from trl.chat_template_utils import qwen2_5_vl_chat_template

from r1ov.scoring import reasoning

logger = logging.getLogger(__name__)

# Qwen2.5-VL's special tokens, in Qwen's order, so ids keep the same relative layout.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Single tokens (not special: decoding keeps them), so a random model emits a tag with one
# sampled token instead of three in a row; that makes the format reward reachable in tests.
TAG_TOKENS = ("<think>", "</think>", "<answer>", "</answer>")

VOCAB_SIZE = 1024  # byte alphabet (256) + merges for the prompt vocabulary; keeps embeddings tiny
HIDDEN = 64  # 4 heads x head_dim 16
HEADS = 4
MROPE_SECTION = [2, 3, 3]  # must sum to head_dim / 2 = 8 (temporal, height, width)
VISION_HIDDEN = 32
VISION_DEPTH = 2
MIN_PIXELS = 56 * 56  # 4x4 patches -> 4 image tokens after the 2x2 merge
MAX_PIXELS = 112 * 112  # 8x8 patches -> at most 16 image tokens: fast forward passes in tests

_WORDS = (
    "how many objects are there in the image what color is the shape of the large small cube sphere cylinder "
    "red blue green yellow gray brown purple cyan metal rubber matte shiny left right behind front of same size "
    "as number total value answer question options choose correct following which is the circuit resistor "
    "voltage current flowchart table chart row column sum difference product count angle triangle area length "
    "you are a helpful assistant let me think step by step first then so therefore the result equals"
)


def _corpus() -> list[str]:
    """Training text for the BPE: the prompts, the tags, digits, letters and question words."""
    rng = random.Random(0)  # fixed: every tiny model shares one vocabulary, the seed varies weights only
    words = _WORDS.split()
    lines = [reasoning.INSTRUCTION, "You are a helpful assistant.", string.ascii_letters, string.digits]
    lines += [string.punctuation, " ".join(string.ascii_uppercase), " ".join(string.digits)]
    for _ in range(400):
        question = " ".join(rng.choice(words) for _ in range(rng.randint(4, 12))).capitalize() + "?"
        options = [str(rng.randint(0, 99)) for _ in range(rng.randint(0, 4))]
        answer = rng.choice([str(rng.randint(0, 99)), rng.choice("ABCD"), rng.choice(words)])
        think = " ".join(rng.choice(words) for _ in range(rng.randint(5, 20)))
        lines.append(reasoning.format_question(question, options))
        lines.append(reasoning.compose(think, answer))
    return lines


def build_tokenizer() -> Qwen2TokenizerFast:
    """A byte-level BPE with Qwen's special tokens, eos ``<|im_end|>`` and pad ``<|endoftext|>``."""
    backend = Tokenizer(models.BPE())
    backend.normalizer = normalizers.NFC()
    # Qwen2's own split, so training here and loading with Qwen2Tokenizer tokenize alike.
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_corpus(), trainer=trainer)
    backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAG_TOKENS])
    return Qwen2TokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        model_max_length=32768,
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )


def build_processor(tokenizer: Qwen2TokenizerFast) -> Qwen2_5_VLProcessor:
    """Qwen2.5-VL processor with small pixel bounds and the standard chat template (from TRL)."""
    image_processor = Qwen2VLImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    video_processor = Qwen2VLVideoProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    # The exact upstream template: TRL recognises it and swaps in its generation-marked
    # training variant for assistant-only loss, as it would for the real checkpoint.
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=qwen2_5_vl_chat_template,
    )


def build_config(tokenizer: Qwen2TokenizerFast) -> Qwen2_5_VLConfig:
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    vocab_size = -(-len(tokenizer) // 64) * 64  # padded to a multiple of 64, like upstream checkpoints
    text_config = {
        "vocab_size": vocab_size,
        "hidden_size": HIDDEN,
        "intermediate_size": 2 * HIDDEN,
        "num_hidden_layers": 2,
        "num_attention_heads": HEADS,
        "num_key_value_heads": 2,  # grouped-query attention, as in the real model
        "max_position_embeddings": 4096,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": MROPE_SECTION},
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    vision_config = {
        "depth": VISION_DEPTH,
        "hidden_size": VISION_HIDDEN,
        "intermediate_size": 2 * VISION_HIDDEN,
        "num_heads": 2,
        "out_hidden_size": HIDDEN,  # the merger projects straight into the text hidden size
        "fullatt_block_indexes": [VISION_DEPTH - 1],  # every index must be < depth
        "window_size": 56,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    }
    return Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def build_tiny_model(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny random Qwen2.5-VL checkpoint to ``out_dir``; same seed, same weights."""
    out = Path(out_dir)
    tokenizer = build_tokenizer()
    processor = build_processor(tokenizer)
    config = build_config(tokenizer)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    model.generation_config.bos_token_id = None
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    params = sum(p.numel() for p in model.parameters())
    logger.info("tiny Qwen2.5-VL (%d parameters, vocab %d) written to %s", params, len(tokenizer), out)
    return out
