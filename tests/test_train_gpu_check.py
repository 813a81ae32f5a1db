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
