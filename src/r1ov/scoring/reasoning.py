"""The output format every stage shares: ``<think> ... </think>`` then ``<answer> ... </answer>``.

Distillation parses teacher output with it, the filter and the format reward check it, SFT
and GRPO prompt for it and evaluation extracts answers with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The paper's eval instruction, used verbatim as the system prompt in SFT, GRPO and eval.
INSTRUCTION = (
    "First output the thinking process in <think> </think> tags and then output the final answer "
    "in <answer> </answer> tags."
)

# The four tags, found in one left-to-right pass: everything below is linear in the text's
# length (a lazy ``<answer>(.*?)</answer>`` rescans the rest of the text from every unclosed tag).
_TAG = re.compile(r"</?(?:think|answer)>")


@dataclass(frozen=True)
class Parsed:
    think: str | None
    answer: str | None
    well_formed: bool


@dataclass(frozen=True)
class Blocks:
    """Every closed block in order, and whether any tag was left unmatched."""

    thinks: list[str]
    answers: list[str]
    well_formed: bool
    closed: bool = True  # every structural tag matched
    after_answer: str | None = None  # the text after a final ``</answer>`` (None: no such end)


def blocks(text: str | None) -> Blocks:
    """Closed ``<think>``/``<answer>`` blocks; ``well_formed`` only for the strict shape.

    Strict shape: optional whitespace, one ``<think>`` with non-blank content, optional
    whitespace, one ``<answer>`` with non-blank content, optional whitespace, nothing else.
    Peers' looser pattern let several blocks, an empty think or an empty answer pass.

    Inside an open block only its own closing tag counts: a think that talks about the
    ``<answer>`` tag it is asked to use is still one think block, and an answer written
    inside the thinking is not an answer block. A think that is never closed is read
    tag by tag instead, so a model that forgets ``</think>`` still has its answer read.
    """
    text = text or ""
    tags = [(m.group(0), m.start(), m.end()) for m in _TAG.finditer(text)]
    found = _scan(text, tags, opaque=True)
    if found is None:  # an unclosed think swallowed the rest: read every tag instead
        found = _scan(text, tags, opaque=False)
        assert found is not None
    return found


def _scan(text: str, tags: list[tuple[str, int, int]], *, opaque: bool) -> Blocks | None:
    thinks: list[str] = []
    answers: list[str] = []
    structural: list[tuple[str, int, int]] = []
    open_tag: tuple[str, int] | None = None
    balanced = True
    for tag, start, end in tags:
        name = tag.strip("</>")
        closing = tag.startswith("</")
        if opaque and open_tag is not None and not (closing and open_tag[0] == name):
            continue  # a tag mentioned inside a block is text
        structural.append((tag, start, end))
        if not closing:
            if open_tag is not None:
                balanced = False  # a block opened inside another
            open_tag = (name, end)
        elif open_tag is not None and open_tag[0] == name:
            (thinks if name == "think" else answers).append(text[open_tag[1] : start])
            open_tag = None
        else:
            balanced = False
    if opaque and open_tag is not None and open_tag[0] == "think":
        return None
    well_formed = (
        balanced
        and open_tag is None
        and [t for t, _, _ in structural] == ["<think>", "</think>", "<answer>", "</answer>"]
        and not text[: structural[0][1]].strip()
        and not text[structural[1][2] : structural[2][1]].strip()
        and not text[structural[3][2] :].strip()
        and bool(thinks[0].strip())
        and bool(answers[0].strip())
    )
    after = text[structural[-1][2] :] if structural and structural[-1][0] == "</answer>" else None
    return Blocks(thinks, answers, well_formed, balanced and open_tag is None, after)


def parse(text: str | None) -> Parsed:
    """Split a completion: the first think block, the last non-empty answer block, strictness."""
    found = blocks(text)
    last = found.answers[-1].strip() if found.answers else ""
    return Parsed(found.thinks[0].strip() if found.thinks else None, last or None, found.well_formed)


def compose(think: str, answer: str) -> str:
    return f"<think>\n{think.strip()}\n</think>\n<answer>{answer.strip()}</answer>"


def format_question(question: str, options: list[str] | None) -> str:
    """The user turn: question, then lettered options when multiple choice."""
    if not options:
        return question.strip()
    lines = [question.strip(), "Options:"]
    lines += [f"({letter}) {option}" for letter, option in zip(_letters(len(options)), options, strict=True)]
    return "\n".join(lines)


def _letters(n: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(n)]


def option_letters(options: list[str] | None) -> list[str]:
    return _letters(len(options or []))
