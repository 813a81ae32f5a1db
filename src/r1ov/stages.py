"""The stage table: every stage's name, config class and entry point, in one place.

The ``r1ov`` command, the training workers (one process per rank) and the KFP tasks all read
it, so a stage is added once. Entry points are ``"module:function"`` strings imported on first
use, which keeps ``r1ov --help`` and config errors fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from r1ov import config as cfg

TRAINING_STAGES = ("sft", "grpo")
# stage -> (config class, "module:function"); imported lazily so `r1ov --help` stays fast.
STAGES: dict[str, tuple[type, str]] = {
    "synth": (cfg.SynthConfig, "r1ov.synthetic:run"),
    "formalize": (cfg.FormalizeConfig, "r1ov.formalize:run"),
    "distill": (cfg.DistillConfig, "r1ov.distill.stage:run"),
    "filter": (cfg.FilterConfig, "r1ov.filtering.stage:run"),
    "sft": (cfg.SFTConfig, "r1ov.train.sft:run"),
    "grpo": (cfg.GRPOConfig, "r1ov.train.grpo:run"),
    "eval": (cfg.EvalConfig, "r1ov.eval:run"),
    "register": (cfg.RegisterConfig, "r1ov.registry.models:register"),
    "promote": (cfg.PromoteConfig, "r1ov.registry.promotion:promote"),
}


def resolve(target: str) -> Callable[..., Any]:
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


def run_stage(stage: str, config_path: str | None, overrides: list[str]) -> dict[str, Any]:
    """Load and validate the stage's config, then run it; used by the CLI and components."""
    config_class, target = STAGES[stage]
    stage_config = cfg.load(config_class, config_path, overrides, name=stage)
    from r1ov.data import inputs
    from r1ov.scoring.lengths import preflight

    inputs.check(stage, stage_config)
    preflight(stage, stage_config)
    summary = resolve(target)(stage_config)
    inputs.check_output(stage, stage_config, summary)
    return summary
