"""What a formalizer is: one image type, its formal language, prompt, check and reference renderer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# (passed, detail): detail says what was found, or what is wrong, in a few words.
CheckResult = tuple[bool, str]
Check = Callable[[str], CheckResult]
# Ground truth (docs/ground-truth.md) -> the formal text a perfect teacher would write.
Reference = Callable[[dict[str, Any]], str]


@dataclass(frozen=True)
class Formalizer:
    """How images of one type become formal text.

    ``prompt`` names a file in ``r1ov/teachers/prompts/`` (without ``.md``); ``check``
    decides whether a teacher's reply is usable; ``reference`` renders ground truth into
    the same language, for the offline teacher and for tests, so the format lives here only.
    """

    name: str
    language: str
    prompt: str
    check: Check
    reference: Reference
