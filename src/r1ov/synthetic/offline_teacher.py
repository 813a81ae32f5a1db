"""The offline teacher: a real OpenAI-compatible HTTP server answering from ground truth.

It stands in for GPT-4o and DeepSeek-R1 in the demo and the tests, so the production
client, with its retries, cache and budget, is what runs against it::

    python -m r1ov.synthetic.offline_teacher --data data/train --port 8000 --noise 0.25
    # -> http://127.0.0.1:8000/v1 ; POST /v1/chat/completions, GET /v1/models, GET /stats

or, in-process, ``with serve(["data/train"], noise=0.25) as base_url: ...``.

What it knows comes from :class:`r1ov.synthetic.oracle.Oracle`. For tests it can also
misbehave like a busy endpoint: the first ``fail_first`` chat requests get ``429`` with
``Retry-After: retry_after``, and every request can be slowed by ``delay_s`` so that
concurrency is observable in ``GET /stats``. With ``faults=p`` a seeded share ``p`` of chat
requests fails the ways real endpoints do, dealt round-robin: ``429`` (with Retry-After),
``500``, a hang past the client's timeout, a body cut off mid-JSON, and a well-formed
completion holding garbage text. ``GET /stats`` lists every call (a hash of what was asked,
its outcome and when), so tests can count what a client sent again.

Not modelled: streaming, tool calls, real tokenization and billing, per-key rate windows.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import random
import socket
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from r1ov.data import records
from r1ov.synthetic.oracle import Oracle, OracleError
from r1ov.teachers import protocol

log = logging.getLogger(__name__)

DEFAULT_MODEL = "r1ov-offline-teacher"
FAULT_KINDS = ("rate_limit", "server_error", "hang", "truncated", "garbage")


@dataclass
class ServerStats:
    """Counters exposed at ``GET /stats`` (one event loop mutates them: no lock needed)."""

    requests: int = 0
    faults: int = 0
    errors: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    tasks: dict[str, int] = field(default_factory=dict)
    fault_kinds: dict[str, int] = field(default_factory=dict)
    # One entry per chat call: {"key": hash of the request, "outcome": "answered"|fault|error, "at": time}.
    calls: list[dict[str, Any]] = field(default_factory=list)


def request_key(body: dict[str, Any]) -> str:
    """What was asked (model, messages, sampling), hashed: equal keys mean the same call sent again."""
    asked = {k: body.get(k) for k in ("model", "messages", "temperature", "max_tokens")}
    return hashlib.sha256(json.dumps(asked, sort_keys=True).encode("utf-8")).hexdigest()[:32]


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    # The OpenAI error envelope, so the SDK raises its typed errors with this message.
    return JSONResponse({"error": {"message": message, "type": kind, "code": None}}, status, headers=headers)


def _completion(model: str, text: str, prompt_chars: int) -> dict[str, Any]:
    # Token counts are estimates (4 characters a token); nothing here bills by them.
    prompt_tokens, completion_tokens = max(1, prompt_chars // 4), max(1, len(text) // 4)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop", "logprobs": None}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def create_app(
    oracle: Oracle,
    *,
    model: str = DEFAULT_MODEL,
    fail_first: int = 0,
    retry_after: float = 1.0,
    delay_s: float = 0.0,
    faults: float = 0.0,
    fault_seed: int = 0,
    hang_s: float = 30.0,
) -> FastAPI:
    """The FastAPI app: ``/v1/chat/completions``, ``/v1/models``, ``/stats``, ``/health``."""
    app = FastAPI(title="r1ov offline teacher")
    stats = ServerStats()
    rng = random.Random(fault_seed)
    dealt = [0]  # faults dealt so far (kinds go round-robin)

    def log_call(key: str, outcome: str) -> None:
        stats.calls.append({"key": key, "outcome": outcome, "at": time.time()})

    async def fault(kind: str, key: str, completion: dict[str, Any]) -> Response:
        stats.faults += 1
        stats.fault_kinds[kind] = stats.fault_kinds.get(kind, 0) + 1
        log_call(key, kind)
        if kind == "rate_limit":
            return _error(429, "rate limited (fault mode)", "rate_limit_error", {"Retry-After": f"{retry_after:g}"})
        if kind == "server_error":
            return _error(500, "internal error (fault mode)", "server_error")
        if kind == "hang":
            await asyncio.sleep(hang_s)
            return _error(504, "gateway timeout (fault mode)", "server_error")
        body = json.dumps(completion)
        if kind == "truncated":  # a proxy that dropped the connection mid-body, Content-Length honest
            return Response(body[: len(body) // 2], media_type="application/json")
        completion["choices"][0]["message"]["content"] = "".join(rng.choice("#@%&*~ qzx") for _ in range(60))
        stats.calls[-1]["outcome"] = "answered"  # garbage is still an answer, and billed
        return JSONResponse(completion)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/stats")
    async def get_stats() -> dict[str, Any]:
        return asdict(stats)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model, "object": "model", "created": 0, "owned_by": "r1ov"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        stats.requests += 1
        if stats.faults < fail_first:
            stats.faults += 1
            log_call("", "rate_limit")
            headers = {"Retry-After": f"{retry_after:g}"}
            return _error(429, "rate limited (offline fault mode)", "rate_limit_error", headers)
        # Decided before any await, so the fault sequence depends only on the arrival order.
        kind = None
        if faults and rng.random() < faults:
            kind = FAULT_KINDS[dealt[0] % len(FAULT_KINDS)]
            dealt[0] += 1
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            try:
                body = await request.json()
                messages = body["messages"]
            except (json.JSONDecodeError, KeyError, TypeError):
                stats.errors += 1
                log_call("", "bad_request")
                return _error(400, "the body must be JSON with 'messages'", "invalid_request_error")
            key = request_key(body)
            if delay_s:
                await asyncio.sleep(delay_s)
            task = protocol.identify(messages) or "unknown"
            stats.tasks[task] = stats.tasks.get(task, 0) + 1
            try:
                text = oracle.reply(messages)
            except OracleError as exc:
                stats.errors += 1
                log_call(key, "bad_request")
                return _error(400, str(exc), "invalid_request_error")
            prompt_chars = sum(len(json.dumps(m.get("content", ""))) for m in messages)
            completion = _completion(body.get("model") or model, text, prompt_chars)
            if kind is not None:
                return await fault(kind, key, completion)
            log_call(key, "answered")
            return JSONResponse(completion)
        finally:
            stats.in_flight -= 1

    return app


def load_oracle(
    dataset_uris: list[str],
    noise: float = 0.0,
    formalize_noise: float = 0.0,
    seed: int = 0,
    max_observations: int | None = None,
) -> Oracle:
    rows = [row for uri in dataset_uris for row in records.read_records(uri)]
    log.info("offline teacher knows %d records from %s", len(rows), ", ".join(dataset_uris))
    return Oracle(rows, noise=noise, formalize_noise=formalize_noise, seed=seed, max_observations=max_observations)


def listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this: without it Nagle's algorithm and delayed ACKs add ~40 ms
    # to every small response, a floor that would hide the teacher latency being simulated.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    return sock


@contextmanager
def serve(
    dataset_uris: list[str],
    host: str = "127.0.0.1",
    port: int = 0,
    noise: float = 0.0,
    *,
    formalize_noise: float = 0.0,
    seed: int = 0,
    model: str = DEFAULT_MODEL,
    fail_first: int = 0,
    retry_after: float = 1.0,
    delay_s: float = 0.0,
    faults: float = 0.0,
    fault_seed: int = 0,
    hang_s: float = 30.0,
    max_observations: int | None = None,
) -> Iterator[str]:
    """Run the server in a background thread; yields its base URL ``http://HOST:PORT/v1``.

    ``port=0`` picks a free port. The server stops when the block exits. ``max_observations``
    keeps reasoning chains short (see :func:`r1ov.synthetic.oracle.chain`).
    """
    oracle = load_oracle(list(dataset_uris), noise, formalize_noise, seed, max_observations)
    app = create_app(
        oracle,
        model=model,
        fail_first=fail_first,
        retry_after=retry_after,
        delay_s=delay_s,
        faults=faults,
        fault_seed=fault_seed,
        hang_s=hang_s,
    )
    # Binding here, before the thread starts, gives the real port at once (port 0 included).
    sock = listening_socket(host, port)
    # Hanging fault requests must not hold the shutdown for their whole hang.
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False, timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="offline-teacher", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the offline teacher did not start")
        time.sleep(0.02)
    url = f"http://{host}:{sock.getsockname()[1]}/v1"
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def fetch_stats(base_url: str) -> dict[str, Any]:
    """``GET /stats`` of a running offline teacher, given its ``.../v1`` base URL."""
    root = base_url.rstrip("/").removesuffix("/v1")
    with urllib.request.urlopen(f"{root}/stats", timeout=10) as response:
        return json.load(response)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", action="append", required=True, help="dataset URI it knows (repeatable)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument("--noise", type=float, default=0.0, help="share of flawed reasoning chains")
    parser.add_argument("--formalize-noise", type=float, default=0.0, help="share of refused formalizations")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model name in /v1/models")
    parser.add_argument("--fail-first", type=int, default=0, help="answer the first K requests with 429")
    parser.add_argument("--retry-after", type=float, default=1.0, help="Retry-After seconds of those 429s")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds added to every request")
    parser.add_argument("--faults", type=float, default=0.0, help="share of requests that fail (429/500/hang/...)")
    parser.add_argument("--fault-seed", type=int, default=0, help="seed of the fault sequence")
    parser.add_argument("--hang", type=float, default=30.0, help="seconds a hanging fault holds the request")
    parser.add_argument(
        "--max-observations", type=int, default=None, help="observations per reasoning chain (0: short chains)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    oracle = load_oracle(args.data, args.noise, args.formalize_noise, args.seed, args.max_observations)
    app = create_app(
        oracle,
        model=args.model,
        fail_first=args.fail_first,
        retry_after=args.retry_after,
        delay_s=args.delay,
        faults=args.faults,
        fault_seed=args.fault_seed,
        hang_s=args.hang,
    )
    log.info("offline teacher at http://%s:%d/v1", args.host, args.port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    server.run(sockets=[listening_socket(args.host, args.port)])


if __name__ == "__main__":
    main()
