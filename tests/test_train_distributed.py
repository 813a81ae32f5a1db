"""SFT and GRPO as two torchrun "nodes" of one process each, over gloo, with DeepSpeed ZeRO,
and the local launcher's handling of nodes that fail or hang.

This is the multi-node path of the cluster (and of the demo) on one CPU machine: the local
launcher starts one torchrun per node with a c10d rendezvous on 127.0.0.1. DeepSpeed
JIT-builds an op on first use (about a minute here); the build is cached in pytest's cache
directory so later runs start at once.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_train_grpo import clevr_records, grpo_config
from test_train_sft import make_records, sft_config
from transformers import AutoModelForImageTextToText

from r1ov.data import records
from r1ov.k8s.shutdown import sigterm_exits
from r1ov.train import checkpoints, grpo, launch, sft

TWO_NODES = {"nnodes": 2, "nproc_per_node": 1, "backend": "gloo"}


@pytest.fixture
def torch_extensions(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Keep DeepSpeed's JIT build between test runs (the launcher respects a set value)."""
    if request.config.pluginmanager.hasplugin("cacheprovider"):
        where = request.config.cache.mkdir("torch_extensions")
    else:  # -p no:cacheprovider: build once per session
        where = tmp_path_factory.getbasetemp() / "torch_extensions"
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(where))


def assert_same_names_and_trained(base: Path, out: Path) -> None:
    before, after = load_file(base / "model.safetensors"), load_file(out / "model.safetensors")
    # ZeRO-3 gathers the shards on save; the names must stay the checkpoint's (vLLM loads them)
    assert set(before) == set(after)
    assert any(not torch.equal(before[name], after[name]) for name in before)
    AutoModelForImageTextToText.from_pretrained(out)


@pytest.mark.slow
@pytest.mark.usefixtures("torch_extensions")
def test_sft_on_two_nodes_with_zero3(tiny_model_dir: Path, tmp_path: Path) -> None:
    records.write_dataset(str(tmp_path / "data"), make_records(6))
    cfg = sft_config(
        tiny_model_dir,
        str(tmp_path / "data"),
        tmp_path / "sft",
        max_steps=2,
        distributed={**TWO_NODES, "deepspeed": "zero3", "rdzv_port": 29621},
    )

    summary = sft.run(cfg)

    assert summary["world_size"] == 2 and summary["deepspeed"] == "zero3" and summary["backend"] == "gloo"
    assert summary["steps"] == 2 and summary["train_records"] == 6
    assert_same_names_and_trained(tiny_model_dir, tmp_path / "sft")


@pytest.mark.slow
@pytest.mark.usefixtures("torch_extensions")
def test_grpo_on_two_nodes_with_zero2_and_tracking(tiny_model_dir: Path, tmp_path: Path) -> None:
    import mlflow

    records.write_dataset(str(tmp_path / "clevr"), clevr_records(4))
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = grpo_config(
        tiny_model_dir,
        str(tmp_path / "clevr"),
        tmp_path / "grpo",
        track=True,
        tracking={"tracking_uri": tracking_uri, "run_name": "grpo-dist"},
        distributed={**TWO_NODES, "deepspeed": "zero2", "rdzv_port": 29622},
        # a random model earns no accuracy or format; a user-style reward imported in every worker gives
        # each group a spread, so the weights must move
        rewards=["accuracy", "format", "r1ov.testing.rewards:length"],
    )

    summary = grpo.run(cfg)

    assert summary["world_size"] == 2 and summary["deepspeed"] == "zero2"
    assert summary["steps"] == 2 and summary["train_records"] == 4
    assert summary["rewards"]["accuracy"] == 0.0 and summary["rewards"]["format"] == 0.0
    assert summary["rewards"]["r1ov.testing.rewards:length"] > 0 and summary["reward"] > 0
    assert_same_names_and_trained(tiny_model_dir, tmp_path / "grpo")
    # only the main process tracks: one run, with the trainer's reward metrics
    client = mlflow.MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("r1ov").experiment_id])
    assert [r.info.run_id for r in runs] == [summary["mlflow_run_id"]]
    assert runs[0].info.run_name == "grpo-dist" and runs[0].info.status == "FINISHED"
    assert "rewards/format/mean" in runs[0].data.metrics


def test_a_failing_node_stops_the_launch_with_its_last_lines(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Two local "nodes" whose workers fail on a dataset without records (no DeepSpeed: fast)."""
    records.write_dataset(str(tmp_path / "empty"), [])
    cfg = sft_config(
        tiny_model_dir, str(tmp_path / "empty"), tmp_path / "out", distributed={**TWO_NODES, "deepspeed": "none"}
    )
    with pytest.raises(RuntimeError, match=r"sft: node \d exited with code 1; first error: .*no usable training"):
        launch.launch("sft", cfg)


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_node_left_running_after_the_others_finished_is_stopped(tmp_path: Path) -> None:
    env = dict(os.environ)
    nodes = [
        launch.Node(0, _python("print('saved')"), env),
        launch.Node(1, _python("import time; print('waiting on rank 0', flush=True); time.sleep(60)"), env),
    ]
    started = time.monotonic()
    with pytest.raises(
        RuntimeError, match=r"sft: node 1 was still running 1 s after another node finished(.|\n)*rank 0"
    ):
        launch.wait_all("sft", nodes, finish_grace_s=1.0)
    assert time.monotonic() - started < 20
    assert nodes[1].process.poll() is not None


def test_stopping_a_node_also_stops_the_workers_it_spawned(tmp_path: Path) -> None:
    pid_file = tmp_path / "worker.pid"
    spawn = (
        "import subprocess, sys, time; "
        f"w = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(pid_file)!r}, 'w').write(str(w.pid)); time.sleep(60)"
    )
    node = launch.Node(0, _python(spawn), dict(os.environ))
    deadline = time.monotonic() + 20
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    worker_pid = int(pid_file.read_text())
    node.stop(grace_s=5)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{worker_pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert node.process.poll() is not None
    assert not Path(f"/proc/{worker_pid}").exists() or "Z" in Path(f"/proc/{worker_pid}/stat").read_text().split()[2]


def test_sigterm_to_the_local_launcher_stops_its_nodes() -> None:
    """A cancelled pipeline task gets SIGTERM: the launcher stops its torchrun nodes, it does not just die."""
    import signal
    import threading

    env = dict(os.environ)
    nodes = [launch.Node(rank, _python("import time; time.sleep(60)"), env) for rank in range(2)]
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    handler_before = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as stopped, sigterm_exits():
            launch.wait_all("sft", nodes)
    finally:
        timer.cancel()
    assert stopped.value.code == 143
    assert all(node.process.poll() is not None for node in nodes)
    assert signal.getsignal(signal.SIGTERM) == handler_before


@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_zero_overlaps_communication_on_gpus_only(stage: str) -> None:
    from r1ov.train import common

    assert common.deepspeed_config(stage, cuda=True)["zero_optimization"]["overlap_comm"] is True
    assert common.deepspeed_config(stage, cuda=False)["zero_optimization"]["overlap_comm"] is False
    assert common.deepspeed_config("none") is None


@pytest.mark.slow
@pytest.mark.usefixtures("torch_extensions")
@pytest.mark.parametrize(
    ("stage", "zero", "port"),
    [("sft", "zero3", 29623), ("grpo", "zero2", 29624), ("sft", "zero2", 29625), ("grpo", "zero3", 29626)],
)
def test_a_zero_run_resumed_from_a_checkpoint_ends_with_the_uninterrupted_weights(
    stage: str, zero: str, port: int, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Two nodes: run 4 steps saving at 2; a second run that finds only step 2's checkpoint (a run
    preempted after it) resumes there and must end where the first one did."""
    data = str(tmp_path / "data")
    records.write_dataset(data, clevr_records(4) if stage == "grpo" else make_records(6))
    fields = {"max_steps": 4, "save_steps": 2, "distributed": {**TWO_NODES, "deepspeed": zero, "rdzv_port": port}}
    if stage == "grpo":
        build, run = grpo_config, grpo.run
        fields["rewards"] = ["accuracy", "format", "r1ov.testing.rewards:length"]  # random completions: a spread
    else:
        build, run = sft_config, sft.run
    run(build(tiny_model_dir, data, tmp_path / "whole", **fields))
    preempted = tmp_path / "bucket" / "checkpoints" / "checkpoint-2"
    shutil.copytree(tmp_path / "whole-checkpoints" / "checkpoint-2", preempted)
    assert (preempted / checkpoints.COMPLETE).is_file()

    summary = run(build(tiny_model_dir, data, tmp_path / "resumed", checkpoint_uri=str(tmp_path / "bucket"), **fields))

    assert summary["resumed_from_step"] == 2 and summary["steps"] == 4
    whole, resumed = (
        load_file(tmp_path / "whole" / "model.safetensors"),
        load_file(tmp_path / "resumed" / "model.safetensors"),
    )
    base = load_file(tiny_model_dir / "model.safetensors")
    assert set(whole) == set(resumed) == set(base)
    assert any(not torch.equal(base[name], whole[name]) for name in base), "the weights must move"
    differ = [name for name in whole if not torch.allclose(whole[name], resumed[name], rtol=1e-5, atol=1e-7)]
    assert not differ, f"{len(differ)} tensors differ from the uninterrupted run, e.g. {differ[:3]}"
