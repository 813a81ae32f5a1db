"""Answer equivalence: multiple-choice letters first, then math-verify, then normalized text.

One function decides whether a predicted answer matches the ground truth, so the filter,
the GRPO accuracy reward and evaluation scoring never disagree about what "correct" means.
"""

from __future__ import annotations

import re
import string

from math_verify import parse, verify

from r1ov.reasoning import option_letters

_LETTER = re.compile(r"^\(?([A-Za-z])\)?[.:)]?(?:\s|$)")
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")


def normalize_text(text: str) -> str:
    text = text.strip().lower().strip(string.punctuation + " ")
    text = re.sub(r"\\boxed\{(.*)\}", r"\1", text)
    return re.sub(r"\s+", " ", text)


def choice_letter(answer: str | None, options: list[str] | None) -> str | None:
    """The option letter an answer names: 'B', '(B)', 'B. text', or the option's own text."""
    if not answer or not options:
        return None
    letters = option_letters(options)
    text = answer.strip()
    match = _LETTER.match(text)
    if match and match.group(1).upper() in letters and (len(text) <= 3 or not text[1].isalpha()):
        return match.group(1).upper()
    wanted = normalize_text(text)
    for letter, option in zip(letters, options, strict=True):
        if normalize_text(option) == wanted:
            return letter
    return None


def _math_equal(predicted: str, gold: str) -> bool:
    try:
        gold_parsed = parse(gold if "$" in gold or "\\" in gold else f"${gold}$")
        pred_parsed = parse(predicted if "$" in predicted or "\\" in predicted else f"${predicted}$")
        return bool(gold_parsed and pred_parsed and verify(gold_parsed, pred_parsed))
    except Exception:
        return False


def answers_match(predicted: str | None, gold: str | None, options: list[str] | None = None) -> bool:
    """True when ``predicted`` names the same answer as ``gold``. Empty answers never match."""
    if predicted is None or gold is None or not predicted.strip() or not gold.strip():
        return False
    if options:
        gold_letter = choice_letter(gold, options)
        if gold_letter is not None:
            return choice_letter(predicted, options) == gold_letter
    if normalize_text(predicted) == normalize_text(gold):
        return True
    pred_n, gold_n = normalize_text(predicted), normalize_text(gold)
    if _NUMBER.match(pred_n) and _NUMBER.match(gold_n):
        return abs(float(pred_n) - float(gold_n)) <= 1e-6 * max(1.0, abs(float(gold_n)))
    return _math_equal(predicted, gold)
