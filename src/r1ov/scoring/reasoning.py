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


def blocks(text: str | None) -> Blocks:
    """Closed ``<think>``/``<answer>`` blocks; ``well_formed`` only for the strict shape.

    Strict shape: optional whitespace, one ``<think>`` with non-blank content, optional
    whitespace, one ``<answer>`` with non-blank content, optional whitespace, nothing else.
    Peers' looser pattern let several blocks, an empty think or an empty answer pass.
    """
    text = text or ""
    thinks: list[str] = []
    answers: list[str] = []
    tags = [(m.group(0), m.start(), m.end()) for m in _TAG.finditer(text)]
    open_tag: tuple[str, int] | None = None
    balanced = True
    for tag, start, end in tags:
        name = tag.strip("</>")
        if not tag.startswith("</"):
            if open_tag is not None:
                balanced = False  # a block opened inside another
            open_tag = (name, end)
        elif open_tag is not None and open_tag[0] == name:
            (thinks if name == "think" else answers).append(text[open_tag[1] : start])
            open_tag = None
        else:
            balanced = False
    well_formed = (
        balanced
        and open_tag is None
        and [t for t, _, _ in tags] == ["<think>", "</think>", "<answer>", "</answer>"]
        and not text[: tags[0][1]].strip()
        and not text[tags[1][2] : tags[2][1]].strip()
        and not text[tags[3][2] :].strip()
        and bool(thinks[0].strip())
        and bool(answers[0].strip())
    )
    return Blocks(thinks, answers, well_formed)


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
