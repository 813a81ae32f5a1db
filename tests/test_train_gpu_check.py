"""scripts/gpu-check.sh's Python part, dry-run on the CPU with the tiny model (no GPU here).

The GPU run itself (Qwen2.5-VL-3B's architecture, bf16, max_length 4096 on one H200) needs a GPU;
this checks that the same code builds the model, trains through the SFT stage and writes gpu.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r1ov.bench import gpu


def test_the_3b_architecture_is_qwen25_vl_3b_sized() -> None:
    """Built from the published config: about 3.75 billion parameters (counted on the meta device)."""
    params = gpu.parameter_count(gpu.model_config("qwen2.5-vl-3b"))
    assert 3.6e9 < params < 3.9e9


def test_records_fill_the_sequence() -> None:
    from r1ov.testing.tiny_model import build_tokenizer

    (record,) = gpu.long_records(1, 4096)
    assert len(build_tokenizer()(record["reasoning"])["input_ids"]) > 4096


def test_dry_run_on_the_tiny_model_writes_tokens_per_second_and_mfu(tmp_path: Path) -> None:
    gpu.main(["--arch", "tiny", "--device", "cpu", "--steps", "2", "--max-length", "256",
              "--peak-tflops", "1", "--out", str(tmp_path)])  # fmt: skip
    document = json.loads((tmp_path / "gpu.json").read_text())
    tokens, tflops = document["results"]
    assert tokens["unit"] == "tokens/s" and tokens["value"] > 0
    assert tflops["unit"] == "TFLOPS" and tflops["ratio"] == pytest.approx(tokens["ratio"], rel=0.01)
    assert (tmp_path / "gpu.md").is_file()


def test_training_logs_gpu_memory_and_mfu_where_a_gpu_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The throughput callback's GPU branch, with CUDA's answers stood in (no GPU here): peak
    memory and MFU = 6 x parameters x tokens/s over the GPUs' bf16 peak, on the main process."""
    from types import SimpleNamespace

    import mlflow
    import torch

    from r1ov.train import tracking

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a: 3 * 2**30)
    model = torch.nn.Linear(1000, 1000)  # 1,001,000 parameters
    callback = tracking.ThroughputCallback()
    args, state = SimpleNamespace(world_size=8), SimpleNamespace(is_world_process_zero=True, global_step=5)

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with mlflow.start_run() as run, monkeypatch.context() as clock:
        clock.setattr("time.monotonic", iter([100.0, 102.0]).__next__)  # two logging steps 2 s apart
        callback.on_log(args, state, None, logs={"num_tokens": 1000.0}, model=model)
        callback.on_log(args, state, None, logs={"num_tokens": 1000.0 + 2 * 4e6}, model=model)
    metrics = mlflow.MlflowClient().get_run(run.info.run_id).data.metrics
    assert metrics["tokens_per_second"] == pytest.approx(4e6)
    assert metrics["gpu_max_memory_gib"] == pytest.approx(3.0)
    assert metrics["mfu"] == pytest.approx(6 * 1_001_000 * 4e6 / (989e12 * 8))


def test_mfu_counts_parameters_that_zero3_partitioned(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ZeRO-3 every rank's parameters report numel() == 0; MFU must use their full size."""
    import socket

    import deepspeed
    import torch

    from r1ov.train import tracking

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "LOCAL_RANK": "0",
                       "WORLD_SIZE": "1"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    deepspeed.init_distributed(dist_backend="gloo")
    try:
        with deepspeed.zero.Init(config_dict_or_path={"zero_optimization": {"stage": 3}, "train_batch_size": 1}):
            model = torch.nn.Linear(1000, 1000)
        assert sum(p.numel() for p in model.parameters()) == 0  # what the count used to see
        assert tracking.parameter_count(model) == 1_001_000
    finally:
        torch.distributed.destroy_process_group()
