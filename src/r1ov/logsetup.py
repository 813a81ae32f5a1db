"""Logging for r1ov's own processes: one handler on the root logger, writing to stderr.

The handler looks ``sys.stderr`` up at each record instead of keeping the stream it found at
start: a command run in-process (tests, notebooks, the KFP executor) may swap stderr and close
the old one, and a handler bound to it turns every later record into "--- Logging error ---
ValueError: I/O operation on closed file". logging's own last-resort handler does the same
(CPython ``Lib/logging/__init__.py``, ``_StderrHandler``).
"""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# One line per HTTP request from the teacher clients drowns the stage's own progress.
NOISY = ("httpx", "httpx2", "openai")


class CurrentStderrHandler(logging.StreamHandler):
    """A StreamHandler whose stream is whatever ``sys.stderr`` is when a record is written."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        logging.Handler.__init__(self, level)  # not StreamHandler's: it would bind a stream

    @property
    def stream(self) -> object:  # type: ignore[override]
        return sys.stderr


def configure(level: int = logging.INFO, *, force: bool = False) -> None:
    """Root logging to the current stderr. ``force`` replaces handlers a caller left behind (the
    ``r1ov`` command owns its process); without it, a configured root is kept (library use)."""
    logging.basicConfig(level=level, format=FORMAT, handlers=[CurrentStderrHandler()], force=force)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
