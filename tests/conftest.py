"""Shared fixtures: the tiny model and synthetic datasets are built once per test session."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from r1ov.train import extensions_dir

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded: a test that tries fails
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# DeepSpeed JIT-builds its CPU ops once per machine (about a minute): the suite shares the cache
# the demo and every run use (r1ov.train.extensions_dir, keyed by the torch and DeepSpeed versions).
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(extensions_dir()))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """GPU and vLLM tests skip cleanly where there is none."""
    import importlib.util

    import torch

    no_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    no_vllm = pytest.mark.skip(reason="needs vllm (pip install '.[gpu]')")
    for item in items:
        if item.get_closest_marker("gpu") and not torch.cuda.is_available():
            item.add_marker(no_gpu)
        if item.get_closest_marker("vllm") and importlib.util.find_spec("vllm") is None:
            item.add_marker(no_vllm)


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """SIGINT handled as in an interactive Python (KeyboardInterrupt), for tests that press Ctrl-C with
    ``_thread.interrupt_main``: a suite started in the background by a non-interactive shell inherits
    SIGINT ignored (bash ignores it for asynchronous commands), Python then leaves it ignored, and
    ``interrupt_main`` does nothing for an ignored signal (CPython docs, ``_thread.interrupt_main``)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from r1ov.testing.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), seed=0)


@pytest.fixture(scope="session")
def synthetic_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small mixed synthetic dataset (every formal image type)."""
    from r1ov.config import SynthConfig
    from r1ov.synthetic import run

    uri = str(tmp_path_factory.mktemp("synthetic") / "train")
    run(SynthConfig(output_uri=uri, n=14, seed=7))
    return uri


@pytest.fixture(scope="session")
def tiny_detector_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Grounding DINO (the formalize stage's detector), built offline."""
    from r1ov.testing.tiny_detector import build_tiny_detector

    return build_tiny_detector(tmp_path_factory.mktemp("tiny-detector"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible HTTP server (moto's server mode) on loopback."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    saved = {
        k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "R1OV_S3_ENDPOINT", "AWS_REGION")
    }
    os.environ.update(
        AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", R1OV_S3_ENDPOINT=endpoint, AWS_REGION="us-east-1"
    )
    try:
        import boto3

        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="r1ov")
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
