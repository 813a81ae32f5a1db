"""One client for every teacher: any OpenAI-compatible chat endpoint.

GPT-4o, DeepSeek-R1, an open model behind our vLLM chart, or the offline teacher: all are
reached through ``openai.AsyncOpenAI``, which already retries 429, 408/409, 5xx, connection
errors and timeouts with exponential backoff and honours ``Retry-After``. On top of it this
client adds what a data stage needs:

- bounded concurrency (a semaphore of ``max_concurrency`` requests in flight),
- a content-hash response cache (``cache_uri``): a cached reply costs no request and no budget,
- a request budget (``max_requests``): past it, requests fail with :class:`BudgetExceeded`,
- :meth:`TeacherClient.complete_all`, a synchronous batch call with a progress bar that
  returns a reply *or* the exception per request, so one failure is one record's rejection.

The budget counts requests sent (cache misses); retries inside one request are the
``openai`` client's and are not counted separately.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from openai import AsyncOpenAI
from tqdm.auto import tqdm

from r1ov.config import TeacherConfig
from r1ov.teachers.cache import ResponseCache, cache_key
from r1ov.teachers.protocol import Messages

log = logging.getLogger(__name__)

# Local endpoints (vLLM, the offline teacher) accept any key; the SDK refuses an empty one.
PLACEHOLDER_KEY = "not-needed"


class BudgetExceeded(RuntimeError):
    """The request budget (``TeacherConfig.max_requests``) is spent."""


@dataclass(frozen=True)
class Request:
    """One chat request; ``None`` sampling values fall back to the teacher config."""

    messages: Messages
    temperature: float | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class Reply:
    text: str
    model: str
    finish_reason: str | None = None
    # DeepSeek-R1's API returns the chain of thought apart from the content.
    reasoning_content: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    cached: bool = False

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("cached")
        return data


@dataclass
class TeacherStats:
    sent: int = 0
    cache_hits: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class TeacherClient:
    """Async OpenAI-compatible client with a concurrency bound, cache and budget.

    One instance serves a whole stage: budget and statistics accumulate across calls.
    """

    def __init__(self, cfg: TeacherConfig) -> None:
        self.cfg = cfg
        self.cache = ResponseCache(cfg.cache_uri) if cfg.cache_uri else None
        self.stats = TeacherStats()
        self._api_key = os.environ.get(cfg.api_key_env) or PLACEHOLDER_KEY
        if self._api_key == PLACEHOLDER_KEY and "api.openai.com" in cfg.base_url:
            log.warning("%s is not set; %s will refuse the requests", cfg.api_key_env, cfg.base_url)

    # ------------------------------------------------------------------ async API

    def _params(self, request: Request) -> dict[str, Any]:
        return {
            "temperature": self.cfg.temperature if request.temperature is None else request.temperature,
            "max_tokens": self.cfg.max_tokens if request.max_tokens is None else request.max_tokens,
        }

    def _take_budget(self) -> None:
        # No await between the check and the increment: atomic within one event loop.
        if self.cfg.max_requests is not None and self.stats.sent >= self.cfg.max_requests:
            raise BudgetExceeded(f"request budget of {self.cfg.max_requests} spent")
        self.stats.sent += 1

    async def _complete(self, api: AsyncOpenAI, semaphore: asyncio.Semaphore, request: Request) -> Reply:
        """One request: from the cache when possible, else sent within the concurrency bound."""
        params = self._params(request)
        key = cache_key(self.cfg.model, request.messages, params)
        if self.cache is not None:
            hit = await asyncio.to_thread(self.cache.get, key)
            if hit is not None:
                self.stats.cache_hits += 1
                return Reply(**hit, cached=True)
        async with semaphore:
            self._take_budget()
            response = await api.chat.completions.create(model=self.cfg.model, messages=request.messages, **params)
        choice = response.choices[0]
        usage = response.usage
        reply = Reply(
            text=choice.message.content or "",
            model=response.model or self.cfg.model,
            finish_reason=choice.finish_reason,
            reasoning_content=(choice.message.model_extra or {}).get("reasoning_content"),
            usage={"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens} if usage else {},
        )
        self.stats.prompt_tokens += reply.usage.get("prompt_tokens", 0)
        self.stats.completion_tokens += reply.usage.get("completion_tokens", 0)
        if self.cache is not None:
            await asyncio.to_thread(self.cache.put, key, reply.to_json())
        return reply

    async def acomplete_all(self, requests: Sequence[Request], desc: str = "teacher") -> list[Reply | Exception]:
        """Every request concurrently (bounded); each slot holds its reply or its exception."""
        semaphore = asyncio.Semaphore(self.cfg.max_concurrency)
        results: list[Reply | Exception] = [RuntimeError("not run")] * len(requests)
        # A client per call: its connection pool belongs to this event loop.
        async with AsyncOpenAI(
            base_url=self.cfg.base_url,
            api_key=self._api_key,
            max_retries=self.cfg.max_retries,
            timeout=self.cfg.timeout_s,
        ) as api:
            with tqdm(total=len(requests), desc=desc, unit="req", disable=None) as progress:

                async def one(index: int, request: Request) -> None:
                    try:
                        results[index] = await self._complete(api, semaphore, request)
                    except Exception as exc:  # one failure is one record's, never the batch's
                        self.stats.failed += 1
                        log.debug("teacher request %d failed: %r", index, exc)
                        results[index] = exc
                    progress.update(1)

                await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))
        return results

    # ------------------------------------------------------------------ sync API

    def complete_all(self, requests: Sequence[Request], desc: str = "teacher") -> list[Reply | Exception]:
        """Synchronous :meth:`acomplete_all` for stage code (works inside a running loop too)."""
        if not requests:
            return []
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.acomplete_all(requests, desc))
        # Called from async code (a notebook): run on a private loop in a worker thread.
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, self.acomplete_all(requests, desc)).result()

    def summary(self) -> dict[str, Any]:
        return {"model": self.cfg.model, **asdict(self.stats)}


def describe_error(exc: BaseException) -> str:
    """A one-line reason for a failed request: ``teacher_error: RateLimitError: ...``."""
    message = " ".join(str(exc).split())[:300]
    return f"teacher_error: {type(exc).__name__}: {message}" if message else f"teacher_error: {type(exc).__name__}"
