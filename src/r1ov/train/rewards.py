"""GRPO reward functions, chosen by name: ``accuracy``, ``format``, or a user's ``module:function``.

Each has TRL's reward shape ``(completions, **kwargs) -> list[float | None]``: ``completions``
holds one ``[{"role": "assistant", "content": ...}]`` list (or a plain string) per sample and
the dataset's columns arrive as keyword lists (``answer``, ``options``, ``precision``,
``unit``: :func:`columns` builds them from a record). ``None`` means "no
reward for this sample" (no ground truth), which TRL leaves out of the sum.

Both are all-or-nothing and closed to the hacks seen in peers' rewards: an empty
``<answer></answer>`` (or an empty ``<think></think>``) never scores, a hedge of any shape
("A or B", "3, 4", two boxes, ``3 \\lor 4``, a cases block, one value a line) earns no
accuracy, several answer blocks earn no accuracy (no hedging across blocks), nor does text
after the answer block or an answer nested in the thinking; several think or answer blocks
earn no format reward, and there is no partial credit (no fuzzy matching).

A user's own reward is named ``package.module:function`` (as EasyR1 users write them): the module
must be importable in the training image (installed, or on ``PYTHONPATH``) and the function have
the same shape. It is imported when the config is checked, before any pod starts.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

from r1ov.config import ConfigError
from r1ov.scoring import answers, reasoning

Reward = Callable[..., list[float | None]]


def completion_text(completion: Any) -> str:
    """The text of one completion: a string, or the assistant message(s) TRL passes."""
    if isinstance(completion, str):
        return completion
    parts: list[str] = []
    for message in completion:
        content = message.get("content") if isinstance(message, dict) else message
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):  # structured content blocks
            parts.extend(block.get("text") or "" for block in content if isinstance(block, dict))
    return "".join(parts)


def single_answer(text: str) -> str | None:
    """The non-empty answer of a completion with exactly one answer block, else None.

    The block must be the completion's last word: text after it ("<answer>4</answer> (or 3)")
    qualifies the answer, and an answer written inside the thinking is no answer block.
    """
    found = reasoning.blocks(text)
    if len(found.answers) != 1 or not found.closed or found.after_answer is None or found.after_answer.strip():
        return None
    return found.answers[0].strip() or None


def columns(record: dict[str, Any]) -> dict[str, Any]:
    """The dataset columns the accuracy reward reads, from one record: the gold, its options,
    and the benchmark's ``precision`` and ``unit`` (from the record's metadata) when it has them."""
    return {"answer": record["answer"], "options": record.get("options") or [], **answers.answer_spec(record)}


def _column(kwargs: dict[str, Any], name: str, n: int) -> list[Any]:
    values = kwargs.get(name)
    return [None] * n if values is None else list(values)


def accuracy(completions: Sequence[Any], answer: Sequence[str | None], **kwargs: Any) -> list[float | None]:
    """1.0 when the one answer block matches the ground truth (answers.answers_match), else 0.0.

    Optional dataset columns refine the match: ``options`` (multiple choice), ``precision``
    and ``unit`` (MathVista-style numeric answers).
    """
    n = len(completions)
    options, precision, unit = (_column(kwargs, name, n) for name in ("options", "precision", "unit"))
    scores: list[float | None] = []
    for i, (completion, gold) in enumerate(zip(completions, answer, strict=True)):
        if gold is None or not str(gold).strip():
            scores.append(None)  # nothing to compare with: no signal rather than a false zero
            continue
        predicted = single_answer(completion_text(completion))
        choices = list(options[i]) if options[i] is not None else []
        match = answers.answers_match(predicted, str(gold), choices, precision=precision[i], unit=unit[i])
        scores.append(1.0 if match else 0.0)
    return scores


def format_(completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
    """1.0 for exactly one non-empty think block then one non-empty answer block and nothing else."""
    return [1.0 if reasoning.parse(completion_text(c)).well_formed else 0.0 for c in completions]


format_.__name__ = "format"  # TRL logs rewards under the function's name

REWARDS: dict[str, Reward] = {"accuracy": accuracy, "format": format_}


def user_reward(name: str) -> Reward:
    """The function a ``module:function`` reward name points at, or a ConfigError that says what is wrong."""
    module_name, _, function_name = name.partition(":")
    if not module_name or not function_name:
        raise ConfigError(f"grpo.rewards: {name!r} is not 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"grpo.rewards: cannot import module {module_name!r} for reward {name!r} ({exc}); "
            "install it in the training image or put it on PYTHONPATH"
        ) from exc
    function = getattr(module, function_name, None)
    if function is None:
        raise ConfigError(f"grpo.rewards: module {module_name!r} has no {function_name!r} (reward {name!r})")
    if not callable(function):
        raise ConfigError(f"grpo.rewards: {name!r} is a {type(function).__name__}, not a function")
    return function


def get_rewards(names: Sequence[str]) -> list[Reward]:
    """The reward functions for ``names``, in order: built-in names or ``module:function``.

    Unknown names, modules that do not import and attributes that are not functions raise ConfigError.
    """
    if not names:
        raise ConfigError(f"grpo.rewards: at least one reward is required; choose from {sorted(REWARDS)}")
    unknown = [name for name in names if name not in REWARDS and ":" not in name]
    if unknown:
        raise ConfigError(
            f"grpo.rewards: unknown reward(s) {unknown}; choose from {sorted(REWARDS)} or name your own "
            "as 'package.module:function'"
        )
    return [REWARDS[name] if name in REWARDS else user_reward(name) for name in names]
