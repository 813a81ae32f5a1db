"""One reasoning length for every stage: a limit a well-formed answer cannot fit gets a warning naming both numbers."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from r1ov import config as cfg
from r1ov.scoring.lengths import fit_warning, preflight, token_stats


def sft_output(tmp_path: Path, p95: int, longest: int) -> Path:
    """A trained checkpoint's summary as SFT writes it (train_summary.json with reasoning_tokens)."""
    out = tmp_path / "sft"
    out.mkdir()
    stats = {"n": 100, "mean": p95 * 0.8, "p95": p95, "max": longest}
    (out / "train_summary.json").write_text(json.dumps({"stage": "sft", "reasoning_tokens": stats}))
    return out


def test_grpo_and_eval_limits_below_the_sft_reasoning_warn_with_both_numbers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = str(sft_output(tmp_path, p95=612, longest=700))
    grpo = cfg.build(
        cfg.GRPOConfig,
        {"model_name_or_path": model, "train_uri": "x", "output_dir": "y", "max_completion_length": 32},
    )
    with caplog.at_level(logging.WARNING):
        warning = preflight("grpo", grpo)
    assert warning and "grpo.max_completion_length is 32 tokens" in warning and "612 tokens" in warning
    assert warning in caplog.text

    bench = [{"name": "synthetic", "uri": "b"}]
    short = cfg.build(cfg.EvalConfig, {"model_name_or_path": model, "benchmarks": bench, "output_dir": "o",
                                       "max_new_tokens": 48})  # fmt: skip
    assert "eval.max_new_tokens is 48 tokens" in (preflight("eval", short) or "")
    roomy = short.model_copy(update={"max_new_tokens": 1024})
    assert preflight("eval", roomy) is None
    # a model without a training summary (a Hub id, the base model) is not checked
    assert preflight("eval", short.model_copy(update={"model_name_or_path": "Qwen/Qwen2.5-VL-7B-Instruct"})) is None


def test_token_stats_and_fit(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    stats = token_stats(tokenizer, ["<think>\nshort\n</think>\n<answer>1</answer>", "word " * 50])
    assert stats["n"] == 2 and stats["max"] >= 50 and stats["p95"] == stats["max"]
    assert fit_warning(stats, stats["max"], "grpo.max_completion_length") is None
    assert "grpo.max_completion_length is 8 tokens" in (fit_warning(stats, 8, "grpo.max_completion_length") or "")
