"""The compiled pipeline and components: fresh, loadable, and shaped for a GPU cluster."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from kfp import components

from r1ov.k8s.bundle import GPU_RESOURCE, pool_selector
from r1ov.pipeline.compile import compile_all, repo_root, stable_text

ROOT = repo_root(Path(__file__).parent)
COMPONENT_YAMLS = sorted(ROOT.glob("components/*/component.yaml"))


def test_committed_yaml_is_fresh(tmp_path: Path) -> None:
    written = compile_all(ROOT, dest=tmp_path)["written"]
    assert "pipelines/r1ov.yaml" in written
    stale = [rel for rel in written if stable_text(ROOT / rel) != stable_text(tmp_path / rel)]
    assert not stale, f"stale compiled YAML (run `make compile` and commit): {stale}"


def test_recompiling_unchanged_sources_rewrites_nothing(tmp_path: Path) -> None:
    compile_all(ROOT, dest=tmp_path)
    target = tmp_path / "pipelines" / "r1ov.yaml"
    # KFP's comment header prints mapping defaults in protobuf map order; a header that moved
    # alone is not a change, so the file (and a user's checkout) stays as it was.
    target.write_text("# header in another order\n" + target.read_text())
    before = target.read_text()
    result = compile_all(ROOT, dest=tmp_path)
    assert result["written"] == [] and "pipelines/r1ov.yaml" in result["unchanged"]
    assert target.read_text() == before


def test_every_component_has_a_compiled_yaml() -> None:
    sources = sorted(p.with_name("component.yaml") for p in ROOT.glob("components/*/component.py"))
    assert sources == COMPONENT_YAMLS
    assert len(COMPONENT_YAMLS) == 13  # decontaminate joined the data path


@pytest.mark.parametrize("path", COMPONENT_YAMLS, ids=lambda p: p.parent.name)
def test_component_yaml_loads(path: Path) -> None:
    component = components.load_component_from_file(str(path))
    assert component.description, "the KFP UI shows the docstring: keep it"
    image = component.component_spec.implementation.container.image
    assert image.startswith("ghcr.io/r1ov/") and not image.endswith(":latest")


def _documents() -> list[dict]:
    return list(yaml.safe_load_all((ROOT / "pipelines" / "r1ov.yaml").read_text()))


def _pipeline() -> dict:
    return _documents()[0]


def test_paper_hyperparameters_are_pipeline_parameters() -> None:
    params = _pipeline()["root"]["inputDefinitions"]["parameters"]
    expected = {
        "sft_learning_rate": 1e-5,
        "sft_per_device_train_batch_size": 1,
        "sft_gradient_accumulation_steps": 16,
        "sft_num_train_epochs": 1.0,
        "sft_lr_scheduler_type": "cosine",
        "sft_warmup_ratio": 0.05,
        "sft_max_length": 8192,
        "sft_deepspeed": "zero3",
        "grpo_learning_rate": 1e-6,
        "grpo_num_generations": 8,
        "grpo_beta": 0.04,
        "grpo_max_prompt_length": 1024,
        "grpo_num_train_epochs": 1.0,
    }
    for name, value in expected.items():
        assert params[name]["defaultValue"] == value, name
    for required in ("source_uri", "clevr_uri", "benchmarks", "mlflow_tracking_uri"):
        assert "defaultValue" not in params[required]


def _platform_config() -> dict:
    return _documents()[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_gpu_stage_carries_accelerator_pool_and_toleration() -> None:
    executor = _pipeline()["deploymentSpec"]["executors"]["exec-evaluate"]["container"]
    assert executor["resources"]["accelerator"]["resourceType"] == GPU_RESOURCE
    platform = _platform_config()["exec-evaluate"]
    assert platform["nodeSelector"]["labels"] == pool_selector("rollout")
    assert platform["tolerations"][0]["key"] == GPU_RESOURCE


def test_credentials_come_from_secrets_not_literals() -> None:
    platform = _platform_config()
    for executor in ("exec-data-stage", "exec-data-stage-2", "exec-data-stage-3"):
        secrets = {s["secretName"] for s in platform[executor]["secretAsEnv"]}
        assert {"r1ov-teachers", "r1ov-s3"} <= secrets
    text = (ROOT / "pipelines" / "r1ov.yaml").read_text().lower()
    assert "sk-" not in text and "aws_secret_access_key:" not in text


def test_training_tasks_retry_and_so_resume_without_a_person() -> None:
    """A job that spent its pod restarts (or a lost launcher pod) runs again with the same run id,
    hence the same checkpoint_uri, and resumes from its latest complete checkpoint."""
    tasks = _pipeline()["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    for name in ("sft", "grpo"):
        assert tasks[name]["retryPolicy"]["maxRetryCount"] >= 1, name


def test_cleanup_runs_as_exit_handler_whatever_the_stages_do() -> None:
    tasks = _pipeline()["root"]["dag"]["tasks"]
    sweep = tasks["cleanup"]
    assert sweep["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert sweep["inputs"]["parameters"]["run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
    assert "exit-handler-1" in sweep["dependentTasks"]


def test_a_component_is_reusable_from_its_yaml_alone(tmp_path: Path) -> None:
    """Another team's pipeline: our filter step loaded from component.yaml, fed by an importer,
    run under kfp.local exactly as the demo runs ours."""
    from kfp import dsl, local
    from kfp.dsl import Dataset

    from r1ov.data import records
    from r1ov.scoring.reasoning import compose

    distilled = tmp_path / "distilled"
    rows = [
        records.new_record(source="team", question=f"{i} + 1?", image_type="math", answer=str(i + 1)) for i in range(4)
    ]
    for i, row in enumerate(rows):
        answer = str(i + 1) if i % 2 == 0 else "wrong"
        row["reasoning"] = compose(f"Adding one to {i} gives the next whole number after it.", answer)
    records.write_dataset(str(distilled), rows)

    filter_step = components.load_component_from_file(str(ROOT / "components" / "filter" / "component.yaml"))

    @dsl.pipeline(name="reuse")
    def reuse():  # no annotations: KFP reads them, and this module postpones them
        data = dsl.importer(artifact_uri=str(distilled), artifact_class=Dataset, reimport=False)
        filter_step(distilled=data.output)

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    reuse()
    (output,) = list((tmp_path / "root").glob("reuse-*/filter-reasoning/filtered"))
    manifest = records.read_manifest(str(output))
    assert manifest["records"] == 2 and manifest["reject_reasons"] == {"answer_agreement": 2}


@pytest.mark.parametrize("executor", ["exec-sft", "exec-grpo"])
def test_training_tasks_take_their_gpus_and_pool_at_submit_time(executor: str) -> None:
    """Launchers on the cpu pool by default (0 GPUs: the job pods hold them); one GPU node with launcher=local."""
    accelerator = _pipeline()["deploymentSpec"]["executors"][executor]["container"]["resources"]["accelerator"]
    assert accelerator["resourceType"] == GPU_RESOURCE
    assert accelerator["resourceCount"] == "{{$.inputs.parameters['pipelinechannel--train_task_gpus']}}"
    platform = _platform_config()[executor]
    assert platform["nodeSelector"]["nodeSelectorJson"]["componentInputParameter"].endswith("train_task_node_selector")
    assert platform["tolerations"][0]["tolerationJson"]["componentInputParameter"].endswith("train_task_tolerations")
    params = _pipeline()["root"]["inputDefinitions"]["parameters"]
    assert params["train_task_gpus"]["defaultValue"] == 0
    assert params["train_task_node_selector"]["defaultValue"] == pool_selector("cpu")
    assert params["train_task_tolerations"]["defaultValue"] == []


def test_local_launcher_refuses_more_processes_than_task_gpus() -> None:
    from r1ov.config import ConfigError
    from r1ov.pipeline.tasks import training_fields

    common = dict(deepspeed="zero3", checkpoint_root="", run_id="", mlflow_tracking_uri="", mlflow_experiment="r1ov")
    with pytest.raises(ConfigError, match="set train_task_gpus"):
        training_fields("sft", launcher="local", nnodes=1, nproc_per_node=8, namespace="r1ov", task_gpus=4, **common)
    fields = training_fields("sft", launcher="pytorchjob", nnodes=2, nproc_per_node=8, namespace="ml", **common)
    assert fields["distributed.nnodes"] == 2 and fields["distributed.cluster.namespace"] == "ml"


@pytest.mark.parametrize("path", COMPONENT_YAMLS, ids=lambda p: p.parent.name)
def test_components_start_offline_and_describe_every_input_and_output(path: Path) -> None:
    """No `pip install kfp` at task start (the image carries kfp); the KFP UI shows a description for each port."""
    spec = yaml.safe_load(path.read_text())
    command = " ".join(" ".join(e["container"]["command"]) for e in spec["deploymentSpec"]["executors"].values())
    assert "pip install" not in command and "kfp==" not in command
    for section in ("inputDefinitions", "outputDefinitions"):
        for kind in spec["root"].get(section, {}).values():
            for name, port in kind.items():
                assert port.get("description"), f"{path.parent.name}: {section} {name} has no description"


def test_extra_config_arrives_as_a_mapping_with_its_integers() -> None:
    """STRUCT parameters travel as protobuf Struct, whose numbers are doubles; config ints survive."""
    from r1ov.config import ConfigError
    from r1ov.pipeline.tasks import parse_extra

    assert parse_extra({"save_steps": 100.0, "lr": 0.5, "distributed": {"rdzv_port": 29611.0}}) == {
        "save_steps": 100, "lr": 0.5, "distributed": {"rdzv_port": 29611},
    }  # fmt: skip
    assert parse_extra("save_steps: 100") == {"save_steps": 100} and parse_extra({}) == parse_extra("") == {}
    with pytest.raises(ConfigError, match="must be a mapping"):
        parse_extra("[1, 2]")


def test_an_extra_config_value_that_an_input_sets_is_refused_not_dropped() -> None:
    """Every task input has a value (its default when unset), and it used to replace the same field in
    extra_config without a word: GRPO's ``rewards`` input ("accuracy,format") dropped a user's own reward
    given there, and the run trained without it. A contradiction is refused; agreeing values, other
    fields and a mapping input's keys (the run's tracking tag beside the user's tags) combine."""
    from r1ov.config import ConfigError
    from r1ov.pipeline.tasks import stage_config

    inputs = {
        "model_name_or_path": "/models/sft", "train_uri": "/data/clevr", "output_dir": "/out", "generation": "hf",
        "rewards": ["accuracy", "format"], "tracking.tags": {"r1ov.pipeline_run_id": "run-1"},
    }  # fmt: skip
    with pytest.raises(ConfigError, match=r"rewards: \['accuracy', 'format', 'pkg.mod:fn'\] in extra_config"):
        stage_config("grpo", inputs, "rewards: [accuracy, format, 'pkg.mod:fn']")
    with pytest.raises(ConfigError, match=r"tracking.tags.r1ov.pipeline_run_id: 'other' in extra_config"):
        stage_config("grpo", inputs, {"tracking": {"tags": {"r1ov.pipeline_run_id": "other"}}})

    config = stage_config(
        "grpo", inputs, {"rewards": ["accuracy", "format"], "max_pixels": 12544, "tracking": {"tags": {"team": "vl"}}}
    )
    assert config.rewards == ["accuracy", "format"] and config.max_pixels == 12544
    assert config.tracking.tags == {"team": "vl", "r1ov.pipeline_run_id": "run-1"}


def test_a_failed_run_ends_its_mlflow_story_failed(tmp_path: Path) -> None:
    """Our exit handler, loaded from its YAML, after a stage that opened the pipeline's MLflow run
    and its own nested run and then failed (as a pod killed mid-stage would): both end FAILED."""
    import mlflow
    from kfp import dsl, local

    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    clean_up = components.load_component_from_file(str(ROOT / "components" / "cleanup" / "component.yaml"))

    # KFP reads the component's annotations, which this module postpones to strings: the failing
    # stage lives in a module of its own.
    (tmp_path / "failing_stage.py").write_text(
        "from kfp import dsl\n\n\n"
        "@dsl.component(install_kfp_package=False)\n"
        "def stage_that_fails(tracking_uri: str, run_id: str):\n"
        "    from r1ov.registry import tracking as registry\n"
        "    from r1ov.config import TrackingConfig\n\n"
        "    tracking = TrackingConfig(tracking_uri=tracking_uri, experiment='r1ov')\n"
        "    tracking.parent_run_id = registry.pipeline_parent_run(tracking, run_id)\n"
        "    registry.start_run(registry.client_for(tracking), tracking, 'sft', {'r1ov.stage': 'sft'})\n"
        "    raise RuntimeError('killed mid-stage')\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        from failing_stage import stage_that_fails as failing_stage
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("failing_stage", None)

    @dsl.pipeline(name="fails")
    def fails():  # no annotations: KFP reads them, and this module postpones them
        run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER
        sweep = clean_up(run_id=run_id, launcher="local", mlflow_tracking_uri=tracking_uri)
        with dsl.ExitHandler(sweep):
            failing_stage(tracking_uri=tracking_uri, run_id=run_id)

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    with pytest.raises(RuntimeError):
        fails()
    client = mlflow.MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("r1ov").experiment_id])
    assert {run.data.tags["r1ov.stage"]: run.info.status for run in runs} == {"pipeline": "FAILED", "sft": "FAILED"}
