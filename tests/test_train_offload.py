"""DeepSpeed optimizer offload and a user's DeepSpeed JSON, trained for real: SFT on two torchrun
"nodes" of one process each, over gloo on CPU, as tests/test_train_distributed.py runs them.

What offload changes (deepspeedai/DeepSpeed v0.19.8, as installed):

- transformers hands the Trainer's torch AdamW to accelerate (integrations/deepspeed.py
  ``deepspeed_optim_sched``: no ``optimizer`` section in the config), and accelerate swaps it for
  ``DeepSpeedCPUAdam`` with the same param groups (lr, betas, eps, weight decay) when
  ``offload_optimizer`` names a device (accelerator.py ``_prepare_deepspeed``,
  utils/deepspeed.py ``map_pytorch_optim_to_deepspeed``); DeepSpeed itself would refuse a torch
  optimizer under offload (runtime/engine.py ``_configure_optimizer``, ``zero_force_ds_cpu_optimizer``).
  DeepSpeedCPUAdam needs the ``cpu_adam`` op: a JIT C++ build on first use (about a minute), kept in
  the shared ops cache the whole suite uses (conftest.py: ``TORCH_EXTENSIONS_DIR`` =
  ``r1ov.train.extensions_dir()``), so a machine builds it once.
- ZeRO-2 then keeps the fp32 master partition and its gradient in CPU memory and steps it there
  (runtime/zero/stage_1_and_2.py ``step``: ``single_partition_of_fp32_groups[i].grad``, then
  ``_optimizer_step``); the gradient norm for clipping is summed per parameter
  (``complete_grad_norm_calculation_for_cpu_offload``) instead of over the flat partition.
- On CPU the run without offload also keeps fp32 master weights (no bf16 here) and steps them with
  torch's AdamW. Both sides are the same AdamW in fp32 (ops/csrc/adam/cpu_adam_impl.cpp: m, v,
  ``sqrt(v) * (1 / sqrt(1 - b2^t)) + eps``, ``-lr / (1 - b1^t)``, decoupled decay): only the order of
  the float operations differs (reciprocal-and-multiply and fused multiply-adds in SIMD, bias
  corrections in float, a per-parameter norm sum), each a rounding of about 1e-7 relative. So the two
  runs must end within rounding of each other, not bit-equal; any real difference in the update
  (another lr, betas, eps, a skipped or doubled step, clipping applied differently, a partition
  stepped twice) moves weights by the order of the lr (1e-3 per step here), four orders above that.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from test_train_sft import make_records, sft_config

from r1ov.data import records
from r1ov.train import sft

TWO_NODES = {"nnodes": 2, "nproc_per_node": 1, "backend": "gloo", "deepspeed": "zero2"}
LEARNING_RATE = 1e-3  # sft_config's: random weights move visibly in a few steps


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path / "model.safetensors")


def _train_sft(model: Path, data: str, out: Path, port: int, steps: int, **distributed: Any) -> dict[str, Any]:
    cfg = sft_config(
        model,
        data,
        out,
        max_steps=steps,
        seed=7,
        warmup_ratio=0.0,  # the paper's 0.05 of a few steps is one step at lr 0
        distributed={**TWO_NODES, "rdzv_port": port, **distributed},
    )
    return sft.run(cfg)


@pytest.mark.slow
def test_zero2_with_the_optimizer_offloaded_trains_like_the_run_without_it(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    data = str(tmp_path / "data")
    records.write_dataset(data, make_records(8))

    on_device = _train_sft(tiny_model_dir, data, tmp_path / "plain", 29651, steps=4)
    offloaded = _train_sft(tiny_model_dir, data, tmp_path / "offload", 29652, steps=4, offload_optimizer="cpu")

    # the engine that trained ran what was asked: ZeRO-2, the optimizer stepped on CPU by DeepSpeedCPUAdam
    assert offloaded["deepspeed_engine"]["zero_stage"] == on_device["deepspeed_engine"]["zero_stage"] == 2
    assert offloaded["deepspeed_engine"]["optimizer_offloaded"] is True
    assert offloaded["deepspeed_engine"]["optimizer"] == "DeepSpeedCPUAdam"
    assert on_device["deepspeed_engine"]["optimizer_offloaded"] is False
    assert on_device["deepspeed_engine"]["optimizer"] != "DeepSpeedCPUAdam"
    assert offloaded["steps"] == on_device["steps"] == 4 and offloaded["world_size"] == 2

    base, plain, offload = _weights(tiny_model_dir), _weights(tmp_path / "plain"), _weights(tmp_path / "offload")
    assert set(base) == set(plain) == set(offload)
    assert any(not torch.equal(base[name], offload[name]) for name in base), "offloaded run: the weights must move"
    # Rounding only (module docstring), amplified most where a gradient is nearly zero: Adam moves every
    # weight by about the lr per step whatever its gradient's size, so a tiny gradient's rounding, relatively
    # larger, shows most in the weight. Here that is the key projection's bias (softmax ignores a shift
    # shared by every key; only RoPE's rotation gives it a gradient, ~200x below the query bias's): about
    # 5e-7 after 4 steps, every other tensor below 1.2e-7. 1e-5 is 1% of one step's move at lr 1e-3: above
    # rounding, and far below what a real difference in the update does (a 10% lower lr on the offloaded
    # run alone leaves 57 tensors past this bound, up to 1.8e-3 apart).
    worst = {name: (plain[name] - offload[name]).abs().max().item() for name in base}
    differ = {name: gap for name, gap in worst.items() if gap > 1e-5}
    assert not differ, f"{len(differ)} tensors differ from the run without offload, e.g. {sorted(differ.items())[:3]}"
    moved = max((base[name] - plain[name]).abs().max().item() for name in base)
    assert moved > 1e-3, moved  # the comparison above is tight against how far training moved the weights
    # the losses a user compares: the same batches on weights equal to rounding give equal losses
    assert offloaded["train_loss"] == pytest.approx(on_device["train_loss"], rel=1e-5)
    assert offloaded["final_loss"] == pytest.approx(on_device["final_loss"], rel=1e-5)


@pytest.mark.slow
def test_a_custom_deepspeed_json_is_what_the_engine_runs(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The user's own file, one step: its bucket sizes (not the packaged config's 2e8 allgather bucket,
    nor the hidden_size^2 transformers puts in place of ``"auto"``) are what the running engine reports."""
    data = str(tmp_path / "data")
    records.write_dataset(data, make_records(4))
    mine = tmp_path / "my-deepspeed.json"
    mine.write_text(
        json.dumps(
            {
                # even sizes: ZeRO-2 refuses an allgather bucket that is not a multiple of 2 elements
                # (runtime/zero/stage_1_and_2.py, nccl_start_alignment_factor), which the config model
                # zero.check runs before launch does not see
                "zero_optimization": {"stage": 2, "reduce_bucket_size": 1_234_568, "allgather_bucket_size": 7_654_320},
                "train_micro_batch_size_per_gpu": "auto",
                "train_batch_size": "auto",
                "gradient_accumulation_steps": "auto",
                "gradient_clipping": "auto",
            }
        )
    )

    summary = _train_sft(tiny_model_dir, data, tmp_path / "out", 29653, steps=1, deepspeed_config=str(mine))

    engine = summary["deepspeed_engine"]
    assert engine["zero_stage"] == 2 and engine["optimizer_offloaded"] is False
    assert engine["reduce_bucket_size"] == 1_234_568 and engine["allgather_bucket_size"] == 7_654_320
    assert engine["train_batch_size"] == 4  # "auto" filled in: 2 nodes x 2 per device x 1 accumulation step
    assert summary["steps"] == 1
    base, after = _weights(tiny_model_dir), _weights(tmp_path / "out")
    assert any(not torch.equal(base[name], after[name]) for name in base), "the weights must move"
