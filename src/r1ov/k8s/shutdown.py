"""SIGTERM as an exception, so a cancelled task's clean-up (``finally`` blocks) runs.

Kubernetes stops a pod with SIGTERM; Python's default handler would die on the spot and leave
jobs, worker processes and rollout servers behind. Both launchers (local nodes and cluster jobs)
wrap their waits in this.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def sigterm_exits() -> Iterator[None]:
    """Turn SIGTERM into SystemExit(143) so cleanup runs; Python's default would just die."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def _exit(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
