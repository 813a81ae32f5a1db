"""An optional LLM judge scored beside the rules, never instead of them.

Peers report numbers that move by several points between rule scoring and a GPT judge, so
both are reported, with how often they agree. The judge is any OpenAI-compatible chat
endpoint (GPT-4o, our vLLM server): per item it sees the question, the options, the standard
answer and the model's final answer (the extracted answer, else the end of the response),
and replies 1 (same answer) or 0. A reply that is neither, or a failed request, is no
verdict: it counts in ``failed``, not as a zero.
"""

from __future__ import annotations

import re
from typing import Any

from r1ov.eval.chat import EndpointSettings, ask_all

PROMPT = """You grade answers to math and science questions.
Decide whether the model's final answer is the same answer as the standard answer. For multiple
choice, the same option (by letter or by its text) is the same answer. For values, equal values in
any notation or equivalent units are the same answer (0.5 m and 50 cm). Several candidate answers
are not the same answer. Reply with one digit: 1 if they are the same answer, 0 if not.

[Question]: {question}
[Options]: {options}
[Standard Answer]: {answer}
[Model Answer]: {response}
Judgement:"""

_VERDICT = re.compile(r"^\s*(?:judgement\s*:\s*)?([01])\b", re.IGNORECASE)
_TAIL = 1500  # characters of an untagged response the judge sees


# The judge's endpoint settings are the shared ones (the LLM extractor uses the same).
JudgeSettings = EndpointSettings


def prompt(row: dict[str, Any]) -> str:
    options = row.get("options") or []
    lettered = "; ".join(f"({chr(65 + i)}) {o}" for i, o in enumerate(options)) or "none (free-form answer)"
    response = row.get("extracted") or (row.get("completion") or "")[-_TAIL:] or "(no answer)"
    return PROMPT.format(
        question=row.get("question") or "(see the image)", options=lettered, answer=row.get("answer"), response=response
    )


def parse_verdict(text: str | None) -> bool | None:
    match = _VERDICT.match(text or "")
    return None if match is None else match.group(1) == "1"


def judge(rows: list[dict[str, Any]], settings: EndpointSettings) -> list[bool | None]:
    """One verdict per row, in order (None: no verdict)."""
    # A row whose generation failed has nothing to judge: no request.
    prompts = [None if row.get("error") else prompt(row) for row in rows]
    return [parse_verdict(reply) for reply in ask_all(prompts, settings, max_tokens=4, what="judge")]


def summarize(rows: list[dict[str, Any]], verdicts: list[bool | None]) -> dict[str, Any]:
    """Judge accuracy, and its agreement with the rules on the items it gave a verdict for."""
    pairs = [(bool(r["correct"]), v) for r, v in zip(rows, verdicts, strict=True) if v is not None]
    n = len(pairs)
    agree = sum(rule == verdict for rule, verdict in pairs)
    return {
        "n": n,
        "failed": len(rows) - n,
        "accuracy": sum(v for _, v in pairs) / n if n else None,
        "rules_accuracy_same_items": sum(rule for rule, _ in pairs) / n if n else None,
        "agreement_with_rules": agree / n if n else None,
        "judge_only_correct": sum(verdict and not rule for rule, verdict in pairs),
        "rules_only_correct": sum(rule and not verdict for rule, verdict in pairs),
    }
