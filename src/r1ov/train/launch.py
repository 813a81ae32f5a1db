"""Run a training stage where ``distributed.launcher`` says: torchrun here, a PyTorchJob or a TrainJob.

- ``local``: one torchrun per "node" on this machine (``--nnodes N --node-rank R`` with a
  c10d rendezvous on 127.0.0.1), each running ``python -m r1ov.train.worker``. Their output
  is streamed to the log; if one fails the others are stopped and the error names the node,
  its exit code and its last lines. A single process without DeepSpeed trains in-process.
- ``pytorchjob`` / ``trainjob``: the config goes to ``checkpoint_uri``, a Kubeflow job runs
  ``torchrun -m r1ov.train.worker <stage> <config uri>`` on every node; the pods write to their
  work volume and upload the trained model to ``checkpoint_uri``, which is the stage's output
  (``summary["model_uri"]``): nothing is copied back through the launcher.

Either way the result is the summary the main training process wrote.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from r1ov.config import ConfigError
from r1ov.data import storage
from r1ov.k8s.shutdown import sigterm_exits
from r1ov.train import common, extensions_dir, worker, zero

logger = logging.getLogger(__name__)

CONFIG_FILE = "train_config.json"
TAIL_LINES = 40  # lines of a failed node's output quoted in the error
# A worker's own exception line ("ValueError: ..."); torchrun's C++ frames and its
# ChildFailedError report follow it and can push it out of the tail.
EXCEPTION_LINE = re.compile(r"^(?:\[[^\]]*\]:?\s*)*(?:[\w.]+\.)?\w*(?:Error|Exception): \S")
# Ranks finish together (the last barrier follows the save), so a node still running this
# long after another finished is stuck on a collective whose peers are gone.
FINISH_GRACE_S = 600.0
LAUNCHER_GRACE_S = 600  # beyond the job's activeDeadlineSeconds before the launcher itself gives up
# A stopped run (Ctrl-C, SIGTERM) gets the time torchrun gives its workers to exit after the signal it
# forwards (TORCH_ELASTIC_SHUTDOWN_TIMEOUT, 30 s: torch/distributed/launcher/api.py LaunchConfig) and a
# little more for torchrun itself: the workers save a checkpoint in it.
STOP_GRACE_S = 35.0
FAILED_GRACE_S = 10.0  # the other nodes of a failed run have nothing left worth saving
# A worker's own log line (r1ov.train.worker's format): still shown while a stopped node shuts down.
R1OV_LINE = re.compile(r"\brank\d+ \w+ r1ov\.")
# Non-secret settings the training pods need to reach the same storage and tracking server.
PASS_ENV = (
    "R1OV_S3_ENDPOINT",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_DISABLE_TELEMETRY",
)


def launch(stage: str, cfg: Any) -> dict[str, Any]:
    """Run ``stage`` ("sft" or "grpo") with ``cfg`` on the configured launcher; returns its summary."""
    worker.trainer(stage)  # unknown stages fail here, before anything starts
    zero.build(cfg.distributed, cuda=True)  # a custom DeepSpeed JSON is read and checked here, not in every worker
    if cfg.distributed.launcher == "local":
        return launch_local(stage, cfg)
    preflight(stage, cfg)
    return launch_cluster(stage, cfg)


def preflight(stage: str, cfg: Any) -> None:
    """Before a cluster job requests any GPU: refuse a plan whose per-GPU memory estimate
    (r1ov.train.memory, ``--plan``) exceeds the pool's GPUs, naming the settings to change."""
    gib = cfg.distributed.cluster.gpu_memory_gib
    if gib is None:
        return
    from r1ov.train import memory

    summary = memory.plan(stage, cfg, gib)  # ConfigError when it cannot fit
    logger.info("%s: memory plan %.1f GiB per GPU of %g GiB", stage, summary["total_gib"], gib)


# --------------------------------------------------------------------------- local


def launch_local(stage: str, cfg: Any) -> dict[str, Any]:
    output = Path(cfg.output_dir)
    created = [p for p in (output, *output.parents) if not p.exists()]  # what a stop must not leave behind
    output.mkdir(parents=True, exist_ok=True)
    try:
        return _launch_local(stage, cfg, output)
    except (KeyboardInterrupt, SystemExit):
        # Stopped (Ctrl-C, SIGTERM): no empty model folder suggests a model that is not there.
        # Checkpoints live beside the output (checkpoints.local_dir) and stay.
        (output / CONFIG_FILE).unlink(missing_ok=True)
        for folder in created:
            with contextlib.suppress(OSError):  # not empty: something real is in it
                folder.rmdir()
        raise


def _launch_local(stage: str, cfg: Any, output: Path) -> dict[str, Any]:
    dist = cfg.distributed
    if dist.nnodes * dist.nproc_per_node == 1 and dist.deepspeed == "none":
        return worker.trainer(stage)(cfg)

    config_path = output / CONFIG_FILE
    storage.write_text(str(config_path), cfg.model_dump_json(indent=2))
    storage.delete(str(output / common.SUMMARY_FILE))  # never report a previous run's summary
    port = free_port(dist.rdzv_port)
    run_id = f"r1ov-{stage}-{uuid.uuid4().hex[:8]}"
    env = worker_env(dist.nnodes * dist.nproc_per_node)
    nodes = [
        Node(rank, torchrun_command(stage, str(config_path), dist.nnodes, rank, dist.nproc_per_node, port, run_id), env)
        for rank in range(dist.nnodes)
    ]
    logger.info(
        "%s: %d node(s) x %d process(es), rendezvous 127.0.0.1:%d", stage, dist.nnodes, dist.nproc_per_node, port
    )
    with sigterm_exits():  # a cancelled task's SIGTERM stops the nodes (wait_all's finally), not just us
        wait_all(stage, nodes)
    return common.read_summary(cfg.output_dir)


def torchrun_command(
    stage: str, config_uri: str, nnodes: int, node_rank: int, nproc: int, port: int, run_id: str
) -> list[str]:
    """torchrun for one node; ``python -m torch.distributed.run`` is torchrun in this interpreter."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nnodes={nnodes}",
        f"--node-rank={node_rank}",
        f"--nproc-per-node={nproc}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}",
        f"--rdzv-id={run_id}",
        "-m",
        "r1ov.train.worker",
        stage,
        config_uri,
    ]


def worker_env(processes: int) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"  # lines reach the log as they are written
    # Progress bars make noise in a streamed log (0% and 100% lines per bar, per process).
    env.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # huggingface_hub's, and transformers' "Loading weights"
    env.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # datasets' "Casting the dataset", ...
    # DeepSpeed JIT-builds its ops on first use; one cache per machine (unless one is set).
    env.setdefault("TORCH_EXTENSIONS_DIR", str(extensions_dir()))
    # Share the cores instead of every process assuming it owns all of them.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    return env


def free_port(preferred: int) -> int:
    """``preferred`` if nothing listens on it, else a free ephemeral port (logged)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            pass
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    logger.warning("rendezvous port %d is taken; using %d", preferred, port)
    return port


class Node:
    """One torchrun process group ("node"), its output streamed to the log and its tail kept."""

    def __init__(self, rank: int, command: list[str], env: dict[str, str]) -> None:
        self.rank = rank
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.exceptions: list[str] = []
        self.stopping = False  # set when the launcher stops the node: its shutdown noise is not news
        # A session of its own, so stopping the node also stops the workers torchrun spawned.
        self.process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        self.reader = threading.Thread(target=self._stream, name=f"node-{rank}-output", daemon=True)
        self.reader.start()

    def _stream(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            line = line.rstrip()
            self.tail.append(line)
            if EXCEPTION_LINE.match(line) and "ChildFailedError" not in line:
                self.exceptions.append(line)
            # Every node prints the same library warnings and prints (DeepSpeed's op line, deprecations):
            # node 0's output is the log; the others' is kept in their tail (quoted when one fails) and
            # shown with -v. A node being stopped prints torchrun's shutdown (its SignalException
            # traceback included): only the workers' own lines (the checkpoint they save) stay in view.
            shown = self.rank == 0 and (not self.stopping or R1OV_LINE.search(line) is not None)
            logger.log(logging.INFO if shown else logging.DEBUG, "[node %d] %s", self.rank, line)

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop torchrun and its workers: SIGTERM, then SIGKILL after ``grace_s``."""
        if self.process.poll() is not None:
            # The agent is gone; make sure no worker it spawned outlives it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=grace_s)
                return
            except subprocess.TimeoutExpired:
                continue

    def failure(self, stage: str, what: str) -> RuntimeError:
        self.reader.join(timeout=5)  # the last lines may still be in the pipe
        cause = f"; first error: {self.exceptions[0]}" if self.exceptions else ""
        return RuntimeError(f"{stage}: node {self.rank} {what}{cause}; last lines:\n" + "\n".join(self.tail))


def stop_all(nodes: list[Node], grace_s: float) -> None:
    """Stop every node at once (SIGTERM to each node's group: torchrun and its workers), wait up to
    ``grace_s`` for all of them, then SIGKILL what is left. A second Ctrl-C while waiting kills at once."""
    for node in nodes:
        node.stopping = True
        if node.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.process.pid, signal.SIGTERM)
    try:
        deadline = time.monotonic() + grace_s
        for node in nodes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(timeout=max(0.0, deadline - time.monotonic()))
    finally:
        for node in nodes:  # a group still there, and any worker its agent left behind
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(timeout=5)


def wait_all(stage: str, nodes: list[Node], poll_s: float = 0.2, finish_grace_s: float = FINISH_GRACE_S) -> None:
    """Wait for every node; on the first failure (or hang) stop the rest and raise with its last lines.
    Stopped itself (Ctrl-C, SIGTERM), it stops the nodes with time for their checkpoint."""
    first_done: float | None = None
    grace_s = FAILED_GRACE_S
    try:
        while True:
            codes = [node.process.poll() for node in nodes]
            for node, code in zip(nodes, codes, strict=True):
                if code not in (None, 0):
                    stop_all(nodes, FAILED_GRACE_S)
                    raise node.failure(stage, f"exited with code {code}")
            if all(code == 0 for code in codes):
                for node in nodes:
                    node.reader.join(timeout=5)
                return
            if first_done is None and 0 in codes:
                first_done = time.monotonic()
            if first_done is not None and time.monotonic() - first_done > finish_grace_s:
                # A rank left waiting on a collective whose peers are gone would wait forever.
                stuck = next(node for node, code in zip(nodes, codes, strict=True) if code is None)
                stuck.stop()
                raise stuck.failure(stage, f"was still running {finish_grace_s:.0f} s after another node finished")
            time.sleep(poll_s)
    except (KeyboardInterrupt, SystemExit):
        grace_s = STOP_GRACE_S
        logger.info("%s: stopping %d node(s); they save a checkpoint first (up to %.0f s)", stage, len(nodes), grace_s)
        raise
    finally:
        stop_all(nodes, grace_s)
        for node in nodes:
            node.reader.join(timeout=5)  # its last lines (the checkpoint it saved) reach the log


# --------------------------------------------------------------------------- cluster


def needs_rollout_servers(stage: str, cfg: Any) -> bool:
    return stage == "grpo" and cfg.generation == "vllm-server" and not cfg.vllm_server_base_url


def rollout_objects(cfg: Any, name: str, job_name: str) -> list[dict[str, Any]]:
    """StatefulSet + headless Service of ``trl vllm-serve`` for a GRPO job, and the NetworkPolicy that
    lets only that job's trainer pods reach them."""
    from r1ov.k8s import names, podspec, rollout, trainjobs
    from r1ov.k8s.bundle import RUN_LABEL

    cluster = cfg.distributed.cluster
    env = {key: os.environ[key] for key in PASS_ENV if os.environ.get(key)}
    if os.environ.get("R1OV_S3_ENDPOINT"):
        env.setdefault("AWS_ENDPOINT_URL", os.environ["R1OV_S3_ENDPOINT"])  # what the Run:ai streamer reads
    env_refs = podspec.mapped_secret_env(cluster.secret_key_env) + podspec.settings_env(
        cluster.settings_config_map, skip=set(env)
    )
    servers = rollout.build_rollout_server(
        name,
        cfg.model_name_or_path,
        cfg.vllm_tensor_parallel_size,
        cfg.vllm_data_parallel_size,
        replicas=rollout.SERVERS_PER_JOB,
        image=None,
        namespace=cluster.namespace,
        env=env,
        env_refs=env_refs,
        secret_env=cluster.secret_env,
        service_account=cluster.service_account,
        labels=cluster.labels,
        annotations=cluster.annotations,
        extra_args=["--gpu-memory-utilization", str(cfg.vllm_server_gpu_memory_utilization)],
    )
    build = trainjobs.pytorchjob_name if cfg.distributed.launcher == "pytorchjob" else trainjobs.trainjob_name
    trainer = names.standard_labels(build(job_name, cfg.distributed.nnodes), trainjobs.COMPONENT)
    clients = {k: trainer[k] for k in ("app.kubernetes.io/instance", "app.kubernetes.io/component")}
    if RUN_LABEL in cluster.labels:
        clients[RUN_LABEL] = cluster.labels[RUN_LABEL]
    policy = rollout.build_rollout_network_policy(name, clients, namespace=cluster.namespace, labels=cluster.labels)
    return [*servers, policy]


def job_manifest(stage: str, cfg: Any, name: str, config_uri: str) -> dict[str, Any]:
    """The PyTorchJob or TrainJob whose pods run torchrun with the stage's worker."""
    from r1ov.k8s import trainjobs

    command = ["torchrun", "-m", "r1ov.train.worker", stage, config_uri]
    env = {key: os.environ[key] for key in PASS_ENV if os.environ.get(key)}
    build = trainjobs.build_pytorchjob if cfg.distributed.launcher == "pytorchjob" else trainjobs.build_trainjob
    return build(name, command, job_distribution(stage, cfg), env)


def job_distribution(stage: str, cfg: Any) -> Any:
    """The layout with the image for the trainers' role: GRPO with vLLM rollouts imports vLLM in the
    trainer (TRL does, server mode included), so it runs in the vLLM image; everything else in the
    training image. An image set in the config wins."""
    dist = cfg.distributed
    if stage != "grpo" or cfg.generation == "hf" or dist.cluster.image:
        return dist
    from r1ov.k8s import bundle

    cluster = dist.cluster.model_copy(update={"image": bundle.image("vllm")})
    return dist.model_copy(update={"cluster": cluster})


def plan(stage: str, cfg: Any) -> dict[str, Any]:
    """What a launch would start, without starting or contacting anything (``--dry-run``):
    the torchrun command per node for ``local``, the Kubernetes objects otherwise."""
    dist = cfg.distributed
    if dist.launcher == "local":
        config_uri = str(Path(cfg.output_dir) / CONFIG_FILE)
        commands = [
            torchrun_command(stage, config_uri, dist.nnodes, rank, dist.nproc_per_node, dist.rdzv_port, "RUN_ID")
            for rank in range(dist.nnodes)
        ]
        return {"launcher": "local", "commands": commands}
    name = f"r1ov-{stage}-dry-run"
    config_uri = storage.join(cfg.checkpoint_uri or "s3://CHECKPOINT_URI", CONFIG_FILE)
    objects = rollout_objects(cfg, f"{name}-rollout", name) if needs_rollout_servers(stage, cfg) else []
    return {"launcher": dist.launcher, "objects": [*objects, job_manifest(stage, cfg, name, config_uri)]}


@contextlib.contextmanager
def rollout_servers(stage: str, cfg: Any, job_name: str) -> Iterator[Any]:
    """GRPO with ``vllm-server`` and no URL given: rollout pods for this job, always torn down.

    Yields the config the trainers get (with ``vllm_server_base_url`` pointing at the pods).
    Any other stage or mode yields ``cfg`` unchanged.
    """
    if not needs_rollout_servers(stage, cfg):
        yield cfg
        return
    from r1ov.k8s import client, rollout

    cluster = cfg.distributed.cluster
    name = f"{job_name}-rollout"
    objects = rollout_objects(cfg, name, job_name)
    logger.info("%s: starting rollout server %s", stage, rollout.server_name(name))
    client.apply(objects, cluster.namespace)
    try:
        client.wait_ready(objects[0], cluster.namespace, poll_s=cluster.poll_s)
        yield cfg.model_copy(update={"vllm_server_base_url": rollout.rollout_base_url(name, cluster.namespace)})
    finally:
        # Rollout GPUs are released on success, failure and cancel alike.
        client.delete(objects, cluster.namespace)


def launch_cluster(stage: str, cfg: Any) -> dict[str, Any]:
    """Run the stage as a Kubeflow PyTorchJob or TrainJob and bring the checkpoint back."""
    dist = cfg.distributed
    if not cfg.checkpoint_uri:
        raise ConfigError(
            f"{stage}.checkpoint_uri: required with distributed.launcher={dist.launcher!r}; the job reads its "
            "config from there and leaves the trained model and summary there (e.g. s3://bucket/runs/sft)"
        )
    from r1ov.k8s import client

    name = f"r1ov-{stage}-{uuid.uuid4().hex[:8]}"
    with rollout_servers(stage, cfg, name) as job_cfg:
        config_uri = storage.join(cfg.checkpoint_uri, CONFIG_FILE)
        storage.write_text(config_uri, pod_config(job_cfg).model_dump_json(indent=2))
        storage.delete(storage.join(cfg.checkpoint_uri, common.SUMMARY_FILE))  # never report a previous run's
        manifest = job_manifest(stage, job_cfg, name, config_uri)
        job = f"{manifest['kind']} {manifest['metadata']['name']}"
        logger.info("%s: submitting %s (%d node(s))", stage, job, dist.nnodes)
        # The job's own deadline fails it on the cluster; the launcher waits a little longer for that verdict.
        deadline = dist.cluster.active_deadline_s
        timeout_s = deadline + LAUNCHER_GRACE_S if deadline else None
        status = client.run_to_completion(manifest, dist.cluster.namespace, dist.cluster.poll_s, timeout_s)
    # The model stays where the job uploaded it: the durable copy is the stage's output.
    summary = common.read_summary(cfg.checkpoint_uri)
    summary["output_dir"] = summary["model_uri"] = cfg.checkpoint_uri
    summary["job"] = status  # kind, name, final state and reason, as run_to_completion reports them
    return summary


def pod_config(cfg: Any) -> Any:
    """The config as the job's pods see it: their output goes to their work volume (and from there to
    checkpoint_uri); the launcher's own output path means nothing inside them."""
    work = cfg.distributed.cluster.work_dir.rstrip("/")
    return cfg.model_copy(update={"output_dir": f"{work}/output"})
