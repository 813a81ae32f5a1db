"""Durable checkpoints: SIGTERM saves and stops, a re-run resumes, a half-written checkpoint is never used."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_train_sft import make_records, sft_config

from r1ov.data import records
from r1ov.train import checkpoints


def test_only_complete_checkpoints_count_and_the_latest_is_resumed(tmp_path: Path) -> None:
    root = tmp_path / "store"
    for step, complete in ((2, True), (4, True), (6, False)):  # 6: a node died during its upload
        (root / f"checkpoint-{step}").mkdir(parents=True)
        (root / f"checkpoint-{step}" / "model.safetensors").write_text("x")
        if complete:
            (root / f"checkpoint-{step}" / checkpoints.COMPLETE).write_text(f"{step}\n")
    (root / "checkpoint-x").mkdir()
    assert checkpoints.complete_steps(str(root)) == [2, 4]
    assert checkpoints.complete_steps(str(tmp_path / "nothing")) == []


def test_sigterm_saves_and_stops_then_a_rerun_continues_the_step_count(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The worker as torchrun starts it; SIGTERM (pod deletion, preemption) mid-run."""
    data = str(tmp_path / "data")
    records.write_dataset(data, make_records(8))
    durable = tmp_path / "bucket" / "sft"
    cfg = sft_config(
        tiny_model_dir, data, tmp_path / "out", max_steps=400, per_device_train_batch_size=1,
        checkpoint_uri=str(durable), save_steps=0,
    )  # fmt: skip
    config_file = tmp_path / "config.json"
    config_file.write_text(cfg.model_dump_json())
    worker = subprocess.Popen(
        [sys.executable, "-m", "r1ov.train.worker", "sft", str(config_file)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert worker.stdout is not None
    lines = []
    for line in worker.stdout:
        lines.append(line)
        if "step 3/400" in line:
            worker.send_signal(signal.SIGTERM)
            break
    rest, _ = worker.communicate(timeout=120)
    lines.append(rest)
    assert worker.returncode == checkpoints.INTERRUPTED_EXIT, "".join(lines)[-3000:]
    (saved,) = checkpoints.complete_steps(str(durable / "checkpoints"))
    assert 3 <= saved < 400
    assert not (durable / "train_summary.json").exists()  # stopped, not finished

    started = time.monotonic()
    from r1ov.train import sft

    summary = sft.train(cfg.model_copy(update={"max_steps": saved + 2}))
    assert summary["resumed_from_step"] == saved and summary["steps"] == saved + 2
    assert json.loads((durable / "train_summary.json").read_text())["steps"] == saved + 2
    assert time.monotonic() - started < 120
