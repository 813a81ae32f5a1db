"""An optional LLM judge scored beside the rules, never instead of them.

Peers report numbers that move by several points between rule scoring and a GPT judge, so
both are reported, with how often they agree. The judge is any OpenAI-compatible chat
endpoint (GPT-4o, our vLLM server): per item it sees the question, the options, the standard
answer and the model's final answer (the extracted answer, else the end of the response),
and replies 1 (same answer) or 0. A reply that is neither, or a failed request, is no
verdict: it counts in ``failed``, not as a zero.
"""

from __future__ import annotations

import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class JudgeSettings:
    """Where the judge lives and how hard to push it."""

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = 8
    timeout_s: float = 120.0
    max_retries: int = 3


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


def judge(rows: list[dict[str, Any]], settings: JudgeSettings) -> list[bool | None]:
    """One verdict per row, in order (None: no verdict)."""
    from openai import OpenAI

    client = OpenAI(
        base_url=settings.base_url,
        api_key=os.environ.get(settings.api_key_env) or "EMPTY",
        timeout=settings.timeout_s,
        max_retries=settings.max_retries,
    )

    def one(row: dict[str, Any]) -> bool | None:
        if row.get("error"):
            return None  # nothing was generated: there is nothing to judge
        try:
            response = client.chat.completions.create(
                model=settings.model,
                messages=[{"role": "user", "content": prompt(row)}],
                max_tokens=4,
                temperature=0.0,
            )
        except Exception as exc:  # one failed request is one missing verdict, never a stopped run
            log.warning("judge request failed for %s: %s", row.get("id"), exc)
            return None
        content = response.choices[0].message.content if response.choices else None
        return parse_verdict(content)

    with ThreadPoolExecutor(max_workers=settings.max_concurrency) as pool:
        return list(pool.map(one, rows))


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
