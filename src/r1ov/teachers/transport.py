"""The wire under the teacher client: ``POST {base_url}/chat/completions`` over aiohttp.

A data stage sends hundreds of thousands of identical-shaped requests with hundreds in flight,
so what each costs the client's one event loop bounds the throughput: the openai SDK's typed
request building and response models cost ~0.85 ms a request, a plain aiohttp POST with the
standard library's JSON ~0.2 ms (``make bench-data``). Failures still surface as the SDK's
exception types (``RateLimitError``, ``InternalServerError``, ``APITimeoutError``, ...), with
the response and its ``Retry-After`` attached, so callers and reasons read the same.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import httpx2
import openai

# Status -> the SDK's error class (the SDK's own mapping).
_STATUS_ERRORS: dict[int, type[openai.APIStatusError]] = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    403: openai.PermissionDeniedError,
    404: openai.NotFoundError,
    409: openai.ConflictError,
    422: openai.UnprocessableEntityError,
    429: openai.RateLimitError,
}


class UnreadableBody(ValueError):
    """The body is not JSON (cut short by a proxy, or not an API at all)."""


def status_error(
    request: httpx2.Request, status: int, headers: dict[str, str], content: bytes
) -> openai.APIStatusError:
    response = httpx2.Response(status, headers=headers, content=content, request=request)
    try:
        body: Any = json.loads(content)
    except ValueError:
        body = content.decode("utf-8", "replace")[:500] or None
    error_class = _STATUS_ERRORS.get(status, openai.InternalServerError if status >= 500 else openai.APIStatusError)
    return error_class(f"Error code: {status} - {body}", response=response, body=body)


class ChatTransport:
    """One aiohttp session for a batch of requests (its pool belongs to the running event loop)."""

    def __init__(self, base_url: str, api_key: str, max_connections: int) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ChatTransport:
        connector = aiohttp.TCPConnector(limit=self.max_connections)
        self._session = aiohttp.ClientSession(connector=connector, headers=self.headers)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def post(self, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """The decoded JSON of a 2xx answer; raises the SDK's errors or :class:`UnreadableBody`."""
        assert self._session is not None, "use the transport as an async context manager"
        request = httpx2.Request("POST", self.url)
        try:
            async with self._session.post(
                self.url, data=json.dumps(body), timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as response:
                content = await response.read()
                status, headers = response.status, dict(response.headers)
        except TimeoutError as exc:
            raise openai.APITimeoutError(request=request) from exc
        except aiohttp.ClientError as exc:  # refused, reset, cut mid-body (payload errors included)
            raise openai.APIConnectionError(message=f"{type(exc).__name__}: {exc}", request=request) from exc
        if status >= 400:
            raise status_error(request, status, headers, content)
        try:
            return json.loads(content)
        except ValueError as exc:
            raise UnreadableBody(f"status {status}, {len(content)} bytes that are not JSON: {exc}") from exc
