"""GRPO's rollouts as an MLflow table every N steps (``grpo.log_completions_steps``).

TRL keeps the latest generation batch, gathered from every process, in ``GRPOTrainer._logs``
(prompts, completions, each reward function's scores, advantages; filled on every step by
``_generate_and_score_completions``) and hands it to wandb and trackio only, from ``GRPOTrainer.log``
(trl/trainer/grpo_trainer.py, tag v1.16.0). This callback reads the same batch at the trainer's
logging steps and logs it with ``mlflow.log_table`` to the stage's run, one JSON artifact per step
(``completions/step_000050.json``), which MLflow's UI shows as a table and ``mlflow.load_table`` reads
back across steps. Only the main process logs; images are left out (the prompt's text is kept).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from transformers import TrainerCallback

from r1ov.train import rewards

logger = logging.getLogger(__name__)

ARTIFACT_DIR = "completions"


def prompt_text(prompt: Any) -> str:
    """The prompt's user text (the question and options), images and the system instruction left out."""
    if isinstance(prompt, str):
        return prompt
    texts = [
        block.get("text") or ""
        for message in prompt
        if isinstance(message, dict) and message.get("role") == "user"
        for block in (message.get("content") if isinstance(message.get("content"), list) else [])
        if isinstance(block, dict) and block.get("type") == "text"
    ]
    return "\n".join(texts)


def table(logs: dict[str, Any], step: int) -> dict[str, list[Any]]:
    """The columns of one step's table from TRL's ``_logs``."""
    prompts, completions = list(logs["prompt"]), list(logs["completion"])
    columns: dict[str, list[Any]] = {
        "step": [step] * len(prompts),
        "prompt": [prompt_text(p) for p in prompts],
        "completion": [rewards.completion_text(c) for c in completions],
    }
    for name, values in logs["rewards"].items():
        columns[f"reward/{name}"] = list(values)
    columns["advantage"] = list(logs["advantages"])
    return columns


def artifact_file(step: int) -> str:
    return f"{ARTIFACT_DIR}/step_{step:06d}.json"


class CompletionsTable(TrainerCallback):
    """At every ``every``-th optimizer step's log, the trainer's latest rollouts as an MLflow table."""

    def __init__(self, trainer: Any, every: int) -> None:
        self.trainer = trainer
        self.every = every
        self.logged: set[int] = set()

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        step = state.global_step
        if not state.is_world_process_zero or step % self.every or step in self.logged:
            return
        mlflow = sys.modules.get("mlflow")  # a run is active only if tracking imported mlflow
        if mlflow is None or mlflow.active_run() is None:
            return
        kept = getattr(self.trainer, "_logs", None)
        if not kept or not kept.get("prompt"):
            logger.warning("step %d: the trainer holds no rollouts to log (TRL's GRPOTrainer._logs)", step)
            return
        mlflow.log_table(data=table(kept, step), artifact_file=artifact_file(step))
        self.logged.add(step)
