"""A kubelet and operators for :class:`r1ov.testing.kube_api.StandInAPI`: pods run as local processes.

    api = StandInAPI(rules=role_rules_from_chart(CHART))
    api.kubelet = LocalKubelet(scratch, image_env={"PATH": ..., "PYTHONPATH": ...})

When a PyTorchJob, TrainJob or StatefulSet is created, its pods start as processes on this machine
with exactly what the pod spec declares, as a node would run them:

- the container's ``command`` + ``args`` (``$(VAR)`` expanded), resolved on the image's ``PATH``;
- its environment: the image's env, then ``envFrom`` (Secrets and ConfigMaps stored in the
  stand-in, with ``prefix``), then ``env`` (``value``, ``secretKeyRef``, ``configMapKeyRef``,
  ``fieldRef`` to the pod's name/namespace/IP); a missing Secret, ConfigMap or key fails the pod
  with ``CreateContainerConfigError`` as on a node; nothing of the test process's env leaks in;
- the env the operators add: PyTorchJob's ``MASTER_ADDR/PORT``, ``WORLD_SIZE``, ``RANK`` and torchrun's
  ``PET_NNODES``, ``PET_NPROC_PER_NODE``, ``PET_NODE_RANK``, ``PET_MASTER_ADDR/PORT`` (training operator
  v1); TrainJob's ``PET_*`` (Trainer v2's torch-distributed runtime), with spec.trainer's image, command,
  env and resources and the pod overrides of ``runtimePatches``;
- ``workingDir`` (else the image's WORKDIR), ``securityContext.runAsUser/runAsGroup`` (else the
  image's USER); ``emptyDir`` volumes at their ``volumeMounts`` (owned by the pod's user, as with
  ``fsGroup``), read-only where declared; the image's own writable directories (its HOME);
  a private /tmp. Each pod runs in its own mount and PID namespaces (``unshare``) as its user
  (:mod:`r1ov.testing.podexec`), so a path outside its volumes is read-only for it, as on a node.

Job status follows the operators: Running once a pod runs; PyTorchJob Succeeded when the master
succeeds, TrainJob Complete when every node succeeds; Failed when a pod fails (its reason and exit
code in the message; the other pods are stopped, as ``cleanPodPolicy: Running`` / JobSet do) or
``activeDeadlineSeconds`` passes (``DeadlineExceeded``). A StatefulSet replica is ready when its
readinessProbe's HTTP GET answers 2xx. Deleting an object stops its pods (SIGTERM, then SIGKILL).

Restarts and preemption (PyTorchJob), as the training operator and the kubelet do them:

- A replica's ``restartPolicy`` OnFailure (or Always) becomes its pods' restart policy
  (kubeflow/training-operator ``pkg/core`` ``SetRestartPolicy``): a container that exits non-zero is
  started again in the same pod, with the same volumes, after the kubelet's crash-loop backoff
  (``restart_backoff_s``; the kubelet's starts at 10 s), and its restart count grows. Never leaves
  the pod Failed, which fails the job as above.
- The job fails once its pods' restart counts add up to ``runPolicy.backoffLimit`` (more than 0
  where the limit is 0), with the operator's message (``pkg/controller.v1/common/job.go``
  ``ReconcileJobs`` and ``PastBackoffLimit``); its pods are stopped.
- :meth:`LocalKubelet.evict` is the Eviction API (preemption, a node drain): the pod is deleted
  gracefully, as the kubelet stops a container (``pkg/kubelet/kuberuntime`` ``killContainer``):
  SIGTERM, up to the pod's ``terminationGracePeriodSeconds`` (default 30 s), then SIGKILL. Once it is
  gone the operator creates the missing replica again, with the same name and fresh volumes
  (``pkg/controller.v1/common/pod.go`` ``ReconcilePods`` -> ``createNewPod``).

Not modelled there: ``restartPolicy: ExitCode`` (the operator deleting pods with a retryable exit
code), TrainJob/JobSet ``failurePolicy`` (a failed TrainJob pod fails its job), the backoff growing
from restart to restart, and the window in which a real operator has not yet observed a deletion.

Not modelled: scheduling (node selectors, tolerations, resources and GPUs are read but every pod
starts at once here), networking (every pod shares this machine's network: pod and Service names
are not resolvable, the master address is 127.0.0.1; NetworkPolicies are stored, not enforced),
NCCL/EFA, container images (the image is this machine's Python environment plus ``image_env``),
init containers, probes other than readiness.

Admission: every pod goes through the stand-in's admission (:mod:`r1ov.testing.admission`: LimitRange
defaults, the ServiceAccount plugin, whose account ``default`` every namespace has, Pod Security at
the namespace's enforce label, ResourceQuota). A refused pod is not created: as the real operators
do, the job gets no Failed condition, only the controller's Warning event
(:meth:`StandInAPI.refuse`), and a launcher reads the reason from there; a StatefulSet gets no replica.
Not modelled: token projection and mounting, and workload identity itself (IRSA / GKE Workload
Identity exchanging the account's token for cloud credentials through STS): pods here reach S3 with
the Secret keys the pod spec maps, whatever the account's annotations say.
"""

from __future__ import annotations

import base64
import contextlib
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
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from r1ov.testing.kube_api import Pod, StandInAPI, now

_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
# The image's USER and WORKDIR, and directories its layers leave writable for that user (Dockerfile.train).
IMAGE_UID = 1000
IMAGE_WORKDIR = "/home/r1ov"
IMAGE_WRITABLE = ("/home/r1ov",)


class ConfigError(Exception):
    """What the kubelet reports as ``CreateContainerConfigError``."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: known names are replaced, unknown ones left as written."""
    return _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), text)


@dataclass
class PodProcess:
    """One pod's process and where its files live."""

    pod: Pod
    owner: tuple[str, str]  # (kind, name)
    process: subprocess.Popen | None = None
    exit_code: int | None = None
    started: float = field(default_factory=time.monotonic)
    probe: dict[str, Any] | None = None
    ports: dict[str, int] = field(default_factory=dict)
    restart_policy: str = "Never"  # the pod's: OnFailure/Always restart the container in place
    restarts: int = 0  # the container's restartCount
    stopping: bool = False  # being stopped (deleted, evicted, its job ended): never restarted
    spec_path: Path | None = None
    follower: threading.Thread | None = None  # reads its log until the pod ends


class LocalKubelet:
    """Runs the pods of the stand-in's workloads as local processes; see the module docstring."""

    def __init__(
        self,
        scratch: Path,
        image_env: dict[str, str],
        *,
        uid: int = IMAGE_UID,
        workdir: str = IMAGE_WORKDIR,
        writable: tuple[str, ...] = IMAGE_WRITABLE,
        grace_s: float = 10.0,
        restart_backoff_s: float = 10.0,
    ) -> None:
        self.scratch = Path(scratch)
        self.image_env = dict(image_env)
        self.uid = uid
        self.workdir = workdir
        self.writable = writable
        self.grace_s = grace_s
        self.restart_backoff_s = restart_backoff_s
        self.pods: dict[str, PodProcess] = {}
        # What the operator needs to create a replica again: pod name -> (namespace, owner, the planned pod).
        self.replicas: dict[str, tuple[StandInAPI, str, tuple[str, str], tuple]] = {}
        self.stopping: list[PodProcess] = []  # pods of deleted objects, being stopped
        self.job_started: dict[str, float] = {}
        self.job_failure: dict[str, tuple[str, str]] = {}

    # ------------------------------------------------------------- what the API server tells us

    def created(self, api: StandInAPI, kind: str, obj: dict[str, Any]) -> None:
        name, namespace = obj["metadata"]["name"], obj["metadata"]["namespace"]
        pods = {"PyTorchJob": self._pytorchjob_pods, "TrainJob": self._trainjob_pods}.get(kind)
        if pods is not None:
            self.job_started[name] = time.monotonic()
            planned = pods(obj)
            # The pod as the API server receives it (a TrainJob's node container comes from spec.trainer).
            specs = [(p[0], {**p[3], "containers": [p[2]]} if kind == "TrainJob" else p[3]) for p in planned]
            if not api.admit_pods(kind, obj, specs):  # refused: no pod, only the operator's event
                return
            for planned_pod in planned:
                if kind == "PyTorchJob":
                    self.replicas[planned_pod[0]] = (api, namespace, (kind, name), planned_pod)
                self._start(api, namespace, (kind, name), *planned_pod)
        elif kind == "StatefulSet":
            template = obj["spec"]["template"]
            replicas = obj["spec"].get("replicas", 1)
            if not api.admit_pods(kind, obj, [(f"{name}-{i}", template["spec"]) for i in range(replicas)]):
                return  # no replica is created, so none becomes ready
            for i in range(obj["spec"].get("replicas", 1)):
                container = template["spec"]["containers"][0]
                self._start(
                    api, namespace, (kind, name), f"{name}-{i}", dict(template["metadata"].get("labels") or {}),
                    container, template["spec"], {},
                )  # fmt: skip

    def deleted(self, api: StandInAPI, kind: str, obj: dict[str, Any]) -> None:
        owner = (kind, obj["metadata"]["name"])
        for name in [n for n, (_, _, o, _) in self.replicas.items() if o == owner]:
            del self.replicas[name]  # the operator creates no pod for a job that is gone
        for name, proc in list(self.pods.items()):
            if proc.owner == owner:
                # Stopped in the background (the API answers meanwhile); stop_all waits for them.
                self.stopping.append(proc)
                threading.Thread(target=self._stop, args=(proc,), daemon=True).start()
                del self.pods[name]
                api.pods.pop(name, None)

    def job_status(self, api: StandInAPI, obj: dict[str, Any]) -> dict[str, Any]:
        kind, name = obj["kind"], obj["metadata"]["name"]
        procs = [p for p in self.pods.values() if p.owner == (kind, name)]
        conditions = [_condition("Created", f"{kind}Created", f"{kind} {name} is created.")]
        if name not in self.job_failure:
            failed = next((p for p in procs if p.pod.phase == "Failed"), None)
            deadline = _deadline(obj)
            if _past_backoff_limit(obj, procs):
                message = f"Job {name} has failed because it has reached the specified backoff limit"
                self.job_failure[name] = (f"{kind}Failed", message)
            elif failed is not None:
                why = f"pod {failed.pod.name} failed: {failed.pod.reason} (exit code {failed.exit_code})"
                if failed.pod.message:
                    why += f": {failed.pod.message}"
                where = f"{obj['metadata']['namespace']}/{name}"
                self.job_failure[name] = (f"{kind}Failed", f"{kind} {where} failed: {why}")
            elif deadline is not None and time.monotonic() - self.job_started[name] > deadline:
                self.job_failure[name] = ("DeadlineExceeded", f"{kind} {name} was active longer than {deadline} s")
            if name in self.job_failure:
                for proc in procs:  # cleanPodPolicy Running / JobSet: the rest stop
                    if proc.pod.phase == "Running":
                        threading.Thread(target=self._stop, args=(proc,), daemon=True).start()
        if name in self.job_failure:
            reason, message = self.job_failure[name]
            return {"conditions": [*conditions, _condition("Failed", reason, message)]}
        if any(p.pod.phase in ("Running", "Succeeded") for p in procs):
            conditions.append(_condition("Running", f"{kind}Running", f"{kind} {name} is running."))
        if kind == "PyTorchJob":
            done = any(p.pod.phase == "Succeeded" and p.pod.labels.get(_REPLICA) == "master" for p in procs)
            success = ("Succeeded", "PyTorchJobSucceeded")
        else:
            done = bool(procs) and all(p.pod.phase == "Succeeded" for p in procs)
            success = ("Complete", "JobSetCompleted")
        if done:
            conditions.append(_condition(success[0], success[1], f"{kind} {name} successfully completed."))
        return {"conditions": conditions}

    def workload_status(self, api: StandInAPI, obj: dict[str, Any]) -> dict[str, Any]:
        name = obj["metadata"]["name"]
        procs = [p for p in self.pods.values() if p.owner == ("StatefulSet", name)]
        ready = sum(1 for p in procs if self._ready(p))
        want = obj["spec"].get("replicas", 1)
        return {"observedGeneration": obj["metadata"]["generation"], "replicas": want, "readyReplicas": ready,
                "updatedReplicas": len(procs), "availableReplicas": ready}  # fmt: skip

    # ------------------------------------------------------------- for tests

    def pod_processes(self, owner_name: str) -> list[PodProcess]:
        return [p for p in self.pods.values() if p.owner[1] == owner_name]

    def kill(self, pod_name: str, sig: int = signal.SIGKILL) -> None:
        """Kill a pod's processes as a node failure or the OOM killer would."""
        proc = self.pods[pod_name]
        if proc.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.process.pid, sig)

    def evict(self, pod_name: str) -> threading.Thread:
        """Evict a pod (preemption, a drain): delete it gracefully, then let its operator create it again.

        Returns the thread doing it; it ends once the replacement pod was started (or the job is gone).
        """
        proc = self.pods.pop(pod_name)
        self.stopping.append(proc)

        def evict_and_replace() -> None:
            self._terminate(proc, _grace_period(proc))
            plan = self.replicas.get(pod_name)
            api = plan[0] if plan else None
            if api is not None:
                with api.lock:
                    api.pods.pop(pod_name, None)
            if plan is None or plan[2][1] in self.job_failure:
                return
            api, namespace, owner, planned_pod = plan
            shutil.rmtree(self.scratch / pod_name, ignore_errors=True)  # a new pod: fresh emptyDir volumes
            self._start(api, namespace, owner, *planned_pod)

        thread = threading.Thread(target=evict_and_replace, daemon=True, name=f"evict-{pod_name}")
        thread.start()
        return thread

    def stop_all(self) -> None:
        """Stop every pod, deleted ones still in their grace period included (no process outlives a test)."""
        for proc in [*self.pods.values(), *self.stopping]:
            self._stop(proc)

    # ------------------------------------------------------------- the operators' pods

    def _pytorchjob_pods(self, job: dict[str, Any]) -> list[tuple]:
        name = job["metadata"]["name"]
        specs = job["spec"]["pytorchReplicaSpecs"]
        nnodes = sum(spec.get("replicas", 1) for spec in specs.values())
        nproc = str(job["spec"].get("nprocPerNode", "1"))
        port = str(free_port())
        pods = []
        rank = 0
        for replica_type in ("Master", "Worker"):
            spec = specs.get(replica_type)
            for index in range(spec.get("replicas", 1) if spec else 0):
                template = spec["template"]
                labels = {**(template["metadata"].get("labels") or {}),
                          "training.kubeflow.org/job-name": name,
                          "training.kubeflow.org/operator-name": "pytorchjob-controller",
                          _REPLICA: replica_type.lower(),
                          "training.kubeflow.org/replica-index": str(index)}  # fmt: skip
                container = next(c for c in template["spec"]["containers"] if c["name"] == "pytorch")
                # The replica's restart policy overrides the template's (training-operator pkg/core SetRestartPolicy).
                pod_spec = {**template["spec"], "restartPolicy": spec.get("restartPolicy") or "Never"}
                env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "WORLD_SIZE": str(nnodes),
                       "RANK": str(rank), "PET_MASTER_ADDR": "127.0.0.1", "PET_MASTER_PORT": port,
                       "PET_NNODES": str(nnodes), "PET_NPROC_PER_NODE": nproc, "PET_NODE_RANK": str(rank),
                       "PYTHONUNBUFFERED": "1"}  # fmt: skip
                pods.append((f"{name}-{replica_type.lower()}-{index}", labels, container, pod_spec, env))
                rank += 1
        return pods

    def _trainjob_pods(self, job: dict[str, Any]) -> list[tuple]:
        name = job["metadata"]["name"]
        trainer = job["spec"]["trainer"]
        patch_pod: dict[str, Any] = {}
        patch_labels: dict[str, str] = {}
        for patch in job["spec"].get("runtimePatches") or []:
            for replicated in patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]:
                if replicated["name"] == "node":
                    template = replicated["template"]["spec"]["template"]
                    patch_pod = template.get("spec") or {}
                    patch_labels = (template.get("metadata") or {}).get("labels") or {}
        patch_container = next((c for c in patch_pod.get("containers") or [] if c["name"] == "node"), {})
        container = {
            "name": "node",
            "image": trainer["image"],
            "command": trainer.get("command") or [],
            "args": trainer.get("args") or [],
            "env": trainer.get("env") or [],
            "resources": trainer.get("resourcesPerNode") or {},
            **{k: v for k, v in patch_container.items() if k not in ("name", "env")},
        }
        nnodes = int(trainer.get("numNodes", 1))
        port = str(free_port())
        pods = []
        for index in range(nnodes):
            labels = {**patch_labels, "jobset.sigs.k8s.io/jobset-name": name,
                      "jobset.sigs.k8s.io/replicatedjob-name": "node", "jobset.sigs.k8s.io/job-index": "0",
                      "batch.kubernetes.io/job-completion-index": str(index)}  # fmt: skip
            env = {"PET_NNODES": str(nnodes), "PET_NPROC_PER_NODE": str(trainer.get("numProcPerNode", 1)),
                   "PET_NODE_RANK": str(index), "PET_MASTER_ADDR": "127.0.0.1", "PET_MASTER_PORT": port}  # fmt: skip
            suffix = base64.b32encode(os.urandom(5)).decode().lower()[:5]
            pods.append((f"{name}-node-0-{index}-{suffix}", labels, container, patch_pod, env))
        return pods

    # ------------------------------------------------------------- running a pod

    def _resolve_env(
        self, api: StandInAPI, namespace: str, pod_name: str, container: dict[str, Any], operator_env: dict[str, str]
    ) -> dict[str, str]:
        env = dict(self.image_env)
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            ref = source.get("secretRef") or source.get("configMapRef")
            data = self._data(api, namespace, "secrets" if "secretRef" in source else "configmaps", ref)
            env.update({f"{prefix}{k}": v for k, v in (data or {}).items()})
        # The operators put their variables into the container's env list, before the user's.
        env.update(operator_env)
        for entry in container.get("env") or []:
            if "value" in entry:
                env[entry["name"]] = _expand(str(entry["value"]), env)
            elif "valueFrom" in entry:
                source = entry["valueFrom"]
                if "fieldRef" in source:
                    path = source["fieldRef"]["fieldPath"]
                    fields = {"metadata.name": pod_name, "metadata.namespace": namespace, "status.podIP": "127.0.0.1"}
                    if path not in fields:
                        raise ConfigError(f"unsupported fieldRef {path}")
                    env[entry["name"]] = fields[path]
                    continue
                plural = "secrets" if "secretKeyRef" in source else "configmaps"
                ref = source.get("secretKeyRef") or source.get("configMapKeyRef")
                data = self._data(api, namespace, plural, ref)
                if data is None:
                    continue  # optional and missing
                if ref["key"] not in data:
                    if ref.get("optional"):
                        continue
                    what = f"{plural[:-1].capitalize()} {namespace}/{ref['name']}"
                    raise ConfigError(f"couldn't find key {ref['key']} in {what}")
                env[entry["name"]] = data[ref["key"]]
            else:
                env[entry["name"]] = ""
        return env

    @staticmethod
    def _data(api: StandInAPI, namespace: str, plural: str, ref: dict[str, Any]) -> dict[str, str] | None:
        obj = api.objects.get((plural, namespace, ref["name"]))
        if obj is None:
            if ref.get("optional"):
                return None
            raise ConfigError(f'{plural[:-1]} "{ref["name"]}" not found')
        data = dict(obj.get("data") or {})
        if plural == "secrets":
            data = {k: base64.b64decode(v).decode() for k, v in data.items()}
        data.update(obj.get("stringData") or {})
        return data

    def _start(
        self,
        api: StandInAPI,
        namespace: str,
        owner: tuple[str, str],
        pod_name: str,
        labels: dict[str, str],
        container: dict[str, Any],
        pod_spec: dict[str, Any],
        operator_env: dict[str, str],
    ) -> None:
        pod = Pod(pod_name, owner[1], labels, container["name"])
        pod.service_account = pod_spec.get("serviceAccountName") or "default"
        api.pods[pod_name] = pod
        proc = PodProcess(pod, owner, probe=container.get("readinessProbe"))
        # Only what the pod spec asks (PyTorchJob replicas); TrainJob runtimes' templates are not modelled.
        proc.restart_policy = pod_spec.get("restartPolicy") or "Never"
        proc.ports = {p.get("name", str(p["containerPort"])): p["containerPort"] for p in container.get("ports") or []}
        self.pods[pod_name] = proc
        try:
            env = self._resolve_env(api, namespace, pod_name, container, operator_env)
            spec = self._exec_spec(pod_name, container, pod_spec, env)
        except ConfigError as exc:
            # A node leaves such a pod Pending, waiting; the job stands in for the operator's view of it.
            pod.phase, pod.reason, pod.message = "Failed", "CreateContainerConfigError", str(exc)
            pod.log.append((datetime.now(UTC), f"Error: {exc}"))
            proc.exit_code = 1
            return
        proc.spec_path = self.scratch / pod_name / "spec.json"
        proc.spec_path.write_text(json.dumps(spec))
        self._launch(proc)
        pod.phase = "Running"
        proc.follower = threading.Thread(target=self._follow, args=(api, proc), daemon=True, name=f"pod-{pod_name}")
        proc.follower.start()

    def _launch(self, proc: PodProcess) -> None:
        """Start (or start again) the pod's container process."""
        spec_path = proc.spec_path
        proc.process = subprocess.Popen(
            # Its own PID namespace too: when the container's first process dies, everything it started
            # dies with it (torchrun starts its workers in sessions of their own), as in a container.
            ["unshare", "--mount", "--pid", "--fork", "--mount-proc", "--propagation", "private", "--", sys.executable,
             "-m", "r1ov.testing.podexec", str(spec_path)],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True,
        )  # fmt: skip

    def _exec_spec(
        self, pod_name: str, container: dict[str, Any], pod_spec: dict[str, Any], env: dict[str, str]
    ) -> dict[str, Any]:
        security = {**(pod_spec.get("securityContext") or {}), **(container.get("securityContext") or {})}
        uid = int(security.get("runAsUser", self.uid))
        gid = int(security.get("runAsGroup", uid))
        root = self.scratch / pod_name
        root.mkdir(parents=True, exist_ok=True)
        volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
        mounts: list[tuple[str, str, bool]] = []
        for path in self.writable:  # the image's own writable directories (a fresh copy per container)
            source = root / "image" / path.strip("/")
            source.mkdir(parents=True, exist_ok=True)
            os.chown(source, uid, gid)
            mounts.append((str(source), path, False))
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"])
            if volume is None:
                raise ConfigError(f"volume {mount['name']!r} is mounted but not declared in the pod")
            if "emptyDir" not in volume:
                raise ConfigError(f"volume {mount['name']!r}: only emptyDir volumes are modelled")
            source = root / "volumes" / mount["name"]
            source.mkdir(parents=True, exist_ok=True)
            os.chown(source, uid, gid)  # fsGroup-style: the pod's user may write its volumes
            mounts.append((str(source), mount["mountPath"], bool(mount.get("readOnly"))))
        command = [_expand(part, env) for part in [*(container.get("command") or []), *(container.get("args") or [])]]
        if not command:
            raise ConfigError("the container has no command (the image's entrypoint is not modelled)")
        return {
            "image_paths": _image_paths(),
            "carried": self._carried_paths(),
            "staging": str(root / "staging"),
            "mounts": mounts,
            "tmpfs": ["/tmp"],
            "uid": uid,
            "gid": gid,
            "workdir": container.get("workingDir") or self.workdir,
            "command": command,
            "env": env,
            "grace_s": pod_spec.get("terminationGracePeriodSeconds", 30),  # the kubelet's, not podexec's
        }

    def _carried_paths(self) -> list[str]:
        """What the image carries that lives on this machine: this Python environment and the
        image's PYTHONPATH (a checkout may sit under /tmp, which each pod gets fresh)."""
        paths = {str(Path(sys.prefix).resolve())}
        paths.update(str(Path(p).resolve()) for p in self.image_env.get("PYTHONPATH", "").split(os.pathsep) if p)
        # A path inside another carried path comes along with it.
        return sorted(p for p in paths if not any(p != q and Path(p).is_relative_to(q) for q in paths))

    def _follow(self, api: StandInAPI, proc: PodProcess) -> None:
        while True:
            assert proc.process is not None and proc.process.stdout is not None
            for line in proc.process.stdout:
                with api.lock:
                    proc.pod.log.append((datetime.now(UTC), line.rstrip("\n")))
            code = proc.process.wait()
            exit_code = code if code >= 0 else 128 - code
            restart = (code != 0 and proc.restart_policy == "OnFailure") or proc.restart_policy == "Always"
            if not restart or proc.stopping or proc.owner[0] == "StatefulSet":
                break
            # The kubelet starts the container again in the same pod (CrashLoopBackOff meanwhile).
            with api.lock:
                proc.exit_code = proc.pod.exit_code = exit_code
                proc.pod.log.append((datetime.now(UTC), f"(container exited with code {exit_code}; restarting)"))
            time.sleep(self.restart_backoff_s)
            with api.lock:
                if proc.stopping or proc.owner[1] in self.job_failure:
                    break
                proc.restarts += 1
                shutil.rmtree(self.scratch / proc.pod.name / "image", ignore_errors=True)  # a fresh writable layer
                self._refresh_image_dirs(proc)
                self._launch(proc)
        with api.lock:
            proc.exit_code = proc.pod.exit_code = exit_code
            proc.pod.phase = "Succeeded" if code == 0 else "Failed"
            proc.pod.reason = "Completed" if code == 0 else "Error"  # as the runtime reports a kill too

    def _refresh_image_dirs(self, proc: PodProcess) -> None:
        spec = json.loads(proc.spec_path.read_text())
        for source, target, _ in spec["mounts"]:
            if target in self.writable:
                Path(source).mkdir(parents=True, exist_ok=True)
                os.chown(source, spec["uid"], spec["gid"])

    def _stop(self, proc: PodProcess) -> None:
        proc.stopping = True
        if proc.process is None or proc.process.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.process.pid, sig)
            try:
                proc.process.wait(timeout=self.grace_s)
                return
            except subprocess.TimeoutExpired:
                continue

    def _terminate(self, proc: PodProcess, grace_s: float) -> None:
        """Stop a container as the kubelet does: SIGTERM, up to ``grace_s`` for every process in it to
        end (its log closed: the launcher may outlive a signal its workers are still acting on), SIGKILL."""
        proc.stopping = True
        if proc.process is None or proc.follower is None:
            return
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 30.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.process.pid, sig)
            proc.follower.join(timeout=wait_s)
            if not proc.follower.is_alive():
                return

    def _ready(self, proc: PodProcess) -> bool:
        if proc.pod.phase != "Running" or not proc.probe or "httpGet" not in proc.probe:
            return proc.pod.phase == "Running" and not proc.probe
        get = proc.probe["httpGet"]
        port = get["port"] if isinstance(get["port"], int) else proc.ports.get(get["port"])
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{get.get('path', '/')}", timeout=0.5) as response:
                return 200 <= response.status < 400
        except (urllib.error.URLError, OSError):
            return False


_REPLICA = "training.kubeflow.org/replica-type"


def _image_paths() -> list[tuple[str, str]]:
    """This interpreter's installation, where it sits under a directory closed to other users (/root):
    (path, that directory). In the image the interpreter is readable by the pod's user."""
    out = []
    prefix = Path(sys.base_prefix).resolve()
    for parent in reversed(prefix.parents):
        if parent != Path("/") and not os.stat(parent).st_mode & 0o001:
            out.append((str(prefix), str(parent)))
            break
    return out


def _condition(ctype: str, reason: str, message: str) -> dict[str, Any]:
    return {"type": ctype, "status": "True", "reason": reason, "message": message, "lastTransitionTime": now()}


def _deadline(obj: dict[str, Any]) -> int | None:
    spec = obj["spec"]
    value = (spec.get("runPolicy") or {}).get("activeDeadlineSeconds") or spec.get("activeDeadlineSeconds")
    return int(value) if value else None


def _grace_period(proc: PodProcess) -> float:
    """The pod's terminationGracePeriodSeconds (30 s when unset, as the API server defaults it)."""
    assert proc.spec_path is not None
    return float(json.loads(proc.spec_path.read_text()).get("grace_s", 30))


def _past_backoff_limit(obj: dict[str, Any], procs: list[PodProcess]) -> bool:
    """The training operator's PastBackoffLimit: the restart counts of its running OnFailure/Always
    pods add up to backoffLimit (any restart where the limit is 0); no limit, never."""
    limit = ((obj.get("spec") or {}).get("runPolicy") or {}).get("backoffLimit")
    if limit is None or obj.get("kind") != "PyTorchJob":
        return False
    restarts = sum(
        p.restarts for p in procs if p.pod.phase == "Running" and p.restart_policy in ("OnFailure", "Always")
    )
    return restarts > 0 if limit == 0 else restarts >= limit
