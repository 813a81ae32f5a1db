"""Configs fail at load with a message that names the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from r1ov import config as cfg
from r1ov.cli import main


def test_recipe_and_overrides_load(tmp_path: Path) -> None:
    recipe = tmp_path / "sft.yaml"
    recipe.write_text("model_name_or_path: m\noutput_dir: out\ntrain_uri: data\nlearning_rate: 2.0e-5\n")
    loaded = cfg.load(cfg.SFTConfig, recipe, ["distributed.nnodes=2", "distributed.deepspeed=zero2"])
    assert loaded.learning_rate == 2e-5
    assert loaded.distributed.nnodes == 2
    assert loaded.distributed.deepspeed == "zero2"
    assert loaded.warmup_ratio == 0.05  # paper default kept


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["learnign_rate=1e-5"], "sft.learnign_rate: Extra inputs are not permitted"),
        (["learning_rate=fast"], "sft.learning_rate: Input should be a valid number"),
        (["distributed.deepspeed=zero4"], "sft.distributed.deepspeed: Input should be 'none', 'zero2' or 'zero3'"),
        ([], "sft.train_uri: Field required"),
    ],
)
def test_bad_config_names_the_field(overrides: list[str], expected: str) -> None:
    base = ["model_name_or_path=m", "output_dir=o"] + ([] if overrides == [] else ["train_uri=d"])
    with pytest.raises(cfg.ConfigError) as excinfo:
        cfg.load(cfg.SFTConfig, None, base + overrides, name="sft")
    assert expected in str(excinfo.value)


def test_override_without_equals_is_an_error() -> None:
    with pytest.raises(cfg.ConfigError, match="key=value"):
        cfg.apply_overrides({}, ["learning_rate"])


def test_recipe_must_be_a_mapping(tmp_path: Path) -> None:
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("- just\n- a list\n")
    with pytest.raises(cfg.ConfigError, match="must hold a mapping"):
        cfg.read_recipe(recipe)


def test_missing_recipe_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(cfg.ConfigError, match="does not exist"):
        cfg.read_recipe(tmp_path / "nope.yaml")


def test_cli_reports_invalid_config(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["filter", "--set", "input_uri=a", "--set", "output_uri=b", "--set", "min_think_chars=-3"])
    assert code == 2
    err = capsys.readouterr().err
    assert "filter.min_think_chars" in err


def test_eval_openai_backend_requires_url() -> None:
    with pytest.raises(cfg.ConfigError, match="base_url is required"):
        cfg.build(
            cfg.EvalConfig,
            {
                "model_name_or_path": "m",
                "output_dir": "o",
                "backend": "openai",
                "benchmarks": [{"name": "x", "uri": "y"}],
            },
        )


RECIPES = Path(__file__).parent.parent / "pipelines" / "recipes"


@pytest.mark.parametrize(
    ("recipe", "config_class"),
    [
        ("sft-qwen2.5-vl-7b.yaml", cfg.SFTConfig),
        ("sft-qwen2.5-vl-3b.yaml", cfg.SFTConfig),
        ("grpo-clevr.yaml", cfg.GRPOConfig),
    ],
)
def test_paper_recipes_validate(recipe: str, config_class: type) -> None:
    loaded = cfg.load(config_class, RECIPES / recipe)
    assert loaded.bf16
    if config_class is cfg.SFTConfig:
        assert loaded.learning_rate == 1e-5 and loaded.gradient_accumulation_steps == 16
        assert loaded.distributed.deepspeed == ("zero3" if "7b" in recipe else "zero2")
