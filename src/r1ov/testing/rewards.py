"""A reward for tests of GRPO on a random tiny model, importable by every training process.

A random model never earns ``accuracy`` or ``format`` (every sample scores 0: no advantage, no
gradient). This one varies with the completion, so a group has a spread and the weights move. It
is named as a user's own reward is (``r1ov.testing.rewards:length``), which also runs the
``module:function`` path in workers that torchrun starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from r1ov.train.rewards import completion_text


def length(completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
    """Completion length in characters / 100."""
    return [len(completion_text(c)) / 100 for c in completions]
