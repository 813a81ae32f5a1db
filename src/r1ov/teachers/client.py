"""One client for every teacher: any OpenAI-compatible chat endpoint.

GPT-4o, DeepSeek-R1, an open model behind our vLLM chart, or the offline teacher: all are
reached with ``POST /chat/completions`` (:mod:`r1ov.teachers.transport`: aiohttp, failures as
the openai SDK's exception types). Around it this client adds what a data stage needs:

- bounded concurrency (a semaphore of ``max_concurrency`` requests in flight),
- retries: 429, 408/409, 5xx, timeouts, connection errors and
  truncated or unreadable bodies, with exponential backoff, full jitter and ``Retry-After``,
- a content-hash response cache: every answered call is persisted as it arrives, so a killed
  run re-sends nothing that was answered. The raw reply is stored, never a verdict on it:
  whether a reply is usable is decided by the request's ``check`` on every read,
- one corrective retry for unusable replies (``check`` failed): the parser's error goes back to
  the teacher once; a second unusable reply raises :class:`InvalidReply` (the record's reason),
- a request budget (``max_requests``) that counts every attempt sent, retries included,
- :meth:`TeacherClient.complete_all`, a synchronous batch call with a progress bar that
  returns a reply *or* the exception per request, so one failure is one record's rejection.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import openai
from tqdm.auto import tqdm

from r1ov.config import TeacherConfig
from r1ov.teachers.cache import ResponseCache, cache_key
from r1ov.teachers.protocol import Messages, correction_messages
from r1ov.teachers.transport import ChatTransport, UnreadableBody

log = logging.getLogger(__name__)

# Local endpoints (vLLM, the offline teacher) accept any key; an empty Bearer token is refused by some.
PLACEHOLDER_KEY = "not-needed"
# Statuses worth another attempt: the request was fine, the server was not (or was busy).
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 120.0


class BudgetExceeded(RuntimeError):
    """The request budget (``TeacherConfig.max_requests``) is spent."""


class InvalidReply(ValueError):
    """The teacher answered twice, and neither reply passed the request's check."""


class TruncatedReply(ValueError):
    """The response body was cut short or is not a chat completion; retried like a 5xx."""


# A reply's problem in a few words, or None when it is usable.
ReplyCheck = Callable[["Reply"], str | None]


@dataclass(frozen=True)
class Request:
    """One chat request; ``None`` sampling values fall back to the teacher config.

    ``check`` decides whether a reply is usable (see :data:`ReplyCheck`); it is not part of
    the request sent, so it does not change the cache key.
    """

    messages: Messages
    temperature: float | None = None
    max_tokens: int | None = None
    check: ReplyCheck | None = field(default=None, compare=False, hash=False, repr=False)


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
    seconds: float = 0.0  # wall time spent waiting on batches of requests
    sent: int = 0  # attempts sent (each billed or at least counted against the budget)
    answered: int = 0  # attempts that came back with a readable completion
    retries: int = 0  # attempts after a transient failure
    corrections: int = 0  # second asks after an unusable reply
    cache_hits: int = 0
    failed: int = 0
    invalid: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


def request_timeout(cfg: TeacherConfig, max_tokens: int) -> float:
    """Seconds one attempt may take: the configured value, or enough for ``max_tokens`` at the
    slowest rate a healthy endpoint streams (long reasoning chains take minutes)."""
    if cfg.timeout_s is not None:
        return cfg.timeout_s
    return cfg.timeout_base_s + max_tokens / cfg.min_tokens_per_s


def retry_after_s(exc: BaseException) -> float | None:
    """The server's ``Retry-After`` (seconds or an HTTP date; ``retry-after-ms`` too), if any."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    if headers.get("retry-after-ms"):
        try:
            return float(headers["retry-after-ms"]) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def is_transient(exc: BaseException) -> bool:
    """Worth another attempt: rate limits, server errors, timeouts, broken connections or bodies."""
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in RETRY_STATUSES
    return isinstance(exc, openai.APITimeoutError | openai.APIConnectionError | TruncatedReply)


def _reply_from(response: dict[str, Any], fallback_model: str) -> Reply:
    """A chat completion's JSON as a Reply; anything else is a broken body (retried)."""
    try:
        choice = response["choices"][0]
        message = choice["message"]
        usage = response.get("usage") or {}
        return Reply(
            text=message.get("content") or "",
            model=response.get("model") or fallback_model,
            finish_reason=choice.get("finish_reason"),
            reasoning_content=message.get("reasoning_content"),
            usage={k: int(usage[k]) for k in ("prompt_tokens", "completion_tokens") if k in usage},
        )
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
        raise TruncatedReply(f"not a chat completion: {str(response)[:120]}") from exc


class TeacherClient:
    """Async OpenAI-compatible client with a concurrency bound, retries, cache and budget.

    One instance serves a whole stage: budget and statistics accumulate across calls.
    ``cache_uri`` overrides the config's (stages pass their per-run default).
    """

    def __init__(self, cfg: TeacherConfig, cache_uri: str | None = None) -> None:
        self.cfg = cfg
        uri = cache_uri or cfg.cache_uri
        self.cache = ResponseCache(uri) if uri and cfg.cache else None
        self.stats = TeacherStats()
        self._api_key = os.environ.get(cfg.api_key_env) or PLACEHOLDER_KEY
        self._rng = random.Random()
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

    def _backoff(self, attempt: int, exc: BaseException) -> float:
        hinted = retry_after_s(exc)
        if hinted is not None:
            return min(hinted, MAX_RETRY_AFTER_S)
        # Full jitter: clients that failed together do not retry together.
        return self._rng.uniform(0, min(self.cfg.max_backoff_s, self.cfg.backoff_s * 2**attempt))

    async def _send(self, api: ChatTransport, semaphore: asyncio.Semaphore, messages: Messages, params: dict) -> Reply:
        """One answered call: attempts within the concurrency bound, backoff outside it."""
        timeout = request_timeout(self.cfg, params["max_tokens"])
        attempt = 0
        while True:
            try:
                async with semaphore:
                    self._take_budget()
                    try:
                        body = {"model": self.cfg.model, "messages": messages, **params}
                        response = await api.post(body, timeout)
                    except UnreadableBody as exc:
                        raise TruncatedReply(str(exc)) from exc
                    reply = _reply_from(response, self.cfg.model)
            except Exception as exc:
                if not is_transient(exc) or attempt >= self.cfg.max_retries:
                    raise
                delay = self._backoff(attempt, exc)
                log.debug("attempt %d failed (%r); retrying in %.2f s", attempt + 1, exc, delay)
                self.stats.retries += 1
                attempt += 1
                await asyncio.sleep(delay)
                continue
            self.stats.answered += 1
            self.stats.prompt_tokens += reply.usage.get("prompt_tokens", 0)
            self.stats.completion_tokens += reply.usage.get("completion_tokens", 0)
            return reply

    async def _answer(
        self, api: ChatTransport, semaphore: asyncio.Semaphore, messages: Messages, params: dict
    ) -> Reply:
        """The reply to ``messages``: from the cache, else sent and persisted before returning."""
        key = cache_key(self.cfg.model, messages, params)
        if self.cache is not None:
            hit = await asyncio.to_thread(self.cache.get, key) if self.cache.blocking else self.cache.get(key)
            if hit is not None:
                self.stats.cache_hits += 1
                return Reply(**hit, cached=True)
        reply = await self._send(api, semaphore, messages, params)
        if self.cache is not None:
            if self.cache.blocking:
                await asyncio.to_thread(self.cache.put, key, reply.to_json())
            else:
                self.cache.put(key, reply.to_json())
        return reply

    async def _complete(self, api: ChatTransport, semaphore: asyncio.Semaphore, request: Request) -> Reply:
        params = self._params(request)
        reply = await self._answer(api, semaphore, request.messages, params)
        problem = request.check(reply) if request.check else None
        if problem is None:
            return reply
        # One corrective ask with the parser's words; the bad reply stays in the cache as what
        # the teacher said, so a re-run asks the same follow-up (answered from the cache too).
        self.stats.corrections += 1
        corrected = correction_messages(request.messages, reply.text, problem)
        second = await self._answer(api, semaphore, corrected, params)
        again = request.check(second)
        if again is None:
            return second
        self.stats.invalid += 1
        raise InvalidReply(again)

    async def acomplete_all(self, requests: Sequence[Request], desc: str = "teacher") -> list[Reply | Exception]:
        """Every request concurrently (bounded); each slot holds its reply or its exception."""
        semaphore = asyncio.Semaphore(self.cfg.max_concurrency)
        results: list[Reply | Exception] = [RuntimeError("not run")] * len(requests)
        # A transport per call: its connection pool belongs to this event loop. Retries are ours.
        async with ChatTransport(self.cfg.base_url, self._api_key, self.cfg.max_concurrency) as api:
            with tqdm(total=len(requests), desc=desc, unit="req", disable=None, smoothing=0.1) as progress:

                async def one(index: int, request: Request) -> None:
                    try:
                        results[index] = await self._complete(api, semaphore, request)
                    except Exception as exc:  # one failure is one record's, never the batch's
                        self.stats.failed += 1
                        log.debug("teacher request %d failed: %r", index, exc)
                        results[index] = exc
                    progress.update(1)

                started = time.perf_counter()
                await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))
                self.stats.seconds = round(self.stats.seconds + time.perf_counter() - started, 3)
        return results

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Callable[[Request], Awaitable[Reply]]]:
        """``ask(request)`` for async code that sends requests one at a time as their inputs become
        ready (a pipelined stage), all sharing one transport and the ``max_concurrency`` bound.
        ``ask`` returns the reply or raises the request's exception (counted as failed)."""
        semaphore = asyncio.Semaphore(self.cfg.max_concurrency)
        started = time.perf_counter()
        async with ChatTransport(self.cfg.base_url, self._api_key, self.cfg.max_concurrency) as api:

            async def ask(request: Request) -> Reply:
                try:
                    return await self._complete(api, semaphore, request)
                except Exception:
                    self.stats.failed += 1
                    raise

            try:
                yield ask
            finally:
                self.stats.seconds = round(self.stats.seconds + time.perf_counter() - started, 3)

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
        """Counters of the run, with a cost estimate when the config names the prices."""
        summary: dict[str, Any] = {"model": self.cfg.model, **asdict(self.stats)}
        prices = (self.cfg.usd_per_million_prompt_tokens, self.cfg.usd_per_million_completion_tokens)
        if any(p is not None for p in prices):
            cost = self.stats.prompt_tokens * (prices[0] or 0) + self.stats.completion_tokens * (prices[1] or 0)
            summary["cost_usd"] = round(cost / 1e6, 4)
        return summary


def with_check(request: Request, check: ReplyCheck) -> Request:
    return replace(request, check=check)


def describe_error(exc: BaseException) -> str:
    """A one-line reason for a failed request: ``teacher_error: RateLimitError: ...``;
    an unusable reply is ``invalid_reply: <the check's words>``."""
    message = " ".join(str(exc).split())[:300]
    if isinstance(exc, InvalidReply):
        return f"invalid_reply: {message}"
    return f"teacher_error: {type(exc).__name__}: {message}" if message else f"teacher_error: {type(exc).__name__}"
