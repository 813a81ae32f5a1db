"""The memory planner (``r1ov sft|grpo --plan``): checked against what training measurably holds,
and refusing plans that cannot fit with the setting to change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_train_grpo import grpo_config
from test_train_sft import sft_config

from r1ov.config import ConfigError
from r1ov.testing import tiny_model
from r1ov.train import memory

GIB = 2**30


@pytest.fixture(scope="module")
def mid_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random Qwen2.5-VL config of ~25M parameters: big enough that its states outweigh the
    measurement noise (the 0.3M-parameter tiny model's are lost in it), small enough for CPU."""
    out = tmp_path_factory.mktemp("mid-model")
    config = tiny_model.build_config(tiny_model.build_tokenizer())
    config.text_config.update(
        {"hidden_size": 512, "intermediate_size": 1536, "num_hidden_layers": 8, "num_attention_heads": 8,
         "layer_types": ["full_attention"] * 8}
    )  # fmt: skip
    config.vision_config.update({"out_hidden_size": 512})
    config.text_config.rope_parameters["mrope_section"] = [8, 12, 12]  # sums to head_dim / 2 = 32
    config.save_pretrained(out)
    return out


def measured_bytes(model_dir: Path, sequences: int, tokens: int, checkpointing: bool) -> int:
    flag = ["checkpointing"] if checkpointing else []
    # A fixed mmap threshold turns off glibc's dynamic one (mallopt(3), M_MMAP_THRESHOLD): otherwise
    # freeing the warm-up's large tensors raises it, and what the measured step then allocates from
    # the heap, or finds there still resident, varies from run to run.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
    done = subprocess.run(
        [sys.executable, "-m", "r1ov.testing.memory_probe", str(model_dir), str(sequences), str(tokens), *flag],
        capture_output=True, text=True, check=True, timeout=300, env=env,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])["bytes"]


@pytest.mark.parametrize("checkpointing", [False, True])
def test_the_estimate_is_within_20_percent_of_measured_cpu_memory(
    mid_model_dir: Path, tmp_path: Path, checkpointing: bool
) -> None:
    cfg = sft_config(
        mid_model_dir, "unused", tmp_path, per_device_train_batch_size=2, max_length=512,
        max_pixels=784, min_pixels=784, gradient_checkpointing=checkpointing,
    )  # fmt: skip
    shape = memory.model_shape(str(mid_model_dir))
    estimate = memory.estimate("sft", cfg, shape, gpu_gib=None, cuda=False)
    measured = measured_bytes(mid_model_dir, sequences=2, tokens=512, checkpointing=checkpointing)
    assert abs(estimate.total - measured) <= 0.2 * measured, (estimate.summary(), measured)


def test_the_probe_measures_its_own_peak_whatever_the_process_that_started_it_holds(
    mid_model_dir: Path, tmp_path: Path
) -> None:
    # A whole-suite run had grown the test process past the probe's own peak, and the probe read
    # the parent's (ru_maxrss survives a vfork + exec): ~1.3 GB measured against 0.73 GiB planned.
    held = bytearray(2 * GIB)
    held[::4096] = b"\1" * len(range(0, len(held), 4096))  # touch every page: resident, as a loaded model is
    cfg = sft_config(
        mid_model_dir, "unused", tmp_path, per_device_train_batch_size=2, max_length=512,
        max_pixels=784, min_pixels=784, gradient_checkpointing=False,
    )  # fmt: skip
    estimate = memory.estimate("sft", cfg, memory.model_shape(str(mid_model_dir)), gpu_gib=None, cuda=False)
    measured = measured_bytes(mid_model_dir, sequences=2, tokens=512, checkpointing=False)
    del held
    assert measured < GIB  # the probe's own ~0.7 GiB, not the 2 GiB its parent holds
    assert abs(estimate.total - measured) <= 0.2 * measured, (estimate.summary(), measured)


@pytest.fixture(scope="module")
def qwen3b_layers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Qwen2.5-VL-3B-Instruct's decoder layer and vision block (its config.json on the Hub: hidden 2048,
    intermediate 11008, 16 heads, 2 KV heads, head_dim 128; vision 1280/3420/16 heads, output 2048, tied
    embeddings) with random weights, but 2 of its 36 decoder layers, 1 of its 32 vision blocks and a
    32K vocabulary of its 152K: the whole 3B needs ~60 GB of fp32 weights and AdamW states, beyond a CPU
    test. What is checked at full 3B width is every per-layer and per-parameter term of the plan; the
    layer count and vocabulary only multiply those terms (their scaling is the 7B parameter-count check's)."""
    out = tmp_path_factory.mktemp("qwen3b-layers")
    config = tiny_model.build_config(tiny_model.build_tokenizer())
    config.text_config.update(
        {"hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 2, "num_attention_heads": 16,
         "num_key_value_heads": 2, "vocab_size": 32768, "layer_types": ["full_attention"] * 2}
    )  # fmt: skip
    config.text_config.rope_parameters["mrope_section"] = [16, 24, 24]  # sums to head_dim / 2 = 64
    config.vision_config.update(
        {"depth": 1, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "out_hidden_size": 2048,
         "fullatt_block_indexes": [0], "window_size": 112}
    )  # fmt: skip
    config.tie_word_embeddings = True
    config.text_config.tie_word_embeddings = True
    config.save_pretrained(out)
    return out


@pytest.mark.slow  # ~5 GB and a minute of CPU: a 3B-wide step in fp32 with AdamW
def test_the_estimate_is_within_20_percent_on_3b_wide_layers(qwen3b_layers_dir: Path, tmp_path: Path) -> None:
    cfg = sft_config(
        qwen3b_layers_dir, "unused", tmp_path, per_device_train_batch_size=2, max_length=512,
        max_pixels=784, min_pixels=784, gradient_checkpointing=False,
    )  # fmt: skip
    shape = memory.model_shape(str(qwen3b_layers_dir))
    assert (shape.hidden, shape.intermediate, shape.kv_heads, shape.head_dim) == (2048, 11008, 2, 128)
    estimate = memory.estimate("sft", cfg, shape, gpu_gib=None, cuda=False)
    measured = measured_bytes(qwen3b_layers_dir, sequences=2, tokens=512, checkpointing=False)
    assert abs(estimate.total - measured) <= 0.2 * measured, (estimate.summary(), measured)


@pytest.fixture(scope="module")
def qwen7b_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Qwen2.5-VL-7B-Instruct's architecture (its config.json on the Hub), without weights."""
    out = tmp_path_factory.mktemp("qwen7b")
    config = tiny_model.build_config(tiny_model.build_tokenizer())
    config.text_config.update(
        {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
         "num_key_value_heads": 4, "vocab_size": 152064, "layer_types": ["full_attention"] * 28}
    )  # fmt: skip
    config.text_config.rope_parameters["mrope_section"] = [16, 24, 24]
    config.vision_config.update(
        {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "out_hidden_size": 3584,
         "fullatt_block_indexes": [7, 15, 23, 31], "window_size": 112}
    )  # fmt: skip
    config.save_pretrained(out)
    return out


def test_the_7b_shape_has_the_published_parameter_count(qwen7b_dir: Path) -> None:
    assert memory.model_shape(str(qwen7b_dir)).parameters == pytest.approx(8.29e9, rel=0.01)


def test_a_plan_that_cannot_fit_is_refused_with_the_setting_to_change(qwen7b_dir: Path, tmp_path: Path) -> None:
    # the recipe's rollout micro-batch: 8 completions x (1024 + 4096) tokens, logits over 152K tokens each
    cfg = grpo_config(
        qwen7b_dir, "unused", tmp_path, per_device_train_batch_size=8, max_completion_length=4096,
        max_prompt_length=1024, gradient_checkpointing=True, bf16=True, generation="vllm-server",
        vllm_server_base_url="http://rollout:8000",
        distributed={"nnodes": 1, "nproc_per_node": 8, "deepspeed": "zero3"},
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"grpo: the plan needs [\d.]+ GiB per GPU.*grpo.per_device_train_batch_size"):
        memory.plan("grpo", cfg, gpu_gib=80)

    small = cfg.model_copy(update={"per_device_train_batch_size": 1})
    summary = memory.plan("grpo", small, gpu_gib=80)
    assert summary["fits"] and summary["total_gib"] < 80
    assert summary["per_gpu_gib"]["weights"] == pytest.approx(8.29e9 * 2 / 8 / 2**30, rel=0.02)  # ZeRO-3 over 8


def test_zero_stages_partition_what_they_should(qwen7b_dir: Path) -> None:
    shape = memory.model_shape(str(qwen7b_dir))
    p = shape.parameters
    none = memory.model_states(shape, 2, "none", 8, p, reference=False)
    zero2 = memory.model_states(shape, 2, "zero2", 8, p, reference=False)
    zero3 = memory.model_states(shape, 2, "zero3", 16, p, reference=False)
    assert none == {"weights": 2 * p, "gradients": 2 * p, "optimizer": 12 * p}
    assert zero2 == {"weights": 2 * p, "gradients": 2 * p // 8, "optimizer": 12 * p // 8}
    assert zero3 == {"weights": 2 * p // 16, "gradients": 2 * p // 16, "optimizer": 12 * p // 16}


def test_the_cli_plans_and_refuses(qwen7b_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from r1ov.cli import main

    fields = {"model_name_or_path": qwen7b_dir, "train_uri": "unused", "output_dir": tmp_path, "generation": "hf",
              "max_completion_length": 4096, "distributed.deepspeed": "zero3"}  # fmt: skip
    base = ["grpo", "--plan"] + [arg for key, value in fields.items() for arg in ("--set", f"{key}={value}")]
    assert main([*base, "--set", "per_device_train_batch_size=8", "--gpu-gib", "80"]) == 2
    error = capsys.readouterr().err
    assert "grpo.per_device_train_batch_size (now 8)" in error  # 8 x 5120 tokens of activations and logits
    assert "distributed.nnodes" in error  # one rank holds all of AdamW's 12 bytes per parameter
    eight = ["--set", "distributed.nproc_per_node=8", "--set", "per_device_train_batch_size=2"]
    assert main([*base, *eight, "--set", "num_generations=2"]) == 0
    assert json.loads(capsys.readouterr().out)["fits"] is True


def test_a_cluster_launch_refuses_a_plan_that_cannot_fit_before_requesting_gpus(qwen7b_dir: Path, tmp_path: Path):
    from r1ov.train import launch

    cfg = grpo_config(
        qwen7b_dir, "unused", tmp_path / "out", per_device_train_batch_size=8, max_completion_length=4096,
        generation="hf", checkpoint_uri=str(tmp_path / "bucket"),
        distributed={"launcher": "pytorchjob", "nproc_per_node": 8, "deepspeed": "zero3",
                     "cluster": {"gpu_memory_gib": 80}},
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"grpo: the plan needs .* on 80 GiB GPUs"):
        launch.launch("grpo", cfg)
    assert not (tmp_path / "bucket").exists()  # no config written, no job submitted


def test_offloaded_states_leave_the_gpu_plan(qwen7b_dir: Path, tmp_path: Path) -> None:
    def plan(**offload: str) -> dict:
        cfg = grpo_config(
            qwen7b_dir, "unused", tmp_path, per_device_train_batch_size=1, max_completion_length=1024,
            gradient_checkpointing=True, bf16=True, generation="hf",
            distributed={"nnodes": 1, "nproc_per_node": 8, "deepspeed": "zero3", **offload},
        )  # fmt: skip
        return memory.plan("grpo", cfg, gpu_gib=80)["per_gpu_gib"]

    on_gpu, optimizer_off = plan(), plan(offload_optimizer="cpu")
    all_off = plan(offload_optimizer="cpu", offload_param="cpu")
    assert on_gpu["optimizer"] == pytest.approx(8.29e9 * 12 / 8 / 2**30, rel=0.02) and optimizer_off["optimizer"] == 0
    assert optimizer_off["weights"] == on_gpu["weights"] > 0
    assert all_off["weights"] == all_off["reference_model"] == 0
    assert all_off["activations"] == on_gpu["activations"]  # what stays on the GPU is unchanged
