"""Mathematical figures as figure facts plus a solving strategy."""

from __future__ import annotations

import json
from typing import Any

from r1ov.formalize import checks
from r1ov.formalize.base import Formalizer


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def strategy_reference(truth: dict[str, Any]) -> str:
    """``{"figure", "facts": {name: value}, "strategy"}`` -> Figure / Facts / Strategy sections."""
    facts = [f"- {name} = {_value(value)}" for name, value in truth.get("facts", {}).items()]
    return "\n".join(
        [f"Figure: {truth.get('figure', 'figure')}", "Facts:", *facts, f"Strategy: {truth.get('strategy', '')}"]
    )


FORMALIZERS = (Formalizer("math", "strategy", "formalize_math", checks.strategy, strategy_reference),)
