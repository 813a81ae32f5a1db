"""Errors a user can fix, the one line the ``r1ov`` command prints for each, and the stderr
that lines and logs go to.

Stages raise ordinary exceptions with a message that says what was found and what was
expected; :func:`explain` decides which of them are the user's to fix (a line, exit 1) and
which are bugs (a traceback). ``-v`` always shows the traceback.
"""

from __future__ import annotations

import logging
import sys


class UserError(Exception):
    """Bad input the user can fix; the message is the whole story, in one line."""


class RegistryError(LookupError):
    """An unknown model, version or alias, or a call that cannot be honoured: one line for the user."""


def _mlflow(exc: BaseException) -> str | None:
    # Looked up, not imported: an MLflow error comes only from a process that imported MLflow,
    # and importing it here would cost every other error's answer seconds.
    exceptions = sys.modules.get("mlflow.exceptions")
    if exceptions is None or not isinstance(exc, exceptions.MlflowException):
        return None
    first = str(exc.message if hasattr(exc, "message") else exc).strip().splitlines()[0]
    if "max retries" in first.lower() or "connection" in first.lower():
        return f"cannot reach the MLflow tracking server ({first[:200]}); check --tracking-uri / MLFLOW_TRACKING_URI"
    return f"MLflow: {first[:300]}"


S3_HINT = (
    "r1ov reads AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or an AWS profile / pod role), AWS_REGION, "
    "and R1OV_S3_ENDPOINT for MinIO or other S3-compatible stores"
)


def _s3(exc: BaseException) -> str | None:
    text = str(exc)
    markers = ("AWS Error", "NoCredentials", "Unable to locate credentials", "InvalidAccessKeyId", "ACCESS_DENIED")
    if isinstance(exc, OSError) and any(m in text for m in markers):
        return f"S3 request failed ({text.strip().splitlines()[0][:200]}); {S3_HINT}"
    return None


def explain(exc: BaseException) -> str | None:
    """The one line to print for ``exc``, or None when it is a bug worth a traceback."""
    if isinstance(exc, UserError | RegistryError):
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == "vllm":
        return (
            "the vllm backend needs vLLM, which is not installed here (it is a GPU-only extra): "
            "use backend=hf (transformers) or backend=openai with base_url=<an OpenAI-compatible endpoint>"
        )
    if isinstance(exc, KeyError) and str(exc.args[0] if exc.args else "").startswith("unknown benchmark"):
        return str(exc.args[0])
    return _s3(exc) or _mlflow(exc)


# --------------------------------------------------------------------------- stderr and logging
#
# One handler on the root logger that looks ``sys.stderr`` up at each record instead of keeping the
# stream it found at start: a command run in-process (tests, notebooks, the KFP executor) may swap
# stderr and close the old one, and a handler bound to it turns every later record into "---
# Logging error --- ValueError: I/O operation on closed file". logging's own last-resort handler
# does the same (CPython ``Lib/logging/__init__.py``, ``_StderrHandler``).

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


def configure_logging(level: int = logging.INFO, *, force: bool = False) -> None:
    """Root logging to the current stderr. ``force`` replaces handlers a caller left behind (the
    ``r1ov`` command owns its process); without it, a configured root is kept (library use)."""
    logging.basicConfig(level=level, format=FORMAT, handlers=[CurrentStderrHandler()], force=force)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
