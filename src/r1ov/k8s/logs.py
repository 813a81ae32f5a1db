"""Follow one pod's log into a logger, in a background thread, across reconnects and restarts.

The pod is found by label selector (it may not exist yet when following starts). Lines are
read with timestamps so a reconnect (API timeouts, a restarted container, a replacement pod)
resumes after the last line emitted instead of repeating the log.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from datetime import datetime

import urllib3
from kubernetes.client import CoreV1Api, V1Pod
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

_TERMINAL_PHASES = ("Succeeded", "Failed")
# Extra seconds asked for on reconnect, covering clock skew between us and the node.
_SINCE_SLACK_S = 60
_CHUNK = 8192


def parse_timestamp_ns(stamp: str) -> int:
    """RFC 3339 with up to nanoseconds (``2026-01-02T03:04:05.123456789Z``) -> epoch nanoseconds."""
    main, _, rest = stamp.partition(".")
    if rest:
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits) :]
    else:
        main, zone, digits = main[:19], main[19:], ""
    seconds = datetime.fromisoformat(main + (zone if zone not in ("", "Z", "z") else "+00:00")).timestamp()
    return int(seconds) * 1_000_000_000 + int((digits + "000000000")[:9])


class PodLogFollower:
    """Emit the log of the newest pod matching ``selector`` to ``sink`` until :meth:`stop`."""

    def __init__(
        self,
        core: CoreV1Api,
        namespace: str,
        selector: dict[str, str],
        container: str,
        *,
        poll_s: float = 5.0,
        read_timeout_s: float = 300.0,
        sink: logging.Logger | None = None,
    ) -> None:
        self._core = core
        self._namespace = namespace
        self._selector = ",".join(f"{key}={value}" for key, value in selector.items())
        self._container = container
        self._poll_s = poll_s
        self._read_timeout_s = read_timeout_s
        self._sink = sink or logging.getLogger("r1ov.k8s.pods")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"logs-{container}", daemon=True)
        self._last_ns = -1
        self._seen_at_last: set[str] = set()  # lines sharing the last timestamp, already emitted
        self._done_uid: str | None = None  # a terminated pod whose log is fully emitted
        self.lines = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ask the thread to emit what is left and end; wait at most ``timeout_s``."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("stopped waiting for the log of %s after %.0f s", self._selector, timeout_s)

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            pod = self._newest_pod()
            if pod is not None and pod.status.phase != "Pending" and pod.metadata.uid != self._done_uid:
                terminated = pod.status.phase in _TERMINAL_PHASES
                complete = self._read(pod.metadata.name, follow=not (stopping or terminated))
                if complete and terminated:
                    self._done_uid = pod.metadata.uid
            if stopping:
                return
            self._stop.wait(self._poll_s)

    def _newest_pod(self) -> V1Pod | None:
        try:
            pods = self._core.list_namespaced_pod(self._namespace, label_selector=self._selector).items
        except (ApiException, urllib3.exceptions.HTTPError) as exc:
            log.debug("listing pods %s failed: %s", self._selector, exc)
            return None
        if not pods:
            return None
        return max(pods, key=lambda pod: (pod.metadata.creation_timestamp is not None, pod.metadata.creation_timestamp))

    def _since_seconds(self) -> int | None:
        if self._last_ns < 0:
            return None
        return max(1, math.ceil(time.time() - self._last_ns / 1e9) + _SINCE_SLACK_S)

    def _read(self, pod: str, follow: bool) -> bool:
        """Emit the pod's new lines; True when the stream ended normally."""
        try:
            response = self._core.read_namespaced_pod_log(
                pod,
                self._namespace,
                container=self._container,
                follow=follow,
                timestamps=True,
                since_seconds=self._since_seconds(),
                _preload_content=False,
                _request_timeout=(10, self._read_timeout_s),
            )
        except (ApiException, urllib3.exceptions.HTTPError) as exc:
            # 400 while the container is still being created; 404 once the pod is gone.
            log.debug("log of %s not readable yet: %s", pod, exc)
            return False
        buffer = b""
        try:
            for chunk in response.stream(_CHUNK):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    self._emit(pod, line.decode("utf-8", errors="replace"))
            if buffer:
                self._emit(pod, buffer.decode("utf-8", errors="replace"))
            return True
        except urllib3.exceptions.HTTPError as exc:
            log.debug("log stream of %s interrupted: %s", pod, exc)
            return False
        finally:
            response.release_conn()

    def _emit(self, pod: str, raw: str) -> None:
        stamp, _, text = raw.partition(" ")
        try:
            stamp_ns = parse_timestamp_ns(stamp)
        except ValueError:  # not a timestamped line: emit as is, it cannot be deduplicated
            stamp_ns, text = self._last_ns, raw
        if stamp_ns < self._last_ns or (stamp_ns == self._last_ns and text in self._seen_at_last):
            return
        if stamp_ns > self._last_ns:
            self._last_ns, self._seen_at_last = stamp_ns, set()
        self._seen_at_last.add(text)
        self.lines += 1
        self._sink.info("[%s] %s", pod, text)
