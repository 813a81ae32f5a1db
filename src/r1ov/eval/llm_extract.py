"""An optional LLM extractor, asked only where every rule found no answer.

Most real responses state their answer in a form the rules read (``extract.RULES``). The
rest answer in prose a rule cannot read without guessing ("Rhode Island has the lowest
value", for "Is Rhode Island the lowest?"): MathVista's official pipeline sends every
response to GPT with a few-shot prompt for this step (lupantech/MathVista
``evaluation/extract_answer.py`` ``extract_answer`` and ``evaluation/prompts/ext_ans.py``,
commit 53d525874bdde205128e6b160b7357a88277d479: the query with its answer-type hint, the
choices, the response; the model writes the bare answer). Here the LLM is a fallback only:

* it is asked only for items whose rules found nothing (rule ``none``); a rule-found answer,
  a hedge, an empty ``<answer>`` tag and a failed generation are never sent;
* it only *extracts*: its answer is scored by the same ``answers_match`` as every other,
  so it cannot declare an answer correct, and a hedging reply is no answer;
* a failed request is no answer for that item, counted, never a stopped run.

Items it answers carry the rule ``llm`` in their verdict. The GRPO rewards never use it:
they stay pure rules (``r1ov.train.rewards``), and the layer rule keeps ``r1ov.train`` from
importing ``r1ov.eval`` at all. The endpoint is any OpenAI-compatible one (our own served
model, a judge deployment in the cluster); its model, endpoint and :data:`PROMPT_SHA256` go
into the eval manifest, so two scores with different extractors are not compared.
"""

from __future__ import annotations

import re
from typing import Any

from r1ov.eval.chat import EndpointSettings, ask_all
from r1ov.eval.extract import is_hedge, last_boxed
from r1ov.eval.manifest import sha256
from r1ov.scoring.answers import answer_spec, answers_match

RULE = "llm"

PROMPT = """You read a model's response to a question and copy out the final answer it commits to.
Do not solve the question yourself and do not judge whether the answer is right.
{kind}
If the response commits to no final answer, or leaves several different answers open, reply NONE.
Reply on one line with the answer alone: no explanation, no quotes.

[Question]: {question}
[Options]: {options}
[Response]: {response}
[Final answer]:"""

_MULTIPLE_CHOICE = "The question is multiple choice: reply with the letter of the option the response chooses."
_FREE_FORM = (
    "The answer is free-form: reply with the value as the response states it (a number, an expression, "
    "a word or a list), with its unit if the response gives one."
)
PROMPT_SHA256 = sha256(PROMPT + _MULTIPLE_CHOICE + _FREE_FORM)
_TAIL = 3000  # characters of the response sent: a final answer sits at its end
_MAX_TOKENS = 64  # an answer is short; a longer reply is cut, and read as what it starts with
_LABEL = re.compile(r"^\s*(?:\[?final\s+answer\]?|extracted\s+answer|answer)\s*[:：]\s*", re.IGNORECASE)
_NO_ANSWER = re.compile(r"^(?:none|n/?a|no answer|unknown)\W*$", re.IGNORECASE)


def prompt(row: dict[str, Any]) -> str:
    options = row.get("options") or []
    lettered = "; ".join(f"({chr(65 + i)}) {o}" for i, o in enumerate(options))
    return PROMPT.format(
        kind=_MULTIPLE_CHOICE if options else _FREE_FORM,
        question=row.get("question") or "(see the image)",
        options=lettered or "none (free-form answer)",
        response=(row.get("completion") or "")[-_TAIL:],
    )


def parse_reply(text: str | None, options: list[str] | None) -> str | None:
    """The answer in a reply: its first line, a label or box unwrapped; NONE, empty or a hedge: None."""
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    if not lines:
        return None
    answer = _LABEL.sub("", lines[0]).strip().strip("`\"'*").strip()
    answer = last_boxed(answer) or answer
    if not answer or _NO_ANSWER.match(answer) or is_hedge(answer, options):
        return None
    return answer


def needs_llm(row: dict[str, Any]) -> bool:
    """Only items the rules found nothing in: not a hedge, not an empty tag, not a failed generation."""
    return not row.get("error") and row.get("rule") == "none" and bool((row.get("completion") or "").strip())


def fill(rows: list[dict[str, Any]], settings: EndpointSettings) -> dict[str, int]:
    """Ask the LLM for the answer of every row the rules left without one, and score what it finds.

    Rows it answers get ``extracted``, ``rule = "llm"`` and ``correct`` from ``answers_match``;
    the others keep the rules' verdict. Returns the counts: ``asked`` (requests sent),
    ``answered`` (items now read by the LLM), ``no_answer`` (it found none, or a hedge) and
    ``failed`` (requests that got no reply).
    """
    asked = [row for row in rows if needs_llm(row)]
    replies = ask_all([prompt(row) for row in asked], settings, max_tokens=_MAX_TOKENS, what="extractor")
    counts = {"asked": len(asked), "answered": 0, "no_answer": 0, "failed": 0}
    for row, reply in zip(asked, replies, strict=True):
        if reply is None:
            counts["failed"] += 1
            continue
        answer = parse_reply(reply, row.get("options"))
        if answer is None:
            counts["no_answer"] += 1
            continue
        counts["answered"] += 1
        matched = answers_match(answer, row.get("answer"), row.get("options"), **answer_spec(row))
        row.update(extracted=answer, rule=RULE, correct=bool(matched))
    return counts


def manifest_entry(settings: EndpointSettings) -> dict[str, str]:
    """What the eval manifest records of the extractor: a different one is a different score."""
    return {"model": settings.model, "endpoint": settings.base_url, "prompt_sha256": PROMPT_SHA256}
