"""A content-addressed cache of teacher replies, on any storage URI (local or S3).

The key is the SHA-256 of everything that decides a reply (model, messages, sampling
parameters), so a re-run, a retried pipeline task or a second stage asking the same thing
is answered from the cache and costs no request and no budget. One small JSON file per
entry: concurrent writers of the same key write the same content, and writes are atomic.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from r1ov.data import storage

log = logging.getLogger(__name__)


def cache_key(model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> str:
    """SHA-256 over a canonical JSON of the request; key order never changes the key."""
    payload = json.dumps({"model": model, "messages": messages, "params": params}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class ResponseCache:
    """``get``/``put`` of JSON replies under ``<uri>/<key[:2]>/<key>.json``."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        # Local caches are read and written in the calling thread: a small file costs tens of
        # microseconds, less than handing it to a worker thread. Remote ones block for a round trip.
        self.blocking = storage.is_remote(uri)

    def _entry(self, key: str) -> str:
        # Two-character fan-out keeps directory listings short for large caches.
        return storage.join(self.uri, key[:2], f"{key}.json")

    def get(self, key: str) -> dict[str, Any] | None:
        entry = self._entry(key)
        try:
            return json.loads(storage.read_text(entry))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            # A damaged entry is a miss, not a failure: the request is simply sent again.
            log.warning("ignoring unreadable cache entry %s: %s", entry, exc)
            return None

    def put(self, key: str, value: dict[str, Any]) -> None:
        storage.write_text(self._entry(key), json.dumps(value, sort_keys=True, ensure_ascii=False))
