"""MLflow registry: registration with lineage, ``models:/NAME@ALIAS`` downloads, the promotion gate.

Runs against a real MLflow tracking store and model registry on SQLite (one file per module,
one experiment and model name per test) with local artifact roots; the same code talks to an
MLflow server on the cluster.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from pydantic import ValidationError

from r1ov.config import PromoteConfig, RegisterConfig, TrackingConfig
from r1ov.errors import RegistryError
from r1ov.registry.models import fetch, list_models, register
from r1ov.registry.promotion import promote, rollback
from r1ov.registry.tracking import metric_key, read_metrics


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
    path = root / f"{name}-eval" / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"metrics": {"overall/accuracy": accuracy, "r1ov-bench/category/Physics/accuracy": 0.1}})
    )
    return str(path)


ITEMS = 40


def verdicts_file(root: Path, name: str, correct: int, items: int = ITEMS, benchmark: str = "bench") -> str:
    """Per-item verdicts: the first ``correct`` of ``items`` items right (what eval writes beside metrics.json)."""
    path = root / f"{name}-eval" / "verdicts.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(
            json.dumps({"benchmark": benchmark, "id": f"q{i}", "correct": i < correct}) + "\n" for i in range(items)
        )
    )
    return str(path)


def register_version(
    tmp_path: Path, tracking: TrackingConfig, model: str, name: str, accuracy: float | None, **verdicts: Any
) -> dict:
    """A version whose eval got ``accuracy`` (right on the first accuracy x ITEMS items unless told otherwise)."""
    if accuracy is not None:
        verdicts_file(tmp_path, name, **{"correct": round(accuracy * verdicts.get("items", ITEMS)), **verdicts})
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


def gate(tracking: TrackingConfig, model: str, version: str, **overrides: Any) -> dict:
    return promote(PromoteConfig(model_name=model, version=version, tracking=tracking, **overrides))


def aliases(tracking: TrackingConfig, model: str) -> dict[str, str]:
    return {a: str(v) for a, v in MlflowClient(tracking.tracking_uri).get_registered_model(model).aliases.items()}


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
    # the whole lineage is one JSON artifact; a few key facts are tags
    lineage = mlflow.artifacts.load_dict(f"{client.get_run(result['run_id']).info.artifact_uri}/lineage.json")
    assert lineage["lineage"]["sft_data"] == "s3://bucket/filtered" and "lineage.sft_data" not in version.tags
    assert lineage["metrics"]["overall/accuracy"] == 0.42
    assert version.tags["lineage.artifact"] == "lineage.json"
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


def test_first_candidate_must_beat_the_base_model_item_by_item(
    tmp_path: Path, tracking: TrackingConfig, model: str
) -> None:
    register_version(tmp_path, tracking, model, "first", 0.5)
    no_base = gate(tracking, model, "1")
    assert no_base["promoted"] is False and "no base-model verdicts" in no_base["reasons"][0]
    assert "champion" not in aliases(tracking, model)

    base = verdicts_file(tmp_path, "base", correct=2)
    first = gate(tracking, model, "1", baseline_verdicts_uri=base)
    assert first["promoted"] is True and first["champion_before"] is None and first["champion_after"] == "1"
    assert "beats the base model" in first["reasons"][0]
    comparison = first["comparison"]
    assert comparison["n"] == ITEMS and comparison["only_b_correct"] == 18 and comparison["only_a_correct"] == 0
    assert comparison["ci95"][0] > 0 and comparison["p_value"] < 0.05
    assert aliases(tracking, model) == {"challenger": "1", "champion": "1"}
    recorded = json.loads(MlflowClient(tracking.tracking_uri).get_model_version(model, "1").tags["r1ov.gate.champion"])
    assert recorded["promoted"] is True and recorded["comparison"]["n"] == ITEMS
    again = gate(tracking, model, "1")
    assert again["promoted"] is False and "already holds 'champion'" in again["reasons"][0]


def test_worse_or_insignificant_candidate_moves_no_alias(tmp_path: Path, tracking: TrackingConfig, model: str) -> None:
    register_version(tmp_path, tracking, model, "champ", 0.5)
    assert gate(tracking, model, "1", baseline_verdicts_uri=verdicts_file(tmp_path, "base", 0))["promoted"]

    register_version(tmp_path, tracking, model, "worse", 0.4)
    worse = gate(tracking, model, "2")
    assert worse["promoted"] is False and "not better than champion version 1" in worse["reasons"][0]
    assert worse["champion_after"] == "1"

    register_version(tmp_path, tracking, model, "lucky", 0.55)  # two more items right: could be chance
    lucky = gate(tracking, model, "3")
    assert lucky["promoted"] is False and "could be chance" in lucky["reasons"][0]

    register_version(tmp_path, tracking, model, "better", 0.8)
    assert gate(tracking, model, "4", min_improvement=0.5)["promoted"] is False  # +0.3 < required +0.5
    assert aliases(tracking, model)["champion"] == "1"
    better = gate(tracking, model, "4")
    assert better["promoted"] is True and better["champion_before"] == "1"
    assert aliases(tracking, model)["champion"] == "4"
    assert (
        fetch(model, "champion", tmp_path / "champion", tracking) / "model.safetensors"
    ).read_bytes() == b"better" * 10


def test_candidate_scored_on_other_items_or_benchmarks_is_refused(
    tmp_path: Path, tracking: TrackingConfig, model: str
) -> None:
    register_version(tmp_path, tracking, model, "champ", 0.25)
    assert gate(tracking, model, "1", baseline_verdicts_uri=verdicts_file(tmp_path, "base", 0))["promoted"]
    register_version(tmp_path, tracking, model, "fewer", 1.0, items=30)  # perfect, but on 30 of the 40 items
    fewer = gate(tracking, model, "2")
    assert fewer["promoted"] is False and "other items than champion version 1" in fewer["reasons"][0]
    register_version(tmp_path, tracking, model, "elsewhere", 1.0, benchmark="mathvista")
    elsewhere = gate(tracking, model, "3")
    assert elsewhere["promoted"] is False and "other benchmarks" in elsewhere["reasons"][0]
    assert aliases(tracking, model)["champion"] == "1"


def test_gate_acts_on_the_given_version_not_on_the_challenger(
    tmp_path: Path, tracking: TrackingConfig, model: str
) -> None:
    """Two pipeline runs at once: run A registered version 1, run B's version 2 took `challenger` since."""
    base = verdicts_file(tmp_path, "base", 0)
    register_version(tmp_path, tracking, model, "run-a", 0.1)  # A's model: not significantly better than base
    register_version(tmp_path, tracking, model, "run-b", 0.9)
    assert aliases(tracking, model) == {"challenger": "2"}
    decision = gate(tracking, model, "1", baseline_verdicts_uri=base)
    assert decision["version"] == "1" and decision["promoted"] is False
    assert "champion" not in aliases(tracking, model)
    assert "r1ov.gate.champion" not in MlflowClient(tracking.tracking_uri).get_model_version(model, "2").tags


def test_rollback_returns_to_the_previous_champion(tmp_path: Path, tracking: TrackingConfig, model: str) -> None:
    base = verdicts_file(tmp_path, "base", 0)
    register_version(tmp_path, tracking, model, "one", 0.5)
    with pytest.raises(RegistryError, match="no 'champion' to roll back"):
        rollback(model, tracking)
    gate(tracking, model, "1", baseline_verdicts_uri=base)
    with pytest.raises(RegistryError, match="first 'champion'"):
        rollback(model, tracking)
    assert aliases(tracking, model)["champion"] == "1"  # a failed rollback moves nothing
    register_version(tmp_path, tracking, model, "two", 0.9)
    assert gate(tracking, model, "2")["promoted"]
    assert rollback(model, tracking) == {"model_name": model, "alias": "champion", "from": "2", "to": "1"}
    assert aliases(tracking, model)["champion"] == "1"
    with pytest.raises(RegistryError, match="no registered model"):
        rollback("no-such-model", tracking)


def test_unknown_version_forced_promotion_and_floor(tmp_path: Path, tracking: TrackingConfig, model: str) -> None:
    with pytest.raises(RegistryError, match="no registered model"):
        gate(tracking, model, "1")
    register_version(tmp_path, tracking, model, "weak", 0.2)
    with pytest.raises(RegistryError, match="has no version '7'"):
        gate(tracking, model, "7")
    floor = gate(tracking, model, "1", min_value=0.3)
    assert floor["promoted"] is False and "below the floor 0.3000" in floor["reasons"][0]
    with pytest.raises(ValidationError, match="force needs a reason"):
        PromoteConfig(model_name=model, version="1", force=True, tracking=tracking)
    forced = gate(tracking, model, "1", force=True, reason="hotfix; eval rerun pending")
    assert forced["promoted"] is True and forced["forced"] is True
    assert forced["reasons"][-1] == "forced: hotfix; eval rerun pending"
    assert aliases(tracking, model)["champion"] == "1"


def test_missing_metric_is_never_promoted(tmp_path: Path, tracking: TrackingConfig, model: str) -> None:
    register_version(tmp_path, tracking, model, "unscored", None)
    result = gate(tracking, model, "1", baseline_verdicts_uri=verdicts_file(tmp_path, "base", 0))
    assert result["promoted"] is False and "has no overall/accuracy" in result["reasons"][0]
    assert "champion" not in aliases(tracking, model)


def test_registry_list_shows_versions_aliases_and_decisions(
    tmp_path: Path, tracking: TrackingConfig, model: str
) -> None:
    register_version(tmp_path, tracking, model, "one", 0.5)
    gate(tracking, model, "1", baseline_verdicts_uri=verdicts_file(tmp_path, "base", 0))
    register_version(tmp_path, tracking, model, "two", 0.4)
    gate(tracking, model, "2")
    [listed] = list_models(tracking, model)
    assert listed["aliases"] == {"champion": "1", "challenger": "2"}
    one, two = listed["versions"]
    assert one["aliases"] == ["champion"] and one["gate"]["champion"]["promoted"] is True
    assert two["aliases"] == ["challenger"] and two["gate"]["champion"]["promoted"] is False


def test_metric_key_and_read_metrics(tmp_path: Path) -> None:
    assert metric_key("r1ov-bench/category/Physics & Co/accuracy") == "r1ov-bench/category/Physics _ Co/accuracy"
    assert metric_key("a/../b") == "a/_/b"
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"metrics": {"overall/accuracy": 0.5, "overall/n": 3}, "model": "x"}))
    assert read_metrics(str(path)) == {"overall/accuracy": 0.5, "overall/n": 3.0}


def test_registry_command(
    tmp_path: Path, tracking: TrackingConfig, model: str, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``r1ov registry``: a refusal is exit 0 with one line, an error exit 1, fetch gives a loadable model."""
    from transformers import AutoConfig

    from r1ov.cli import main

    uri = ["registry", "--tracking-uri", tracking.tracking_uri]
    metrics = metrics_file(tmp_path, "tiny", 0.5)
    verdicts_file(tmp_path, "tiny", correct=20)
    register(RegisterConfig(model_dir=str(tiny_model_dir), model_name=model, metrics_uri=metrics, tracking=tracking))
    capsys.readouterr()

    assert main([*uri, "promote", model, "1"]) == 0  # refused: no champion and no base verdicts
    err = capsys.readouterr().err
    assert f"{model} version 1 NOT promoted to champion: " in err and "Traceback" not in err
    base = verdicts_file(tmp_path, "base", 0)
    assert main([*uri, "promote", model, "1", "--baseline-verdicts", base]) == 0
    assert json.loads(capsys.readouterr().out)["promoted"] is True

    assert main([*uri, "promote", model, "9"]) == 1
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            f"r1ov registry: {model} has no version '9' in the MLflow store {tracking.tracking_uri} (--tracking-uri)"
        )
    )  # the store searched is named: the usual cause is looking in the wrong one
    assert main([*uri, "promote", model, "1", "--force"]) == 2  # --force without --reason
    assert "force needs a reason" in capsys.readouterr().err
    assert main([*uri, "rollback", model]) == 1  # the first champion has nothing before it
    assert "nothing to roll back to" in capsys.readouterr().err
    assert aliases(tracking, model) == {"challenger": "1", "champion": "1"}

    assert main([*uri, "fetch", f"models:/{model}@champion", str(tmp_path / "served")]) == 0
    assert json.loads(capsys.readouterr().out)["model_dir"] == str(tmp_path / "served")
    assert AutoConfig.from_pretrained(tmp_path / "served").model_type == "qwen2_5_vl"
    assert main([*uri, "fetch", f"{model}@champion", str(tmp_path / "x")]) == 1
    assert "is not a model URI" in capsys.readouterr().err
    assert main([*uri, "list", model]) == 0
    assert json.loads(capsys.readouterr().out)[0]["versions"][0]["gate"]["champion"]["promoted"] is True


@pytest.mark.parametrize(
    ("final_state", "parent", "open_child"),
    [("SUCCEEDED", "FINISHED", "FAILED"), ("FAILED", "FAILED", "FAILED"), ("CANCELLED", "KILLED", "KILLED")],
)
def test_the_exit_handler_ends_the_pipeline_run_in_its_final_state(
    tracking: TrackingConfig, final_state: str, parent: str, open_child: str
) -> None:
    from r1ov.registry.tracking import client_for, end_pipeline_run, pipeline_parent_run, start_run

    client = client_for(tracking)
    tracking.parent_run_id = pipeline_parent_run(tracking, "run-1")
    finished = start_run(client, tracking, "formalize", {"r1ov.stage": "formalize"})
    client.set_terminated(finished)
    left_open = start_run(client, tracking, "sft", {"r1ov.stage": "sft"})

    ended = end_pipeline_run(tracking, "run-1", final_state)

    assert set(ended) == {tracking.parent_run_id, left_open}
    assert client.get_run(tracking.parent_run_id).info.status == parent
    assert client.get_run(left_open).info.status == open_child
    assert client.get_run(finished).info.status == "FINISHED"  # a stage's own ending stands


def test_ending_a_pipeline_that_tracked_nothing_creates_nothing(tracking: TrackingConfig) -> None:
    from r1ov.registry.tracking import client_for, end_pipeline_run

    assert end_pipeline_run(tracking, "never-tracked", "FAILED") == []
    experiment = client_for(tracking).get_experiment_by_name(tracking.experiment)
    assert experiment is None or not client_for(tracking).search_runs([experiment.experiment_id])
