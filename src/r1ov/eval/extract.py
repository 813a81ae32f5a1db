"""Pulling the final answer out of a completion, and saying which rule found it.

Real models write their answer in many ways: in the ``<answer>`` tag asked for, in a box,
after "The answer is", as the whole response, or only in the last sentence of a solution.
The rules below read each of these, in this order; the first that finds an answer wins:

1. ``answer_tag``: the ``<answer>`` block (``reasoning.blocks``), a box inside it unwrapped.
2. ``boxed``: the last ``\\boxed{...}``.
3. ``answer_is``: the last "the answer is X" / "Answer: X" / "correct option is X", and the
   same phrasings in Chinese (答案是, 答案：, 故选), French, Spanish, German, Portuguese,
   Italian, Russian and Japanese.
4. ``bare``: a response that is only an answer (``12``, ``B``, ``$9(\\pi-2)$``,
   ``B. rectangular cuboid``).
5. ``option_text``: multiple choice, the last option letter written with its own option
   text (``C (40°)``, ``(B) 38``) or a bracketed letter in the last sentence (``(C)``).
6. ``option_letter``: multiple choice, a lone option letter ending the text.
7. ``final_sentence``: the last sentence's value ("Therefore, the distance is 0.11
   meters.") or, for multiple choice, the one option text it names.

Rule names are :data:`RULES`' keys, kept with every prediction, so a report shows how much
of a score rests on each. Where no rule finds an answer, an optional LLM extractor may read
one (:mod:`r1ov.eval.llm_extract`, off by default); its items carry the rule ``llm``.
Answers that hedge ("A, B, C or D", several answer blocks that disagree, two boxes on the
last line that state different answers, "3 or 4 apples") and an empty answer tag count as
no answer, whatever the reasoning says. :data:`RULES_VERSION` names this rule set
in the eval manifest: change it whenever a rule changes what it finds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from r1ov.scoring.answers import choice_letters, fold, is_letter_hedge, parse_number
from r1ov.scoring.reasoning import blocks, option_letters

RULES_VERSION = "4"

# Fallbacks read only the end of a completion: a final answer sits there, and scanning a
# bounded tail keeps every rule linear however long (or adversarial) the text is.
TAIL_CHARS = 4000

# End-of-sequence marks some models leave in their text (MiniGPT-4 writes "</s>").
_END_MARKS = re.compile(r"(?:\s*(?:</s>|<\|im_end\|>|<\|endoftext\|>|<eos>|<\|eot_id\|>))+\s*\Z")

# "answer is" phrasings; each ends where the value starts.
_LEADS = [
    r"(?:the\s+)?(?:final\s+|correct\s+|right\s+|best\s+)?(?:answer|option|choice)(?:\s+(?:choice|letter))?"
    r"(?:\s+to\s+(?:the|this)\s+question)?\s*(?:is|would\s+be|should\s+be|will\s+be|=|:)",
    r"答案\s*(?:应该?|應該?)?\s*(?:是|为|為|选|選)?\s*[:：]?",
    r"(?:故|所以|因此|应|應)\s*选\s*[:：]?",
    r"(?:la\s+)?(?:bonne\s+)?réponse(?:\s+correcte)?\s*(?:est|:)",
    r"(?:la\s+)?respuesta(?:\s+correcta)?\s*(?:es|:)",
    r"(?:die\s+)?(?:richtige\s+)?antwort\s*(?:ist|lautet|:)",
    r"(?:a\s+)?resposta(?:\s+correta)?\s*(?:é|:)",
    r"(?:la\s+)?risposta(?:\s+corretta)?\s*(?:è|:)",
    r"ответ\s*(?::|—|-|будет)",
    r"答え\s*(?:は|：|:)",
]
_ANSWER_KEYWORD = re.compile(
    r"answer|option|choice|答案|选|選|réponse|respuesta|antwort|resposta|risposta|ответ|答え", re.IGNORECASE
)
_ANSWER_IS = re.compile(
    r"(?:" + "|".join(_LEADS) + r")[:：\s]*(?P<value>[^\n]+?)\s*(?:$|\n|[.。]\s|[.。]$)",
    re.IGNORECASE,
)
# Words before a stated answer ("the frontal lobe", "option (B)"); a capital "A" is a letter.
_LEAD_WORDS = re.compile(
    r"^(?:(?:[Tt]he|an?|[Oo]ption|[Cc]hoice|[Ll]etter|[Tt]herefore|[Tt]hus|[Ss]o|[Hh]ence|[Ss]till|[Cc]learly),?\s+)+"
)
_HEAD_LETTER = re.compile(r"^[(\[]?([A-Z])[)\]]?(?=[\s,.:;*(]|$)")
_LONE_LETTER = re.compile(r"(?:^|[\s:(\[*])\(?(?P<letter>[A-Z])\)?[\].*]*\s*\.?\s*\Z")
_BRACKETED_LETTER = re.compile(r"\(([A-Z])\)")
_SENTENCE_END = re.compile(r"(?<=[.!?。])\s+|\n+")
# Counts written as words ("there are two models") read as their digits.
_NUMBER_WORDS = {
    word: str(i)
    for i, word in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
            "twenty",
        ]
    )
}
_NUMBER = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+|\b(?:" + "|".join(_NUMBER_WORDS) + r")\b"
# A value right after a cue word is the sentence's answer ("... is 0.11 meters").
_CUED_VALUE = re.compile(  # case-insensitive: "Four" opens a sentence
    rf"(?:\bis\b|\bare\b|\bbe\b|\bequals?\b|\bequal\s+to\b|=|≈|:|\bof\b|\bwas\b|为|是)\s*"
    rf"(?:approximately\s+|about\s+|around\s+|roughly\s+)?\$?\s*(?P<value>{_NUMBER})"
    r"(?P<unit>\s*(?:°|%|[a-zA-Z]{1,12}(?:\^?[23²³])?))?",
    re.IGNORECASE,
)
_VALUE = re.compile(rf"(?P<value>{_NUMBER})(?P<unit>\s*(?:°|%|[a-zA-Z]{{1,12}}(?:\^?[23²³])?))?", re.IGNORECASE)
# "3 or 4", "3-4", "3 to 4": two values offered for one answer.
_VALUE_HEDGE = re.compile(rf"(?:{_NUMBER})\s*(?:\bor\b|\bto\b|–|~)\s*(?:{_NUMBER})")
_LEADING_VALUE = re.compile(rf"^\$?\s*((?:{_NUMBER})(?:\s*(?:°|%))?)(?=[\s,;]|$)", re.IGNORECASE)
_BARE_MAX_CHARS = 80
_ANSWER_WINDOW = 300
# What a rule returns for text that offers several answers at once (an echoed option list).
ECHO = ""


@dataclass(frozen=True)
class Extraction:
    """The answer found (``None``: none), the rule that found it, and strict-format compliance."""

    answer: str | None
    rule: str
    well_formed: bool


def last_boxed(text: str) -> str | None:
    """Contents of the last ``\\boxed{...}``, braces balanced (``\\boxed{\\frac{1}{2}}``)."""
    return _box_at(text, text.rfind("\\boxed{"))


def _box_at(text: str, start: int) -> str | None:
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


def _from_tags(text: str, options: list[str] | None) -> str | None:
    answers = blocks(text).answers
    return answers[-1].strip() or None if answers else None


def _from_boxed(text: str, options: list[str] | None) -> str | None:
    answer = last_boxed(text)
    if answer is None:
        return None
    # Two different boxes on the last line that has one: a hedge, kept whole for is_hedge.
    line_start = text.rfind("\n", 0, text.rfind("\\boxed{")) + 1
    line = text[line_start : text.find("\n", line_start) if "\n" in text[line_start:] else len(text)]
    boxes = [_box_at(line, m.start()) for m in re.finditer(r"\\boxed\{", line)]
    if len(set(boxes)) > 1 and not _one_answer([b for b in boxes if b], options):
        return line.strip()
    return answer


def _one_answer(boxes: list[str], options: list[str] | None) -> bool:
    """Several boxes that state one answer: a value and its option letter ("\\boxed{58 cm^2},
    answer choice \\boxed{(B)}" where B is 58 cm^2), or one value twice ("\\boxed{2.5cm}.
    Answer: \\boxed{2.5}"). Boxes that differ in anything else are a hedge."""
    if options:
        named = [choice_letters(box, options) for box in boxes]
        return all(len(n) == 1 for n in named) and len(set(named)) == 1
    values = [parse_number(box) for box in boxes]
    return all(v is not None for v in values) and len({v.value for v in values if v is not None}) == 1


def _line_end(text: str, position: int) -> int:
    end = text.find("\n", position) if position < len(text) else -1
    return len(text) if end < 0 else end


def _last_answer_is(text: str) -> re.Match[str] | None:
    """The last "answer is" match. The full pattern is tried only around its keywords, found
    by a cheap scan from the end: running it at every position of a long solution is slow."""
    for keyword in reversed(list(_ANSWER_KEYWORD.finditer(text))):
        # The keyword's line and the next one ("The answer is:\nB"), from the line's start.
        line_end = _line_end(text, keyword.end())
        following = len(text) - len(text[line_end:].lstrip())  # blank lines before a value on its own line
        # Bounded: a stated answer is short, and a window per keyword must not rescan the text.
        window_end = min(_line_end(text, max(following, line_end + 1)), keyword.end() + _ANSWER_WINDOW)
        start = max(text.rfind("\n", 0, keyword.start()) + 1, keyword.start() - 60)
        matches = list(_ANSWER_IS.finditer(text, start, window_end))
        if matches:
            return matches[-1]
    return None


def _from_answer_is(text: str, options: list[str] | None) -> str | None:
    match = _last_answer_is(text)
    if match is None:
        return None
    value = match.group("value").replace("**", "").strip().strip("*$").strip()
    if value.startswith("\\boxed{") and last_boxed(value) is None:
        value = value[len("\\boxed{") :].strip()  # "The answer is \\boxed{D." : a box never closed
    value = _LEAD_WORDS.sub("", value).strip()
    return _choice_head(value, options) if options else _value_head(value)


def _value_head(value: str) -> str | None:
    """A free-form stated answer that is a clause: its leading value ("1982 with an income of
    ...") or the value it states ("The amplitude is 1"); a hedge ("3 or 4") stays whole."""
    if not value or parse_number(value) is not None or len(value.split()) < 3 or _VALUE_HEDGE.search(value):
        return value or None
    lead = _LEADING_VALUE.match(value)
    if lead:
        return lead.group(1)
    return _from_final_sentence(value, None) or value


def _choice_head(value: str, options: list[str]) -> str | None:
    """For multiple choice, the choice a stated answer opens with: ``(B), No`` -> ``B``,
    ``no, there are not fewer ...`` -> ``no``; the value as it is when it names one already
    or contradicts itself (``(C) 5:30`` where C is 4:30 stays whole, for the matcher to refuse)."""
    if not value or choice_letters(value, options) or is_letter_hedge(value):
        return value or None  # a hedge ("(A) or (B)") stays whole, for the hedge check
    head = _HEAD_LETTER.match(value)
    if head and head.group(1) in option_letters(options):
        rest = value[head.end() :].strip(" ,;:-*")
        if set(_BRACKETED_LETTER.findall(rest)) & set(option_letters(options)) - {head.group(1)}:
            return value  # "(A), (C), and (E)": several options, kept whole for the matcher to refuse
        named = {letter for letter in option_letters(options) if rest and choice_letters(rest, options) == {letter}}
        return head.group(1) if not named or named == {head.group(1)} else value
    for option in sorted((str(o).strip() for o in options), key=len, reverse=True):
        if option and value.lower().startswith(option.lower()) and re.match(r"[\s,.;:!]|$", value[len(option) :]):
            return option
    bracketed = _BRACKETED_LETTER.search(value)
    if bracketed and bracketed.start() > 0:  # "therefore choice (B)", "still (B) No"
        return _choice_head(value[bracketed.start() :], options)
    return value


def _from_bare(text: str, options: list[str] | None) -> str | None:
    """The whole response, when it is short and reads as one answer."""
    stripped = text.strip()
    if not stripped or len(stripped) > _BARE_MAX_CHARS or "\n" in stripped:
        return None
    if options and choice_letters(stripped, options):
        return stripped
    if parse_number(stripped) is not None:
        return stripped
    if stripped.startswith(("$", "\\(", "\\[")) and stripped.endswith(("$", "\\)", "\\]")):
        return stripped  # one formula: "$9(\pi-2)$"
    if not options and len(stripped.split()) <= 3 and not stripped.endswith((".", "!", "?")):
        return stripped  # a word or two: "yes", "right angle"
    return None


# Closing courtesies and questions back to the user state no answer: skip them.
_COURTESY = re.compile(
    r"\?\s*$|hope (?:this|that|it) helps|let me know|anything else|any other questions|"
    r"feel free|happy to help|do you (?:want|have)|^(?:sure|thanks|thank you)\b",
    re.IGNORECASE,
)


def _last_sentences(text: str, count: int) -> list[str]:
    """The last ``count`` sentences that state something (no courtesies, questions or code fences), last first."""
    found: list[str] = []
    for sentence in reversed(_SENTENCE_END.split(text.strip())):
        sentence = sentence.strip().strip("*").strip()
        if sentence and not _COURTESY.search(sentence) and not sentence.startswith("```"):
            found.append(sentence)
            if len(found) == count:
                break
    return found


def _last_sentence(text: str) -> str:
    last = _last_sentences(text, 1)
    return last[0] if last else ""


def _from_option_text(text: str, options: list[str] | None) -> str | None:
    """The last letter written with its own option text, or a bracketed letter ending the text."""
    if not options:
        return None
    found: list[tuple[int, str]] = []
    for letter, option in zip(option_letters(options), options, strict=True):
        body = re.escape(str(option).strip())
        if not body:
            continue
        pattern = rf"(?<![A-Za-z])(?:\({letter}\)|{letter}[.:)]?)\s*[(\[]?\$?\s*{body}(?![\w])"
        found += [(match.end(), letter) for match in re.finditer(pattern, text)]
    if found:
        end = max(found)[0]
        near = {letter for position, letter in found if end - position <= 300}
        # Several options written out near the end: the option list echoed back, not a choice.
        if len(text) - end <= 300:
            return max(found)[1] if len(near) == 1 else ECHO
    sentence = _last_sentence(text)
    bracketed = [m for m in _BRACKETED_LETTER.finditer(sentence) if m.group(1) in option_letters(options)]
    if len({m.group(1) for m in bracketed}) != 1:
        return None
    # "(C) 5:30" where C is 4:30 stays whole, for the matcher to refuse.
    return _choice_head(sentence[bracketed[-1].start() :].rstrip(". "), options)


def _from_lone_letter(text: str, options: list[str] | None) -> str | None:
    if not options:
        return None
    match = _LONE_LETTER.search(text[-200:].strip())
    if match and match.group("letter") in option_letters(options):
        return match.group("letter")
    return None


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def _prose_option(option: object) -> bool:
    """Whether an option's text can be looked for in prose, ignoring case. Options that are
    bare letters (MATH-V's "A" ... "E", whose content is in the image) cannot: the article
    "a" would name option A ("... without a description of the figure."); they are looked
    for as the capital letter alone, past the sentence's first word (:func:`_letter_in_prose`)."""
    text = str(option).strip().replace("$", "").strip()
    return bool(text) and not (len(text) == 1 and text.isalpha())


def _letter_in_prose(letter: str) -> re.Pattern[str]:
    """A capital letter standing alone ("the cube with the letter "D" on it", "面积为D")."""
    return re.compile(rf"(?<![A-Za-z]){re.escape(letter.upper())}(?![A-Za-z])")


def _from_final_sentence(text: str, options: list[str] | None) -> str | None:
    """The value (or the one option text) the last sentence states."""
    sentence = _last_sentence(text).replace("$", "").replace("**", "")
    if not sentence:
        return None
    if options:
        lowered = f" {_squash(sentence)} "
        named = {
            str(option).strip()
            for option in options
            if (
                re.search(rf"(?<!\w){re.escape(_squash(str(option).replace('$', '')))}(?!\w)", lowered)
                if _prose_option(option)
                else _letter_in_prose(str(option).replace("$", "").strip()).search(sentence, 1)
            )
        }
        return named.pop() if len(named) == 1 else None
    if _VALUE_HEDGE.search(sentence):
        return ECHO  # "It could be 5 or 6": several values, no answer
    if not _VALUE.search(sentence):
        # A closing remark after the value ("... is 0.214 N/C. The direction is inward."):
        # the sentence before states it.
        earlier = _last_sentences(text, 2)[1:]
        sentence = earlier[0].replace("$", "").replace("**", "") if earlier else sentence
        if _VALUE_HEDGE.search(sentence):
            return ECHO
    cued = list(_CUED_VALUE.finditer(sentence))
    match = cued[-1] if cued else None
    if match is None:
        values = list(_VALUE.finditer(sentence))
        match = values[-1] if values else None
    if match is None:
        return None
    value = match.group("value")
    return (_NUMBER_WORDS.get(value.lower(), value) + (match.group("unit") or "")).strip()


# Order matters: the first rule that returns an answer wins.
RULES: dict[str, Callable[[str, list[str] | None], str | None]] = {
    "answer_tag": _from_tags,
    "boxed": _from_boxed,
    "answer_is": _from_answer_is,
    "bare": _from_bare,
    "option_text": _from_option_text,
    "option_letter": _from_lone_letter,
    "final_sentence": _from_final_sentence,
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
    text = _END_MARKS.sub("", fold(completion or ""))
    found = blocks(text)
    well_formed = found.well_formed
    tagged = [a.strip() for a in found.answers]
    if tagged and not tagged[-1]:
        # The model committed to an empty answer; fallbacks must not dig one out of the reasoning.
        return Extraction(None, "empty_answer", well_formed)
    if len({a for a in tagged if a}) > 1:
        return Extraction(None, "hedge", well_formed)
    tail = text[-TAIL_CHARS:]
    for name, rule in RULES.items():
        # The tag rule's answer is known from the scan above: no second pass over the text.
        answer = (tagged[-1] or None if tagged else None) if name == "answer_tag" else rule(tail, options)
        if answer is None:
            continue
        if answer == ECHO:
            return Extraction(None, "hedge", well_formed)
        # A boxed answer inside the answer tag is still the tag's answer, minus the box.
        answer = (last_boxed(answer) or answer) if answer.count("\\boxed{") == 1 else answer
        if is_hedge(answer, options):
            return Extraction(None, "hedge", well_formed)
        return Extraction(answer, name, well_formed)
    return Extraction(None, "none", well_formed)
