"""Answer equivalence: the one test of "same answer" behind the filter, the GRPO reward and eval.

Cheap exact paths decide almost every item; math-verify (:mod:`r1ov.scoring.symbolic`) only sees
what they cannot decide:

1. Multiple choice: the gold's letter (a letter, or an option's text) against the letter the
   prediction names: ``B``, ``(B)``, ``B.``, ``(B) option text``, or the option text alone.
   A letter is read only where it is one (``a logarithmic function`` is text), and an answer
   naming several choices (``A or B``, ``A B C``) names none.
2. Numbers by value with their sign: integers exactly, decimals at the benchmark's
   ``precision`` when it gives one (MathVista) else within 1e-6, ``3!`` and ``-3`` are not
   ``3``. A trailing unit, the benchmark's own unit or ``%`` is not part of the value.
3. Text, compared case- and space-insensitively; plain words never reach the parser.
4. LaTeX (with or without ``$``): closed-form numbers by value (:mod:`r1ov.scoring.numeric`), the
   rest through math-verify, normalized first (``\\dfrac``, ``\\left(``, ``^\\circ``).

A hedge (several candidates where the gold is one: ``3, 4``, ``3 or 4``) earns nothing,
whatever the gold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from functools import lru_cache

from r1ov.scoring import numeric, symbolic
from r1ov.scoring.reasoning import option_letters

# --------------------------------------------------------------------------- cleaning

_WRAPPERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("**", "**"), ("`", "`"))
_LEAD = re.compile(r"^(?:the\s+)?(?:final\s+|correct\s+)?(?:answer|option|choice)\s*(?:is\s*:?|:|=)\s*", re.IGNORECASE)
_TEXT_CMD = re.compile(r"\\(?:text|textbf|mathrm|mbox|operatorname)\s*\{([^{}]*)\}")
_LATEX_FIXES = (
    (re.compile(r"\\[dt]frac"), r"\\frac"),
    (re.compile(r"\\left\s*([(\[|.])|\\left\s*\\\{"), r"\1"),
    (re.compile(r"\\right\s*([)\]|.])|\\right\s*\\\}"), r"\1"),
    (re.compile(r"\\[,;:! ]|\\quad|\\qquad"), " "),
    (re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°"), "°"),
    (re.compile(r"\\%"), "%"),
    (re.compile(r"\\displaystyle"), ""),
)
_SPACES = re.compile(r"\s+")


def unbox(text: str) -> str:
    """Contents of the last ``\\boxed{...}`` (braces balanced), else ``text``."""
    start = text.rfind("\\boxed")
    if start < 0:
        return text
    begin = text.find("{", start)
    if begin < 0:
        return text
    depth = 0
    for i in range(begin, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[begin + 1 : i]
    return text


def clean(text: str) -> str:
    """An answer without its wrapping: box, math delimiters, bold, "The answer is", final period."""
    # Options and short answers repeat across items: cache those; never hold long texts.
    return _clean_cached(text) if len(text) <= 512 else _clean(text)


@lru_cache(maxsize=65536)
def _clean_cached(text: str) -> str:
    return _clean(text)


def _clean(text: str) -> str:
    text = unbox(text.strip()).strip()
    for _ in range(3):
        before = text
        text = _LEAD.sub("", text).strip()
        for left, right in _WRAPPERS:
            if len(text) > len(left) + len(right) and text.startswith(left) and text.endswith(right):
                text = text[len(left) : -len(right)].strip()
        if text.endswith(".") and not text.endswith(".."):
            text = text[:-1].rstrip()
        if text == before:
            break
    text = _TEXT_CMD.sub(r"\1", text)
    for pattern, replacement in _LATEX_FIXES:
        text = pattern.sub(replacement, text)
    return _SPACES.sub(" ", text).strip()


def normalize_text(text: str) -> str:
    """Lower case, single spaces, no wrapping, no trailing period: for text comparison only."""
    return clean(text).lower()


# --------------------------------------------------------------------------- numbers

_NUMBER = r"[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d{1,3})?|[-+−]?\.\d+"
_FRACTION = re.compile(rf"^(?P<num>{_NUMBER})\s*/\s*(?P<den>{_NUMBER})$")
_LATEX_FRACTION = re.compile(r"^(?P<sign>[-+−]?)\\frac\s*\{\s*(?P<num>[-+−]?\d+)\s*\}\s*\{\s*(?P<den>[-+−]?\d+)\s*\}$")
_SCALAR = re.compile(rf"^(?P<value>{_NUMBER})$")
# What may follow a value and is not part of it: %, degrees, a short unit ("cm", "m^2", "km/h").
# A lone variable-like letter ("3x", "2n") is an expression, not a unit.
_UNIT = re.compile(
    r"^(?!(?:[a-fi-jn-rt-z])$)(?:%|°[a-zA-Z]?|[a-zA-Zµμ]{1,12}(?:\s?\^?\s?[23²³])?(?:\s?/\s?[a-zA-Z]{1,6})?|[²³])$"
)
_CURRENCY = "$£€¥"


@dataclass(frozen=True)
class Number:
    value: Fraction
    decimal: bool  # written with a decimal point or exponent (so a tolerance applies)
    places: int  # digits after the decimal point as written


def _to_fraction(token: str) -> tuple[Fraction, bool, int] | None:
    token = token.replace("−", "-").replace(",", "")
    try:
        value = Decimal(token)
    except InvalidOperation:
        return None
    if not value.is_finite() or abs(value.adjusted()) > 100:
        return None
    written_decimal = "." in token or "e" in token.lower()
    places = len(token.split(".", 1)[1].split("e")[0].split("E")[0]) if "." in token else 0
    return Fraction(value), written_decimal, places


def parse_number(text: str, unit: str | None = None) -> Number | None:
    """The value ``text`` writes, with units and ``%`` set aside; None when it is not one number."""
    text = clean(text)
    if unit and text.lower().endswith(unit.strip().lower()) and len(text) > len(unit.strip()):
        text = text[: -len(unit.strip())].rstrip()
    if text[:1] in _CURRENCY:
        text = text[1:].lstrip()
    elif text[:2] == "\\$":
        text = text[2:].lstrip()
    match = _LATEX_FRACTION.match(text)
    if match:
        num, den = int(match["num"].replace("−", "-")), int(match["den"].replace("−", "-"))
        if den == 0:
            return None
        value = Fraction(num, den)
        return Number(-value if match["sign"] in "-−" and match["sign"] else value, False, 0)
    head, tail = _split_unit(text)
    match = _SCALAR.match(head)
    if match and (not tail or _UNIT.match(tail)):
        parsed = _to_fraction(match["value"])
        return Number(*parsed) if parsed else None
    match = _FRACTION.match(head)
    if match and (not tail or _UNIT.match(tail)):
        num, den = _to_fraction(match["num"]), _to_fraction(match["den"])
        if num and den and den[0] != 0:
            return Number(num[0] / den[0], num[1] or den[1], max(num[2], den[2]))
    return None


def _split_unit(text: str) -> tuple[str, str]:
    """``"12.5 cm^2"`` -> ``("12.5", "cm^2")``: the leading numeric part and the rest."""
    match = re.match(rf"^((?:{_NUMBER})(?:\s*/\s*(?:{_NUMBER}))?)\s*(.*)$", text)
    if not match:
        return text, ""
    return match.group(1), match.group(2).strip()


def numbers_equal(predicted: Number, gold: Number, precision: int | None = None) -> bool:
    """Same value: exact for integers and fractions, at ``precision`` places when given, else 1e-6."""
    if predicted.value == gold.value:
        return True
    if precision is not None:
        return round(float(predicted.value), int(precision)) == round(float(gold.value), int(precision))
    if not (predicted.decimal or gold.decimal):
        return False  # integers and exact fractions: no tolerance (100000001 is not 100000000)
    return abs(float(predicted.value) - float(gold.value)) < 1e-6


# --------------------------------------------------------------------------- multiple choice

_LONE = re.compile(r"^\(?([A-Z])\)?$|^\(([a-z])\)$|^\[([A-Z])\]$")
_LETTER_THEN_TEXT = re.compile(r"^(?:\(([A-Za-z])\)|([A-Z])\s*[.:)：]|\[([A-Z])\])\s*(.+)$", re.DOTALL)
_LETTER_SPACE_TEXT = re.compile(r"^([A-Z])\s+(.+)$", re.DOTALL)
_LETTER_LIST = re.compile(r"^\(?([A-Z])\)?(?:\s*(?:,|/|;|&|\band\b|\bor\b|\s)\s*\(?([A-Z])\)?)+$", re.IGNORECASE)


def _same_text(a: str, b: str) -> bool:
    return normalize_text(a) == normalize_text(b)


def _option_for_text(text: str, options: list[str]) -> str | None:
    """The letter whose option is ``text`` (by text, then by value); None if none or several."""
    letters = option_letters(options)
    hits = [letter for letter, option in zip(letters, options, strict=True) if _same_text(text, option)]
    if len(hits) == 1:
        return hits[0]
    if hits:
        return None
    value = parse_number(text)
    if value is None:
        return None
    hits = [
        letter
        for letter, option in zip(letters, options, strict=True)
        if (n := parse_number(option)) is not None and numbers_equal(value, n)
    ]
    return hits[0] if len(hits) == 1 else None


def is_letter_hedge(text: str) -> bool:
    """Several option letters at once: ``A or B``, ``A, B``, ``A B C``, ``(A)(B)``."""
    cleaned = clean(text).replace(")(", ") (")
    match = _LETTER_LIST.match(cleaned)
    if not match:
        return False
    letters = {c.upper() for c in re.findall(r"(?<![A-Za-z])([A-Za-z])(?![A-Za-z])", cleaned)}
    return len(letters) > 1


def choice_letter(answer: str | None, options: list[str] | None) -> str | None:
    """The option letter an answer names, or None (no letter, a hedge, or a contradiction).

    Accepted: ``B``, ``(B)``, ``(b)``, ``B.``, ``B:``, ``(B) text``, ``B. text``, ``B text``
    when the text is option B's, and an option's text (or value) alone.
    """
    if not answer or not answer.strip():
        return None
    text = clean(answer)
    if options:
        letters = option_letters(options)
        by_text = _option_for_text(text, options)
        if by_text is not None:
            return by_text
    else:
        letters = [chr(ord("A") + i) for i in range(26)]
    lone = _LONE.match(text.rstrip(".:"))
    if lone:
        letter = next(g for g in lone.groups() if g).upper()
        return letter if letter in letters else None
    if is_letter_hedge(text):
        return None
    marked = _LETTER_THEN_TEXT.match(text)
    if marked:
        letter = next(g for g in marked.groups()[:3] if g).upper()
        rest = marked.group(4)
        if letter not in letters:
            return None
        if options:
            named = _option_for_text(rest, options)
            if named is not None and named != letter:
                return None  # "(A) <option B's text>": contradicts itself
        return letter
    spaced = _LETTER_SPACE_TEXT.match(text)
    # "B 8/11" only when the text is B's own; "A logarithmic ..." is a sentence, not a letter.
    if spaced and options and _option_for_text(spaced.group(2), options) == spaced.group(1):
        return spaced.group(1)
    return None


def gold_letter(gold: str, options: list[str] | None) -> str | None:
    """The gold's letter: the gold itself when it is one, else the option whose text it is."""
    text = clean(gold)
    if options:
        letters = option_letters(options)
        lone = _LONE.match(text)
        if lone:
            letter = next(g for g in lone.groups() if g).upper()
            if letter in letters and not any(_same_text(text, o) for o in options):
                return letter
        return _option_for_text(text, options)
    lone = _LONE.match(text)
    return lone.group(1) if lone and lone.group(1) else None


# --------------------------------------------------------------------------- free form

_CANDIDATE_SPLIT = re.compile(r"\s*(?:,|;|\bor\b|\band\b|\s)\s*", re.IGNORECASE)
_PLAIN_WORDS = re.compile(r"^[A-Za-z][A-Za-z '\-]*$")
_MATHY = re.compile(r"[\\^_{}=<>+*/√π]|\d")


def is_value_hedge(text: str) -> bool:
    """Several numbers offered for one: ``3, 4``, ``3 or 4``, ``3 4``."""
    cleaned = clean(text)
    if parse_number(cleaned) is not None:
        return False
    parts = [p for p in _CANDIDATE_SPLIT.split(cleaned) if p]
    return len(parts) > 1 and all(_SCALAR.match(p) for p in parts)


_CONNECTIVE = re.compile(r"\b(?:or|and)\b", re.IGNORECASE)


def _multi_valued(text: str) -> bool:
    return bool(re.search(r",|;|\bor\b|\band\b", text))


def answers_match(
    predicted: str | None,
    gold: str | None,
    options: list[str] | None = None,
    *,
    precision: int | float | None = None,
    unit: str | None = None,
) -> bool:
    """True when ``predicted`` names the same answer as ``gold``. Empty answers never match.

    ``options`` makes it a multiple-choice item when the gold names one of them;
    ``precision`` (decimal places) and ``unit`` come from the benchmark where it has them.
    """
    if predicted is None or gold is None or not str(predicted).strip() or not str(gold).strip():
        return False
    predicted, gold = str(predicted), str(gold)
    if precision is not None:
        try:
            precision = int(precision)
        except (TypeError, ValueError):
            precision = None
    unit = unit.strip() if isinstance(unit, str) and unit.strip() else None
    options = [str(o) for o in options] if options is not None and len(options) else None
    letter = gold_letter(gold, options)
    if letter is not None:
        return choice_letter(predicted, options) == letter

    pred_text, gold_text = clean(predicted), clean(gold)
    if not pred_text:
        return False
    if not _multi_valued(gold_text) and (is_value_hedge(pred_text) or _CONNECTIVE.search(pred_text)):
        return False  # "3, 4", "3 or more": several candidates, or a qualified one, for a single gold
    gold_number = parse_number(gold_text, unit)
    if gold_number is not None:
        pred_number = parse_number(pred_text, unit)
        if pred_number is not None:
            return numbers_equal(pred_number, gold_number, precision)
    if pred_text.lower() == gold_text.lower():
        return True
    if _PLAIN_WORDS.match(pred_text) and _PLAIN_WORDS.match(gold_text):
        return False  # two different words: nothing for a parser to find
    if not (_MATHY.search(pred_text) and _MATHY.search(gold_text)):
        return False
    pred_value, gold_value = numeric.value(pred_text), numeric.value(gold_text)
    if pred_value is not None and gold_value is not None:
        # Two closed-form numbers (\sqrt{3}/2, 2\pi): their values decide, no symbolic parse needed.
        if precision is not None:
            return round(pred_value, precision) == round(gold_value, precision)
        return numeric.same_value(pred_value, gold_value)
    return symbolic.equivalent(pred_text, gold_text)
