"""The `r1ov` command drives each data stage from a YAML recipe plus --set overrides.

The offline teacher is the local stand-in for the OpenAI-compatible teacher endpoints.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from r1ov.cli import main
from r1ov.data import records
from r1ov.synthetic.offline_teacher import serve


def _recipe(path: Path, data: dict) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_data_stages_from_recipes(tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_detector_dir: Path) -> None:
    source = str(tmp_path / "source")
    assert main(["synth", "--out", source, "--n", "9", "--seed", "5"]) == 0
    # a corrupt image among good ones: set aside with a reason, the run goes on
    rows = records.read_records(source)
    rows[0]["image"] = b"\x89PNG\r\n\x1a\n broken"
    records.write_dataset(source, rows)
    capsys.readouterr()

    with serve([source], noise=0.3) as url:
        teacher = {"base_url": url, "model": "r1ov-offline-teacher", "max_concurrency": 2}
        steps = [
            (
                "formalize",
                {
                    "input_uri": source,
                    "output_uri": str(tmp_path / "formalized"),
                    "teacher": teacher,
                    "perception": {"detector_model": str(tiny_detector_dir)},
                },
            ),
            ("distill", {"input_uri": str(tmp_path / "formalized"), "teacher": teacher}),
            ("filter", {"input_uri": str(tmp_path / "distilled")}),
        ]
        overrides = {"distill": ["output_uri=" + str(tmp_path / "distilled")],
                     "filter": ["output_uri=" + str(tmp_path / "filtered"), "min_think_chars=10"]}  # fmt: skip
        for stage, recipe in steps:
            args = [stage, "--config", _recipe(tmp_path / f"{stage}.yaml", recipe)]
            for override in overrides.get(stage, []):
                args += ["--set", override]
            assert main(args) == 0, stage
            summary = json.loads(capsys.readouterr().out)
            assert summary["records"] + summary["rejected"] > 0

    formalized = records.read_manifest(str(tmp_path / "formalized"))
    assert formalized["reject_reasons"] == {"bad_image": 1} and formalized["records"] == 8
    filtered = records.read_manifest(str(tmp_path / "filtered"))
    assert filtered["records"] + filtered["rejected"] == 8  # nothing lost, nothing twice
    assert filtered["rejected"] >= 1  # the noisy teacher's flaws were caught
    for row in records.read_records(str(tmp_path / "filtered"), records.REJECTED):
        assert row["reject_reason"] and row["verdicts"]


def test_tiny_model_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tiny-model", "--out", str(tmp_path / "tiny")]) == 0
    assert Path(json.loads(capsys.readouterr().out)["model_dir"], "config.json").is_file()


def test_unknown_stage_setting_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = _recipe(tmp_path / "distill.yaml", {"input_uri": "a", "output_uri": "b", "temprature": 0.3})
    assert main(["distill", "--config", recipe]) == 2
    assert "distill.temprature: Extra inputs are not permitted" in capsys.readouterr().err


RECIPES = Path(__file__).resolve().parent.parent / "pipelines" / "recipes"


def _dry_run(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main([*args, "--dry-run"]) == 0
    return json.loads(capsys.readouterr().out)


def test_dry_run_prints_the_cluster_objects(capsys: pytest.CaptureFixture[str]) -> None:
    """Multi-document YAML, as `kubectl apply -f -` takes it (validated per document in test_k8s_manifests)."""
    import yaml

    def objects(*args: str) -> list[dict]:
        assert main([*args, "--dry-run"]) == 0
        return list(yaml.safe_load_all(capsys.readouterr().out))

    (job,) = objects("sft", "--config", str(RECIPES / "sft-qwen2.5-vl-7b.yaml"), "--set", "distributed.nnodes=4")
    assert job["kind"] == "PyTorchJob" and job["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 3
    grpo = objects("grpo", "--config", str(RECIPES / "grpo-clevr.yaml"))
    assert [o["kind"] for o in grpo] == ["StatefulSet", "Service", "NetworkPolicy", "PyTorchJob"]


def test_dry_run_of_the_local_launcher_prints_one_torchrun_per_node(capsys: pytest.CaptureFixture[str]) -> None:
    plan = _dry_run(
        capsys, "sft", "--set", "model_name_or_path=m", "--set", "train_uri=d", "--set", "output_dir=o",
        "--set", "distributed.nnodes=2",
    )  # fmt: skip
    assert plan["launcher"] == "local" and len(plan["commands"]) == 2
    assert all("--nnodes=2" in command for command in plan["commands"])
