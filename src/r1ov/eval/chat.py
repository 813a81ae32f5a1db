"""One OpenAI-compatible chat endpoint, asked many short questions at once.

The LLM judge and the LLM extractor both send one small prompt per item to an endpoint
(GPT-4o, a judge deployment in the cluster, our own vLLM server) and read a short reply.
Both share this: the settings, the client, the concurrency, and the rule that a failed
request is a missing reply (None) for that item, never a stopped run.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EndpointSettings:
    """Where the endpoint lives and how hard to push it."""

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = 8
    timeout_s: float = 120.0
    max_retries: int = 3


def ask_all(prompts: list[str | None], settings: EndpointSettings, max_tokens: int, what: str) -> list[str | None]:
    """The reply to each prompt, in order; None where the prompt is None (nothing to ask) or the request failed.

    Greedy (temperature 0): the same prompt should get the same reply, so a re-score is
    reproducible as far as the endpoint is. ``what`` names the caller in failure logs.
    """
    from openai import OpenAI

    client = OpenAI(
        base_url=settings.base_url,
        api_key=os.environ.get(settings.api_key_env) or "EMPTY",
        timeout=settings.timeout_s,
        max_retries=settings.max_retries,
    )

    def one(index_prompt: tuple[int, str | None]) -> str | None:
        index, prompt = index_prompt
        if prompt is None:
            return None
        try:
            response = client.chat.completions.create(
                model=settings.model,
                messages=[{"role": "user", "content": prompt}],
                max_tokens=max_tokens,
                temperature=0.0,
            )
        except Exception as exc:  # one failed request is one missing reply, never a stopped run
            log.warning("%s request %d failed: %s", what, index, exc)
            return None
        return response.choices[0].message.content if response.choices else None

    with ThreadPoolExecutor(max_workers=settings.max_concurrency) as pool:
        return list(pool.map(one, enumerate(prompts)))
