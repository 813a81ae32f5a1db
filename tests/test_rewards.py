"""GRPO rewards: TRL's call shape, all-or-nothing scores, and the reward hacks seen in peers."""

from __future__ import annotations

from pathlib import Path

import pytest

from r1ov.config import ConfigError
from r1ov.train import rewards


def _msg(text: str) -> list[dict[str, str]]:
    """A completion as TRL passes it for conversational prompts."""
    return [{"role": "assistant", "content": text}]


GOOD = "<think>\nTwo red cubes and one sphere: 2 + 1 = 3.\n</think>\n<answer>3</answer>"


def test_accuracy_scores_the_answer_against_the_answer_column() -> None:
    completions = [_msg(GOOD), _msg("<think>x</think><answer>4</answer>"), GOOD]
    assert rewards.accuracy(completions, answer=["3", "3", "3"]) == [1.0, 0.0, 1.0]


def test_accuracy_uses_the_shared_answer_equivalence() -> None:
    options = [["red", "blue", "green"], ["red", "blue", "green"], []]
    completions = [
        _msg("<think>t</think><answer>(B)</answer>"),  # letter form of the gold letter
        _msg("<think>t</think><answer>blue</answer>"),  # the option's text names the same letter
        _msg("<think>t</think><answer>3.0</answer>"),  # numerically equal
    ]
    assert rewards.accuracy(completions, answer=["B", "B", "3"], options=options) == [1.0, 1.0, 1.0]


def test_accuracy_has_no_partial_credit() -> None:
    near_misses = ["<answer>3.5</answer>", "<answer>redd</answer>", "<answer>3 or 4</answer>"]
    completions = [_msg(f"<think>t</think>{a}") for a in near_misses]
    assert rewards.accuracy(completions, answer=["3", "red", "3"]) == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    "hack",
    [
        "<think>the answer is 3</think><answer></answer>",  # empty answer
        "<think>t</think><answer>  </answer>",  # blank answer
        "<think>t</think><answer>1</answer><answer>2</answer><answer>3</answer>",  # hedging across blocks
        "<think>t</think><answer>3</answer><think>u</think><answer>3</answer>",  # repeated blocks
        "the answer is 3",  # no answer block at all
        "<answer>3",  # unclosed
    ],
)
def test_accuracy_resists_reward_hacks(hack: str) -> None:
    assert rewards.accuracy([_msg(hack)], answer=["3"]) == [0.0]


def test_accuracy_gives_no_signal_without_ground_truth() -> None:
    assert rewards.accuracy([_msg(GOOD), _msg(GOOD)], answer=[None, ""]) == [None, None]


def test_format_rewards_exactly_one_think_then_one_answer() -> None:
    assert rewards.format_([_msg(GOOD), GOOD, _msg("  " + GOOD + "\n")]) == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    "hack",
    [
        "<think>t</think><answer></answer>",  # empty answer
        "<think>a</think><think>b</think><answer>3</answer>",  # several think blocks
        "<think>t</think><answer>3</answer><answer>4</answer>",  # several answer blocks
        "<think>t</think><answer>3</answer><think>u</think><answer>3</answer>",  # repeated pairs
        "<answer>3</answer>",  # no thinking
        "<answer>3</answer><think>t</think>",  # wrong order
        "Sure! <think>t</think><answer>3</answer>",  # text around the blocks
        "<think>t</think><answer>3</answer> Hope this helps.",
        "<think>t<answer>3</answer></think>",  # answer nested in the thinking
    ],
)
def test_format_resists_reward_hacks(hack: str) -> None:
    assert rewards.format_([_msg(hack)]) == [0.0]


def test_structured_content_blocks_are_read_too() -> None:
    completion = [{"role": "assistant", "content": [{"type": "text", "text": GOOD}]}]
    assert rewards.accuracy([completion], answer=["3"]) == [1.0]
    assert rewards.format_([completion]) == [1.0]


def test_registry_picks_rewards_by_name_in_order() -> None:
    assert rewards.get_rewards(["format", "accuracy"]) == [rewards.format_, rewards.accuracy]
    # TRL logs each reward under its function's name
    assert [f.__name__ for f in rewards.get_rewards(["accuracy", "format"])] == ["accuracy", "format"]


def test_unknown_reward_names_are_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown reward\(s\) \['lenght'\]; choose from \['accuracy', 'format'\]"):
        rewards.get_rewards(["accuracy", "lenght"])
    with pytest.raises(ConfigError, match="at least one reward"):
        rewards.get_rewards([])


def test_a_users_reward_is_named_module_colon_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "rewards.py").write_text(
        "def length_penalty(completions, **kwargs):\n    return [-len(str(c)) / 1000 for c in completions]\n"
        "THRESHOLD = 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    accuracy, penalty = rewards.get_rewards(["accuracy", "mypkg.rewards:length_penalty"])

    assert accuracy is rewards.accuracy
    assert penalty(["abcd"]) == [-0.004] and penalty.__name__ == "length_penalty"  # TRL logs it by this name


@pytest.mark.parametrize(
    ("name", "error"),
    [
        (
            "nopkg.rewards:length_penalty",
            r"cannot import module 'nopkg.rewards' for reward 'nopkg.rewards:length_penalty'",
        ),
        ("mypkg.rewards:missing", r"module 'mypkg.rewards' has no 'missing'"),
        ("mypkg.rewards:THRESHOLD", r"'mypkg.rewards:THRESHOLD' is a int, not a function"),
        ("mypkg.rewards:", r"not 'package.module:function'"),
    ],
)
def test_a_users_reward_that_cannot_be_used_is_named_in_the_error(
    name: str, error: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "rewards.py").write_text("THRESHOLD = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=error):
        rewards.get_rewards(["accuracy", name])


# Every case from the review that paid a wrong answer: punctuation, sign, tolerance, hedges.
@pytest.mark.parametrize(
    ("answer", "gold", "options"),
    [
        ("-3", "3", None),
        (".5", "5", None),
        ("3!", "3", None),
        ("-1/2", "1/2", None),
        ("100000001", "100000000", None),
        ("1.23", "1.2", None),  # no precision given: a tight tolerance
        ("A or B", "A", ["3", "4", "5"]),
        ("A B C", "A", ["3", "4", "5"]),
        ("A, B", "B", ["3", "4", "5"]),
        ("3, 4", "3", None),
        ("3 or 4", "4", None),
        ("(A) 4", "B", ["3", "4", "5"]),  # a letter with another option's text
    ],
)
def test_accuracy_refuses_wrong_answers_seen_in_review(answer: str, gold: str, options: list[str] | None) -> None:
    completion = _msg(f"<think>t</think><answer>{answer}</answer>")
    kwargs = {"options": [options]} if options else {}
    assert rewards.accuracy([completion], answer=[gold], **kwargs) == [0.0]


@pytest.mark.parametrize(
    ("answer", "gold", "columns"),
    [
        ("(B) 8/11", "8/11", {"options": [["3/11", "8/11", "6/11", "3/5"]]}),
        ("The answer is (B) 8/11.", "8/11", {"options": [["3/11", "8/11", "6/11", "3/5"]]}),
        ("a logarithmic function", "B", {"options": [["an exponential function", "a logarithmic function"]]}),
        ("R, D, N", "A", {"options": [["R, D, N", "D, N, R"]]}),
        ("\\frac{\\sqrt{3}}{2}", "\\sqrt{3}/2", {}),
        ("\\dfrac{1}{2}", "\\frac{1}{2}", {}),
        ("1.23", "1.2", {"precision": [1]}),
        ("12 cm", "12", {"unit": ["cm"]}),
    ],
)
def test_accuracy_pays_right_answers_in_any_form(answer: str, gold: str, columns: dict) -> None:
    completion = _msg(f"<think>t</think><answer>{answer}</answer>")
    assert rewards.accuracy([completion], answer=[gold], **columns) == [1.0]


def test_empty_think_earns_no_format_reward() -> None:
    assert rewards.format_(["<think></think><answer>3</answer>", "<think> \n </think><answer>3</answer>"]) == [0.0, 0.0]
