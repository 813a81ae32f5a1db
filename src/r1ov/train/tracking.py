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

from r1ov.config import TrackingConfig

logger = logging.getLogger(__name__)


def start_run(cfg: TrackingConfig, default_name: str, tags: Mapping[str, str]) -> str:
    """Open the stage's run (nested under ``parent_run_id`` when given); returns its id."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    from r1ov.registry import client_for, experiment_id

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


def end_run(failed: bool = False) -> None:
    """Close the active run (no-op when none is open)."""
    import mlflow

    if mlflow.active_run() is None:
        return
    # The callback logs asynchronously; flush so no metric lands after the run is closed.
    mlflow.flush_async_logging()
    mlflow.end_run(status="FAILED" if failed else "FINISHED")


@contextmanager
def stage_run(cfg: TrackingConfig, enabled: bool, stage: str, tags: Mapping[str, str]) -> Iterator[str | None]:
    """A run around a training stage when ``enabled``; marked FAILED if the body raises."""
    if not enabled:
        yield None
        return
    run_id = start_run(cfg, stage, {"r1ov.stage": stage, **tags})
    try:
        yield run_id
    except BaseException:
        end_run(failed=True)
        raise
    end_run()


def report_to(enabled: bool) -> list[str]:
    """The ``report_to`` list for transformers' TrainingArguments."""
    return ["mlflow"] if enabled else []
