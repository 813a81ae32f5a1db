"""Paired statistics shared by `r1ov eval compare` and the promotion gate."""

from __future__ import annotations

import numpy as np
import pytest

from r1ov.scoring.paired import compare, mcnemar_exact, paired_bootstrap


def test_mcnemar_exact_matches_the_binomial_tail() -> None:
    # 0 vs 6 discordant items: two-sided p = 2 * 0.5**6
    assert mcnemar_exact(0, 6) == pytest.approx(2 * 0.5**6)
    assert mcnemar_exact(3, 3) == pytest.approx(1.0)
    assert mcnemar_exact(0, 0) == 1.0


def test_identical_models_have_a_zero_interval_and_p_one() -> None:
    verdicts = {f"q{i}": i % 3 == 0 for i in range(60)}
    result = compare(verdicts, verdicts)
    assert result.difference == 0.0
    assert result.ci95 == (0.0, 0.0)
    assert result.p_value == 1.0


def test_a_clearly_better_model_has_an_interval_above_zero() -> None:
    a = {f"q{i}": i % 4 == 0 for i in range(200)}  # 25%
    b = {f"q{i}": i % 4 != 3 for i in range(200)}  # 75%, and right wherever a is
    result = compare(a, b)
    assert result.difference == pytest.approx(0.5)
    assert result.ci95[0] > 0.35 and result.ci95[1] < 0.65
    assert result.only_a_correct == 0 and result.only_b_correct == 100
    assert result.p_value < 1e-20


def test_only_shared_items_are_compared_and_counted() -> None:
    a = {"x": True, "y": False, "only-a": True}
    b = {"x": True, "y": True, "only-b": False}
    result = compare(a, b)
    assert result.n == 2 and result.only_in_a == 1 and result.only_in_b == 1
    with pytest.raises(ValueError, match="share no item"):
        compare({"x": True}, {"z": True})


def test_bootstrap_is_seeded() -> None:
    a = np.array([True, False] * 20)
    b = np.array([True, True] * 20)
    assert paired_bootstrap(a, b, seed=3) == paired_bootstrap(a, b, seed=3)
