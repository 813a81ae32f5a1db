"""Shared fixtures: the tiny model and synthetic datasets are built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded: a test that tries fails
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# DeepSpeed JIT-builds its CPU ops once (about a minute); every test that trains reuses them.
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path(__file__).resolve().parent.parent / ".torch_extensions"))


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
