"""Errors a user can fix, the one line the ``r1ov`` command prints for each, and the stderr
that lines and logs go to.

Stages raise ordinary exceptions with a message that says what was found and what was
expected; :func:`explain` decides which of them are the user's to fix (a line, exit 1) and
which are bugs (a traceback). ``-v`` always shows the traceback.
"""

from __future__ import annotations

import logging
import os
import re
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


# warnings.formatwarning's "path:lineno: " before "Category: text": the same deprecation reached from
# several call sites (CPython keeps one per location) is one warning to a reader.
_WARNING_LOCATION = re.compile(r"^\S+:\d+: ")


class OnceFilter(logging.Filter):
    """Passes each WARNING the first time its text appears in this process and drops repeats (a library
    that warns on every step, or from every call site); records of other levels all pass.

    Python warnings come through ``logging.captureWarnings`` as the ``py.warnings`` logger's records
    (CPython ``Lib/logging/__init__.py``, ``_showwarning``): their text is keyed without the location."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        text = record.getMessage()
        if record.name == "py.warnings":
            record.msg, record.args = text.rstrip(), ()  # formatwarning's closing newline is a blank line
            text = _WARNING_LOCATION.sub("", text.partition("\n")[0])
        key = (record.name, text)
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


class MainRankFilter(logging.Filter):
    """On a training rank other than 0: r1ov's own warnings and everyone's errors. Libraries'
    warnings and all informational records are rank 0's to print; every rank would print the same."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        return record.levelno >= logging.WARNING and record.name.split(".")[0] == "r1ov"


def quiet_progress_bars() -> None:
    """Off a terminal (a pod's log, a pipe, ``2> file``) Hugging Face's bars print a 0% and a 100% line per
    bar ("Loading weights", "Casting the dataset", ...). The libraries read these at import
    (huggingface_hub ``HF_HUB_DISABLE_PROGRESS_BARS``, which transformers follows; datasets
    ``HF_DATASETS_DISABLE_PROGRESS_BARS``): set before they are imported; a value already set wins."""
    if not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


def _install(level: int, fmt: str, force: bool, *filters: logging.Filter) -> None:
    configured = bool(logging.root.handlers) and not force
    handler = CurrentStderrHandler()
    for each in (OnceFilter(), *filters):
        handler.addFilter(each)
    logging.basicConfig(level=level, format=fmt, handlers=[handler], force=force)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not configured:  # a root someone else configured keeps its own handling of warnings
        logging.captureWarnings(True)


def configure_logging(level: int = logging.INFO, *, force: bool = False) -> None:
    """Root logging to the current stderr, each repeated warning once. ``force`` replaces handlers a
    caller left behind (the ``r1ov`` command owns its process); without it, a configured root is kept
    (library use)."""
    quiet_progress_bars()
    _install(level, FORMAT, force)


def configure_worker_logging(rank: int) -> None:
    """Logging of one training process (``python -m r1ov.train.worker`` under torchrun): the rank in
    each line, each repeated warning once, and on ranks other than 0 only r1ov's warnings and errors.

    torch logs through handlers of its own (``torch._logging``, set up when torch is imported, e.g.
    cpp_extension's "No CUDA runtime is found" once per rank): on those ranks its level is raised too.
    Their stdout goes nowhere: there libraries print what every rank prints (DeepSpeed's "... built
    successfully" from ``deepspeed.comm.torch.build_shm_op``, and its logger writes to stdout), while
    errors and tracebacks go to stderr."""
    quiet_progress_bars()
    filters = [] if rank == 0 else [MainRankFilter()]
    _install(logging.INFO, f"%(asctime)s rank{rank} %(levelname)s %(name)s: %(message)s", True, *filters)
    if rank != 0:
        import torch  # noqa: F401  (its logging set up first, so the level set here stays)

        logging.getLogger("torch").setLevel(logging.ERROR)
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (for the life of the process)
