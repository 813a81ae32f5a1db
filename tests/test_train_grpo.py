"""GRPO on the tiny model: transformers rollouts, rewards by name, settings checked before launch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoProcessor

from r1ov.config import ConfigError, GRPOConfig
from r1ov.data import imaging, records
from r1ov.train import common, grpo, rewards


def clevr_records(n: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        image = Image.new("RGB", (96 + 16 * i, 64), (30 * i % 255, 90, 160))
        options = ["red", "blue", "green"] if i % 2 else None
        rows.append(
            records.new_record(
                source="test/clevr",
                question=f"How many objects are in scene {i}?" if not options else "What color is the cube?",
                image_type="clevr",
                image=imaging.to_png(image),
                options=options,
                answer="B" if options else str(i),
            )
        )
    return rows


@pytest.fixture(scope="module")
def clevr_data(tmp_path_factory: pytest.TempPathFactory) -> str:
    """4 usable CLEVR-style records and one without a ground-truth answer."""
    rows = clevr_records(4)
    unanswered = records.new_record(
        source="test/clevr", question="What is behind the sphere?", image_type="clevr", image=rows[0]["image"]
    )
    uri = str(tmp_path_factory.mktemp("clevr") / "train")
    records.write_dataset(uri, [*rows, unanswered])
    return uri


def grpo_config(model_dir: Path, data: str, out: Path, **overrides: Any) -> GRPOConfig:
    fields: dict[str, Any] = {
        "model_name_or_path": str(model_dir),
        "train_uri": data,
        "output_dir": str(out),
        "generation": "hf",  # transformers generate: no vLLM on CPU
        "max_steps": 2,
        "num_generations": 2,  # peers: 8; the smallest group that has an advantage
        "per_device_train_batch_size": 2,  # one prompt x 2 generations per step
        "gradient_accumulation_steps": 1,
        "max_completion_length": 12,  # random completions: a few tokens show the mechanics
        "max_prompt_length": 512,
        "learning_rate": 1e-3,  # random weights move visibly in 2 steps (peers: 1e-6)
        "min_pixels": 3136,
        "max_pixels": 12544,
        "gradient_checkpointing": False,
        "track": False,
        "distributed": {"deepspeed": "none"},  # one process: trains in this process
    }
    fields.update(overrides)
    return GRPOConfig(**fields)


def length_reward(completions: list[Any], **kwargs: Any) -> list[float | None]:
    """Varies between generations; a random tiny model never earns accuracy or format."""
    return [len(rewards.completion_text(c)) / 100 for c in completions]


def test_grpo_trains_with_hf_rollouts_and_named_rewards(
    tiny_model_dir: Path, clevr_data: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # accuracy and format give every random completion 0, hence no advantage and no gradient;
    # a registered test reward gives the group a spread, so the weights must move.
    monkeypatch.setitem(rewards.REWARDS, "length", length_reward)
    cfg = grpo_config(tiny_model_dir, clevr_data, tmp_path / "grpo", rewards=["accuracy", "format", "length"])

    summary = grpo.run(cfg)

    assert summary["steps"] == 2
    assert summary["train_records"] == 4
    assert summary["skipped_reasons"] == {"missing_answer": 1}
    assert summary["generation"] == "hf"
    assert summary["rewards"]["accuracy"] == 0.0 and summary["rewards"]["format"] == 0.0
    assert summary["rewards"]["length"] > 0 and summary["reward"] > 0
    before = load_file(tiny_model_dir / "model.safetensors")
    after = load_file(tmp_path / "grpo" / "model.safetensors")
    assert set(before) == set(after)
    assert any(not torch.equal(before[name], after[name]) for name in before)
    assert (tmp_path / "grpo" / "chat_template.jinja").is_file()


def test_a_device_batch_of_prompts_with_different_lengths_trains(
    tiny_model_dir: Path, clevr_data: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two prompts per device batch, one with options and one without: TRL left-pads the prompt
    # ids, so the processor's per-token image mask must be left-padded too, or the 3D rotary
    # positions of the shorter prompt are taken from the wrong tokens (a shape error at best).
    monkeypatch.setitem(rewards.REWARDS, "length", length_reward)
    image = imaging.to_png(Image.new("RGB", (96, 64), (40, 90, 160)))
    questions = ["How many cubes?", "Count every small rubber cube that is left of the large cylinder, then add two."]
    rows = [records.new_record(source="t", question=q, image_type="clevr", image=image, answer="2") for q in questions]
    data = str(tmp_path / "two-lengths")
    records.write_dataset(data, rows)
    # both prompts in every device batch: 2 prompts x 2 generations
    cfg = grpo_config(tiny_model_dir, data, tmp_path / "grpo", rewards=["length"], per_device_train_batch_size=4)

    # Every forward's image mask must mark exactly the image placeholder tokens.
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl

    image_pad = AutoProcessor.from_pretrained(tiny_model_dir).tokenizer.convert_tokens_to_ids("<|image_pad|>")
    original = modeling_qwen2_5_vl.Qwen2_5_VLModel.get_rope_index
    seen: list[bool] = []

    def checked(self: Any, input_ids: torch.Tensor, mm_token_type_ids: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        seen.append(torch.equal(mm_token_type_ids == 1, input_ids == image_pad))
        return original(self, input_ids, mm_token_type_ids, *args, **kwargs)

    monkeypatch.setattr(modeling_qwen2_5_vl.Qwen2_5_VLModel, "get_rope_index", checked)
    summary = grpo.train(cfg)
    assert summary["steps"] == 2 and summary["reward"] > 0
    assert seen and all(seen), f"{seen.count(False)} of {len(seen)} forwards had the image mask on other tokens"


def test_prompts_over_max_prompt_length_are_skipped_and_counted(
    tiny_model_dir: Path, clevr_data: str, tmp_path: Path
) -> None:
    # Options make the multiple-choice prompts longer than the open ones: a limit between them.
    processor = AutoProcessor.from_pretrained(tiny_model_dir, size={"shortest_edge": 3136, "longest_edge": 12544})
    lengths = {}
    for row in records.read_records(clevr_data)[:4]:
        lengths[row["id"]] = grpo.prompt_tokens(processor, common.prompt_messages(row), imaging.load_image(row))
    limit = min(lengths.values())
    cfg = grpo_config(tiny_model_dir, clevr_data, tmp_path / "out", max_prompt_length=limit, max_steps=1)
    summary = grpo.train(cfg)
    too_long = sum(1 for n in lengths.values() if n > limit)
    assert too_long > 0
    assert summary["skipped_reasons"] == {"missing_answer": 1, "prompt_too_long": too_long}
    assert summary["train_records"] == 4 - too_long


def test_prompt_tokens_matches_the_processor(tiny_model_dir: Path, clevr_data: str) -> None:
    processor = AutoProcessor.from_pretrained(tiny_model_dir, size={"shortest_edge": 3136, "longest_edge": 12544})
    for row in records.read_records(clevr_data)[:4]:
        prompt = common.prompt_messages(row)
        image = imaging.load_image(row)
        text = processor.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
        expected = processor(text=[text], images=[image], return_tensors="pt")["input_ids"].shape[1]
        assert grpo.prompt_tokens(processor, prompt, image) == expected


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"generation": "vllm-server"}, "vllm_server_base_url: required"),
        ({"rewards": ["accuracy", "fromat"]}, r"unknown reward\(s\) \['fromat'\]"),
        ({"num_generations": 3}, "num_generations: 3 must divide the generation batch"),
        ({"reward_weights": [1.0]}, r"reward_weights: 1 weight\(s\) for 2 reward\(s\)"),
        ({"log_completions_steps": 5, "track": True, "logging_steps": 2}, "log_completions_steps: 5 must be a"),
        ({"log_completions_steps": 5}, "log_completions_steps: the tables go to the stage's MLflow run"),
        (
            {"num_generations": 4, "distributed": {"deepspeed": "none", "nnodes": 2}},
            None,  # 2 per device x 2 processes = 4: fine
        ),
    ],
)
def test_settings_every_worker_would_reject_fail_before_launch(
    tiny_model_dir: Path, tmp_path: Path, overrides: dict[str, Any], message: str | None
) -> None:
    cfg = grpo_config(tiny_model_dir, str(tmp_path / "unused"), tmp_path / "out", **overrides)
    if message is None:
        grpo.check(cfg)
        return
    with pytest.raises(ConfigError, match=message):
        grpo.run(cfg)
    assert not (tmp_path / "out").exists()  # nothing was launched


def test_rollouts_reach_mlflow_as_a_table_every_n_steps(
    tiny_model_dir: Path, clevr_data: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    import pandas

    monkeypatch.setitem(rewards.REWARDS, "length", length_reward)
    # a local MLflow store: runs in SQLite, artifacts in a folder
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri)
    client.create_experiment("r1ov-test", artifact_location=(tmp_path / "artifacts").as_uri())
    cfg = grpo_config(
        tiny_model_dir, clevr_data, tmp_path / "grpo", rewards=["length"], max_steps=4, log_completions_steps=2,
        track=True, tracking={"tracking_uri": tracking_uri, "experiment": "r1ov-test"},
    )  # fmt: skip
    summary = grpo.train(cfg)

    run_id = summary["mlflow_run_id"]
    files = sorted(f.path for f in client.list_artifacts(run_id, "completions"))
    assert files == ["completions/step_000002.json", "completions/step_000004.json"]  # every 2nd of 4 steps
    questions = {common.prompt_messages(r)[1]["content"][1]["text"] for r in records.read_records(clevr_data)}
    history = {m.step: m.value for m in client.get_metric_history(run_id, "rewards/length_reward/mean")}
    for step in (2, 4):
        # what mlflow.log_table wrote: pandas' "split" JSON (columns, data), as mlflow.load_table reads it
        local = client.download_artifacts(run_id, f"completions/step_{step:06d}.json", str(tmp_path))
        table = pandas.read_json(local, orient="split", dtype=False, convert_dates=False)
        assert list(table.columns) == ["step", "prompt", "completion", "reward/length_reward", "advantage"]
        assert len(table) == 2 and set(table["step"]) == {step}  # one prompt x 2 generations per step
        assert set(table["prompt"]) <= questions
        # the rewards the table shows are the ones the step was trained on: their mean is the logged metric
        lengths = [len(text) / 100 for text in table["completion"]]
        assert table["reward/length_reward"].tolist() == pytest.approx(lengths)
        assert sum(lengths) / 2 == pytest.approx(history[step])


def test_generation_backends_map_to_trl_settings(tiny_model_dir: Path, tmp_path: Path) -> None:
    base = {"model_dir": tiny_model_dir, "data": "unused", "out": tmp_path}
    assert grpo.generation_arguments(grpo_config(**base)) == {"use_vllm": False}
    server = grpo_config(**base, generation="vllm-server", vllm_server_base_url="http://rollout:8000")
    assert grpo.generation_arguments(server) == {
        "use_vllm": True,
        "vllm_mode": "server",
        "vllm_server_base_url": "http://rollout:8000",
    }
    colocate = grpo.generation_arguments(grpo_config(**base, generation="vllm-colocate", vllm_tensor_parallel_size=2))
    assert colocate["vllm_mode"] == "colocate" and colocate["vllm_tensor_parallel_size"] == 2
    assert colocate["vllm_max_model_length"] == 512 + 12


def test_algorithm_settings_reach_trl(tiny_model_dir: Path, tmp_path: Path) -> None:
    from trl import GRPOConfig as TRLGRPOConfig

    cfg = grpo_config(
        tiny_model_dir, "unused", tmp_path,
        reward_weights=[2.0, 0.5], num_iterations=2, scale_rewards="batch", loss_type="dr_grpo", beta=0.0,
    )  # fmt: skip
    trl_args = TRLGRPOConfig(output_dir=str(tmp_path), use_cpu=True, **grpo.algorithm_arguments(cfg))
    assert trl_args.reward_weights == [2.0, 0.5] and trl_args.num_iterations == 2
    assert trl_args.scale_rewards == "batch" and trl_args.loss_type == "dr_grpo" and trl_args.beta == 0.0


@pytest.mark.gpu
@pytest.mark.vllm
def test_grpo_with_colocated_vllm_rollouts(tiny_model_dir: Path, clevr_data: str, tmp_path: Path) -> None:
    cfg = grpo_config(
        tiny_model_dir, clevr_data, tmp_path / "grpo-vllm", generation="vllm-colocate", bf16=True, max_steps=1
    )
    summary = grpo.run(cfg)
    assert summary["steps"] == 1 and summary["generation"] == "vllm-colocate"
