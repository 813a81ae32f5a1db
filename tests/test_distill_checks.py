"""Distill checks every reply (not cut off, not empty, one think block then a non-empty answer)
and sends an unusable one back once with what is wrong; a second unusable reply sets the row
aside as ``distill_check``."""

from __future__ import annotations

import json
from pathlib import Path

from chat_stand_in import ChatStandIn
from test_distill import formalized

from r1ov.config import DistillConfig, TeacherConfig
from r1ov.data import records
from r1ov.distill.stage import reply_problem, run
from r1ov.teachers import Reply
from r1ov.teachers.protocol import sections, user_text

GOOD = "<think>\nThe figure shows three parts, so the count is 3.\n</think>\n<answer>3</answer>"


def test_reply_problem_names_what_is_wrong() -> None:
    assert reply_problem(Reply(GOOD, "m", "stop")) is None
    assert "cut off at max_tokens" in reply_problem(Reply(GOOD[:40], "m", "length"))
    assert reply_problem(Reply("  ", "m", "stop")) == "the reply was empty"
    assert "no answer" in reply_problem(Reply("<think>counting</think><answer> </answer>", "m", "stop"))
    assert "exactly one <think>" in reply_problem(Reply("The answer is 3.", "m", "stop"))


def test_unusable_replies_are_asked_again_then_set_aside(tmp_path: Path) -> None:
    dataset = formalized(tmp_path, n=6)
    rows = records.read_records(dataset)
    fixable, hopeless = rows[0]["question"], rows[1]["question"]

    def reply(body: dict) -> str:
        asked = sections(user_text(body["messages"]))
        question = asked["question"][0]
        if question == hopeless:
            return ""  # empty every time
        if question == fixable and "parser_error" not in asked:
            return "So the answer is 3."  # no tags, until told
        return GOOD

    with ChatStandIn(reply) as stand_in:
        teacher = TeacherConfig(base_url=stand_in.base_url, model="m", max_retries=0)
        cfg = DistillConfig(
            input_uri=dataset, output_uri=str(tmp_path / "out"), teacher=teacher, min_accepted_fraction=0.0
        )
        summary = run(cfg)
    rejected = {r["id"]: r["reject_reason"] for r in records.read_records(cfg.output_uri, records.REJECTED)}
    assert rejected == {rows[1]["id"]: "distill_check: the reply was empty"}
    accepted = {r["id"]: r for r in records.read_records(cfg.output_uri)}
    assert accepted[rows[0]["id"]]["reasoning"] == GOOD and len(accepted) == 5
    # The second ask carries the first reply and the check's words.
    follow_ups = [r for r in stand_in.requests if "parser_error" in json.dumps(r["messages"])]
    fixed = [r for r in follow_ups if fixable in json.dumps(r["messages"])]
    assert len(fixed) == 1 and "exactly one <think>" in json.dumps(fixed[0]["messages"])
    assert fixed[0]["messages"][-2] == {"role": "assistant", "content": "So the answer is 3."}
    assert summary["teacher"]["corrections"] == 2 and summary["teacher"]["invalid"] == 1
