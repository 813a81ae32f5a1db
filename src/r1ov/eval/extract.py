"""Pulling the final answer out of a completion, and saying which rule found it.

The ``<answer>`` tag (``reasoning.parse``) comes first; models that drift from the format
still get their answer read by fallbacks, in order: the last ``\\boxed{...}``, the last
"answer is X", and for multiple choice a lone option letter ending the text. The rule that
fired is kept with every prediction, so a report shows how much of a score rests on
fallbacks. Answers that hedge ("A, B, C or D", or several answer blocks that disagree) and
an empty answer tag count as no answer, whatever the reasoning says.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from r1ov.reasoning import option_letters, parse

_ANSWER_IS = re.compile(
    r"(?:final answer|answer)\s*(?:is|=|:)\s*[:\s]*(?P<value>[^\n]+?)\s*(?:$|\n|\.\s|\.$)",
    re.IGNORECASE,
)
_LONE_LETTER = re.compile(r"(?:^|[\s:(\[*])\(?(?P<letter>[A-Z])\)?[\].*]*\s*\.?\s*\Z")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_HEDGE = re.compile(r"^\(?[A-Z]\)?(?:\s*(?:,|/|\bor\b|\band\b|&|;|\s)\s*\(?[A-Z]\)?)+\s*\.?$")


@dataclass(frozen=True)
class Extraction:
    """The answer found (``None``: none), the rule that found it, and strict-format compliance."""

    answer: str | None
    rule: str
    well_formed: bool


def _from_tags(text: str, options: list[str] | None) -> str | None:
    return parse(text).answer


def last_boxed(text: str) -> str | None:
    """Contents of the last ``\\boxed{...}``, braces balanced (``\\boxed{\\frac{1}{2}}``)."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for i in range(begin - 1, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[begin:i].strip() or None
    return None


def _from_boxed(text: str, options: list[str] | None) -> str | None:
    return last_boxed(text)


def _from_answer_is(text: str, options: list[str] | None) -> str | None:
    matches = list(_ANSWER_IS.finditer(text))
    if not matches:
        return None
    value = matches[-1].group("value").strip().strip("*$").strip()
    return value or None


def _from_lone_letter(text: str, options: list[str] | None) -> str | None:
    if not options:
        return None
    match = _LONE_LETTER.search(text.strip())
    if match and match.group("letter") in option_letters(options):
        return match.group("letter")
    return None


# Order matters: the first rule that returns an answer wins.
RULES: dict[str, Callable[[str, list[str] | None], str | None]] = {
    "answer_tag": _from_tags,
    "boxed": _from_boxed,
    "answer_is": _from_answer_is,
    "option_letter": _from_lone_letter,
}


def is_hedge(answer: str, options: list[str] | None) -> bool:
    """True for answers naming several option letters at once ("A, B, C, D", "A or B")."""
    if not options:
        return False
    letters = set(re.findall(r"\b[A-Z]\b", answer))
    return len(letters) > 1 and bool(_HEDGE.match(answer.strip()))


def extract(completion: str | None, options: list[str] | None = None) -> Extraction:
    """The answer in ``completion``: tag first, then fallbacks; hedges and empties give ``None``."""
    text = completion or ""
    well_formed = parse(text).well_formed
    tagged = [a.strip() for a in _ANSWER_TAG.findall(text)]
    if tagged and not tagged[-1]:
        # The model committed to an empty answer; fallbacks must not dig one out of the reasoning.
        return Extraction(None, "empty_answer", well_formed)
    if len({a for a in tagged if a}) > 1:
        return Extraction(None, "hedge", well_formed)
    for name, rule in RULES.items():
        answer = rule(text, options)
        if answer is None:
            continue
        # A boxed answer inside the answer tag is still the tag's answer, minus the box.
        answer = last_boxed(answer) or answer
        if is_hedge(answer, options):
            return Extraction(None, "hedge", well_formed)
        return Extraction(answer, name, well_formed)
    return Extraction(None, "none", well_formed)
