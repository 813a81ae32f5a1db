"""The value of a closed-form numeric answer (``-\\frac{1}{2}``, ``\\sqrt{3}/2``, ``2\\pi``), cheaply.

Most LaTeX answers in math benchmarks are numbers written exactly. Evaluating them with a
small recursive-descent reader takes microseconds where a symbolic parse takes tens of
milliseconds, and two numbers either agree or do not: the answer core compares values here
and leaves to math-verify only what has variables or notation this reader does not know.
Anything unknown (a letter, a command outside the list) returns None, never a guess;
exponents and magnitudes are bounded so no input can make it slow.
"""

from __future__ import annotations

import math
import re

_TOKEN = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+|\\[a-zA-Z]+|[-+*/^(){}\[\]])")
_CONSTANTS = {"\\pi": math.pi}
_TIMES = {"*", "\\cdot", "\\times"}
_LIMIT = 1e12  # magnitudes beyond this are not answers worth a float comparison


class _Unreadable(Exception):
    pass


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match:
            raise _Unreadable(text[position:])
        tokens.append(match.group(1))
        position = match.end()
    return tokens


class _Reader:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.i = 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise _Unreadable(f"expected {expected}")
        self.i += 1
        return token

    def expression(self) -> float:
        value = self.term()
        while self.peek() in ("+", "-"):
            value = value + self.term() if self.take() == "+" else value - self.term()
        return value

    def term(self) -> float:
        value = self.factor()
        while True:
            token = self.peek()
            if token in _TIMES or token == "/":
                self.take()
                right = self.factor()
                if token == "/":
                    if right == 0:
                        raise _Unreadable("division by zero")
                    value /= right
                else:
                    value *= right
            elif token is not None and (token == "(" or token.startswith("\\")):
                value *= self.factor()  # implicit product: 2\sqrt{3}, 3\pi, 2(1+\sqrt{2}); never "1.2 .3"
            else:
                return value

    def factor(self) -> float:
        if self.peek() in ("-", "+"):
            return -self.factor() if self.take() == "-" else self.factor()
        base = self.atom()
        if self.peek() == "^":
            self.take()
            exponent = self.group() if self.peek() == "{" else self.atom()
            if abs(exponent) > 64 or (base < 0 and not float(exponent).is_integer()):
                raise _Unreadable("exponent")
            base = base**exponent
        if not math.isfinite(base) or abs(base) > _LIMIT:
            raise _Unreadable("magnitude")
        return base

    def group(self) -> float:
        self.take("{")
        value = self.expression()
        self.take("}")
        return value

    def atom(self) -> float:
        token = self.take()
        if token[0].isdigit() or token[0] == ".":
            return float(token)
        if token in _CONSTANTS:
            return _CONSTANTS[token]
        if token == "(":
            value = self.expression()
            self.take(")")
            return value
        if token == "{":
            self.i -= 1
            return self.group()
        if token == "\\frac":
            numerator, denominator = self._argument(), self._argument()
            if denominator == 0:
                raise _Unreadable("division by zero")
            return numerator / denominator
        if token == "\\sqrt":
            degree = 2.0
            if self.peek() == "[":
                self.take("[")
                degree = self.expression()
                self.take("]")
            radicand = self._argument()
            if radicand < 0 or degree <= 0:
                raise _Unreadable("root")
            return radicand ** (1 / degree)
        raise _Unreadable(token)

    def _argument(self) -> float:
        # \frac12 and \sqrt2 take a single digit without braces.
        if self.peek() == "{":
            return self.group()
        token = self.take()
        if token.isdigit():
            if len(token) > 1:
                self.tokens.insert(self.i, token[1:])
            return float(token[0])
        raise _Unreadable(token)


def value(text: str) -> float | None:
    """The number ``text`` writes in closed form, or None when it is not one this reader knows."""
    if len(text) > 200:
        return None
    try:
        reader = _Reader(_tokens(text.replace("$", "")))
        result = reader.expression()
        if reader.peek() is not None:
            return None
    except (_Unreadable, OverflowError, ZeroDivisionError, ValueError):
        return None
    return result if math.isfinite(result) else None


def same_value(a: float, b: float) -> bool:
    """Equal up to float rounding of the evaluation (relative 1e-9)."""
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
