"""Generation backends by name: ``hf`` (transformers), ``openai`` (any OpenAI-compatible endpoint), ``vllm``.

Every backend turns :class:`Prompt` items into :class:`Generation` items, one for one and in
order, with the same conversation: system = ``reasoning.INSTRUCTION``, user = the image then
the question (``reasoning.format_question``). A failure on one item becomes that item's
``error`` ("generation_failed: ..."); it never stops the others.
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from PIL import Image

from r1ov.config import EvalConfig
from r1ov.data.imaging import to_png
from r1ov.scoring.reasoning import INSTRUCTION

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prompt:
    """One question to ask: the user turn's text and its image (``None`` for text-only items)."""

    id: str
    text: str
    image: Image.Image | None


@dataclass(frozen=True)
class Generation:
    """A completion, or the reason there is none; ``finish_reason`` is "length" when cut off."""

    completion: str | None
    error: str | None = None
    finish_reason: str | None = None


class Backend(Protocol):
    def generate(self, prompts: list[Prompt]) -> list[Generation]: ...


def _failed(exc: BaseException) -> Generation:
    return Generation(None, f"generation_failed: {type(exc).__name__}: {exc}"[:500])


def _data_url(image: Image.Image) -> str:
    return "data:image/png;base64," + base64.b64encode(to_png(image)).decode("ascii")


def openai_messages(prompt: Prompt) -> list[dict[str, Any]]:
    """The conversation in OpenAI chat format, image inline as a base64 data URL."""
    content: list[dict[str, Any]] = []
    if prompt.image is not None:
        content.append({"type": "image_url", "image_url": {"url": _data_url(prompt.image)}})
    content.append({"type": "text", "text": prompt.text})
    return [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": content}]


def _chunks(items: list[Prompt], size: int) -> list[list[Prompt]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# --------------------------------------------------------------------------- hf


class HFBackend:
    """transformers ``AutoModelForImageTextToText`` + ``AutoProcessor``, batched, left-padded."""

    def __init__(self, cfg: EvalConfig) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.cfg = cfg
        self.torch = torch
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.processor = AutoProcessor.from_pretrained(cfg.model_name_or_path)
        # Decoder-only batches must be padded on the left so every prompt ends where generation starts.
        self.processor.tokenizer.padding_side = "left"
        self.model = AutoModelForImageTextToText.from_pretrained(cfg.model_name_or_path, dtype=dtype)
        self.model.to(self.device).eval()

    def _text(self, prompt: Prompt) -> str:
        content: list[dict[str, Any]] = [{"type": "image"}] if prompt.image is not None else []
        content.append({"type": "text", "text": prompt.text})
        messages = [
            {"role": "system", "content": [{"type": "text", "text": INSTRUCTION}]},
            {"role": "user", "content": content},
        ]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def _batch(self, batch: list[Prompt]) -> list[Generation]:
        images = [p.image for p in batch if p.image is not None]
        inputs = self.processor(
            text=[self._text(p) for p in batch], images=images or None, return_tensors="pt", padding=True
        ).to(self.device)
        sampling: dict[str, Any] = {"do_sample": False}  # temperature 0: greedy
        if self.cfg.temperature > 0:
            sampling = {"do_sample": True, "temperature": self.cfg.temperature}
            self.torch.manual_seed(self.cfg.seed)
        tokenizer = self.processor.tokenizer
        with self.torch.inference_mode():
            output = self.model.generate(
                **inputs, max_new_tokens=self.cfg.max_new_tokens, pad_token_id=tokenizer.pad_token_id, **sampling
            )
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        configured = self.model.generation_config.eos_token_id
        eos = {*(configured if isinstance(configured, list) else [configured]), tokenizer.eos_token_id} - {None}
        results = []
        for row in new_tokens.tolist():
            stopped = any(t in eos for t in row)
            text = tokenizer.decode(row, skip_special_tokens=True)
            results.append(Generation(text, finish_reason="stop" if stopped else "length"))
        return results

    def generate(self, prompts: list[Prompt]) -> list[Generation]:
        from tqdm.auto import tqdm

        results: list[Generation] = []
        # Items done, with rate and ETA, on a terminal; disable=None keeps logs (no TTY) free of bars.
        with tqdm(total=len(prompts), desc="generate", unit="item", disable=None) as progress:
            for batch in _chunks(prompts, self.cfg.batch_size):
                try:
                    results += self._batch(batch)
                except Exception as exc:  # one bad item must not sink its batch: retry the items alone
                    log.warning("hf batch of %d failed (%s); retrying one by one", len(batch), exc)
                    for prompt in batch:
                        try:
                            results += self._batch([prompt])
                        except Exception as item_exc:
                            results.append(_failed(item_exc))
                progress.update(len(batch))
        return results


# --------------------------------------------------------------------------- openai


class OpenAIBackend:
    """Chat completions on any OpenAI-compatible endpoint (our vLLM server, GPT-4o, ...)."""

    def __init__(self, cfg: EvalConfig) -> None:
        from openai import OpenAI

        self.cfg = cfg
        # Local servers accept any key; the client refuses to start without one.
        self.client = OpenAI(
            base_url=cfg.base_url,
            api_key=os.environ.get(cfg.api_key_env) or "EMPTY",
            timeout=cfg.request_timeout_s,
            max_retries=cfg.max_retries,
        )

    def _one(self, prompt: Prompt) -> Generation:
        try:
            response = self.client.chat.completions.create(
                model=self.cfg.model_name_or_path,
                messages=openai_messages(prompt),
                max_tokens=self.cfg.max_new_tokens,
                temperature=self.cfg.temperature,
                seed=self.cfg.seed,
            )
        except Exception as exc:
            return _failed(exc)
        if not response.choices:
            return Generation(None, "generation_failed: the response has no choices")
        choice = response.choices[0]
        if choice.message.content is None:
            return Generation(None, f"generation_failed: empty message (finish_reason={choice.finish_reason})")
        return Generation(choice.message.content, finish_reason=choice.finish_reason)

    def generate(self, prompts: list[Prompt]) -> list[Generation]:
        with ThreadPoolExecutor(max_workers=self.cfg.max_concurrency) as pool:
            return list(pool.map(self._one, prompts))


# --------------------------------------------------------------------------- vllm


class VLLMBackend:
    """vLLM's offline engine (``vllm.LLM.chat``); imported only when chosen, as it needs a GPU."""

    def __init__(self, cfg: EvalConfig) -> None:
        from vllm import LLM, SamplingParams

        self.cfg = cfg
        kwargs: dict[str, Any] = {}
        if cfg.vllm_max_model_len:
            kwargs["max_model_len"] = cfg.vllm_max_model_len
        self.llm = LLM(
            model=cfg.model_name_or_path,
            tensor_parallel_size=cfg.vllm_tensor_parallel_size,
            gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
            limit_mm_per_prompt={"image": 1},
            seed=cfg.seed,
            **kwargs,
        )
        self.params = SamplingParams(temperature=cfg.temperature, max_tokens=cfg.max_new_tokens, seed=cfg.seed)

    def _chat(self, prompts: list[Prompt]) -> list[Generation]:
        outputs = self.llm.chat([openai_messages(p) for p in prompts], self.params, use_tqdm=False)
        return [Generation(o.outputs[0].text, finish_reason=o.outputs[0].finish_reason) for o in outputs]

    def generate(self, prompts: list[Prompt]) -> list[Generation]:
        if not prompts:
            return []
        try:
            return self._chat(prompts)
        except Exception as exc:  # find the item that broke the batch; keep the rest
            log.warning("vllm batch failed (%s); retrying one by one", exc)
        results = []
        for prompt in prompts:
            try:
                results += self._chat([prompt])
            except Exception as exc:
                results.append(_failed(exc))
        return results


BACKENDS: dict[str, Callable[[EvalConfig], Backend]] = {
    "hf": HFBackend,
    "openai": OpenAIBackend,
    "vllm": VLLMBackend,
}


def build(cfg: EvalConfig) -> Backend:
    """The backend named by ``cfg.backend``, loaded and ready."""
    if cfg.backend not in BACKENDS:
        raise KeyError(f"unknown backend {cfg.backend!r}; expected one of {sorted(BACKENDS)}")
    log.info("generation backend %s for %s", cfg.backend, cfg.model_name_or_path)
    return BACKENDS[cfg.backend](cfg)
