"""SFT on the tiny model: in-process training, the saved checkpoint, tracking, and the launchers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText, AutoProcessor

from r1ov.config import ConfigError, SFTConfig
from r1ov.data import imaging, records
from r1ov.scoring import reasoning
from r1ov.train import common, launch, sft


def make_records(n: int, reasoning_text: bool = True) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        image = Image.new("RGB", (64 + 8 * i, 48), (40 * i % 255, 120, 200))
        row = records.new_record(
            source="test/sft",
            question=f"How many cubes are there in scene {i}?",
            image_type="clevr",
            image=imaging.to_png(image),
            answer=str(i % 5),
        )
        if reasoning_text:
            row["reasoning"] = reasoning.compose(f"I count {i % 5} cubes in the scene.", str(i % 5))
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def sft_data(tmp_path_factory: pytest.TempPathFactory) -> str:
    """4 usable records, one with a corrupt image and one without reasoning."""
    rows = make_records(5)
    rows[4]["image"] = b"\x89PNG\r\n\x1a\n not really a png"
    rows.append(make_records(1, reasoning_text=False)[0] | {"question": "Which shape is largest?", "id": "noreason"})
    uri = str(tmp_path_factory.mktemp("sft-data") / "filtered")
    records.write_dataset(uri, rows)
    return uri


def sft_config(model_dir: Path, data: str, out: Path, **overrides: Any) -> SFTConfig:
    fields: dict[str, Any] = {
        "model_name_or_path": str(model_dir),
        "train_uri": data,
        "output_dir": str(out),
        "max_steps": 3,  # a few optimizer steps are enough to see weights move
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 1,  # paper: 16
        "learning_rate": 1e-3,  # random weights move visibly in 3 steps
        "max_length": 512,  # tiny images, short reasoning
        "min_pixels": 3136,
        "max_pixels": 12544,  # at most 16 image tokens per example
        "gradient_checkpointing": False,  # nothing to save on a 0.3M-parameter model
        "track": False,
        "distributed": {"deepspeed": "none"},  # one process: trains in this process
    }
    fields.update(overrides)
    return SFTConfig(**fields)


def changed_tensors(before: Path, after: Path) -> set[str]:
    old, new = load_file(before / "model.safetensors"), load_file(after / "model.safetensors")
    assert set(old) == set(new), "the checkpoint must keep the base model's weight names"
    return {name for name in old if not torch.equal(old[name], new[name])}


def test_sft_trains_tracks_and_writes_a_loadable_checkpoint(tiny_model_dir: Path, sft_data: str, tmp_path: Path):
    import mlflow

    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.create_experiment("r1ov-test")
    parent = client.create_run(experiment, run_name="pipeline").info.run_id
    cfg = sft_config(
        tiny_model_dir,
        sft_data,
        tmp_path / "sft",
        checkpoint_uri=str(tmp_path / "durable" / "sft"),
        track=True,
        tracking={
            "tracking_uri": tracking_uri,
            "experiment": "r1ov-test",
            "parent_run_id": parent,
            "tags": {"r1ov.pipeline_run_id": "p-1"},
        },
    )

    summary = sft.run(cfg)

    assert summary["steps"] == 3
    assert summary["train_records"] == 4
    assert summary["skipped_records"] == 2
    assert summary["skipped_reasons"] == {"bad_image": 1, "missing_reasoning": 1}
    assert summary["final_loss"] > 0 and summary["runtime_s"] > 0
    assert json.loads((tmp_path / "sft" / common.SUMMARY_FILE).read_text()) == summary

    # weights moved, under the base model's names, and the checkpoint loads and generates
    assert changed_tensors(tiny_model_dir, tmp_path / "sft")
    processor = AutoProcessor.from_pretrained(tmp_path / "sft")
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "sft")
    prompt = common.prompt_messages({"question": "How many?", "options": []})
    text = processor.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[Image.new("RGB", (40, 40))], return_tensors="pt")
    assert model.generate(**inputs, max_new_tokens=4, do_sample=False).shape[1] > inputs["input_ids"].shape[1]

    # the durable copy holds the same checkpoint
    durable = tmp_path / "durable" / "sft"
    assert (durable / "model.safetensors").read_bytes() == (tmp_path / "sft" / "model.safetensors").read_bytes()
    assert (durable / "chat_template.jinja").is_file() and (durable / common.SUMMARY_FILE).is_file()

    # one MLflow run, nested under the pipeline's, with the trainer's metrics and our tags
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.tags["r1ov.stage"] == "sft" and run.data.tags["r1ov.pipeline_run_id"] == "p-1"
    assert run.data.tags["r1ov.train_uri"] == sft_data
    assert run.info.run_name == "sft"
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 3
    assert run.data.metrics["train_records"] == 4 and run.data.metrics["skipped_records"] == 2
    assert run.data.params["learning_rate"] == "0.001"
    # throughput from the second logging step on; reasoning lengths for GRPO's and eval's limits
    assert len(client.get_metric_history(run.info.run_id, "tokens_per_second")) == 2
    assert summary["reasoning_tokens"]["n"] == 4 and 0 < summary["reasoning_tokens"]["p95"] <= 512


def test_freeze_vision_trains_the_language_model_only(tiny_model_dir: Path, sft_data: str, tmp_path: Path) -> None:
    sft.train(sft_config(tiny_model_dir, sft_data, tmp_path / "frozen", freeze_vision=True, max_steps=2))
    changed = changed_tensors(tiny_model_dir, tmp_path / "frozen")
    assert changed and not any(name.startswith("visual.") for name in changed)
    assert any(name.startswith("model.layers.") for name in changed)


def test_a_dataset_without_usable_records_is_a_clear_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    rows = make_records(2, reasoning_text=False)
    records.write_dataset(str(tmp_path / "raw"), rows)
    with pytest.raises(ValueError, match=r"no usable training records .*missing_reasoning': 2"):
        sft.train(sft_config(tiny_model_dir, str(tmp_path / "raw"), tmp_path / "out"))


def test_deepspeed_outside_torchrun_names_the_fix(
    tiny_model_dir: Path, sft_data: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RANK", raising=False)
    cfg = sft_config(tiny_model_dir, sft_data, tmp_path / "out", distributed={"deepspeed": "zero2"})
    with pytest.raises(RuntimeError, match="needs a torchrun world"):
        sft.train(cfg)


def test_cluster_launchers_need_a_checkpoint_uri(tiny_model_dir: Path, sft_data: str, tmp_path: Path) -> None:
    for launcher in ("pytorchjob", "trainjob"):
        cfg = sft_config(tiny_model_dir, sft_data, tmp_path / "out", distributed={"launcher": launcher})
        with pytest.raises(ConfigError, match=r"sft.checkpoint_uri: required with distributed.launcher="):
            launch.launch("sft", cfg)


def test_pytorchjob_launch_runs_the_job_command_and_leaves_the_model_in_checkpoint_uri(
    tiny_model_dir: Path, sft_data: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cluster is a local stand-in for the training operator: it runs the PyTorchJob's Master
    container command with the PET_* environment the operator sets, in a scratch "pod" directory.
    Manifest building (r1ov.k8s.trainjobs) and launch's protocol around it are the real ones."""
    pytest.importorskip("r1ov.k8s.trainjobs")
    from r1ov.k8s import client

    submitted: list[dict[str, Any]] = []

    def operator(manifest: dict[str, Any], namespace: str, poll_s: float, *args: Any, **kwargs: Any) -> dict:
        submitted.append(manifest)
        spec = manifest["spec"]
        master = spec["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
        command = list(master["command"])
        assert command[0] == "torchrun"
        env = {**os.environ, **{e["name"]: e["value"] for e in master.get("env", []) if "value" in e}}
        env.update(
            PET_NNODES="1", PET_NODE_RANK="0", PET_NPROC_PER_NODE=spec["nprocPerNode"], PET_MASTER_ADDR="127.0.0.1"
        )
        env["PET_MASTER_PORT"] = str(launch.free_port(29640))
        pod = tmp_path / "pod"
        pod.mkdir()
        done = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", *command[1:]], env=env, cwd=pod, capture_output=True
        )
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        return {"kind": manifest["kind"], "name": manifest["metadata"]["name"], "state": "Succeeded"}

    monkeypatch.setattr(client, "run_to_completion", operator)
    durable = tmp_path / "bucket" / "runs" / "sft"
    cfg = sft_config(
        tiny_model_dir,
        sft_data,
        tmp_path / "component-output",
        checkpoint_uri=str(durable),
        distributed={
            "launcher": "pytorchjob",
            "deepspeed": "none",
            "cluster": {"namespace": "r1ov-test", "work_dir": str(tmp_path / "pod-work")},
        },
    )

    summary = launch.launch("sft", cfg)

    (manifest,) = submitted
    assert manifest["kind"] == "PyTorchJob"
    command = manifest["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["command"]
    assert command == ["torchrun", "-m", "r1ov.train.worker", "sft", str(durable / launch.CONFIG_FILE)]
    assert summary["steps"] == 3 and summary["train_records"] == 4
    assert summary["job"]["state"] == "Succeeded"
    # the model trained in the "pod" stays in checkpoint_uri: that durable copy is the stage's output
    assert summary["output_dir"] == summary["model_uri"] == str(durable)
    assert changed_tensors(tiny_model_dir, durable)
    assert (durable / "processor_config.json").is_file()
    assert not (tmp_path / "component-output").exists()  # nothing copied back through the launcher
