"""Answer equivalence: the one test of "same answer" behind the filter, the GRPO reward and eval.

Cheap exact paths decide almost every item; math-verify (:mod:`r1ov.scoring.symbolic`) only sees
what they cannot decide:

1. Multiple choice: the gold's letter (a letter, or an option's text) against the letter the
   prediction names: ``B``, ``(B)``, ``B.``, ``(B) option text``, or the option text alone.
   A letter is read only where it is one (``a logarithmic function`` is text), and an answer
   naming several choices (``A or B``, ``A B C``) names none.
2. Numbers by value with their sign: an integer gold exactly whatever the prediction's
   notation (``5.0`` is 5, ``5.0000001`` is not), a decimal gold at the benchmark's
   ``precision`` when it gives one (MathVista) else within 1e-6; ``3!`` and ``-3`` are not
   ``3``. A unit is the item's own (its ``unit``, or the one its gold is written with) or
   none: ``12 inches`` is not ``12`` cm. A magnitude word changes the value
   (``12 thousand`` is 12000, ``12k``, ``2 dozen``) and ``12 squared`` is not a number.
3. Text, compared case- and space-insensitively; plain words never reach the parser.
4. LaTeX (with or without ``$``): closed-form numbers by value (:mod:`r1ov.scoring.numeric`), the
   rest through math-verify, normalized first (``\\dfrac``, ``\\left(``, ``^\\circ``).

A hedge (several candidates where the gold is one: ``3, 4``, ``3 or 4``, two boxes,
``3 \\lor 4``, ``3~4``, a cases block, one value a line, several letters) earns nothing,
whatever the gold. Full-width characters (``Ｂ``, ``１２``) read as their ASCII forms and a
leading en dash as a minus.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from functools import lru_cache
from typing import Any

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
    # MathVista writes a root in its options as "√{3}" (testmini pids 269, 492, 523); models write
    # "√3". Only a root of one number or name loses its braces: "√{3+1}" is not "√3+1".
    (re.compile(r"√\{(\w+)\}"), r"√\1"),
)
_SPACES = re.compile(r"\s+")


# Full-width ASCII forms (U+FF01-U+FF5E) and the ideographic space, as CJK keyboards type them.
_FULL_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
# A dash that starts a number is a minus sign; between two values it is a range (a hedge).
_LEADING_DASH = re.compile(r"(?<![\w)}\]])[\u2013\u2014\u2212]\s*(?=[\d.(\\])")


def fold(text: str) -> str:
    """Full-width letters and digits as ASCII, a leading en dash or minus sign as ``-``."""
    return _LEADING_DASH.sub("-", text.translate(_FULL_WIDTH))


def unbox(text: str) -> str:
    """Contents of the one ``\\boxed{...}`` (braces balanced), else ``text``.

    Several boxes are a hedge, not an answer: the text is returned as it is, boxes and all.
    """
    start = text.rfind("\\boxed")
    if start < 0 or text.count("\\boxed") > 1:
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
    text = unbox(fold(text).strip()).strip()
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
# Words that scale a number (they are not units): "12 thousand" is 12000. "squared" and
# "cubed" are operations: such an answer is not one number.
_MAGNITUDES = {
    "hundred": 100,
    "thousand": 1000,
    "k": 1000,
    "million": 10**6,
    "mn": 10**6,
    "billion": 10**9,
    "bn": 10**9,
    "trillion": 10**12,
    "dozen": 12,
}
_OPERATION_WORDS = re.compile(r"^(?:squared|cubed|percent(?:age)? points?|factorial)$", re.IGNORECASE)
_FRACTION = re.compile(rf"^(?P<num>{_NUMBER})\s*/\s*(?P<den>{_NUMBER})$")
_LATEX_FRACTION = re.compile(r"^(?P<sign>[-+−]?)\\frac\s*\{\s*(?P<num>[-+−]?\d+)\s*\}\s*\{\s*(?P<den>[-+−]?\d+)\s*\}$")
_SCALAR = re.compile(rf"^(?P<value>{_NUMBER})$")
# What may follow a value and is not part of it: %, degrees, a short unit ("cm", "m^2", "km/h").
# A lone variable-like letter ("3x", "2n") is an expression, not a unit.
_UNIT = re.compile(
    r"^(?!(?:[a-fi-jn-rt-z])$)(?:%|°[a-zA-Z]?|[a-zA-Zµμ]{1,12}(?:\s?\^?\s?[23²³])?(?:\s?/\s?[a-zA-Z]{1,6}[23]?)?|[²³])$"
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
    """The value ``text`` writes, with ``%`` or a unit set aside; None when it is not one number.

    With ``unit`` (the item's), only that unit may follow the value; without one, any short
    unit may. A magnitude word scales the value; an operation word makes it no number.
    """
    parsed = number_and_unit(text)
    if parsed is None:
        return None
    number, tail = parsed
    if not tail:
        return number
    if _UNIT_COMMANDS.search(tail):
        return None  # "2\\sqrt{3}", "2\\pi": an expression, not 2 with a unit
    if unit:
        return number if same_unit(tail, unit) else None
    return number if is_unit(tail) else None


def number_and_unit(text: str) -> tuple[Number, str] | None:
    """The number ``text`` writes and the unit written after it (``""``: none)."""
    text = clean(text)
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
        return Number(-value if match["sign"] in "-−" and match["sign"] else value, False, 0), ""
    head, tail = _split_unit(text)
    # Short marks keep their case ("12k" is 12000, "300 K" is kelvin); words do not ("Thousand").
    scale = _MAGNITUDES.get(tail if len(tail) <= 2 else tail.lower()) if tail else None
    if scale is not None:
        tail = ""
    elif tail and _OPERATION_WORDS.match(tail):
        return None
    match = _SCALAR.match(head)
    if match:
        parsed = _to_fraction(match["value"])
        if not parsed:
            return None
        number = Number(*parsed)
    else:
        match = _FRACTION.match(head)
        if not match:
            return None
        num, den = _to_fraction(match["num"]), _to_fraction(match["den"])
        if not (num and den and den[0] != 0):
            return None
        number = Number(num[0] / den[0], num[1] or den[1], max(num[2], den[2]))
    if scale is not None:
        number = Number(number.value * scale, number.decimal, number.places)
    return number, tail


# Spellings of one unit: "\\mathrm{~cm}^{2}", "cm^2" and "cm²" are one unit.
_UNIT_NOISE = re.compile(r"\\(?:mathrm|text|mbox|operatorname|rm)\b|[{}~\s\\^]")


# The only LaTeX commands a unit is written with: text wrappers, spacing and the degree sign.
# Any other command after a number (``2\\sqrt{3}``, ``2\\pi``, ``4\\cdot x``) makes it an
# expression, never a number with a unit.
_UNIT_COMMANDS = re.compile(r"\\(?!(?:mathrm|textrm|text|mbox|operatorname|rm|circ|degree)\b|[%,;:! ])[A-Za-z]*")


def is_unit(tail: str) -> bool:
    """Whether what follows a number is a unit (``cm``, ``\\mathrm{~cm}^{2}``, ``%``, ``°``)."""
    return not _UNIT_COMMANDS.search(tail) and bool(_UNIT.match(_unit_key(tail) or "?"))


def _unit_key(unit: str) -> str:
    return _UNIT_NOISE.sub("", unit.strip()).replace("²", "2").replace("³", "3").rstrip(".")


def same_unit(a: str, b: str) -> bool:
    """Whether two spellings name one unit (``m`` is not ``M``; ``Inches`` is ``inches``)."""
    ka, kb = _unit_key(a), _unit_key(b)
    return ka == kb or (ka.lower() == kb.lower() and len(ka) > 2)


def _split_unit(text: str) -> tuple[str, str]:
    """``"12.5 cm^2"`` -> ``("12.5", "cm^2")``: the leading numeric part and the rest."""
    match = re.match(rf"^((?:{_NUMBER})(?:\s*/\s*(?:{_NUMBER}))?)\s*(.*)$", text)
    if not match:
        return text, ""
    return match.group(1), match.group(2).strip()


def numbers_equal(predicted: Number, gold: Number, precision: int | None = None) -> bool:
    """Same value: an integer or fraction gold exactly, a decimal gold at ``precision`` places
    when given, else within 1e-6 (``5.0000001`` is not the integer 5)."""
    if predicted.value == gold.value:
        return True
    if precision is not None:
        return round(float(predicted.value), int(precision)) == round(float(gold.value), int(precision))
    if not gold.decimal:
        return False  # integers and exact fractions: no tolerance (100000001 is not 100000000)
    return abs(float(predicted.value) - float(gold.value)) < 1e-6


# --------------------------------------------------------------------------- multiple choice

_LONE = re.compile(r"^\(?([A-Z])\)?$|^\(([a-z])\)$|^\[([A-Z])\]$")
_LETTER_THEN_TEXT = re.compile(r"^(?:\(([A-Za-z])\)|([A-Z])\s*[.:)：]|\[([A-Z])\])\s*(.+)$", re.DOTALL)
_LETTER_SPACE_TEXT = re.compile(r"^([A-Z])\s+(.+)$", re.DOTALL)
_LETTER_LIST = re.compile(r"^\(?([A-Z])\)?(?:\s*(?:,|/|;|&|\band\b|\bor\b|\s)\s*\(?([A-Z])\)?)+$", re.IGNORECASE)


def _same_text(a: str, b: str) -> bool:
    # Spacing is not part of an option: "8 - 4\\sqrt{2}" is "$8-4\\sqrt{2}$".
    return _spaceless(a) == _spaceless(b)


@lru_cache(maxsize=65536)
def _spaceless(text: str) -> str:
    return _SPACES.sub("", normalize_text(text))


def _letters_for_text(text: str, options: list[str]) -> frozenset[str]:
    """The letters whose option is ``text`` (by text, then by value); several only when the
    options repeat one answer (MathVista pid 781: 9, 12, 18, 18)."""
    letters = option_letters(options)
    hits = [letter for letter, option in zip(letters, options, strict=True) if _same_text(text, option)]
    if len(hits) and _LONE.match(clean(text)):
        # Options that are letters themselves ("(a)" ... "(e)"): "(E)" is the fifth option, not "(e)".
        hits = [letter for letter, option in zip(letters, options, strict=True) if clean(text) == clean(option)]
        if not hits:
            return frozenset()
    if hits:
        return frozenset(hits)
    value = parse_number(text)
    if value is not None:
        by_value = frozenset(
            letter
            for letter, option in zip(letters, options, strict=True)
            if (n := parse_number(option)) is not None and numbers_equal(value, n) and numbers_equal(n, value)
        )
        if by_value:
            return by_value
    return _value_letters(text, options)


def _is_ratio(text: str) -> bool:
    return bool(_RATIO.match(text)) and not _CLOCK.match(text)


# An answer written as a closed-form expression: a LaTeX command, a power, a root or pi.
_EXPRESSION = re.compile(r"\\[A-Za-z]+|\^|√|π")


def _value_letters(text: str, options: list[str]) -> frozenset[str]:
    """The options an answer names by value in another notation: a quotient for a ratio
    option or the reverse (``3/2`` names ``3: 2``, ``\\frac{6}{\\pi}`` names ``$6:\\pi$``: MATH-V
    writes ratio options, models answer with fractions), and an expression for the same
    closed-form value (``5\\sqrt{5}-10`` names ``$5(\\sqrt{5}-2)$``, ``2002^2`` names
    ``$2002^{2}$``). A plain number or a sequence (``5-2-3-4-1``, ``24`` for ``$2 \\cdot 4
    \\cdot 3$``) is never evaluated against an expression option: it names no option here."""
    text = clean(text)
    if not _MATHY.search(text):
        return frozenset()
    expression = bool(_EXPRESSION.search(text))
    hits = []
    for letter, option in zip(option_letters(options), options, strict=True):
        option = clean(option)
        if _is_ratio(text) == _is_ratio(option) and not (expression and _EXPRESSION.search(option)):
            continue
        a, b = numeric.value(_ratio_as_quotient(text)), numeric.value(_ratio_as_quotient(option))
        if a is not None and b is not None and numeric.same_value(a, b):
            hits.append(letter)
    return frozenset(hits)


def _option_for_text(text: str, options: list[str]) -> str | None:
    """The letter whose option is ``text``; None if none or several."""
    hits = _letters_for_text(text, options)
    return next(iter(hits)) if len(hits) == 1 else None


def is_letter_hedge(text: str) -> bool:
    """Several option letters at once: ``A or B``, ``A, B``, ``A B C``, ``(A)(B)``."""
    cleaned = clean(text).replace(")(", ") (")
    match = _LETTER_LIST.match(cleaned)
    if not match:
        return False
    letters = {c.upper() for c in re.findall(r"(?<![A-Za-z])([A-Za-z])(?![A-Za-z])", cleaned)}
    return len(letters) > 1


# ", No" and "- No" after a letter; a minus sign on the option's own value stays ("(B) -3").
_LEAD_PUNCTUATION = re.compile(r"^(?:[,;:]|[-–—](?=\s))\s*")


def _unwrap(text: str) -> str:
    """``(8/11)``, ``[8/11]`` or ``, 8/11`` -> ``8/11``: option text written after its letter."""
    text = _LEAD_PUNCTUATION.sub("", text.replace("**", "").strip()).rstrip(".").strip()
    if len(text) > 2 and text[0] + text[-1] in ("()", "[]"):
        return text[1:-1].strip()
    return text


def choice_letters(answer: str | None, options: list[str] | None) -> frozenset[str]:
    """The option letter(s) an answer names: empty for no letter, a hedge or a contradiction.

    Accepted: ``B``, ``(B)``, ``(b)``, ``B.``, ``B:``, ``(B) text``, ``B. text``, ``B text``,
    ``B (text)`` when the text is option B's own, and an option's text (or value) alone. Any
    other text after a letter ("(B) (or maybe C)", "B. or C.", "(B) 7/11") names nothing.
    Several letters come back only for an option text that several options share.
    """
    if not answer or not answer.strip():
        return frozenset()
    text = clean(answer)
    if options:
        letters = option_letters(options)
        by_text = _letters_for_text(text, options)
        if by_text:
            return by_text
    else:
        letters = [chr(ord("A") + i) for i in range(26)]
    lone = _LONE.match(text.rstrip(".:"))
    if lone:
        letter = next(g for g in lone.groups() if g).upper()
        return frozenset(letter) if letter in letters else frozenset()
    if is_letter_hedge(text):
        return frozenset()
    marked = _LETTER_THEN_TEXT.match(text)
    spaced = None if marked else _LETTER_SPACE_TEXT.match(text)
    if marked:
        letter, rest = next(g for g in marked.groups()[:3] if g).upper(), marked.group(4)
    elif spaced:
        letter, rest = spaced.group(1), spaced.group(2)
    else:
        return frozenset()
    if letter not in letters:
        return frozenset()
    if not options:
        return frozenset(letter) if marked else frozenset()  # nothing to hold the text against
    # The text after a letter must be that option's own ("A logarithmic ..." is a sentence),
    # unless the option is only its letter (MATH-V's "A" ... "E": the content is in the image,
    # so "(C) 49" cannot be checked against it, and names C).
    if marked and clean(options[letters.index(letter)]).strip("()") == letter:
        # ... as long as the text names no other option letter ("(A), (C), and (E)" is a hedge).
        others = set(re.findall(r"(?<![A-Za-z])([A-Z])(?![A-Za-z])", rest)) & set(letters) - {letter}
        return frozenset() if others else frozenset(letter)
    return frozenset(letter) if letter in _letters_for_text(_unwrap(rest), options) else frozenset()


def choice_letter(answer: str | None, options: list[str] | None) -> str | None:
    """The one option letter an answer names, or None (see :func:`choice_letters`)."""
    named = choice_letters(answer, options)
    return next(iter(named)) if len(named) == 1 else None


def gold_letters(gold: str, options: list[str] | None) -> frozenset[str]:
    """The gold's letter(s): the gold itself when it is one, else the options whose text it is."""
    text = clean(gold)
    lone = _LONE.match(text)
    if options:
        if lone:
            letter = next(g for g in lone.groups() if g).upper()
            # A gold "A" is the letter unless an option is written "A" itself: options "$a$",
            # "$b$" ... (MATH-V) differ in case, and their gold letters stay letters.
            if letter in option_letters(options) and not any(text == clean(o) for o in options):
                return frozenset(letter)
        return _letters_for_text(text, options)
    return frozenset(lone.group(1)) if lone and lone.group(1) else frozenset()


def gold_letter(gold: str, options: list[str] | None) -> str | None:
    """The gold's one letter, or None (see :func:`gold_letters`)."""
    named = gold_letters(gold, options)
    return next(iter(named)) if len(named) == 1 else None


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
# Shapes of "several answers for one", each named so a gold written that way may use it.
_HEDGE_MARKS = {
    "boxes": re.compile(r"\\boxed.*\\boxed", re.DOTALL),
    "or": re.compile(r"\\lor\b|\\vee\b|\bor\b|或", re.IGNORECASE),
    "cases": re.compile(r"\\begin\s*\{\s*(?:cases|array|aligned|gathered|split)"),
    "lines": re.compile(r"\\\\|\n"),
    "range": re.compile(r"[\d)}]\s*(?:~|\\sim\b|–|—|\\to\b)\s*[-+−]?(?:[\d(.]|\\(?:frac|sqrt|pi)\b)"),
}
# Letters and slashes ("N/A", "yes/no") are words, never a fraction for the parser.
_SLASHED_WORDS = re.compile(r"^[A-Za-z]+(?:\s*/\s*[A-Za-z]+)+$")


_RATIO = re.compile(r"^([^:]+?)\s*:\s*([^:]+)$")
_CLOCK = re.compile(r"^\d{1,2}:\d{2}(?::\d{2})?$")


def _ratio_as_quotient(text: str) -> str:
    """``6:\\pi`` -> ``\\frac{6}{\\pi}``: a ratio against a quotient; a clock time stays a time."""
    match = _RATIO.match(text)
    if not match or _CLOCK.match(text):
        return text
    return f"\\frac{{{match.group(1)}}}{{{match.group(2)}}}"


def hedge_marks(text: str) -> frozenset[str]:
    """The hedge shapes ``text`` shows: two boxes, a logical or, a cases block, several lines, a range."""
    return frozenset(name for name, pattern in _HEDGE_MARKS.items() if pattern.search(text))


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
    golds = gold_letters(gold, options)
    if golds:
        named = choice_letters(predicted, options)
        return bool(named) and named <= golds  # a repeated option text: either letter is right

    pred_text, gold_text = clean(predicted), clean(gold)
    if not pred_text:
        return False
    if hedge_marks(pred_text) - hedge_marks(gold_text):
        return False  # two boxes, "3 \\lor 4", "3~4", a cases block, one value a line
    if not _multi_valued(gold_text) and (is_value_hedge(pred_text) or _CONNECTIVE.search(pred_text)):
        return False  # "3, 4", "3 or more": several candidates, or a qualified one, for a single gold
    gold_parsed = number_and_unit(gold_text)
    if gold_parsed is not None and gold_parsed[1] and gold_parsed[1] != "%" and not is_unit(gold_parsed[1]):
        gold_parsed = None  # "2\\sqrt{3}", "4+\\sqrt{2}", "1:2": an expression, not a number and its unit
    if gold_parsed is not None:
        gold_number, gold_unit = gold_parsed
        # The item's unit, else the one its gold is written with ("6cm"); "%" never restricts.
        item_unit = unit or (gold_unit if gold_unit and gold_unit != "%" else None)
        if unit is None or not gold_unit or same_unit(gold_unit, unit) or gold_unit == "%":
            pred_number = parse_number(pred_text, item_unit)
            if pred_number is not None:
                return numbers_equal(pred_number, gold_number, precision)
            if parse_number(pred_text) is not None:
                return False  # a number with another unit: not the gold
    if pred_text.lower() == gold_text.lower():
        return True
    if _SLASHED_WORDS.match(pred_text) or (_PLAIN_WORDS.match(pred_text) and _PLAIN_WORDS.match(gold_text)):
        return False  # words ("N/A", two different words): nothing for a parser to find
    if not (_MATHY.search(pred_text) and _MATHY.search(gold_text)):
        return False
    if (":" in pred_text) != (":" in gold_text):
        pred_text, gold_text = _ratio_as_quotient(pred_text), _ratio_as_quotient(gold_text)
    pred_value, gold_value = numeric.value(pred_text), numeric.value(gold_text)
    if pred_value is not None and gold_value is not None:
        # Two closed-form numbers (\sqrt{3}/2, 2\pi): their values decide, no symbolic parse needed.
        if precision is not None:
            return round(pred_value, precision) == round(gold_value, precision)
        return numeric.same_value(pred_value, gold_value)
    return symbolic.equivalent(pred_text, gold_text)


def answer_spec(row: dict[str, Any]) -> dict[str, Any]:
    """What the benchmark says about a gold beyond its text: MathVista's ``precision`` and ``unit``.

    Read from a record's (or prediction row's) ``metadata``, a dict or its JSON text.
    """
    meta = row.get("metadata")
    if isinstance(meta, str):
        meta = json.loads(meta) if meta else {}
    meta = meta or {}
    precision = meta.get("precision")
    if meta.get("answer_type") not in (None, "float"):
        precision = None  # the official script rounds float answers only
    return {"precision": precision, "unit": meta.get("unit")}
