"""Durable checkpoints: SIGTERM saves and stops, a re-run resumes, a half-written checkpoint is never used."""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from test_train_sft import changed_tensors, make_records, sft_config

from r1ov.data import records
from r1ov.train import checkpoints, rewards, uploads


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


def test_checkpoints_by_the_clock_and_none_of_the_final_step() -> None:
    """Slow steps still checkpoint every save_every_minutes; the last step is left to the final save."""
    now = [0.0]
    triggers = checkpoints.SaveTriggers(every_s=600, clock=lambda: now[0])
    state, args = SimpleNamespace(global_step=1, max_steps=10), SimpleNamespace()

    def step(at: float, flow_says_save: bool = False) -> bool:
        now[0] = at
        control = SimpleNamespace(should_save=flow_says_save, should_training_stop=False)
        triggers.on_step_end(args, state, control)
        if control.should_save:
            triggers.on_save(args, state, control)
        state.global_step += 1
        return control.should_save

    assert [step(t) for t in (100, 599, 601, 900, 1100)] == [False, False, True, False, False]
    assert step(1202)  # 600 s after the save at 601
    assert step(1300, flow_says_save=True)  # save_steps still count (and restart the clock)
    assert not step(1850)
    state.global_step = 10
    assert not step(5000, flow_says_save=True)  # the final step: the trainer's end-of-run save is dropped
    assert not triggers.stopped


def test_every_node_keeps_only_the_newest_local_checkpoints(tmp_path: Path) -> None:
    for step in (2, 4, 6, 8):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "runs").mkdir()
    checkpoints.rotate_local(str(tmp_path), keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-6", "checkpoint-8", "runs"]


# --------------------------------------------------------------------------- exact resume


def preempt_at(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """A real SIGTERM to this process when the trainer ends ``step``: a pod deletion at a known step."""
    original = checkpoints.SaveTriggers.on_step_end

    def on_step_end(self: Any, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if state.global_step == step:
            os.kill(os.getpid(), signal.SIGTERM)  # handled by the trainer's own SIGTERM handler
        return original(self, args, state, control, **kwargs)

    monkeypatch.setattr(checkpoints.SaveTriggers, "on_step_end", on_step_end)


def logged_losses(caplog: pytest.LogCaptureFixture) -> dict[int, float]:
    """step -> loss, as the trainers log them (common.LogCallback: "step N/M {...}")."""
    losses = {}
    for record in caplog.records:
        if record.name == "r1ov.train.common" and record.msg.startswith("step ") and "loss" in record.args[2]:
            losses[record.args[0]] = record.args[2]["loss"]
    caplog.clear()
    return losses


def assert_same_weights(expected: Path, actual: Path) -> None:
    want, got = load_file(expected / "model.safetensors"), load_file(actual / "model.safetensors")
    assert set(want) == set(got)
    differ = [name for name in want if not torch.allclose(want[name], got[name], rtol=1e-5, atol=1e-7)]
    assert not differ, f"{len(differ)} of {len(want)} tensors differ from the uninterrupted run, e.g. {differ[:3]}"


def stage_config(stage: str, model: Path, tmp_path: Path, out: str, **overrides: Any) -> Any:
    from test_train_grpo import clevr_records, grpo_config

    data = tmp_path / "data"
    if not data.exists():
        records.write_dataset(str(data), clevr_records(4) if stage == "grpo" else make_records(6))
    fields = {"max_steps": 6, "save_steps": 0, "logging_steps": 1, "per_device_train_batch_size": 2, **overrides}
    if stage == "sft":
        return sft_config(model, str(data), tmp_path / out, **fields)
    # accuracy and format give random completions 0 (no advantage, no gradient): "length" spreads the group
    return grpo_config(model, str(data), tmp_path / out, rewards=["accuracy", "format", "length"], **fields)


# SFT: 3 steps an epoch, preempted at its end; GRPO: 4 steps an epoch, preempted in the second one.
@pytest.mark.parametrize(("stage", "preempted_at"), [("sft", 3), ("grpo", 5)])
def test_a_run_preempted_and_resumed_ends_with_the_uninterrupted_weights_and_losses(
    stage: str,
    preempted_at: int,
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """deepspeed=none (one GPU, or CPU): the Trainer's own checkpoint load must not keep the base weights."""
    from test_train_grpo import length_reward

    monkeypatch.setitem(rewards.REWARDS, "length", length_reward)
    caplog.set_level(logging.INFO, logger="r1ov.train.common")
    train = importlib.import_module(f"r1ov.train.{stage}").train
    train(stage_config(stage, tiny_model_dir, tmp_path, "whole"))
    uninterrupted = logged_losses(caplog)
    assert sorted(uninterrupted) == [1, 2, 3, 4, 5, 6]

    cfg = stage_config(stage, tiny_model_dir, tmp_path, "preempted", checkpoint_uri=str(tmp_path / "bucket"))
    with monkeypatch.context() as patch, pytest.raises(SystemExit) as stopped:
        preempt_at(patch, preempted_at)
        train(cfg)
    assert stopped.value.code == checkpoints.INTERRUPTED_EXIT
    assert checkpoints.complete_steps(str(tmp_path / "bucket" / "checkpoints")) == [preempted_at]
    logged_losses(caplog)

    summary = train(cfg)

    assert summary["resumed_from_step"] == preempted_at
    # the final step is saved once, as the final model: no checkpoint of it besides
    assert checkpoints.complete_steps(str(tmp_path / "bucket" / "checkpoints")) == [preempted_at]
    resumed = logged_losses(caplog)
    assert resumed == pytest.approx({step: uninterrupted[step] for step in range(preempted_at + 1, 7)}, rel=1e-4)
    assert_same_weights(tmp_path / "whole", tmp_path / "preempted")
    assert changed_tensors(tiny_model_dir, tmp_path / "whole"), (
        "the weights must move for the comparison to mean anything"
    )


# --------------------------------------------------------------------------- background uploads


def sha256s(directory: Path) -> dict[str, str]:
    return {
        path.relative_to(directory).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def s3_sha256s(endpoint: str, uri: str) -> dict[str, str]:
    """Every object under ``uri``, read back straight from the server (not through the slow link)."""
    import boto3

    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/"):
        for item in page.get("Contents", []):
            body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            if item["Key"].endswith("/") and not body:
                continue  # a directory marker
            out[item["Key"].removeprefix(f"{prefix}/")] = hashlib.sha256(body).hexdigest()
    return out


def when(caplog: pytest.LogCaptureFixture, pattern: str) -> float:
    """The time of the first log record whose message matches ``pattern``."""
    for record in caplog.records:
        if re.search(pattern, record.getMessage()):
            return record.created
    raise AssertionError(f"no log line matches {pattern!r}")


def test_checkpoints_upload_in_the_background_to_a_slow_bucket_with_bounded_staging(
    tiny_model_dir: Path,
    tmp_path: Path,
    s3_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """moto's S3 behind a 0.5 MB/s link: a 3.4 MB checkpoint takes ~7 s to upload, a step a fraction of one.

    Training goes on during an upload; with one checkpoint staged the next save waits for it (and says
    so) instead of piling checkpoints on the disk; what lands in the bucket equals the local files."""
    from r1ov.testing.slow_link import SlowLink
    from r1ov.train import sft

    data = str(tmp_path / "data")
    records.write_dataset(data, make_records(6))
    host, port = s3_endpoint.removeprefix("http://").split(":")
    uri = "s3://r1ov/slow-run"
    cfg = sft_config(
        tiny_model_dir, data, tmp_path / "out", max_steps=8, save_steps=2, logging_steps=1,
        checkpoint_uri=uri, save_total_limit=2, max_staged_checkpoints=1,
    )  # fmt: skip
    caplog.set_level(logging.INFO)
    with SlowLink((host, int(port)), upload_bytes_per_s=500_000) as link:
        monkeypatch.setenv("R1OV_S3_ENDPOINT", link.url)
        summary = sft.train(cfg)
    monkeypatch.setenv("R1OV_S3_ENDPOINT", s3_endpoint)  # read back at full speed
    assert summary["steps"] == 8

    # Step 3 trained while checkpoint-2 was on its way to the bucket.
    assert when(caplog, r"^step 3/8 ") < when(caplog, r"^uploaded checkpoint-2 ")
    # Step 4's save found checkpoint-2 still uploading and waited; checkpoint-4 was written after it arrived.
    assert when(caplog, r"^step 4: 1 checkpoint\(s\) still uploading") < when(caplog, r"^uploaded checkpoint-2 ")
    local = Path(checkpoints.local_dir(cfg))
    assert (
        min(p.stat().st_mtime for p in (local / "checkpoint-4").iterdir())
        >= when(caplog, r"^uploaded checkpoint-2 ") - 0.05
    )  # mtime granularity

    # The bucket holds the newest save_total_limit checkpoints, each equal to this node's files.
    store = f"{uri}/checkpoints"
    assert checkpoints.complete_steps(store) == [4, 6]
    assert sorted(p.name for p in local.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-6"]
    for step in (4, 6):
        uploaded = s3_sha256s(s3_endpoint, f"{store}/checkpoint-{step}")
        assert uploaded.pop(checkpoints.COMPLETE)
        assert uploaded == sha256s(local / f"checkpoint-{step}")
    assert s3_sha256s(s3_endpoint, uri)["model.safetensors"] == sha256s(tmp_path / "out")["model.safetensors"]


def test_a_failing_upload_is_retried_then_fails_the_run_at_its_end(
    tiny_model_dir: Path,
    tmp_path: Path,
    s3_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from r1ov.train import sft

    monkeypatch.setattr(uploads, "RETRY_BACKOFF_S", 0.0)
    data = str(tmp_path / "data")
    records.write_dataset(data, make_records(4))
    cfg = sft_config(
        tiny_model_dir, data, tmp_path / "out", max_steps=4, save_steps=2, logging_steps=1,
        checkpoint_uri="s3://no-such-bucket/run",
    )  # fmt: skip
    caplog.set_level(logging.INFO)
    with pytest.raises(uploads.UploadFailed, match=r"after 3 attempt\(s\): checkpoint-2: .*NoSuchBucket") as failed:
        sft.train(cfg)
    assert "local copies are kept" in str(failed.value)
    assert when(caplog, r"^step 4/4 ")  # training was not stopped by it: the error comes at the end
    assert len([r for r in caplog.records if r.getMessage().startswith("upload of checkpoint-2 ")]) == 3  # each attempt
    assert (Path(checkpoints.local_dir(cfg)) / "checkpoint-2" / "model.safetensors").is_file()


def test_local_rotation_never_deletes_a_checkpoint_still_uploading(tmp_path: Path) -> None:
    release = threading.Event()
    copied: list[str] = []

    def slow_copy(local: Path, target: str) -> int:
        release.wait(30)
        copied.append(target)
        return 0

    uploader = uploads.Uploader(max_staged=2, copy=slow_copy)
    for step in (2, 4, 6):
        (tmp_path / f"checkpoint-{step}").mkdir()
    uploader.submit("checkpoint-2", tmp_path / "checkpoint-2", "store/checkpoint-2")
    assert not uploader.full()
    uploader.submit("checkpoint-4", tmp_path / "checkpoint-4", "store/checkpoint-4")
    assert uploader.full()  # a third save would wait

    checkpoints.rotate_local(str(tmp_path), keep=1, protected=uploader.keep_locally())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]

    release.set()
    assert uploader.wait(30)
    uploader.close()
    assert copied == ["store/checkpoint-2", "store/checkpoint-4"]  # in the order saved
    checkpoints.rotate_local(str(tmp_path), keep=1, protected=uploader.keep_locally())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-6"]


def test_a_node_that_gives_its_part_up_fails_the_checkpoint_at_once_not_after_the_peer_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two nodes' callbacks as torchrun sets them up (GROUP_RANK / GROUP_WORLD_SIZE): node 1's store
    refuses its part; the main node learns it from node 1's marker and gives the checkpoint up naming
    node 1, instead of waiting peer_wait_s (an hour by default) once per retry."""
    import shutil

    monkeypatch.setattr(uploads, "RETRY_BACKOFF_S", 0.0)
    cfg = SimpleNamespace(output_dir=str(tmp_path / "out"), checkpoint_uri=str(tmp_path / "store"))
    main_copies: list[str] = []

    def copy(local: Path, target: str) -> int:
        main_copies.append(target)
        shutil.copytree(local, target, dirs_exist_ok=True)
        return 0

    def refused(local: Path, target: str) -> int:
        raise PermissionError("AccessDenied: node 1's credentials expired")

    callbacks = {}
    for node, copier in ((0, copy), (1, refused)):
        monkeypatch.setenv("GROUP_RANK", str(node))
        monkeypatch.setenv("GROUP_WORLD_SIZE", "2")
        uploader = uploads.Uploader(copy=copier)
        callbacks[node] = checkpoints.DurableCheckpoints(cfg, keep=2, uploader=uploader, peer_wait_s=3600)
    callbacks[1].token = callbacks[0].token  # rank 0's token, as the broadcast at train begin gives it
    for node, callback in callbacks.items():
        local = tmp_path / f"node{node}"
        (local / "checkpoint-2").mkdir(parents=True)
        (local / "checkpoint-2" / "weights.bin").write_bytes(b"w")
        callback.on_save(
            SimpleNamespace(output_dir=str(local)),
            SimpleNamespace(global_step=2, is_world_process_zero=node == 0),
            None,
        )
    for callback in callbacks.values():
        assert callback.uploader.wait(120), "the main node is still waiting for node 1's part"

    target = Path(checkpoints.store(cfg)) / "checkpoint-2"
    assert "AccessDenied" in (target / "UPLOAD-FAILED-node-1").read_text()
    assert not (target / checkpoints.COMPLETE).exists() and checkpoints.complete_steps(checkpoints.store(cfg)) == []
    assert len(main_copies) == 1  # given up at once: the peer's failure is not retried
    with pytest.raises(uploads.UploadFailed, match=r"node 1 could not upload its part of .*AccessDenied"):
        callbacks[0].uploader.close()
    with pytest.raises(uploads.UploadFailed, match="AccessDenied"):
        callbacks[1].uploader.close()
