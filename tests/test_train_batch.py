"""The paper's global batch (128) is kept on any layout: gradient accumulation is derived, never fixed."""

from __future__ import annotations

import pytest

from r1ov.config import ConfigError, GRPOConfig, SFTConfig, build


@pytest.mark.parametrize(
    ("nnodes", "nproc", "per_device", "accumulation"),
    [(1, 8, 1, 16), (2, 8, 1, 8), (4, 8, 1, 4), (1, 1, 1, 128), (2, 8, 2, 4)],
)
def test_global_batch_is_kept_by_deriving_accumulation(nnodes: int, nproc: int, per_device: int, accumulation: int):
    cfg = SFTConfig(
        model_name_or_path="m", train_uri="d", output_dir="o", global_batch_size=128,
        per_device_train_batch_size=per_device, distributed={"nnodes": nnodes, "nproc_per_node": nproc},
    )  # fmt: skip
    assert cfg.gradient_accumulation_steps == accumulation
    assert nnodes * nproc * per_device * cfg.gradient_accumulation_steps == 128


def test_unreachable_global_batch_is_an_error_naming_the_numbers() -> None:
    with pytest.raises(ConfigError) as info:
        build(
            GRPOConfig,
            {"model_name_or_path": "m", "train_uri": "d", "output_dir": "o", "global_batch_size": 128,
             "per_device_train_batch_size": 8, "distributed": {"nnodes": 3, "nproc_per_node": 8}},
            name="grpo",
        )  # fmt: skip
    message = str(info.value)
    assert "128" in message and "3 node(s) x 8 process(es)" in message and "= 192 per step" in message
    assert "\n" not in message.strip() or message.count("\n") < 3
