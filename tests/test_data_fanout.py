"""The data fan-out of pipelines/r1ov.py (shard -> ParallelFor formalize/distill/filter -> merge),
compiled and run under kfp.local against the offline teacher: 3 shards give the same dataset
as 1 shard, shard by shard on durable storage (a local folder standing in for s3://).

No ``from __future__ import annotations`` here: KFP reads the test pipeline's annotations.
"""

import json
from pathlib import Path

import pytest

from r1ov.config import SynthConfig
from r1ov.data import fanout, records
from r1ov.synthetic import run as synthesize
from r1ov.synthetic.offline_teacher import serve


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> str:
    uri = str(tmp_path_factory.mktemp("fanout") / "source")
    synthesize(SynthConfig(output_uri=uri, n=12, seed=11, kinds=["table", "chart", "math"]))
    return uri


def _verdicts(uri: str) -> dict[str, tuple]:
    rows = [*records.read_records(uri), *records.read_records(uri, records.REJECTED)]
    return {r["id"]: (r["reject_reason"], tuple((v["name"], v["passed"]) for v in r["verdicts"])) for r in rows}


def _run(source: str, tmp_path: Path, url: str, shards: int) -> Path:
    from kfp import compiler, components, dsl, local

    from pipelines.r1ov import data_stages

    @dsl.pipeline(name="data-fanout")
    def data_only(source_uri: str, data_root: str, data_shards: int, teacher_url: str, tracking_uri: str):
        data_stages(
            source_uri,
            dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            data_root=data_root,
            data_shards=data_shards,
            formalize_teacher_url=teacher_url,
            formalize_teacher_model="offline",
            distill_teacher_url=teacher_url,
            distill_teacher_model="offline",
            judge_url="",
            judge_model="",
            teacher_max_concurrency=4,
            require_answer_match=True,
            min_accepted_fraction=0.5,
            mlflow_tracking_uri=tracking_uri,
            mlflow_experiment="data",
            formalize_extra_config={},
            distill_extra_config={},
            filter_extra_config={"min_accepted_fraction": 0.2},  # a 4-row shard may be half noise
        )

    # Compiled, then loaded back: what runs is the YAML, as on a cluster.
    package = tmp_path / f"fanout-{shards}.yaml"
    compiler.Compiler().compile(data_only, str(package))
    root = tmp_path / f"root-{shards}"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    components.load_component_from_file(str(package))(
        source_uri=source,
        data_root=str(tmp_path / f"durable-{shards}"),
        data_shards=shards,
        teacher_url=url,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    (merged,) = root.glob("data-fanout-*/merge-shards/filtered")
    return merged


def test_three_shards_merge_to_the_single_shard_dataset(source: str, tmp_path: Path) -> None:
    import mlflow

    # The store exists before the shard pods start, as a tracking server would: parallel first
    # connections to a new SQLite file would race on its schema migration.
    mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_experiments()
    with serve([source], noise=0.3, seed=1) as url:
        three = _run(source, tmp_path, url, 3)
        one = _run(source, tmp_path, url, 1)
    assert _verdicts(str(three)) == _verdicts(str(one))
    assert set(_verdicts(str(three))) == {r["id"] for r in records.read_records(source)}
    manifest = records.read_manifest(str(three))
    assert manifest["shards"] == 3
    assert manifest["stages"]["formalize"]["records"] + manifest["stages"]["formalize"]["rejected"] == 12
    assert manifest["records"] == records.read_manifest(str(one))["records"] > 0
    # The per-stage summary: a Markdown artifact in KFP and an MLflow run with every count.
    (markdown,) = (tmp_path / "root-3").glob("data-fanout-*/merge-shards/summary")
    assert "| accepted |" in markdown.read_text() and "### formalize:" in markdown.read_text()
    import mlflow

    runs = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_runs(
        [mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_experiment_by_name("data").experiment_id]
    )
    merges = [r for r in runs if "stages/formalize/records" in r.data.metrics]
    assert len(merges) == 2 and all(r.data.metrics["stages/formalize/records"] > 0 for r in merges)
    # ... and every shard's stage has its own run, with its settings and counts.
    names = [r.info.run_name or "" for r in runs]
    for stage in ("formalize", "distill", "filter"):
        assert sum(name.startswith(f"{stage}-") for name in names) == 3 + 1, stage
    # Each shard's stages wrote to the durable root, caches included, not only to task artifacts.
    shard_dirs = sorted((tmp_path / "durable-3" / "r1ov-data").glob("*/shard-*"))
    assert len(shard_dirs) == 3
    for shard in shard_dirs:
        for folder in ("source", "formalized", "distilled", "filtered"):
            assert (shard / folder / "manifest.json").is_file(), (shard, folder)
    # Teacher replies are cached once for every run and shard count, under the data root.
    assert any((tmp_path / "durable-3" / "r1ov-data" / fanout.CACHE).rglob("*.json"))


def test_split_streams_rows_by_hash_of_id_and_merge_refuses_duplicate_ids(source: str, tmp_path: Path) -> None:
    shards = fanout.split(source, str(tmp_path / "work"), 5, rows_per_file=1)
    sizes = [records.read_manifest(f"{s}/source")["records"] for s in shards]
    assert sum(sizes) == 12 and len(shards) == 5
    for k, shard in enumerate(shards):
        assert all(fanout.shard_of(r["id"], 5) == k for r in records.read_records(f"{shard}/source"))
    ids = sorted(r["id"] for s in shards for r in records.read_records(f"{s}/source"))
    assert ids == sorted(r["id"] for r in records.read_records(source))
    for shard in shards[:2]:  # the same rows "filtered" twice
        records.write_dataset(f"{shard}/filtered", records.read_records(source)[:2])
    with pytest.raises(ValueError, match="more than one shard"):
        fanout.merge(shards[:2], str(tmp_path / "merged"))
    assert json.loads(Path(f"{shards[0]}/source/manifest.json").read_text())["rejected"] == 0


def test_shards_live_on_s3_end_to_end(source: str, s3_endpoint: str) -> None:
    """split -> each stage per shard -> merge with every URI on S3 (moto's server), as on a cluster."""
    from r1ov.pipeline.tasks import run_shard_stage

    with serve([source], noise=0.3, seed=1) as url:
        shards = fanout.split(source, fanout.work_uri("s3://r1ov/root", "run-1"), 2)
        teacher = {"teacher.base_url": url, "teacher.model": "offline"}
        for shard in shards:
            run_shard_stage("formalize", shard, teacher)
            run_shard_stage("distill", shard, teacher)
            run_shard_stage("filter", shard, {"min_accepted_fraction": 0.2})
    manifest = fanout.merge(shards, "s3://r1ov/root/merged")
    merged = _verdicts("s3://r1ov/root/merged")
    assert set(merged) == {r["id"] for r in records.read_records(source)}
    assert manifest["stages"]["formalize"]["teacher"]["sent"] >= 12
    # A pod that lost its progress marker asks nothing again: the answers are cached on S3.
    from r1ov.data import storage

    storage.delete(f"{shards[0]}/formalized/_progress/part-00000.json")
    with serve([source], noise=0.3, seed=1) as url:
        again = run_shard_stage("formalize", shards[0], {"teacher.base_url": url, "teacher.model": "offline"})
    assert again["resumed_shards"] == 0 and again["teacher"]["sent"] == 0 and again["teacher"]["cache_hits"] > 0
