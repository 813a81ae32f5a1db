"""The tiny random Qwen2.5-VL: built offline, loaded with the standard Auto classes, generates."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor
from trl.chat_template_utils import qwen2_5_vl_chat_template

from r1ov.scoring import reasoning
from r1ov.testing.tiny_model import MAX_PIXELS, MIN_PIXELS, SPECIAL_TOKENS, TAG_TOKENS, build_tiny_model


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def loaded(tiny_model_dir: Path) -> tuple[object, object]:
    return AutoProcessor.from_pretrained(tiny_model_dir), AutoModelForImageTextToText.from_pretrained(tiny_model_dir)


def test_loads_with_the_auto_classes_as_a_qwen2_5_vl(loaded: tuple, tiny_model_dir: Path) -> None:
    processor, model = loaded
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    tokenizer = processor.tokenizer
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    # the config's multimodal ids point at the tokenizer's special tokens
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    assert model.config.image_token_id == ids["<|image_pad|>"]
    assert model.config.video_token_id == ids["<|video_pad|>"]
    assert model.config.vision_start_token_id == ids["<|vision_start|>"]
    assert model.config.vision_end_token_id == ids["<|vision_end|>"]
    assert model.config.text_config.vocab_size >= len(tokenizer)
    assert model.generation_config.eos_token_id == ids["<|im_end|>"]
    # the exact upstream template, so TRL recognises it and swaps in its training variant
    assert processor.chat_template == qwen2_5_vl_chat_template
    assert processor.image_processor.size["longest_edge"] == MAX_PIXELS
    assert processor.image_processor.size["shortest_edge"] == MIN_PIXELS
    assert sum(p.numel() for p in model.parameters()) < 1_000_000


def test_tokenizer_covers_the_project_prompts(loaded: tuple) -> None:
    tokenizer = loaded[0].tokenizer
    text = reasoning.INSTRUCTION + "\n" + reasoning.compose("3 red cubes, 2 spheres: 3 + 2 = 5", "5")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text  # byte-level: every prompt round-trips
    for tag in TAG_TOKENS:  # one token each, so a tiny model can emit a tag at all
        assert len(tokenizer(tag, add_special_tokens=False)["input_ids"]) == 1
    # trained on the prompts: far fewer tokens than bytes
    assert len(ids) < len(text.encode()) / 2


def test_generates_from_an_image_and_a_text_prompt(loaded: tuple) -> None:
    processor, model = loaded
    messages = [
        {"role": "system", "content": [{"type": "text", "text": reasoning.INSTRUCTION}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many cubes are there?"}]},
    ]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>assistant\n") and "<|vision_start|><|image_pad|><|vision_end|>" in text
    inputs = processor(text=[text], images=[Image.new("RGB", (200, 150), (200, 30, 30))], return_tensors="pt")
    # max_pixels keeps the image small: at most 16 merged image tokens
    assert int(inputs["image_grid_thw"].prod()) // 4 <= MAX_PIXELS // (28 * 28)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    new_tokens = out[0, inputs["input_ids"].shape[1] :]
    assert 1 <= len(new_tokens) <= 8
    assert isinstance(processor.decode(new_tokens, skip_special_tokens=True), str)


def test_build_is_deterministic_per_seed(tmp_path: Path, tiny_model_dir: Path) -> None:
    again = build_tiny_model(tmp_path / "again", seed=0)
    other = build_tiny_model(tmp_path / "other", seed=1)
    for name in ("model.safetensors", "tokenizer.json", "config.json", "chat_template.jinja"):
        assert _digest(again / name) == _digest(tiny_model_dir / name), name
    assert _digest(other / "model.safetensors") != _digest(again / "model.safetensors")
    assert _digest(other / "tokenizer.json") == _digest(again / "tokenizer.json")  # the seed varies weights only
