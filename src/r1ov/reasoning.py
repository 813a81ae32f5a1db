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

# Exactly one think block then exactly one non-empty answer block, nothing around them.
# Peers' looser pattern let several blocks or an empty answer earn the format reward.
_STRICT = re.compile(
    r"\A\s*<think>(?P<think>(?:(?!</?think>|</?answer>).)*?)</think>\s*"
    r"<answer>(?P<answer>(?:(?!</?think>|</?answer>).)*?)</answer>\s*\Z",
    re.DOTALL,
)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)


@dataclass(frozen=True)
class Parsed:
    think: str | None
    answer: str | None
    well_formed: bool


def parse(text: str) -> Parsed:
    """Split a completion; ``well_formed`` only for one think + one non-empty answer."""
    match = _STRICT.match(text or "")
    if match and match.group("answer").strip():
        return Parsed(match.group("think").strip(), match.group("answer").strip(), True)
    answers = _ANSWER.findall(text or "")
    thinks = _THINK.findall(text or "")
    return Parsed(
        thinks[0].strip() if thinks else None,
        answers[-1].strip() if answers and answers[-1].strip() else None,
        False,
    )


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
