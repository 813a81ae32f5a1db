"""Symbolic equivalence through math-verify, with a time limit that holds in any thread.

math-verify bounds its own work with ``signal.alarm``, which only the main thread may set:
called from a worker thread it silently answers ``False``. Here its timeouts are always off
and the budget is ours, counted in CPU seconds (``ITIMER_PROF``), not wall-clock: on a
loaded machine a check gets the same work done before its deadline, so a verdict never
depends on the load. The main thread arms the timer itself; elsewhere a helper process
does (in its own main thread), and is killed only when it stops answering altogether.
math-verify's one-time setup (imports, grammar) is done before the first budget starts.
Inputs that could run away (megabytes, deep nesting, exponent towers such as
``10^{10^{10}}``, huge factorials) are refused before parsing: they score wrong in bounded
time and are never evaluated.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import re
import signal
import threading
from collections.abc import Iterator
from functools import lru_cache
from multiprocessing.connection import Connection
from typing import Any

log = logging.getLogger(__name__)

MAX_CHARS = 400  # longer "answers" are prose, not expressions
MAX_DEPTH = 10  # brace/parenthesis nesting
DEFAULT_TIMEOUT_S = 2.0  # CPU seconds per check
STALL_FACTOR, STALL_GRACE_S = 20, 30.0  # wall-clock wait before a silent helper is replaced

# An exponent holding another exponent, or an exponent/factorial too large to evaluate.
_TOWER = re.compile(r"\^\s*\{[^{}]*\^|\^\s*\(?\s*[-+]?\d*\s*\^|\*\*[^*]*\*\*")
_BIG_EXPONENT = re.compile(r"(?:\^|\*\*)\s*\{?\s*\(?\s*[-+]?\d{4,}")
_BIG_FACTORIAL = re.compile(r"\d{3,}\s*!|\\(?:Gamma|prod|sum)\b")


class _Timeout(BaseException):
    """The deadline passed (a BaseException, so sympy's broad ``except Exception`` cannot swallow it)."""


def refusal(text: str) -> str | None:
    """Why ``text`` is not worth parsing (None when it is)."""
    if len(text) > MAX_CHARS:
        return f"longer than {MAX_CHARS} characters"
    depth = deepest = 0
    for char in text:
        if char in "{([":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "})]":
            depth -= 1
    if deepest > MAX_DEPTH:
        return f"nested deeper than {MAX_DEPTH}"
    if _TOWER.search(text) or _BIG_EXPONENT.search(text):
        return "exponent tower or huge exponent"
    if _BIG_FACTORIAL.search(text):
        return "huge factorial, product or sum"
    return None


def as_latex(text: str) -> str:
    """math-verify only reads LaTeX inside math delimiters: wrap bare expressions."""
    stripped = text.strip()
    if stripped.startswith(("$", "\\(", "\\[")) or "$" in stripped:
        # Delimiters inside the text ("Volume is $288\\sqrt{2}$"): wrapping it again would
        # turn the formula inside out ("$Volume is $288\\sqrt{2}$$" parses as 288).
        return stripped
    return f"${stripped}$"


@lru_cache(maxsize=4096)
def _parsed(text: str) -> tuple[Any, ...]:
    from math_verify import parse

    return tuple(parse(as_latex(text), parsing_timeout=None))  # type: ignore[arg-type]


def clear_caches() -> None:
    """Forget parsed expressions (benchmarks that score the same items twice parse them afresh)."""
    _parsed.cache_clear()


def _verify_now(predicted: str, gold: str) -> bool:
    """math-verify without its own (signal) timeouts; callers bound the time."""
    from math_verify import verify

    gold_parsed, pred_parsed = _parsed(gold), _parsed(predicted)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(list(gold_parsed), list(pred_parsed), timeout_seconds=None))  # type: ignore[arg-type]


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    """Raise _Timeout after ``seconds`` of this process's CPU time (main thread only).

    ``ITIMER_PROF`` counts user and system CPU time: time spent waiting for a core on a
    busy machine does not count, so the same check gets the same budget under any load.
    Any profiling timer set before is restored.
    """

    def _raise(signum: int, frame: Any) -> None:
        raise _Timeout

    previous = signal.signal(signal.SIGPROF, _raise)
    old_delay, _ = signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)
        if old_delay:
            signal.setitimer(signal.ITIMER_PROF, old_delay)


_warmed = False


def warm_up() -> None:
    """Import math-verify and run one check, outside any budget: the first parse of a process
    builds the LaTeX grammar (seconds), which must not be charged to the first real item."""
    global _warmed
    if not _warmed:
        _verify_now("1", "1")
        _warmed = True


def _checked(predicted: str, gold: str, timeout_s: float) -> bool:
    """One check within ``timeout_s`` CPU seconds (main thread of this process)."""
    warm_up()
    try:
        with _alarm(timeout_s):
            return _verify_now(predicted, gold)
    except _Timeout:
        log.warning("symbolic check over %.1f CPU s, scored wrong: %.60r vs %.60r", timeout_s, predicted, gold)
        return False
    except Exception:  # math-verify/sympy raise many types on odd input: not equal
        return False


def _worker(conn: Connection) -> None:
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    warm_up()
    while True:
        try:
            predicted, gold, timeout_s = conn.recv()
        except EOFError:
            return
        conn.send(_checked(predicted, gold, timeout_s))


class _Helper:
    """One helper process answering equivalence questions; killed and replaced on a deadline."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: Any = None
        self._conn: Connection | None = None
        self._warm = False

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        self._process = context.Process(target=_worker, args=(child,), daemon=True, name="r1ov-symbolic")
        self._process.start()
        child.close()
        self._conn = parent

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join(5)
        if self._conn is not None:
            self._conn.close()
        self._process = self._conn = None
        self._warm = False

    def ask(self, predicted: str, gold: str, timeout_s: float) -> bool:
        with self._lock:
            if self._process is None or not self._process.is_alive():
                self._kill()
                self._start()
            assert self._conn is not None
            self._conn.send((predicted, gold, timeout_s))
            # The helper keeps its own CPU budget; this wall-clock wait only catches a helper that
            # stopped answering (killed, wedged), so it is generous: a busy machine slows the
            # helper down without changing its verdict. The first call also waits for its start.
            if self._conn.poll(STALL_FACTOR * timeout_s + STALL_GRACE_S + (0.0 if self._warm else 60.0)):
                self._warm = True
                return bool(self._conn.recv())
            log.warning("symbolic helper stalled, scored wrong: %.60r vs %.60r", predicted, gold)
            self._kill()
            return False


_HELPER = _Helper()


def equivalent(predicted: str, gold: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """True when math-verify proves ``predicted`` equal to ``gold`` within ``timeout_s`` CPU seconds.

    Refused inputs (see :func:`refusal`) and parses that run out of time are ``False``.
    """
    if refusal(predicted) or refusal(gold):
        return False
    if threading.current_thread() is not threading.main_thread():
        return _HELPER.ask(predicted, gold, timeout_s)
    return _checked(predicted, gold, timeout_s)
