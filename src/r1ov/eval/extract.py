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

from r1ov.scoring.answers import is_letter_hedge
from r1ov.scoring.reasoning import blocks, option_letters

# Fallbacks read only the end of a completion: a final answer sits there, and scanning a
# bounded tail keeps every rule linear however long (or adversarial) the text is.
TAIL_CHARS = 4000

_ANSWER_IS = re.compile(
    r"(?:final answer|answer)\s*(?:is|=|:)\s*[:\s]*(?P<value>[^\n]+?)\s*(?:$|\n|\.\s|\.$)",
    re.IGNORECASE,
)
_LONE_LETTER = re.compile(r"(?:^|[\s:(\[*])\(?(?P<letter>[A-Z])\)?[\].*]*\s*\.?\s*\Z")


@dataclass(frozen=True)
class Extraction:
    """The answer found (``None``: none), the rule that found it, and strict-format compliance."""

    answer: str | None
    rule: str
    well_formed: bool


def _from_tags(text: str, options: list[str] | None) -> str | None:
    answers = blocks(text).answers
    return answers[-1].strip() or None if answers else None


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
    matches = list(_ANSWER_IS.finditer(text[-TAIL_CHARS:]))
    if not matches:
        return None
    value = matches[-1].group("value").strip().strip("*$").strip()
    return value or None


def _from_lone_letter(text: str, options: list[str] | None) -> str | None:
    if not options:
        return None
    match = _LONE_LETTER.search(text[-200:].strip())
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
    """True for answers naming several options at once ("A, B, C, D", "A or B").

    An answer that is itself one option's text ("R, D, N") is not a hedge. Several values
    for one ("3 or 4") are refused by ``answers_match``, which knows whether the gold is a list.
    """
    if not options or any(answer.strip().lower() == str(o).strip().lower() for o in options):
        return False
    return is_letter_hedge(answer)


def extract(completion: str | None, options: list[str] | None = None) -> Extraction:
    """The answer in ``completion``: tag first, then fallbacks; hedges and empties give ``None``."""
    text = completion or ""
    found = blocks(text)
    well_formed = found.well_formed
    tagged = [a.strip() for a in found.answers]
    if tagged and not tagged[-1]:
        # The model committed to an empty answer; fallbacks must not dig one out of the reasoning.
        return Extraction(None, "empty_answer", well_formed)
    if len({a for a in tagged if a}) > 1:
        return Extraction(None, "hedge", well_formed)
    for name, rule in RULES.items():
        # The tag rule's answer is known from the scan above: no second pass over the text.
        answer = (tagged[-1] or None if tagged else None) if name == "answer_tag" else rule(text[-TAIL_CHARS:], options)
        if answer is None:
            continue
        # A boxed answer inside the answer tag is still the tag's answer, minus the box.
        answer = last_boxed(answer) or answer
        if is_hedge(answer, options):
            return Extraction(None, "hedge", well_formed)
        return Extraction(answer, name, well_formed)
    return Extraction(None, "none", well_formed)
