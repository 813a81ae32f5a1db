"""The whole pipeline, end to end, as `make demo` runs it: compiled YAML under kfp.local."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r1ov.demo import run_demo


@pytest.mark.slow
def test_demo_runs_the_pipeline_end_to_end(tmp_path: Path) -> None:
    import mlflow

    summary = run_demo(tmp_path / "demo")
    workdir = Path(summary["workdir"])

    # data: the corrupt image and the botched formalizations were set aside with reasons, the run went on
    formalized = summary["data"]["formalized"]
    assert formalized["reject_reasons"]["bad_image"] == 1 and formalized["reject_reasons"]["formalize_check"] >= 1
    assert summary["data"]["distilled"]["records"] + summary["data"]["distilled"]["rejected"] == formalized["records"]

    # data: every input row ends accepted or rejected, and the noisy teacher's flaws were caught
    assert summary["filter"]["records"] > 0
    assert summary["filter"]["rejected"] > 0
    assert summary["filter"]["reject_reasons"]

    # registry: one version, challenger and (first model, gate passes) champion
    assert summary["registered_versions"] == [1]
    assert summary["aliases"] == {"challenger": "1", "champion": "1"}
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    version = client.get_model_version_by_alias("r1ov-demo", "champion")
    assert version.run_id
    runs = client.search_runs([client.get_experiment_by_name("r1ov").experiment_id])
    assert {"sft", "grpo", "eval", "register"} <= {r.info.run_name.split("-")[0] for r in runs}

    # SFT took real optimizer steps: its loss fell (MLflow holds the history)
    sft_run = next(r for r in runs if r.info.run_name.startswith("sft"))
    losses = [m.value for m in sorted(client.get_metric_history(sft_run.info.run_id, "loss"), key=lambda m: m.step)]
    assert len(losses) >= 2 and losses[-1] < losses[0]

    # eval report: a table and a plot
    report = Path(summary["report"]).read_text()
    assert "<table" in report and "<img" in report
    metrics = json.loads(next(Path(summary["pipeline_root"]).glob("evaluate/results/metrics.json")).read_text())
    assert "overall/accuracy" in metrics.get("metrics", metrics)
