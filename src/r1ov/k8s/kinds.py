"""What the client needs to know about each kind: REST coordinates, terminal conditions, whose log to follow.

One table per concern, keyed by ``kind``; adding a kind is one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from r1ov.k8s import trainjobs


@dataclass(frozen=True)
class JobKind:
    """A training-job custom resource and how to tell that it has ended."""

    group: str
    version: str
    plural: str
    succeeded: str  # condition type that means success
    failed: str  # condition type that means failure
    log_container: str
    log_selector: Callable[[str], dict[str, str]]  # job name -> labels of the pod whose log we follow
    pods_selector: Callable[[str], dict[str, str]]  # job name -> labels of all its pods

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


def _pytorchjob_master(name: str) -> dict[str, str]:
    # Labels the training operator (v1.9) puts on its pods; the replica type is lowercased.
    return {
        "training.kubeflow.org/job-name": name,
        "training.kubeflow.org/replica-type": "master",
        "training.kubeflow.org/replica-index": "0",
    }


def _trainjob_node0(name: str) -> dict[str, str]:
    # The TrainJob's JobSet shares its name; node 0 is pod 0 of the first "node" Job.
    return {
        "jobset.sigs.k8s.io/jobset-name": name,
        "jobset.sigs.k8s.io/replicatedjob-name": trainjobs.TRAINJOB_NODE,
        "jobset.sigs.k8s.io/job-index": "0",
        "batch.kubernetes.io/job-completion-index": "0",
    }


JOB_KINDS: dict[str, JobKind] = {
    "PyTorchJob": JobKind(
        group="kubeflow.org",
        version="v1",
        plural="pytorchjobs",
        succeeded="Succeeded",
        failed="Failed",
        log_container=trainjobs.PYTORCH_CONTAINER,
        log_selector=_pytorchjob_master,
        pods_selector=lambda name: {"training.kubeflow.org/job-name": name},
    ),
    "TrainJob": JobKind(
        group=trainjobs.TRAINER_GROUP,
        version="v1alpha1",
        plural="trainjobs",
        succeeded="Complete",
        failed="Failed",
        log_container=trainjobs.TRAINJOB_NODE,
        log_selector=_trainjob_node0,
        pods_selector=lambda name: {"jobset.sigs.k8s.io/jobset-name": name},
    ),
}

# kind -> REST plural, for the plain objects apply/delete/wait_ready handle (and the jobs).
PLURALS: dict[str, str] = {
    "Service": "services",
    "ConfigMap": "configmaps",
    "Deployment": "deployments",
    "StatefulSet": "statefulsets",
    "NetworkPolicy": "networkpolicies",
    "InferenceService": "inferenceservices",  # KServe's endpoint, rolled by promotion
    **{kind: job.plural for kind, job in JOB_KINDS.items()},
}


def job_kind(manifest: dict[str, Any]) -> JobKind:
    """The :class:`JobKind` of a manifest, checking that its apiVersion is the one we speak."""
    kind = manifest.get("kind")
    if kind not in JOB_KINDS:
        raise ValueError(f"unsupported job kind {kind!r}; expected one of {sorted(JOB_KINDS)}")
    job = JOB_KINDS[kind]
    if manifest.get("apiVersion") != job.api_version:
        raise ValueError(f"{kind} must have apiVersion {job.api_version}, got {manifest.get('apiVersion')!r}")
    return job


def object_path(obj: dict[str, Any], namespace: str) -> str:
    """REST path of a namespaced object: ``/api/v1/namespaces/ns/services/x`` or ``/apis/apps/v1/...``."""
    kind = obj.get("kind")
    if kind not in PLURALS:
        raise ValueError(f"unsupported kind {kind!r}; expected one of {sorted(PLURALS)}")
    api_version = obj["apiVersion"]
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{prefix}/namespaces/{namespace}/{PLURALS[kind]}/{obj['metadata']['name']}"
