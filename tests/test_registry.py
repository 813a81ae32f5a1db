"""MLflow registry: registration with lineage, ``models:/NAME@ALIAS`` downloads, the promotion gate.

Runs against a real MLflow tracking store and model registry on SQLite (one file per module,
one experiment and model name per test) with local artifact roots; the same code talks to an
MLflow server on the cluster.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from r1ov.config import PromoteConfig, RegisterConfig, TrackingConfig
from r1ov.registry import fetch, metric_key, promote, read_metrics, register


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One SQLite store for the module: creating its schema is most of an MLflow test's time.
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture
def tracking(store: Path, tmp_path: Path, request: pytest.FixtureRequest) -> TrackingConfig:
    """Each test gets its own experiment and artifact root."""
    return TrackingConfig(
        tracking_uri=f"sqlite:///{store / 'mlflow.db'}",
        artifact_location=str(tmp_path / "artifacts"),
        experiment=request.node.name,
    )


@pytest.fixture
def model(request: pytest.FixtureRequest) -> str:
    """A registered-model name of this test's own (the store is shared)."""
    return f"tiny-vlm-{request.node.name.removeprefix('test_')}"


def checkpoint(root: Path, name: str, weights: bytes) -> Path:
    """A stand-in save_pretrained directory: the registry copies files, it never parses them."""
    out = root / name
    (out / "sub").mkdir(parents=True)
    (out / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    (out / "model.safetensors").write_bytes(weights)
    (out / "sub" / "chat_template.jinja").write_text("{{ messages }}")
    return out


def metrics_file(root: Path, name: str, accuracy: float) -> str:
    path = root / f"{name}.json"
    path.write_text(
        json.dumps({"metrics": {"overall/accuracy": accuracy, "r1ov-bench/category/Physics/accuracy": 0.1}})
    )
    return str(path)


def register_version(tmp_path: Path, tracking: TrackingConfig, model: str, name: str, accuracy: float | None) -> dict:
    return register(
        RegisterConfig(
            model_dir=str(checkpoint(tmp_path, name, name.encode() * 10)),
            model_name=model,
            metrics_uri=metrics_file(tmp_path, name, accuracy) if accuracy is not None else None,
            lineage={"sft_data": "s3://bucket/filtered", "grpo_data": "s3://bucket/clevr"},
            git_commit="abc123",
            tracking=tracking,
        )
    )


def gate(tracking: TrackingConfig, model: str, **overrides: float | str) -> dict:
    return promote(PromoteConfig(model_name=model, tracking=tracking, **overrides))


def test_register_logs_lineage_and_sets_alias(tmp_path: Path, tracking: TrackingConfig, model: str) -> None:
    client = MlflowClient(tracking.tracking_uri)
    experiment_id = client.create_experiment(tracking.experiment, artifact_location=tracking.artifact_location)
    parent = client.create_run(experiment_id, run_name="pipeline").info.run_id
    tracking.parent_run_id = parent

    result = register_version(tmp_path, tracking, model, "sft", 0.42)

    assert result["model_name"] == model and result["version"] == "1" and result["alias"] == "challenger"
    assert result["source"].endswith("/model") and result["source"].startswith(str(tmp_path / "artifacts"))
    version = client.get_model_version_by_alias(model, "challenger")
    assert str(version.version) == "1" and version.run_id == result["run_id"]
    assert version.tags["lineage.sft_data"] == "s3://bucket/filtered"
    assert version.tags["lineage.git_commit"] == "abc123"
    assert version.tags["lineage.parent_run_id"] == parent
    assert float(version.tags["metric.overall/accuracy"]) == 0.42
    run = client.get_run(result["run_id"])
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.metrics["overall/accuracy"] == 0.42
    assert run.info.status == "FINISHED"

    local = fetch(model, "challenger", tmp_path / "download", tracking)
    files = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    assert files == ["config.json", "model.safetensors", "sub/chat_template.jinja"]
    assert (local / "model.safetensors").read_bytes() == b"sft" * 10


def test_models_uri_resolves_the_alias(
    tmp_path: Path, tracking: TrackingConfig, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What serving does: ``models:/NAME@challenger`` through MLflow itself (registry from the environment)."""
    from mlflow.artifacts import download_artifacts

    register_version(tmp_path, tracking, model, "served", 0.3)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking.tracking_uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", tracking.tracking_uri)
    local = Path(download_artifacts(f"models:/{model}@challenger", dst_path=str(tmp_path / "served-copy")))
    assert (local / "model.safetensors").read_bytes() == b"served" * 10
    assert (local / "sub" / "chat_template.jinja").is_file()


def test_promotion_gate_sequence(tmp_path: Path, tracking: TrackingConfig, model: str) -> None:
    register_version(tmp_path, tracking, model, "first", 0.50)
    first = gate(tracking, model)
    assert first["promoted"] is True
    assert first["champion_before"] is None and first["champion_after"] == {"version": "1", "value": 0.5}
    assert any("no current 'champion'" in r for r in first["reasons"])
    assert gate(tracking, model)["promoted"] is False  # promoting the champion again changes nothing

    register_version(tmp_path, tracking, model, "worse", 0.40)
    worse = gate(tracking, model)
    assert worse["promoted"] is False
    assert worse["candidate"] == {"version": "2", "value": 0.4}
    assert worse["champion_after"] == {"version": "1", "value": 0.5}
    assert "does not beat champion version 1" in worse["reasons"][0]

    register_version(tmp_path, tracking, model, "marginal", 0.505)
    marginal = gate(tracking, model, min_improvement=0.01)
    assert marginal["promoted"] is False and "by 0.0100" in marginal["reasons"][0]

    register_version(tmp_path, tracking, model, "better", 0.60)
    better = gate(tracking, model, min_improvement=0.01)
    assert better["promoted"] is True
    assert better["champion_before"] == {"version": "1", "value": 0.5}
    assert better["champion_after"] == {"version": "4", "value": 0.6}

    client = MlflowClient(tracking.tracking_uri)
    assert str(client.get_model_version_by_alias(model, "champion").version) == "4"
    decision = json.loads(client.get_model_version(model, "2").tags["r1ov.gate.champion"])
    assert decision["promoted"] is False and decision["reasons"] == worse["reasons"]
    local = fetch(model, "champion", tmp_path / "champion", tracking)
    assert (local / "model.safetensors").read_bytes() == b"better" * 10


def test_missing_metric_is_never_promoted(tmp_path: Path, tracking: TrackingConfig, model: str) -> None:
    register_version(tmp_path, tracking, model, "unscored", None)
    result = gate(tracking, model)
    assert result["promoted"] is False
    assert "has no metric 'overall/accuracy'" in result["reasons"][0]
    assert result["champion_after"] is None
    other = gate(tracking, model, metric="mathvista/accuracy")
    assert other["promoted"] is False and "no metric" in other["reasons"][0]


def test_floor_and_missing_candidate(tmp_path: Path, tracking: TrackingConfig, model: str) -> None:
    nothing = gate(tracking, model)
    assert nothing["promoted"] is False and "has alias 'challenger'" in nothing["reasons"][0]
    register_version(tmp_path, tracking, model, "weak", 0.2)
    floor = gate(tracking, model, min_value=0.3)
    assert floor["promoted"] is False and "below the floor 0.3000" in floor["reasons"][0]


def test_metric_key_and_read_metrics(tmp_path: Path) -> None:
    assert metric_key("r1ov-bench/category/Physics & Co/accuracy") == "r1ov-bench/category/Physics _ Co/accuracy"
    assert metric_key("a/../b") == "a/_/b"
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"metrics": {"overall/accuracy": 0.5, "overall/n": 3}, "model": "x"}))
    assert read_metrics(str(path)) == {"overall/accuracy": 0.5, "overall/n": 3.0}
