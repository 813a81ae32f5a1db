"""The distill stage: role-played chains of thought from a reasoning teacher.

    r1ov distill --set input_uri=data/formalized --set output_uri=data/distilled \
        --set teacher.base_url=https://api.deepseek.com/v1 --set teacher.model=deepseek-reasoner

The teacher reads text only, so each request gives it the record's formal description in
place of the image, plus the question and options, and (``role_play``) asks it to reason
as if it were looking at the image, never mentioning a description. The raw completion is
kept as ``reasoning`` and its answer as ``predicted_answer``; judging quality is the
filter's job, but an empty or cut-off reply is sent back once and then set aside
(``distill_check``). Failed requests are ``teacher_error`` rejections, redone on the next run.
"""

from __future__ import annotations

import logging
from typing import Any

from r1ov.config import DistillConfig
from r1ov.data import records
from r1ov.scoring.reasoning import parse
from r1ov.teachers import protocol
from r1ov.teachers import stage as teacher_stage
from r1ov.teachers.client import InvalidReply, Reply, Request, TeacherClient, describe_error

log = logging.getLogger(__name__)

STAGE = "distill"


def completion_text(reply: Reply) -> str:
    """The completion as one string. R1-style APIs return the chain apart from the content;
    it is put back inside ``<think>`` so every teacher's output has the same shape. When the
    content has a think block of its own, the separate chain opens it: neither is dropped."""
    chain = (reply.reasoning_content or "").strip()
    if not chain:
        return reply.text
    if "<think>" not in reply.text:
        return f"<think>\n{chain}\n</think>\n{reply.text.strip()}"
    return reply.text.replace("<think>", f"<think>\n{chain}\n", 1)


def reply_problem(reply: Reply) -> str | None:
    """Unusable as reasoning: cut off at the token limit (the answer never came), empty, not one
    ``<think>`` block then one ``<answer>``, or an empty answer. Attached to every request, so the
    client sends these words back once and sets the row aside (``distill_check``) when the second
    reply fails too. A wrong answer is not a format problem: judging it is the filter's job."""
    if reply.finish_reason == "length":
        return "the reply was cut off at max_tokens before it ended; finish the reasoning and the answer"
    text = completion_text(reply)
    if not text.strip():
        return "the reply was empty"
    parsed = parse(text)
    if parsed.well_formed:
        return None
    if parsed.think is not None and not (parsed.answer or "").strip():
        return "the reply has no answer: end with the final answer inside <answer> </answer>"
    return (
        "the reply must be exactly one <think> ... </think> block with the reasoning, followed by exactly one "
        "non-empty <answer> ... </answer> block, and nothing else"
    )


def _prompt(cfg: DistillConfig) -> str:
    return protocol.load_prompt(protocol.DISTILL if cfg.role_play else protocol.DISTILL_PLAIN)


def fingerprint(cfg: DistillConfig) -> str:
    """What decides this stage's output besides the input rows (for resuming)."""
    return teacher_stage.fingerprint(STAGE, cfg.teacher, prompt=_prompt(cfg))


def distill_batch(
    rows: list[dict[str, Any]], cfg: DistillConfig, client: TeacherClient
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Distill one batch; returns (accepted, rejected), every input row in exactly one."""
    pending, rejected = [], []
    for original in rows:
        row = dict(original)
        if not (row.get("formalization") or "").strip():
            rejected.append(records.reject(row, "no_formalization: the record has no formal description"))
        else:
            pending.append(row)
    requests = [
        Request(
            protocol.distill_messages(
                row.get("formal_language") or "text",
                row["formalization"],
                row["question"],
                row.get("options"),
                role_play=cfg.role_play,
            ),
            check=reply_problem,
        )
        for row in pending
    ]
    accepted = []
    prompt = _prompt(cfg)
    for row, reply in zip(pending, client.complete_all(requests, desc=STAGE), strict=True):
        if isinstance(reply, InvalidReply):
            rejected.append(records.reject(row, f"distill_check: {reply}"))
            continue
        if isinstance(reply, Exception):
            rejected.append(records.reject(row, describe_error(reply)))
            continue
        row["reasoning"] = completion_text(reply)
        row["predicted_answer"] = parse(row["reasoning"]).answer
        accepted.append(records.stamp(row, STAGE, reply.model, prompt))
    return accepted, rejected


def run(cfg: DistillConfig) -> dict[str, Any]:
    """Distill ``cfg.input_uri`` into ``cfg.output_uri``; returns the manifest as summary."""
    return teacher_stage.run_teacher_stage(
        STAGE,
        cfg.input_uri,
        cfg.output_uri,
        cfg.teacher,
        lambda rows, client: distill_batch(rows, cfg, client),
        shard_size=cfg.shard_size,
        settings_fingerprint=fingerprint(cfg),
        min_accepted_fraction=cfg.min_accepted_fraction,
        max_text_chars=cfg.max_text_chars,
    )
