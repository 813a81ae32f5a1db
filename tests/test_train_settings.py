"""The trainers' settings: the authors' released values, one value per setting everywhere, TRL's own
GRPO fields through a checked mapping, and only fields the installed libraries know."""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import pytest
import yaml
from test_train_grpo import grpo_config
from test_train_sft import sft_config

from r1ov import config as cfg
from r1ov.config import ConfigError
from r1ov.train import common, grpo

ROOT = Path(__file__).resolve().parents[1]


def test_grpo_defaults_are_the_authors_released_ones() -> None:
    defaults = cfg.GRPOConfig(model_name_or_path="m", train_uri="t", output_dir="o")
    # Fancy-MLLM/R1-Onevision VLM-R1/src/open-r1-multimodal: grpo_trainer.py averages each completion's
    # token losses, then the completions (TRL's "grpo"); grpo_jsonl.py bounds images at 12845056 pixels.
    assert defaults.loss_type == "grpo"
    assert defaults.max_pixels == cfg.RL_MAX_PIXELS == 12845056


def test_one_reasoning_length_and_one_rl_image_bound_everywhere() -> None:
    from components.evaluate.component import evaluate
    from components.grpo.component import grpo as grpo_component

    pipeline = yaml.safe_load_all((ROOT / "pipelines" / "r1ov.yaml").read_text()).__next__()
    params = pipeline["root"]["inputDefinitions"]["parameters"]
    lengths = {
        "config GRPO": cfg.GRPOConfig.model_fields["max_completion_length"].default,
        "config eval": cfg.EvalConfig.model_fields["max_new_tokens"].default,
        "pipeline": params["max_reasoning_tokens"]["defaultValue"],
        "grpo component": inspect.signature(grpo_component.python_func).parameters["max_completion_length"].default,
        "eval component": inspect.signature(evaluate.python_func).parameters["max_new_tokens"].default,
    }
    for recipe in ("grpo-clevr.yaml", "grpo-qwen2.5-vl-3b.yaml"):
        loaded = cfg.load(cfg.GRPOConfig, ROOT / "pipelines" / "recipes" / recipe)
        lengths[recipe] = loaded.max_completion_length
        assert loaded.max_pixels == cfg.RL_MAX_PIXELS and loaded.loss_type == "grpo", recipe
    assert set(lengths.values()) == {cfg.REASONING_TOKENS}, lengths


def test_the_3b_grpo_recipe_starts_from_the_3b_sft_model_on_zero2() -> None:
    sft = cfg.load(cfg.SFTConfig, ROOT / "pipelines" / "recipes" / "sft-qwen2.5-vl-3b.yaml")
    rl = cfg.load(cfg.GRPOConfig, ROOT / "pipelines" / "recipes" / "grpo-qwen2.5-vl-3b.yaml")
    assert rl.model_name_or_path == sft.checkpoint_uri
    assert rl.distributed.deepspeed == "zero2" and rl.attn_implementation == "flash_attention_2"
    assert rl.num_generations == 8 and rl.beta == 0.04 and rl.learning_rate == 1e-6


# --------------------------------------------------------------------------- installed libraries


@dataclasses.dataclass
class OlderTrainingArguments:
    """TrainingArguments as transformers 5.17 (the vLLM image's) has it: no activation_checkpointing."""

    output_dir: str
    gradient_checkpointing: bool = False
    learning_rate: float = 5e-5


def test_fields_the_installed_release_lacks_are_renamed_or_left_out(caplog: pytest.LogCaptureFixture) -> None:
    fields = {"output_dir": "o", "activation_checkpointing": True, "learning_rate": 1e-6, "new_knob": 3}
    args = common.build_arguments(OlderTrainingArguments, fields)
    assert args == OlderTrainingArguments(output_dir="o", gradient_checkpointing=True, learning_rate=1e-6)
    assert "has no field 'new_knob'" in caplog.text


@pytest.mark.parametrize("stage", ["sft", "grpo"])
def test_the_installed_trl_accepts_every_field_the_stage_builds(stage: str, tiny_model_dir: Path, tmp_path: Path):
    """The trainer config as a worker builds it, against the TRL and transformers installed here."""
    import trl

    runtime = common.Runtime(cuda=False, backend="gloo", rank=0, local_rank=0, world_size=1)
    if stage == "sft":
        stage_cfg = sft_config(tiny_model_dir, "unused", tmp_path / "out", gradient_checkpointing=True)
        fields = common.trainer_arguments(stage_cfg, runtime, track=False)
        args = common.build_arguments(trl.SFTConfig, fields)
    else:
        stage_cfg = grpo_config(
            tiny_model_dir, "unused", tmp_path / "out", trl={"epsilon_high": 0.28, "mask_truncated_completions": True}
        )
        fields = {
            **stage_cfg.trl,
            **common.trainer_arguments(stage_cfg, runtime, track=False),
            **grpo.generation_arguments(stage_cfg),
            **grpo.algorithm_arguments(stage_cfg),
        }
        args = common.build_arguments(trl.GRPOConfig, fields)
        assert args.epsilon_high == 0.28 and args.mask_truncated_completions is True
        assert args.loss_type == "grpo"
    assert set(common.known_fields(type(args), fields)) == set(fields)  # nothing dropped here
    assert args.learning_rate == stage_cfg.learning_rate


@pytest.mark.parametrize(
    ("trl_fields", "message"),
    [
        ({"epsilon_hihg": 0.28}, r"grpo.trl: the installed TRL \S+ GRPOConfig has no field\(s\) \['epsilon_hihg'\]"),
        ({"beta": 0.0}, r"grpo.trl: \['beta'\] come from r1ov's own settings; set them as grpo.<field>"),
        ({"learning_rate": 1.0}, r"\['learning_rate'\] come from r1ov's own settings"),
    ],
)
def test_the_trl_mapping_is_checked_before_launch(
    trl_fields: dict, message: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=message):
        grpo.run(grpo_config(tiny_model_dir, "unused", tmp_path / "out", trl=trl_fields))
    assert not (tmp_path / "out").exists()


def test_the_attention_kernel_is_chosen_by_config(tiny_model_dir: Path, tmp_path: Path) -> None:
    chosen = sft_config(tiny_model_dir, "unused", tmp_path, attn_implementation="eager")
    model, _ = common.load_model_and_processor(chosen, bf16=False)
    assert model.config._attn_implementation == "eager"
    default, _ = common.load_model_and_processor(sft_config(tiny_model_dir, "unused", tmp_path), bf16=False)
    assert default.config._attn_implementation == "sdpa"


def test_grpo_can_freeze_the_vision_tower(tiny_model_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file
    from test_train_grpo import clevr_records

    from r1ov.data import records

    records.write_dataset(str(tmp_path / "data"), clevr_records(4))
    # a random model earns no accuracy or format: the length reward gives the group a spread
    cfg = grpo_config(
        tiny_model_dir, str(tmp_path / "data"), tmp_path / "out", freeze_vision=True,
        rewards=["accuracy", "format", "r1ov.testing.rewards:length"],
    )  # fmt: skip
    summary = grpo.train(cfg)
    assert summary["rewards"]["r1ov.testing.rewards:length"] > 0
    before, after = load_file(tiny_model_dir / "model.safetensors"), load_file(tmp_path / "out" / "model.safetensors")
    moved = {name for name in before if not (before[name] == after[name]).all()}
    assert moved and not any(name.startswith("visual.") for name in moved), sorted(moved)[:5]


# --------------------------------------------------------------------------- DeepSpeed offload and a custom JSON


def _zero_arguments(dist: dict[str, object], tmp_path: Path) -> dict[str, object]:
    """The ``deepspeed`` value the stage hands to TrainingArguments, read back by transformers' own parser."""
    from transformers.integrations import HfDeepSpeedConfig

    sft = sft_config(Path("unused"), "unused", tmp_path, distributed=dist)
    runtime = common.Runtime(cuda=True, backend="nccl", rank=0, local_rank=0, world_size=8)
    built = common.trainer_arguments(sft, runtime, track=False)["deepspeed"]
    assert isinstance(built, dict)
    HfDeepSpeedConfig(built)  # raises on a config transformers cannot read
    return built


def test_offload_reaches_the_trainers_deepspeed_config(tmp_path: Path) -> None:
    from transformers.integrations import HfDeepSpeedConfig

    built = _zero_arguments({"deepspeed": "zero3", "offload_optimizer": "cpu", "offload_param": "cpu"}, tmp_path)
    parsed = HfDeepSpeedConfig(built)
    assert parsed.is_zero3() and parsed.is_offload()
    section = built["zero_optimization"]
    assert section["offload_optimizer"] == {"device": "cpu", "pin_memory": True}
    assert section["offload_param"] == {"device": "cpu", "pin_memory": True}
    assert not HfDeepSpeedConfig(_zero_arguments({"deepspeed": "zero3"}, tmp_path)).is_offload()
    zero2 = _zero_arguments({"deepspeed": "zero2", "offload_optimizer": "cpu"}, tmp_path)
    assert HfDeepSpeedConfig(zero2).is_offload() and "offload_param" not in zero2["zero_optimization"]


@pytest.mark.parametrize(
    ("dist", "message"),
    [
        ({"deepspeed": "zero2", "offload_param": "cpu"}, "offload_param=cpu needs deepspeed=zero3"),
        ({"deepspeed": "none", "offload_optimizer": "cpu"}, "offload_optimizer=cpu needs DeepSpeed"),
        ({"deepspeed": "none", "deepspeed_config": "ds.json"}, "deepspeed_config needs DeepSpeed"),
        ({"deepspeed": "zero3", "offload_param": "nvme"}, "offload_param"),
    ],
)
def test_offload_settings_deepspeed_cannot_run_are_refused(dist: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cfg.DistributedConfig(**dist)


ZERO3 = {"stage": 3, "reduce_bucket_size": "auto", "stage3_prefetch_bucket_size": 50_000_000, "sub_group_size": 1e8}


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (None, None),
        ({**ZERO3, "stage": 2}, r"zero_optimization.stage 2 but distributed.deepspeed is zero3"),
        ({**ZERO3, "stage3_prefech_bucket_size": 1}, "DeepSpeed refuses .*zero_optimization"),  # misspelt key
        ("not json", "cannot read .* as JSON"),
    ],
)
def test_a_custom_deepspeed_json_is_used_and_checked_before_launch(
    section: object, message: str | None, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from r1ov.train import launch

    path = tmp_path / "ds.json"
    custom = {
        "zero_optimization": section or ZERO3,
        "train_micro_batch_size_per_gpu": "auto",
        "bf16": {"enabled": "auto"},
    }
    path.write_text(section if isinstance(section, str) else json.dumps(custom))
    dist = {"deepspeed": "zero3", "deepspeed_config": str(path), "offload_optimizer": "cpu"}
    if message is None:
        built = _zero_arguments(dist, tmp_path)
        assert built["zero_optimization"]["stage3_prefetch_bucket_size"] == 50_000_000  # the user's, not ours
        assert built["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
        assert "stage3_gather_16bit_weights_on_model_save" not in built["zero_optimization"]
        return
    stage = sft_config(tiny_model_dir, "unused", tmp_path / "out", distributed={**dist, "nproc_per_node": 2})
    with pytest.raises(ConfigError, match=f"distributed.deepspeed_config: .*{message}"):
        launch.launch("sft", stage)
    assert not (tmp_path / "out").exists()  # refused before anything started


def test_an_odd_allgather_bucket_is_refused_before_launch_not_at_engine_start() -> None:
    """DeepSpeed's config model takes any integer; its ZeRO-1/2 optimizer asserts an even one only
    once the engine starts on every node (stage_1_and_2.py, nccl_start_alignment_factor = 2)."""
    from r1ov.config import DistributedConfig
    from r1ov.train import zero

    section = {"stage": 2, "allgather_bucket_size": 1234567}
    with pytest.raises(ConfigError, match="allgather_bucket_size 1234567 must be even"):
        zero.check({"zero_optimization": section}, DistributedConfig(deepspeed="zero2"), "ds.json")
    zero.check(
        {"zero_optimization": {**section, "allgather_bucket_size": 1234568}},
        DistributedConfig(deepspeed="zero2"),
        "ds.json",
    )
