"""The cluster path as one system, on one machine: the pipeline's SFT and GRPO components launch
PyTorchJobs and TrainJobs whose pods really train, find their data and credentials, checkpoint and resume.

What runs for real: the components' own code (the function body the compiled pipeline executes), the
production launcher and Kubernetes client, the ``kubernetes`` package over HTTP, torchrun on every
"node", TRL on the tiny model, and moto's S3 server holding data, config, checkpoints and the model,
with IAM-checked credentials (a request without the right key is refused, as on S3).

What stands in: the Kubernetes API server (:mod:`r1ov.testing.kube_api`), authorizing every request
with the Role that ``charts/r1ov-platform`` renders for the pipeline's service account (a call the Role
does not grant is a 403), and a kubelet (:mod:`r1ov.testing.kubelet`) that runs each pod as a local
process in its own mount namespace, as the image's non-root user, with exactly the pod spec's command,
env (Secrets and ConfigMaps resolved from the stand-in), working directory and writable volumes: a
path outside the pod's volumes is read-only for it, as on a node.

Not modelled (see the stand-ins' docstrings): scheduling, node pools and resources, GPUs, NCCL/EFA,
pod networking and DNS (pods share this machine's network; the master address is 127.0.0.1),
NetworkPolicy enforcement, TrainJob restarts (a PyTorchJob's OnFailure restarts, its backoff limit and
the operator recreating an evicted pod are modelled), container images (the image is this Python
environment), and workload identity's token exchange: the pods run as the chart's service account
(admission refuses an account the namespace lacks), but reach S3 with the Secret's keys.

Needs root (mount namespaces); skipped otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from kfp.dsl import Dataset, Metrics, Model
from kubernetes.client import ApiClient, Configuration, CoreV1Api
from safetensors.torch import load_file
from test_train_grpo import clevr_records
from test_train_sft import make_records

from components.grpo.component import grpo
from components.sft.component import sft
from r1ov.data import records, storage
from r1ov.k8s.bundle import RUN_LABEL
from r1ov.k8s.client import JobFailed
from r1ov.testing.kube_api import StandInAPI, kubeconfig, role_rules_from_chart, serve
from r1ov.testing.kubelet import LocalKubelet
from r1ov.train import checkpoints

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "r1ov-platform"
NS = "r1ov"
BUCKET = "r1ov"
S3_SECRET, SETTINGS = "r1ov-s3", "r1ov-settings"  # what the platform chart and its README ask for
SERVICE_ACCOUNT = "r1ov-pipeline"  # the platform chart's serviceAccount.name

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- S3 (moto, with IAM checks)


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    import boto3

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    # After 3 unauthenticated calls (the IAM setup below) every request must be signed by a known key.
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        setup = {"endpoint_url": endpoint, "region_name": "us-east-1"}
        iam = boto3.client("iam", aws_access_key_id="setup", aws_secret_access_key="setup", **setup)
        iam.create_user(UserName="r1ov")
        iam.put_user_policy(
            UserName="r1ov",
            PolicyName="s3",
            PolicyDocument='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}',
        )
        key = iam.create_access_key(UserName="r1ov")["AccessKey"]
        creds = {"key": key["AccessKeyId"], "secret": key["SecretAccessKey"], "endpoint": endpoint}
        boto3.client(
            "s3", aws_access_key_id=creds["key"], aws_secret_access_key=creds["secret"], **setup
        ).create_bucket(Bucket=BUCKET)
        yield creds
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def pipeline_pod_env(s3: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The KFP task pod's environment: the r1ov-s3 Secret and r1ov-settings ConfigMap, as the pipeline maps them."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3["key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3["secret"])
    monkeypatch.setenv("R1OV_S3_ENDPOINT", s3["endpoint"])
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def inputs(s3: dict[str, str], tiny_model_dir: Path) -> dict[str, str]:
    """Base model and datasets in S3, where a cluster run finds them."""
    env = {
        "AWS_ACCESS_KEY_ID": s3["key"],
        "AWS_SECRET_ACCESS_KEY": s3["secret"],
        "R1OV_S3_ENDPOINT": s3["endpoint"],
        "AWS_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        uris = {
            "model": f"s3://{BUCKET}/models/tiny",
            "sft": f"s3://{BUCKET}/data/filtered",
            "clevr": f"s3://{BUCKET}/data/clevr",
        }
        storage.copy_tree(str(tiny_model_dir), uris["model"])
        records.write_dataset(uris["sft"], make_records(8))
        records.write_dataset(uris["clevr"], clevr_records(4))
        return uris
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --------------------------------------------------------------------------- the cluster


class Cluster:
    def __init__(self, api: StandInAPI, kubelet: LocalKubelet) -> None:
        self.api = api
        self.kubelet = kubelet


@pytest.fixture(scope="module")
def cluster(s3: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    api = StandInAPI(rules=role_rules_from_chart(CHART))
    # The training image's environment (Dockerfile.train): its Python on PATH, no bytecode writes, HOME.
    image_env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "PYTHONPATH": os.pathsep.join(str(p) for p in (ROOT / "src", ROOT)),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "HOME": "/home/r1ov",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
        "AWS_EC2_METADATA_DISABLED": "true",  # no instance metadata service on this machine
    }
    kubelet = LocalKubelet(tmp_path_factory.mktemp("kubelet"), image_env, grace_s=5, restart_backoff_s=1)
    api.kubelet = kubelet
    with serve(api) as url:
        admin = Configuration()
        admin.host = url
        admin.api_key = {"authorization": f"Bearer {api.admin_token}"}
        core = CoreV1Api(ApiClient(admin))
        # What the platform chart and the operator's setup put in the namespace: the pipeline's service
        # account (the training and rollout pods run as it), the S3 Secret and the settings ConfigMap.
        core.create_namespaced_service_account(
            NS, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SERVICE_ACCOUNT}}
        )
        core.create_namespaced_secret(
            NS,
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": S3_SECRET},
             "stringData": {"access-key-id": s3["key"], "secret-access-key": s3["secret"]}},
        )  # fmt: skip
        core.create_namespaced_config_map(
            NS,
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": SETTINGS},
             "data": {"R1OV_S3_ENDPOINT": s3["endpoint"], "AWS_REGION": "us-east-1",
                      "MLFLOW_DISABLE_TELEMETRY": "true"}},
        )  # fmt: skip
        path = tmp_path_factory.mktemp("kube") / "config"
        path.write_text(yaml.safe_dump(kubeconfig(url, NS, token="pipeline")))
        saved = os.environ.get("KUBECONFIG")
        os.environ["KUBECONFIG"] = str(path)
        try:
            yield Cluster(api, kubelet)
        finally:
            kubelet.stop_all()
            if saved is None:
                os.environ.pop("KUBECONFIG", None)
            else:
                os.environ["KUBECONFIG"] = saved


# --------------------------------------------------------------------------- running the components


def kfp_model(run_id: str, stage: str) -> Model:
    """The output artifact KFP hands a task: a minio:// URI whose .path is pod-local (/minio/...)."""
    return Model(name="model", uri=f"minio://mlpipeline/v2/artifacts/r1ov/{run_id}/{stage}/model")


def kfp_metrics(tmp_path: Path) -> Metrics:
    return Metrics(name="metrics", uri=f"file://{tmp_path}/metrics")


CLUSTER_EXTRA = {
    "distributed": {"cluster": {"gpus_per_node": 0, "cpu": "1", "memory": "2Gi", "poll_s": 0.5}},
    "max_pixels": 12544,
    "gradient_checkpointing": False,
    "logging_steps": 1,
}


NO_RESTART = {"cluster": {**CLUSTER_EXTRA["distributed"]["cluster"], "backoff_limit": 0}}


def run_sft(
    inputs: dict[str, str], launcher: str, run_id: str, tmp_path: Path, deepspeed: str = "none", **extra: Any
) -> Model:
    model = kfp_model(run_id, "sft")
    sft.python_func(
        train_data=Dataset(name="filtered", uri=inputs["sft"]),
        model=model,
        metrics=kfp_metrics(tmp_path),
        base_model=inputs["model"],
        learning_rate=1e-3,
        per_device_train_batch_size=1,
        gradient_accumulation_steps=1,
        max_steps=extra.pop("max_steps", 3),
        max_length=512,
        launcher=launcher,
        nnodes=2,
        nproc_per_node=1,
        deepspeed=deepspeed,
        checkpoint_root=f"s3://{BUCKET}/runs",
        run_id=run_id,
        namespace=NS,
        extra_config=yaml.safe_dump({**CLUSTER_EXTRA, **extra}),
    )
    return model


def run_grpo(sft_model: Model, inputs: dict[str, str], launcher: str, run_id: str, tmp_path: Path) -> Model:
    model = kfp_model(run_id, "grpo")
    grpo.python_func(
        sft_model=sft_model,
        clevr_uri=inputs["clevr"],
        model=model,
        metrics=kfp_metrics(tmp_path),
        learning_rate=1e-3,
        num_generations=2,
        max_prompt_length=512,
        max_completion_length=8,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=1,
        max_steps=2,
        # A random tiny model earns no accuracy or format; a user's own module:function reward, imported
        # in every pod, gives each group a spread, so the weights must move. It is the task's input, as
        # a user sets it: an input's value may not be overridden through extra_config.
        rewards="accuracy,format,r1ov.testing.rewards:length",
        generation="hf",
        launcher=launcher,
        nnodes=2,
        nproc_per_node=1,
        deepspeed="none",
        checkpoint_root=f"s3://{BUCKET}/runs",
        run_id=run_id,
        namespace=NS,
        extra_config=yaml.safe_dump({**CLUSTER_EXTRA, "max_pixels": 12544}),
    )
    return model


def weights(uri: str, tmp_path: Path) -> dict[str, torch.Tensor]:
    local = tmp_path / uri.replace("://", "_").replace("/", "_")
    storage.copy_tree(uri, str(local))
    return load_file(local / "model.safetensors")


def trained(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> bool:
    assert set(before) == set(after)
    return any(not torch.equal(before[k], after[k]) for k in before)


# --------------------------------------------------------------------------- the tests


@pytest.mark.usefixtures("pipeline_pod_env")
@pytest.mark.parametrize("launcher", ["pytorchjob", "trainjob"])
def test_sft_then_grpo_on_the_cluster(cluster: Cluster, inputs: dict[str, str], launcher: str, tmp_path: Path) -> None:
    run_id = f"run-{launcher}"
    cluster.api.attempts.clear()
    # ZeRO-2 across the TrainJob's two pods (on CPU DeepSpeed JIT-builds its shared-memory comm op
    # at start, into the pod's work volume: the only place a pod may write); plain DDP for PyTorchJob.
    sft_model = run_sft(inputs, launcher, run_id, tmp_path, deepspeed="zero2" if launcher == "trainjob" else "none")
    # The model artifact is the durable copy the job uploaded, not a second copy through the task pod.
    assert sft_model.uri == f"s3://{BUCKET}/runs/{run_id}/sft"
    base = weights(inputs["model"], tmp_path)
    assert trained(base, weights(sft_model.uri, tmp_path))
    summary = storage.read_text(storage.join(sft_model.uri, "train_summary.json"))
    assert '"steps": 3' in summary

    grpo_model = run_grpo(sft_model, inputs, launcher, run_id, tmp_path)
    assert grpo_model.uri == f"s3://{BUCKET}/runs/{run_id}/grpo"
    # GRPO on the pods earned reward and moved the weights it started from (the SFT model's).
    assert trained(weights(sft_model.uri, tmp_path), weights(grpo_model.uri, tmp_path))
    grpo_summary = json.loads(storage.read_text(storage.join(grpo_model.uri, "train_summary.json")))
    assert grpo_summary["steps"] == 2 and grpo_summary["reward"] > 0
    assert grpo_summary["rewards"]["r1ov.testing.rewards:length"] > 0
    # Every pod of the run ran as the platform chart's service account (its IRSA / Workload Identity annotations).
    accounts = {pod.service_account for pod in cluster.api.pods.values() if pod.labels.get(RUN_LABEL) == run_id}
    assert accounts == {SERVICE_ACCOUNT}
    # Everything the launcher asked of the API server, the chart's Role granted.
    assert cluster.api.calls(denied=True) == set()
    assert ("kubeflow.org" if launcher == "pytorchjob" else "trainer.kubeflow.org", f"{launcher}s", "create") in (
        cluster.api.calls()
    )


@pytest.mark.usefixtures("pipeline_pod_env")
def test_killed_rank_then_rerun_resumes_from_the_last_complete_checkpoint(
    cluster: Cluster, inputs: dict[str, str], tmp_path: Path
) -> None:
    """A node dies mid-run (SIGKILL, as an OOM kill or a lost node) in a job allowed no restart
    (backoff_limit 0): the job fails; re-running the task resumes from the latest complete checkpoint
    and the step count continues to max_steps."""
    run_id = "run-resume"
    store = f"s3://{BUCKET}/runs/{run_id}/sft/checkpoints"
    complete_at_kill: list[int] = []
    done = threading.Event()
    marked = re.compile(r"checkpoint s3://\S+/checkpoint-(\d+) complete")

    def kill_a_worker_after_the_first_checkpoint() -> None:
        # Watch the master's log as the launcher streams it (no polling of S3, which lags under load).
        while not done.is_set() and not complete_at_kill:
            with cluster.api.lock:  # this run's job: its master logs checkpoints (earlier tests' jobs do not)
                logs = {pod.job: [line for _, line in pod.log] for pod in cluster.api.pods.values()
                        if pod.name.endswith("-master-0") and pod.phase == "Running"}  # fmt: skip
            for job, lines in logs.items():
                steps = [int(m.group(1)) for line in lines if (m := marked.search(line))]
                worker = cluster.kubelet.pods.get(f"{job}-worker-0")
                if steps and worker is not None and worker.pod.phase == "Running":
                    cluster.kubelet.kill(worker.pod.name, signal.SIGKILL)
                    complete_at_kill.append(max(steps))
            time.sleep(0.02)

    killer = threading.Thread(target=kill_a_worker_after_the_first_checkpoint, daemon=True)
    killer.start()
    try:
        with pytest.raises(JobFailed, match="failed"):
            run_sft(inputs, "pytorchjob", run_id, tmp_path, max_steps=30, save_steps=2, distributed=NO_RESTART)
    finally:
        done.set()
        killer.join(timeout=5)
    assert complete_at_kill, "the first checkpoint never appeared"
    assert checkpoints.complete_steps(store)[-1] < 30  # it died before the end

    model = run_sft(inputs, "pytorchjob", run_id, tmp_path, max_steps=30, save_steps=2, distributed=NO_RESTART)
    summary = json.loads(storage.read_text(storage.join(model.uri, "train_summary.json")))
    assert summary["steps"] == 30
    # Resumed from the latest complete checkpoint: at least the one complete when the node died.
    assert summary["resumed_from_step"] >= complete_at_kill[0] > 0
    # the last save_total_limit=2 are kept; step 30 is the final model, saved once, not also a checkpoint
    assert checkpoints.complete_steps(store) == [26, 28]


@pytest.mark.usefixtures("pipeline_pod_env")
def test_a_preempted_pod_comes_back_by_itself_and_the_run_ends_with_the_uninterrupted_weights(
    cluster: Cluster, inputs: dict[str, str], tmp_path: Path
) -> None:
    """Preemption as a cluster does it, with no person in the loop: the worker pod is evicted mid-run
    (SIGTERM, its grace period, gone). Its SIGTERM makes both nodes save the step and stop; the master's
    container exits non-zero and restarts in place (restartPolicy OnFailure), the operator creates the
    worker again; both resume from the saved checkpoint and the job succeeds. The final weights equal
    those of a run that was never interrupted."""
    steps = 10
    # stop_grace_s: torchrun's stop timeout and (plus 30 s) the pod's grace period, ample for the tiny model.
    dist = {"cluster": {**CLUSTER_EXTRA["distributed"]["cluster"], "backoff_limit": 3, "stop_grace_s": 30}}
    whole = run_sft(inputs, "pytorchjob", "run-whole", tmp_path, max_steps=steps, save_steps=0, distributed=dist)

    run_id = "run-preempted"
    evicted: list[tuple[str, str]] = []  # (pod, its uid)
    done = threading.Event()

    def evict_the_worker_at_step_4() -> None:
        while not done.is_set() and not evicted:
            with cluster.api.lock:
                masters = [pod for pod in cluster.api.pods.values()
                           if pod.labels.get(RUN_LABEL) == run_id and pod.name.endswith("-master-0")]  # fmt: skip
                reached = [p for p in masters if any(re.search(r" step 4/10 ", line) for _, line in p.log)]
            for master in reached:
                worker = f"{master.job}-worker-0"
                evicted.append((worker, cluster.api.pods[worker].uid))
                cluster.kubelet.evict(worker)
            time.sleep(0.05)

    preempter = threading.Thread(target=evict_the_worker_at_step_4, daemon=True)
    preempter.start()
    try:
        model = run_sft(inputs, "pytorchjob", run_id, tmp_path, max_steps=steps, save_steps=0, distributed=dist)
    finally:
        done.set()
        preempter.join(timeout=5)

    assert evicted, "the run never reached step 4"
    (worker, old_uid), master = evicted[0], evicted[0][0].replace("-worker-0", "-master-0")
    # It came back by itself: a new worker pod, the master's container restarted once, no second launch.
    assert cluster.api.pods[worker].uid != old_uid
    assert cluster.kubelet.pods[master].restarts == 1
    summary = json.loads(storage.read_text(storage.join(model.uri, "train_summary.json")))
    assert summary["steps"] == steps
    resumed = summary["resumed_from_step"]
    assert 4 <= resumed < steps  # from the checkpoint the SIGTERM saved, not from the start
    assert checkpoints.complete_steps(f"{model.uri}/checkpoints") == [resumed]

    base = weights(inputs["model"], tmp_path)
    uninterrupted, preempted = weights(whole.uri, tmp_path), weights(model.uri, tmp_path)
    assert trained(base, uninterrupted), "the weights must move for the comparison to mean anything"
    differ = [k for k in uninterrupted if not torch.allclose(uninterrupted[k], preempted[k], rtol=1e-5, atol=1e-7)]
    assert not differ, f"{len(differ)} of {len(uninterrupted)} tensors differ from the uninterrupted run: {differ[:3]}"


@pytest.mark.usefixtures("pipeline_pod_env")
def test_a_role_without_a_verb_the_launcher_uses_fails_the_run(
    cluster: Cluster, inputs: dict[str, str], tmp_path: Path
) -> None:
    """RBAC both ways: take ``get`` on PyTorchJobs out of the chart's Role and the run fails with the
    cluster's 403 (and still deletes its job: ``delete`` is granted)."""
    from kubernetes.client.exceptions import ApiException

    granted = cluster.api.rules
    assert granted is not None
    cluster.api.rules = [
        {**rule, "verbs": [v for v in rule["verbs"] if v != "get"]} if "pytorchjobs" in rule["resources"] else rule
        for rule in granted
    ]
    cluster.api.attempts.clear()
    try:
        with pytest.raises(ApiException) as denied:
            run_sft(inputs, "pytorchjob", "run-rbac", tmp_path)
    finally:
        cluster.api.rules = granted
    assert denied.value.status == 403
    message = json.loads(denied.value.body)["message"]
    assert 'cannot get resource "pytorchjobs" in API group "kubeflow.org"' in message
    assert cluster.api.calls(denied=True) == {("kubeflow.org", "pytorchjobs", "get")}
    assert ("kubeflow.org", "pytorchjobs", "delete") in cluster.api.calls(denied=False)
    left = [o for (plural, _, _), o in cluster.api.objects.items() if plural == "pytorchjobs"]
    assert not [o for o in left if o["metadata"]["labels"].get(RUN_LABEL) == "run-rbac"]


@pytest.mark.usefixtures("pipeline_pod_env")
def test_a_service_account_the_namespace_lacks_fails_the_job_with_admission_s_reason(
    cluster: Cluster, inputs: dict[str, str], tmp_path: Path
) -> None:
    """Pods run as ``cluster.service_account``; one the namespace lacks is refused at admission, so no pod
    starts and the run fails with the reason instead of waiting out its deadline."""
    with pytest.raises(JobFailed, match='serviceaccount "no-such-account" not found'):
        run_sft(inputs, "pytorchjob", "run-no-account", tmp_path,
                distributed={"cluster": {**CLUSTER_EXTRA["distributed"]["cluster"],
                                         "service_account": "no-such-account"}})  # fmt: skip
    assert not [p for p in cluster.api.pods.values() if p.labels.get(RUN_LABEL) == "run-no-account"]
