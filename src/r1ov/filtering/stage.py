"""The filter stage: keep reasoning that is well formed, correct and consistent with the image.

    r1ov filter --set input_uri=data/distilled --set output_uri=data/filtered \
        --set judge.base_url=https://api.openai.com/v1 --set judge.model=gpt-4o

Rule checks (``CHECKS``, name -> ``check(record, cfg) -> (passed, detail)``) run on every
record, in order: format, answer agreement, length, repetition, role-play. With a judge
configured, an LLM then decides whether the reasoning is consistent with the formal
description (rows that already failed a rule are only judged with ``judge_failed``), and
settles the role-play of a chain whose wording the rule cannot (``filtering.role_play``).
Every record carries all verdicts; a rejected one's reason is its first failed check.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from typing import Any

from r1ov.config import FilterConfig
from r1ov.data import records
from r1ov.data.outcome import check_floor
from r1ov.filtering import role_play
from r1ov.scoring.answers import answers_match
from r1ov.scoring.reasoning import parse
from r1ov.teachers import protocol
from r1ov.teachers.client import InvalidReply, Request, TeacherClient, describe_error
from r1ov.teachers.stage import default_cache_uri, require_reachable

log = logging.getLogger(__name__)

STAGE = "filter"
JUDGE = "judge"
Row = dict[str, Any]
# passed is None for a check that did not run (a judge skipped after a failed rule).
Verdict = tuple[bool | None, str]


# --------------------------------------------------------------------------- rule checks


def check_format(row: Row, cfg: FilterConfig) -> Verdict:
    parsed = parse(row.get("reasoning") or "")
    if parsed.well_formed:
        return True, "one <think> block then one non-empty <answer>"
    return False, "not exactly one <think>...</think> followed by one non-empty <answer>...</answer>"


def check_answer_agreement(row: Row, cfg: FilterConfig) -> Verdict:
    if not cfg.require_answer_match:
        return True, "skipped: require_answer_match is off"
    if not (row.get("answer") or "").strip():
        return True, "skipped: no ground-truth answer"
    predicted = row.get("predicted_answer") or parse(row.get("reasoning") or "").answer
    if answers_match(predicted, row["answer"], row.get("options")):
        return True, f"{predicted!r} matches {row['answer']!r}"
    return False, f"predicted {predicted!r}, ground truth {row['answer']!r}"


def check_length(row: Row, cfg: FilterConfig) -> Verdict:
    think = parse(row.get("reasoning") or "").think
    if think is None:
        return False, "no <think> block"
    if len(think) < cfg.min_think_chars:
        return False, f"{len(think)} think chars < {cfg.min_think_chars}"
    if len(think) > cfg.max_think_chars:
        return False, f"{len(think)} think chars > {cfg.max_think_chars}"
    return True, f"{len(think)} think chars"


def repeated_ngram_ratio(text: str, n: int = 8) -> float:
    """Share of word n-grams that repeat an earlier one (0 for text shorter than n words)."""
    words = text.lower().split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def check_repetition(row: Row, cfg: FilterConfig) -> Verdict:
    think = parse(row.get("reasoning") or "").think or row.get("reasoning") or ""
    ratio = repeated_ngram_ratio(think, cfg.repetition_ngram)
    detail = f"{ratio:.2f} of {cfg.repetition_ngram}-grams repeated (max {cfg.max_repeated_ngram_ratio})"
    return ratio <= cfg.max_repeated_ngram_ratio, detail


def check_mentions_description(row: Row, cfg: FilterConfig) -> Verdict:
    """The role-play rule (``filtering.role_play``): a break fails; a phrase the image may show is
    kept here and, with a judge, decided by the judge's ``role_play`` answer (:func:`filter_batch`)."""
    found = role_play.find(row.get("reasoning") or "", row.get("formal_language"))
    if found is None:
        return True, "speaks of the image only"
    if found.kind == "break":
        return False, f"role-play broken: mentions {found.phrase!r}"
    return True, f"mentions {found.phrase!r}, which the image may show; no judge asked"


ROLE_PLAY = "mentions_description"
CHECKS: dict[str, Callable[[Row, FilterConfig], Verdict]] = {
    "format": check_format,
    "answer_agreement": check_answer_agreement,
    "length": check_length,
    "repetition": check_repetition,
    ROLE_PLAY: check_mentions_description,
}


# --------------------------------------------------------------------------- LLM judge

_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def _reply_object(text: str) -> dict[str, Any]:
    """The JSON object found anywhere in a judge's reply ({} when there is none)."""
    match = _JSON_OBJECT.search(text or "")
    try:
        data = json.loads(match.group(0)) if match else None
    except json.JSONDecodeError:
        data = None
    return data if isinstance(data, dict) else {}


def parse_judgement(text: str) -> Verdict:
    """``{"verdict": "pass"|"fail", "reason": ...}`` (found anywhere in the reply) -> verdict."""
    data = _reply_object(text)
    verdict = str(data.get("verdict", "")).strip().lower()
    if verdict not in ("pass", "fail"):
        return False, f"unparseable judge reply: {(text or '')[:80]!r}"
    return verdict == "pass", str(data.get("reason", "")).strip() or verdict


def parse_role_play(text: str) -> bool | None:
    """The judge's ``"role_play": "kept"|"broken"`` answer: True when kept, None when not given."""
    answer = str(_reply_object(text).get("role_play", "")).strip().lower()
    return {"kept": True, "broken": False}.get(answer)


_REPLY_SHAPE = '{"verdict": "pass" or "fail", "role_play": "kept" or "broken", "reason": "..."}'


def _judgement_problem(reply: Any) -> str | None:
    verdict = parse_judgement(reply.text)
    if verdict[0] is False and verdict[1].startswith("unparseable judge reply"):
        return f"reply with one JSON object {_REPLY_SHAPE}"
    return None


def _role_play_problem(reply: Any) -> str | None:
    """For a chain with a phrase the judge must weigh, the reply must also answer ``role_play``."""
    problem = _judgement_problem(reply)
    if problem is None and parse_role_play(reply.text) is None:
        return f'answer "role_play" as well: reply with one JSON object {_REPLY_SHAPE}'
    return problem


def judge_rows(
    rows: list[Row], client: TeacherClient, ask_role_play: list[bool] | None = None
) -> list[tuple[Verdict, bool | None, Exception | None]]:
    """One judge request per row; each result is (verdict, the role-play answer (None: not given),
    the request's exception if it failed). Where ``ask_role_play`` is set, a reply without a
    role-play answer gets the corrective ask."""
    ask = ask_role_play or [False] * len(rows)
    requests = [
        Request(
            protocol.judge_messages(
                row.get("formal_language") or "text",
                row.get("formalization") or "",
                row["question"],
                row.get("options"),
                row.get("reasoning") or "",
            ),
            check=_role_play_problem if asked else _judgement_problem,
        )
        for row, asked in zip(rows, ask, strict=True)
    ]
    results: list[tuple[Verdict, bool | None, Exception | None]] = []
    for reply in client.complete_all(requests, desc=JUDGE):
        if isinstance(reply, InvalidReply):  # asked twice, never a verdict: a verdict of its own
            results.append(((False, describe_error(reply)), None, None))
        elif isinstance(reply, Exception):
            results.append(((False, describe_error(reply)), None, reply))
        else:
            results.append((parse_judgement(reply.text), parse_role_play(reply.text), None))
    return results


# --------------------------------------------------------------------------- the stage


def filter_batch(rows: list[Row], cfg: FilterConfig, judge: TeacherClient | None) -> tuple[list[Row], list[Row]]:
    """Check one batch; returns (accepted, rejected), every input row in exactly one."""
    verdicts: list[dict[str, Verdict]] = []
    for row in rows:
        verdicts.append({name: check(row, cfg) for name, check in CHECKS.items()})
    errors: dict[int, Exception] = {}
    if judge is not None:
        chosen = [i for i, v in enumerate(verdicts) if cfg.judge_failed or all(p for p, _ in v.values())]
        questions = [role_play.find(rows[i].get("reasoning") or "", rows[i].get("formal_language")) for i in chosen]
        ask = [found is not None and found.kind == "question" for found in questions]
        judged = judge_rows([rows[i] for i in chosen], judge, ask)
        for i, found, asked, (verdict, kept, error) in zip(chosen, questions, ask, judged, strict=True):
            verdicts[i][JUDGE] = verdict
            if error is not None:
                errors[i] = error
            elif asked and found is not None:  # the phrase the rule could not settle: the judge's answer
                verdicts[i][ROLE_PLAY] = (
                    (True, f"mentions {found.phrase!r}; the judge: role-play kept")
                    if kept
                    else (False, f"role-play broken: mentions {found.phrase!r} (judged: {verdict[1]})")
                )
        for v in verdicts:
            v.setdefault(JUDGE, (None, "skipped: an earlier check failed"))
    prompt = protocol.load_prompt(protocol.JUDGE) if judge else ""
    accepted, rejected = [], []
    for i, (original, found) in enumerate(zip(rows, verdicts, strict=True)):
        row = dict(original)
        row["verdicts"] = [
            {"name": name, "passed": passed, "detail": detail} for name, (passed, detail) in found.items()
        ]
        records.stamp(row, STAGE, judge.cfg.model if judge else "", prompt)
        failed = next(((name, detail) for name, (passed, detail) in found.items() if passed is False), None)
        if failed is None:
            accepted.append(row)
        elif failed[0] == JUDGE and i in errors:
            # The judge could not be asked: a transient failure, not a verdict on the reasoning.
            rejected.append(records.reject(row, describe_error(errors[i])))
        else:
            rejected.append(records.reject(row, f"{failed[0]}: {failed[1]}"))
    return accepted, rejected


def fingerprint(cfg: FilterConfig) -> str:
    """What decides this stage's output besides the input rows (for resuming)."""
    settings = cfg.model_dump(exclude={"input_uri", "output_uri", "shard_size", "min_accepted_fraction"})
    if cfg.judge is not None:
        settings["judge"] = {
            "model": cfg.judge.model,
            "temperature": cfg.judge.temperature,
            "prompt": protocol.load_prompt(protocol.JUDGE),
        }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode("utf-8")).hexdigest()


def _summary(manifest: dict[str, Any], judge: TeacherClient | None) -> dict[str, Any]:
    total = manifest["records"] + manifest["rejected"]
    return {
        "stage": STAGE,
        "checks": [*CHECKS, *([JUDGE] if judge else [])],
        "acceptance_rate": round(manifest["records"] / total, 4) if total else 0.0,
        **({"judge": judge.summary()} if judge else {}),
    }


def run(cfg: FilterConfig) -> dict[str, Any]:
    """Filter ``cfg.input_uri`` into ``cfg.output_uri``; returns the manifest as summary."""
    if cfg.judge is not None:
        require_reachable(JUDGE, cfg.judge)
    judge = TeacherClient(cfg.judge, cache_uri=default_cache_uri(cfg.output_uri, cfg.judge)) if cfg.judge else None
    manifest = records.map_dataset(
        cfg.input_uri,
        cfg.output_uri,
        lambda batch: filter_batch(batch, cfg, judge),
        shard_size=cfg.shard_size,
        fingerprint=fingerprint(cfg),
        redo_reasons=("teacher_error",),
        extra=lambda m: _summary(m, judge),
        max_text_chars=cfg.max_text_chars,
    )
    log.info(
        "filter: %d accepted (%.0f%%), rejected %s -> %s",
        manifest["records"],
        100 * manifest["acceptance_rate"],
        manifest["reject_reasons"],
        cfg.output_uri,
    )
    check_floor(STAGE, cfg.output_uri, manifest, cfg.min_accepted_fraction)
    return manifest
