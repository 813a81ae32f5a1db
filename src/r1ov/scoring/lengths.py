"""Does a well-formed answer fit? Reasoning length in tokens against each stage's limit.

The reasoning the SFT data teaches is what the model then writes: if GRPO's completion limit
or eval's generation limit is shorter, every answer is cut before ``</answer>``, GRPO earns no
reward and eval scores nothing. SFT records the token lengths of its reasoning in its summary
(``reasoning_tokens``); GRPO carries them forward; GRPO and eval compare them with their own
limit before they start and warn, naming both numbers.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from typing import Any

from r1ov.data import storage

log = logging.getLogger(__name__)

SUMMARY_FILE = "train_summary.json"  # r1ov.train.common.SUMMARY_FILE, read here without importing torch


def token_stats(tokenizer: Any, texts: Iterable[str]) -> dict[str, float]:
    """``{"n", "mean", "p95", "max"}`` of the texts' lengths in ``tokenizer``'s tokens."""
    lengths = sorted(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts)
    if not lengths:
        return {"n": 0, "mean": 0.0, "p95": 0, "max": 0}
    p95 = lengths[min(len(lengths) - 1, math.ceil(0.95 * len(lengths)) - 1)]
    return {"n": len(lengths), "mean": round(sum(lengths) / len(lengths), 1), "p95": p95, "max": lengths[-1]}


def trained_reasoning_tokens(model_dir: str) -> dict[str, float] | None:
    """The ``reasoning_tokens`` a checkpoint's training summary recorded, if any."""
    uri = storage.join(model_dir, SUMMARY_FILE)
    try:
        if not storage.exists(uri):
            return None
        stats = json.loads(storage.read_text(uri)).get("reasoning_tokens")
    except (OSError, ValueError):
        return None
    return stats if isinstance(stats, dict) and stats.get("n") else None


def fit_warning(stats: dict[str, float] | None, limit: int, limit_name: str) -> str | None:
    """A sentence naming both numbers when the trained reasoning is longer than ``limit`` tokens."""
    if not stats or stats.get("p95", 0) <= limit:
        return None
    return (
        f"{limit_name} is {limit} tokens but the SFT reasoning runs to {int(stats['p95'])} tokens "
        f"(95th percentile; max {int(stats['max'])}): well-formed answers cannot fit. "
        f"Raise {limit_name} or train on shorter chains."
    )


def preflight(stage: str, config: Any) -> str | None:
    """Warn (and return the warning) when ``stage``'s limit is below the model's trained reasoning."""
    if stage == "grpo":
        limit, name = config.max_completion_length, "grpo.max_completion_length"
    elif stage == "eval":
        limit, name = config.max_new_tokens, "eval.max_new_tokens"
    else:
        return None
    warning = fit_warning(trained_reasoning_tokens(config.model_name_or_path), limit, name)
    if warning:
        log.warning("%s", warning)
    return warning
