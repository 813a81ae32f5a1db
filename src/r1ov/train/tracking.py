"""MLflow runs for the trainers: one run per training stage, opened by the main process.

The run is started here, before the trainer exists, so transformers' ``MLflowCallback``
finds it active and logs params and metrics into it instead of opening its own; that is
what lets the run carry our name, tags and parent (the pipeline run).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from transformers import TrainerCallback

from r1ov.config import TrackingConfig

logger = logging.getLogger(__name__)


def start_run(cfg: TrackingConfig, default_name: str, tags: Mapping[str, str]) -> str:
    """Open the stage's run (nested under ``parent_run_id`` when given); returns its id."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    from r1ov.registry.tracking import client_for, experiment_id

    mlflow.set_tracking_uri(cfg.tracking_uri)
    run = mlflow.start_run(
        experiment_id=experiment_id(client_for(cfg), cfg),
        run_name=cfg.run_name or default_name,
        parent_run_id=cfg.parent_run_id,
        tags={**tags, **cfg.tags},
    )
    logger.info("MLflow run %s in experiment %r at %s", run.info.run_id, cfg.experiment, cfg.tracking_uri)
    return run.info.run_id


def log_metrics(metrics: Mapping[str, float]) -> None:
    """Log closing numbers (record counts, final loss) into the active run, if any."""
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None})


def end_run(status: str = "FINISHED") -> None:
    """Close the active run with an MLflow run status (no-op when none is open)."""
    import mlflow

    if mlflow.active_run() is None:
        return
    # The callback logs asynchronously; flush so no metric lands after the run is closed.
    mlflow.flush_async_logging()
    mlflow.end_run(status=status)


# Exit codes of a run stopped by a signal (128 + SIGINT, 128 + SIGTERM): stopped, not broken.
INTERRUPTED_CODES = (130, 143)


def ending_status(exc: BaseException) -> str:
    """KILLED for a run someone stopped (Ctrl-C, SIGTERM: MLflow's status for a run ended by a
    user), FAILED for one that broke."""
    if isinstance(exc, KeyboardInterrupt):
        return "KILLED"
    if isinstance(exc, SystemExit) and exc.code in INTERRUPTED_CODES:
        return "KILLED"
    return "FAILED"


@contextmanager
def stage_run(cfg: TrackingConfig, enabled: bool, stage: str, tags: Mapping[str, str]) -> Iterator[str | None]:
    """A run around a training stage when ``enabled``; KILLED if stopped, FAILED if the body raises."""
    if not enabled:
        yield None
        return
    run_id = start_run(cfg, stage, {"r1ov.stage": stage, **tags})
    try:
        yield run_id
    except BaseException as exc:
        end_run(ending_status(exc))
        raise
    end_run()


# Dense bf16 peak of common training GPUs, TFLOP/s, for the MFU estimate; R1OV_PEAK_TFLOPS overrides.
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}


def peak_tflops() -> float | None:
    import torch

    if os.environ.get("R1OV_PEAK_TFLOPS"):
        return float(os.environ["R1OV_PEAK_TFLOPS"])
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((tflops for key, tflops in PEAK_TFLOPS.items() if key in name), None)


class ThroughputCallback(TrainerCallback):
    """Logs tokens/s at each logging step (and, on GPUs, peak memory and an MFU estimate) to the active run.

    Tokens are TRL's cumulative ``num_tokens`` (every process's tokens); MFU takes the usual
    6 x parameters x tokens/s over the GPUs' peak. Only the main process logs.
    """

    def __init__(self) -> None:
        self.last: tuple[float, float] | None = None  # (time, num_tokens)

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, model: Any = None, **kwargs: Any
    ) -> None:
        import sys
        import time

        import torch

        # No run can be active unless mlflow was imported (tracking starts one): importing it here
        # would cost every untracked run a second of CPU inside its training loop.
        mlflow = sys.modules.get("mlflow")
        if not state.is_world_process_zero or not logs or "num_tokens" not in logs:
            return
        if mlflow is None or mlflow.active_run() is None:
            return
        now, tokens = time.monotonic(), float(logs["num_tokens"])
        previous, self.last = self.last, (now, tokens)
        if previous is None or now <= previous[0]:
            return
        rate = (tokens - previous[1]) / (now - previous[0])
        metrics = {"tokens_per_second": rate}
        if torch.cuda.is_available():
            metrics["gpu_max_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
            peak = peak_tflops()
            if peak and model is not None:
                params = parameter_count(model)
                gpus = max(1, args.world_size)
                metrics["mfu"] = 6 * params * rate / (peak * 1e12 * gpus)
        mlflow.log_metrics(metrics, step=state.global_step)


def parameter_count(model: Any) -> int:
    """Parameters of ``model``, whole even where ZeRO-3 partitioned them: a partitioned parameter's
    ``numel()`` is 0 on every rank and its size is ``ds_numel`` (the rule of transformers'
    trainer_pt_utils.get_model_param_count, without its dependence on the global DeepSpeed config)."""
    return sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())


def report_to(enabled: bool) -> list[str]:
    """The ``report_to`` list for transformers' TrainingArguments."""
    return ["mlflow"] if enabled else []
