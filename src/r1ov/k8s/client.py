"""A small Kubernetes client: run a training job to its end, and apply/delete/wait for plain objects.

    summary = run_to_completion(build_pytorchjob(...), "r1ov", poll_s=10, timeout_s=6 * 3600)

:func:`run_to_completion` creates the job, follows the log of its master (PyTorchJob) or node-0
pod (TrainJob), polls the status conditions and returns a summary on success. A failed job
raises :class:`JobFailed` with the condition's reason; a job that outlives ``timeout_s``
raises :class:`JobTimeout`. The job is deleted on failure, on timeout and on cancel
(KeyboardInterrupt, or SIGTERM, which a cancelled pipeline task receives), so no GPU pods are
left behind; a successful job stays for its TTL so its pods' logs can still be read.

Every function takes an optional ``api_client``; without one it loads the in-cluster
configuration first (a pipeline pod) and the kubeconfig second (a laptop).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import time
from typing import Any

import urllib3
from kubernetes import config as kube_config
from kubernetes.client import ApiClient, Configuration, CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from r1ov.k8s import kinds, trainjobs
from r1ov.k8s.logs import PodLogFollower
from r1ov.k8s.shutdown import sigterm_exits

log = logging.getLogger(__name__)

FIELD_MANAGER = "r1ov"
_MAX_CONSECUTIVE_ERRORS = 5  # transient API errors tolerated in a row while polling
_LOG_DRAIN_S = 30.0  # how long a failed job's remaining log may take to arrive


class JobFailed(RuntimeError):
    """A training job ended without success; ``reason`` is the status condition's reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class JobTimeout(JobFailed):
    """The job did not finish within the client's ``timeout_s`` (it has been deleted)."""


def load_api_client(kubeconfig: str | None = None, context: str | None = None) -> ApiClient:
    """An API client from the in-cluster service account, else from the kubeconfig.

    ``kubeconfig`` defaults to ``$KUBECONFIG`` or ``~/.kube/config``; ``context`` to its current context.
    """
    configuration = Configuration()
    try:
        kube_config.load_incluster_config(client_configuration=configuration)
        log.debug("using the in-cluster Kubernetes configuration")
    except kube_config.ConfigException:
        # The kubernetes package reads $KUBECONFIG once, at import; read it now.
        kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or None
        kube_config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
        log.debug("using the kubeconfig %s", kubeconfig or "(default)")
    return ApiClient(configuration)


def _with_namespace(obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    body = copy.deepcopy(obj)
    metadata = body.setdefault("metadata", {})
    if metadata.get("namespace") not in (None, namespace):
        raise ValueError(
            f"{body.get('kind')} {metadata.get('name')} is for namespace {metadata['namespace']!r}, not {namespace!r}"
        )
    metadata["namespace"] = namespace
    return body


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, ApiException):
        return exc.status in (0, 429) or exc.status >= 500
    return isinstance(exc, urllib3.exceptions.HTTPError)


# --------------------------------------------------------------------------- training jobs


def _true_conditions(obj: dict[str, Any]) -> list[dict[str, Any]]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return [c for c in conditions if str(c.get("status")) == "True"]


# Warning events of a controller whose pod the API server refused (admission: Pod Security, quota,
# service account). The operators never mark the job Failed for it; they retry and record these:
# the training operator FailedCreatePod on the PyTorchJob (pkg/controller.v1/control/pod_control.go),
# the Job controller FailedCreate on a TrainJob's batch Jobs (kubernetes pkg/controller/controller_utils.go),
# the StatefulSet controller FailedCreate on the StatefulSet (pkg/controller/statefulset/stateful_pod_control.go).
_REFUSED_REASONS = ("FailedCreatePod", "FailedCreate")
# A refusal that can clear by itself (other pods finishing): reported, waited out.
_TRANSIENT_REFUSALS = ("exceeded quota",)


def creation_refusal(core: CoreV1Api, namespace: str, owner: dict[str, Any]) -> tuple[str, str] | None:
    """(reason, message) of a Warning event saying the pods of ``owner`` (a job or StatefulSet, as read
    from the API) were refused at creation, else None. A TrainJob's pods belong to the batch Jobs
    JobSet creates for it (``<name>-<replicated job>-<index>``). Never raises: it only adds to a wait."""
    kind, meta = owner.get("kind"), owner.get("metadata") or {}
    name, uid, created = meta.get("name", ""), meta.get("uid"), str(meta.get("creationTimestamp") or "")
    try:
        events = core.list_namespaced_event(namespace, field_selector="type=Warning")
    except (ApiException, urllib3.exceptions.HTTPError) as exc:
        log.debug("events of %s/%s not readable: %s", namespace, name, exc)
        return None
    for event in events.items:
        involved = event.involved_object
        if event.reason not in _REFUSED_REASONS or involved is None:
            continue
        own = involved.kind == kind and involved.name == name and (not uid or not involved.uid or involved.uid == uid)
        # A child Job: only events of this job's life (a same-named earlier job's events may linger).
        stamp = event.last_timestamp or event.event_time
        seen = stamp.strftime("%Y-%m-%dT%H:%M:%SZ") if stamp is not None else ""
        child = (
            kind == "TrainJob" and involved.kind == "Job" and involved.name.startswith(f"{name}-") and seen >= created
        )
        if not (own or child):
            continue
        message = event.message or ""
        if any(text in message for text in _TRANSIENT_REFUSALS):
            log.warning("%s %s/%s waits: %s", kind, namespace, name, message)
            continue
        return event.reason, message
    return None


_UNKNOWN_FIELD = re.compile(r'unknown field "([^"]+)"')


def _status_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (ValueError, AttributeError):
        return str(exc.reason)


def refused_job(body: dict[str, Any], exc: ApiException) -> JobFailed | None:
    """The one-line error for a job the API server refused to create as sent, else None.

    - 400 ``strict decoding error: unknown field "<path>"``: the create asks for
      ``fieldValidation=Strict``, so kube-apiserver refuses a field the installed CRD does not declare
      (k8s.io/apiserver pkg/endpoints/handlers/create.go, createHandler; the CRD decoder reports what
      structural pruning would drop, k8s.io/apiextensions-apiserver pkg/apiserver/customresource_handler.go,
      schemaCoercingDecoder). Without it (the default, Warn) the field would be pruned and the job run
      without it, with only a Warning header. On Kubernetes older than 1.25 the parameter is ignored.
    - 422 ``Invalid``: the object breaks the CRD's schema; the server's message names each field.
    """
    kind = body.get("kind", "")
    message = _status_message(exc)
    if exc.status == 400 and "strict decoding error" in message:
        fields = _UNKNOWN_FIELD.findall(message)
        lacks = ", ".join(f"{field} (needs {trainjobs.operator_needed(kind, field)})" for field in fields)
        return JobFailed(
            "UnknownField",
            f"the cluster's {kind} CRD lacks {lacks}: the API server would silently drop "
            f"{'them' if len(fields) > 1 else 'it'}. Upgrade the operator (r1ov is tested with "
            f"{trainjobs.SUPPORTED_OPERATOR.get(kind, 'the newest release')})"
            + (", or use distributed.launcher: pytorchjob" if kind == "TrainJob" else ""),
        )
    if exc.status == 422:
        return JobFailed("Invalid", " ".join(message.split()))
    return None


def _wait_for_end(
    custom: CustomObjectsApi,
    job: kinds.JobKind,
    namespace: str,
    name: str,
    poll_s: float,
    timeout_s: float | None,
    core: CoreV1Api | None = None,
) -> dict[str, Any]:
    """Poll until the success condition (returned) or the failure condition (raised); with ``core``, a
    Warning event saying the job's pods were refused at creation also fails it (raised)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    errors, state = 0, "Pending"
    while True:
        try:
            obj = custom.get_namespaced_custom_object(job.group, job.version, namespace, job.plural, name)
            errors = 0
        except (ApiException, urllib3.exceptions.HTTPError) as exc:
            if isinstance(exc, ApiException) and exc.status == 404:
                raise JobFailed("NotFound", f"{name} was deleted while it ran") from None
            errors += 1
            if not _transient(exc) or errors > _MAX_CONSECUTIVE_ERRORS:
                raise
            log.warning("reading %s failed (%d in a row), retrying: %s", name, errors, exc)
        else:
            conditions = _true_conditions(obj)
            for condition in conditions:
                if condition.get("type") == job.failed:
                    raise JobFailed(condition.get("reason") or "Failed", condition.get("message") or "")
            for condition in conditions:
                if condition.get("type") == job.succeeded:
                    return condition
            if conditions and conditions[-1].get("type") != state:
                state = conditions[-1]["type"]
                log.info("%s %s/%s: %s", job.plural[:-1], namespace, name, state)
            if core is not None and (refused := creation_refusal(core, namespace, obj)) is not None:
                raise JobFailed(*refused)
        if deadline is not None and time.monotonic() >= deadline:
            raise JobTimeout("Timeout", f"{name} did not finish within {timeout_s:g} s (last state: {state})")
        remaining = poll_s if deadline is None else max(0.0, min(poll_s, deadline - time.monotonic()))
        time.sleep(remaining)


# Container states that explain a job that failed or never started (quoted in JobFailed's message).
_WAITING_PROBLEMS = {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError",
                     "CreateContainerError", "CrashLoopBackOff", "RunContainerError"}  # fmt: skip


def pod_problems(core: CoreV1Api, namespace: str, selector: dict[str, str]) -> list[str]:
    """Why the job's pods are stuck or ended: Unschedulable, ImagePullBackOff, OOMKilled, exit codes.

    Never raises: it only adds to an error being reported.
    """
    try:
        pods = core.list_namespaced_pod(namespace, label_selector=",".join(f"{k}={v}" for k, v in selector.items()))
    except Exception as exc:
        return [f"(pods not readable: {exc})"]
    problems = []
    for pod in pods.items:
        name, status = pod.metadata.name, pod.status
        for condition in status.conditions or []:
            if condition.type == "PodScheduled" and condition.status == "False":
                problems.append(
                    f"{name}: {condition.reason or 'Unschedulable'}: {condition.message or ''}".rstrip(": ")
                )
        for container in status.container_statuses or []:
            state, last = container.state, container.last_state
            if state and state.waiting and state.waiting.reason in _WAITING_PROBLEMS:
                problems.append(f"{name}: {state.waiting.reason}: {state.waiting.message or ''}".rstrip(": "))
            for terminated in (state and state.terminated, last and last.terminated):
                if terminated and terminated.exit_code:
                    problems.append(f"{name}: {terminated.reason or 'Error'} (exit code {terminated.exit_code})")
    return list(dict.fromkeys(problems))


def _with_pod_problems(exc: JobFailed, core: CoreV1Api, namespace: str, selector: dict[str, str]) -> JobFailed:
    problems = pod_problems(core, namespace, selector)
    if not problems:
        return exc
    return type(exc)(exc.reason, f"{exc.message}; pods: {'; '.join(problems)}")


def _delete_job(custom: CustomObjectsApi, job: kinds.JobKind, namespace: str, name: str, why: str) -> None:
    """Delete the job and, through owner references, its pods; never raises (we are already failing)."""
    try:
        custom.delete_namespaced_custom_object(
            job.group, job.version, namespace, job.plural, name, propagation_policy="Background"
        )
        log.info("deleted %s %s/%s (%s)", job.plural[:-1], namespace, name, why)
    except Exception as exc:
        if not (isinstance(exc, ApiException) and exc.status == 404):  # already gone is what we wanted
            log.error("could not delete %s/%s, delete it by hand: %s", namespace, name, exc)


def run_to_completion(
    manifest: dict[str, Any],
    namespace: str,
    poll_s: float = 10,
    timeout_s: float | None = None,
    *,
    api_client: ApiClient | None = None,
    follow_logs: bool = True,
) -> dict[str, Any]:
    """Create a PyTorchJob or TrainJob, stream its main pod's log, wait for its end.

    Returns ``{"kind", "name", "namespace", "state", "reason", "message", "elapsed_s", "log_lines"}``.
    Raises :class:`JobFailed` (job failed, or a job of that name already exists),
    :class:`JobTimeout`, or re-raises KeyboardInterrupt/SystemExit after deleting the job.
    """
    job = kinds.job_kind(manifest)
    body = _with_namespace(manifest, namespace)
    name = body["metadata"]["name"]
    api_client = api_client or load_api_client()
    custom = CustomObjectsApi(api_client)
    follower = None
    created = False
    started = time.monotonic()
    with sigterm_exits():
        try:
            try:
                # Strict: a field the installed CRD does not declare fails the create instead of being
                # pruned (see refused_job).
                custom.create_namespaced_custom_object(
                    job.group, job.version, namespace, job.plural, body, field_validation="Strict"
                )
            except ApiException as exc:
                if exc.status == 409:
                    raise JobFailed(
                        "AlreadyExists", f"{body['kind']} {namespace}/{name} exists; delete it or choose another name"
                    ) from None
                if (refused := refused_job(body, exc)) is not None:
                    raise refused from None
                raise
            created = True
            log.info("created %s %s/%s", body["kind"], namespace, name)
            if follow_logs:
                follower = PodLogFollower(
                    CoreV1Api(api_client), namespace, job.log_selector(name), job.log_container, poll_s=poll_s
                )
                follower.start()
            condition = _wait_for_end(custom, job, namespace, name, poll_s, timeout_s, CoreV1Api(api_client))
        except JobFailed as exc:
            if created and not isinstance(exc, JobTimeout) and follower is not None:
                follower.stop(_LOG_DRAIN_S)  # the failing pod's last lines say why
            if created:
                # Quote what the pods say (OOMKilled, ImagePullBackOff, Unschedulable) before they go.
                exc = _with_pod_problems(exc, CoreV1Api(api_client), namespace, job.pods_selector(name))
                _delete_job(custom, job, namespace, name, exc.reason)
                raise exc from None
            raise
        except BaseException as exc:
            if created:
                _delete_job(custom, job, namespace, name, type(exc).__name__)
            raise
        finally:
            if follower is not None:
                follower.stop(_LOG_DRAIN_S)
    return {
        "kind": body["kind"],
        "name": name,
        "namespace": namespace,
        "state": condition.get("type"),
        "reason": condition.get("reason"),
        "message": condition.get("message"),
        "elapsed_s": round(time.monotonic() - started, 3),
        "log_lines": follower.lines if follower is not None else 0,
    }


# --------------------------------------------------------------------------- plain objects


def _call(api_client: ApiClient, path: str, method: str, **kwargs: Any) -> Any:
    return api_client.call_api(
        path,
        method,
        response_type="object",
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
        **kwargs,
    )


def apply(objects: list[dict[str, Any]], namespace: str, *, api_client: ApiClient | None = None) -> list[dict]:
    """Server-side apply each object (create or update, idempotent); returns the server's copies."""
    api_client = api_client or load_api_client()
    applied = []
    for obj in objects:
        body = _with_namespace(obj, namespace)
        applied.append(
            _call(
                api_client,
                kinds.object_path(body, namespace),
                "PATCH",
                query_params=[("fieldManager", FIELD_MANAGER), ("force", "true")],
                header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
                body=body,
            )
        )
        log.info("applied %s %s/%s", body["kind"], namespace, body["metadata"]["name"])
    return applied


def delete(objects: list[dict[str, Any]], namespace: str, *, api_client: ApiClient | None = None) -> list[str]:
    """Delete each object (dependents in the background); missing ones are fine. Returns the deleted names."""
    api_client = api_client or load_api_client()
    deleted = []
    for obj in objects:
        path = kinds.object_path(obj, namespace)
        try:
            _call(
                api_client,
                path,
                "DELETE",
                query_params=[("propagationPolicy", "Background")],
                header_params={"Accept": "application/json"},
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            continue
        deleted.append(f"{obj['kind']}/{obj['metadata']['name']}")
        log.info("deleted %s %s/%s", obj["kind"], namespace, obj["metadata"]["name"])
    return deleted


def _is_ready(obj: dict[str, Any]) -> bool:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    want = spec.get("replicas", 1)
    if status.get("observedGeneration", 0) < (obj.get("metadata") or {}).get("generation", 0):
        return False  # the controller has not seen the latest spec yet
    if obj["kind"] == "Deployment":
        for condition in status.get("conditions") or []:
            if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
                raise RuntimeError(f"Deployment {obj['metadata']['name']}: {condition.get('message')}")
        return status.get("updatedReplicas", 0) >= want and status.get("availableReplicas", 0) >= want
    return status.get("updatedReplicas", 0) >= want and status.get("readyReplicas", 0) >= want


def wait_ready(
    obj: dict[str, Any],
    namespace: str | None = None,
    *,
    timeout_s: float = 1800.0,
    poll_s: float = 10.0,
    api_client: ApiClient | None = None,
) -> dict[str, Any]:
    """Wait until a Deployment or StatefulSet has all replicas updated and ready; returns its status.

    Raises RuntimeError at once when its pods are refused at creation (a FailedCreate event), and
    TimeoutError after ``timeout_s``."""
    if obj.get("kind") not in ("Deployment", "StatefulSet"):
        raise ValueError(f"wait_ready handles Deployment and StatefulSet, not {obj.get('kind')!r}")
    namespace = namespace or (obj.get("metadata") or {}).get("namespace")
    if not namespace:
        raise ValueError("namespace is required (none given and none in the object)")
    api_client = api_client or load_api_client()
    path = kinds.object_path(obj, namespace)
    deadline = time.monotonic() + timeout_s
    current: dict[str, Any] = {}
    with sigterm_exits():
        while True:
            try:
                current = _call(api_client, path, "GET", header_params={"Accept": "application/json"})
                if _is_ready(current):
                    log.info("%s %s/%s is ready", obj["kind"], namespace, obj["metadata"]["name"])
                    return current.get("status") or {}
                if (refused := creation_refusal(CoreV1Api(api_client), namespace, current)) is not None:
                    raise RuntimeError(
                        f"{obj['kind']} {namespace}/{obj['metadata']['name']}: {refused[0]}: {refused[1]}"
                    )
            except (ApiException, urllib3.exceptions.HTTPError) as exc:
                if not (_transient(exc) or (isinstance(exc, ApiException) and exc.status == 404)):
                    raise
                log.debug("reading %s: %s", path, exc)
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{obj['kind']} {namespace}/{obj['metadata']['name']} not ready after {timeout_s:g} s: "
                    f"{current.get('status') or 'no status'}"
                )
            time.sleep(max(0.0, min(poll_s, deadline - time.monotonic())))


# What a pipeline run may leave behind: training jobs and rollout servers (StatefulSet, Service, NetworkPolicy).
RUN_OBJECT_KINDS: tuple[tuple[str, str], ...] = (
    ("kubeflow.org/v1", "PyTorchJob"),
    (f"{trainjobs.TRAINER_GROUP}/v1alpha1", "TrainJob"),
    ("apps/v1", "StatefulSet"),
    ("v1", "Service"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
)


def delete_labelled(namespace: str, selector: str, *, api_client: ApiClient | None = None) -> list[str]:
    """Delete every object of :data:`RUN_OBJECT_KINDS` matching a label selector (the exit handler's
    sweep after a failed or cancelled run). Kinds whose CRD is not installed are skipped."""
    api_client = api_client or load_api_client()
    found: list[dict[str, Any]] = []
    for api_version, kind in RUN_OBJECT_KINDS:
        collection = kinds.object_path({"kind": kind, "apiVersion": api_version, "metadata": {"name": ""}}, namespace)
        try:
            listing = _call(
                api_client,
                collection.rstrip("/"),
                "GET",
                query_params=[("labelSelector", selector)],
                header_params={"Accept": "application/json"},
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            continue
        found += [{**item, "kind": kind, "apiVersion": api_version} for item in listing.get("items", [])]
    return delete(found, namespace, api_client=api_client)
