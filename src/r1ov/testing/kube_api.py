"""A local stand-in of the Kubernetes API server, over real HTTP, for tests and the offline demo.

No Kubernetes API server runs on a developer machine or in CI, so :class:`StandInAPI` is one:
a small HTTP server speaking the REST paths and payloads the ``kubernetes`` client sends
(create/get/list/delete namespaced objects, server-side apply, list pods by label selector,
read pod logs with follow, timestamps and sinceSeconds), answering with Kubernetes ``Status``
errors (403, 404, 409, 400 while a container starts, 503).

    api = StandInAPI(rules=role_rules_from_chart(CHART_DIR))
    with serve(api) as url:
        client.run_to_completion(job, "r1ov", api_client=api_client(url))
    assert api.calls() <= granted(api.rules)

It authorizes like the API server's RBAC authorizer: each request is turned into its
(API group, resource[/subresource], verb) the way the server's request-info parser does it
(GET on a name is ``get``, on a collection ``list`` or, with ``watch=true``, ``watch``; POST
``create``; PUT ``update``; PATCH, server-side apply included, ``patch``; DELETE ``delete`` or
``deletecollection``), and a request no rule grants gets the server's 403 ``Forbidden`` Status. A
server-side apply that would create a missing object is also authorized as ``create``, as the API
server's patch handler does (see :meth:`StandInAPI._create_on_apply`).
Rules come from a Role, e.g. the one ``charts/r1ov-platform`` renders for the pipeline's service
account (:func:`role_rules_from_chart`). Every request is recorded (:meth:`StandInAPI.calls`),
so a test can compare what the code needs with what the Role grants.

Custom resources whose CRD is installed (``crds=``, e.g. the vendored upstream CRDs in tests/crds) are
decoded and validated as kube-apiserver does (:meth:`StandInAPI.validate_custom`,
:mod:`r1ov.testing.crd_schema`): undeclared fields are pruned, with a ``Warning`` header by default and a
400 under ``fieldValidation=Strict``, and a schema violation is a 422 ``Invalid`` naming the field. A
kind without an installed CRD is stored as sent.

By default it plays the operators with a script: each GET of a job advances it through
``script`` (a list of status conditions), and the job's main pod carries the labels the real
operator or JobSet puts on it, with ``log_lines`` as its log. A kubelet (see
``r1ov.testing.kubelet``) can take that role instead and run the pods as local processes.

Not modelled: authentication (every request acts as ``user``, except one bearing ``admin_token``),
admission webhooks, ``managedFields`` in the objects it returns (ownership is kept beside them, see
:mod:`r1ov.testing.field_manager` for the merge and conflicts of server-side apply),
resourceVersion/optimistic concurrency, watches as streams, owner references and garbage
collection beyond what :attr:`StandInAPI.kubelet` does, ClusterRoles, and cluster-scoped objects.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlparse

import yaml

from r1ov.testing import admission, crd_schema, field_manager

# The stand-in's own table of what it serves (independent of r1ov.k8s.kinds on purpose).
RESOURCES: dict[tuple[str, str, str], str] = {
    ("kubeflow.org", "v1", "pytorchjobs"): "PyTorchJob",
    ("trainer.kubeflow.org", "v1alpha1", "trainjobs"): "TrainJob",
    ("apps", "v1", "statefulsets"): "StatefulSet",
    ("apps", "v1", "deployments"): "Deployment",
    ("", "v1", "services"): "Service",
    ("", "v1", "configmaps"): "ConfigMap",
    ("", "v1", "secrets"): "Secret",
    ("", "v1", "serviceaccounts"): "ServiceAccount",
    ("", "v1", "events"): "Event",
    ("", "v1", "limitranges"): "LimitRange",
    ("", "v1", "resourcequotas"): "ResourceQuota",
    ("networking.k8s.io", "v1", "networkpolicies"): "NetworkPolicy",
    ("serving.kserve.io", "v1beta1", "inferenceservices"): "InferenceService",
}
JOB_KINDS = ("PyTorchJob", "TrainJob")
WORKLOAD_KINDS = ("StatefulSet", "Deployment")
# Labels the real controllers put on a job's main pod, and that pod's container (scripted mode).
MAIN_POD = {
    "PyTorchJob": lambda name: (
        f"{name}-master-0",
        {
            "training.kubeflow.org/job-name": name,
            "training.kubeflow.org/operator-name": "pytorchjob-controller",
            "training.kubeflow.org/replica-type": "master",
            "training.kubeflow.org/replica-index": "0",
            "training.kubeflow.org/job-role": "master",
        },
        "pytorch",
    ),
    "TrainJob": lambda name: (
        f"{name}-node-0-0-x7k2p",
        {
            "jobset.sigs.k8s.io/jobset-name": name,
            "jobset.sigs.k8s.io/replicatedjob-name": "node",
            "jobset.sigs.k8s.io/job-index": "0",
            "batch.kubernetes.io/job-completion-index": "0",
            "trainer.kubeflow.org/trainjob-ancestor-step": "trainer",
        },
        "node",
    ),
}
TERMINAL = {"Succeeded": "Succeeded", "Complete": "Succeeded", "Failed": "Failed"}
DEFAULT_USER = "system:serviceaccount:r1ov:r1ov-pipeline"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """A Kubernetes ``Status`` failure object."""
    out = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason,
           "code": code}  # fmt: skip
    if details:
        out["details"] = details
    return out


# --------------------------------------------------------------------------- RBAC


@dataclass(frozen=True)
class RequestInfo:
    """What the API server's request-info parser derives from a resource request."""

    group: str
    version: str
    resource: str  # "pods", or "pods/log" for a subresource
    verb: str
    namespace: str
    name: str


_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"/namespaces/(?P<namespace>[^/]+)/(?P<resource>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$"
)
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}
_DISCOVERY = re.compile(r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))$")
_SSAR_PATH = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"


def request_info(method: str, path: str, query: dict[str, list[str]]) -> RequestInfo | None:
    """(group, resource, verb, ...) of a namespaced resource request; None for any other path."""
    m = _PATH.match(path)
    if not m:
        return None
    name = m["name"] or ""
    resource = m["resource"] + (f"/{m['sub']}" if m["sub"] else "")
    if method == "GET":
        verb = ("watch" if query.get("watch", ["false"])[0] in ("true", "1") else "list") if not name else "get"
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = _VERBS.get(method, method.lower())
    return RequestInfo(m["group"] or "", m["core"] or m["version"], resource, verb, m["namespace"], name)


def _matches(values: list[str], value: str) -> bool:
    return "*" in values or value in values


def allows(rules: list[dict[str, Any]], info: RequestInfo) -> bool:
    """True when one PolicyRule grants the request (wildcards and resourceNames as RBAC reads them)."""
    for rule in rules:
        if not (
            _matches(rule.get("apiGroups") or [], info.group)
            and _matches(rule.get("resources") or [], info.resource)
            and _matches(rule.get("verbs") or [], info.verb)
        ):
            continue
        names = rule.get("resourceNames") or []
        if names and info.name not in names:
            continue
        return True
    return False


def role_rules_from_chart(
    chart_dir: str | Path,
    values: dict[str, Any] | None = None,
    *,
    service_account: str | None = None,
    release: str = "r1ov",
    namespace: str = "r1ov",
) -> list[dict[str, Any]]:
    """The PolicyRules the chart's Roles grant ``service_account`` (default: the chart's own) via its RoleBindings.

    Rendered offline with Helm's SDK, exactly as ``helm install`` would render it.
    """
    import helm_python as helm

    # The chart's defaults ask for the site's artifact store; the Roles do not depend on it.
    values = {"mlflow": {"backend": "sqlite"}, **(values or {})}
    rendered = helm.Chart.load(str(chart_dir)).render(values, name=release, namespace=namespace)
    objects = [
        doc
        for template, text in sorted(rendered.items())
        if not template.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]
    if service_account is None:
        # The chart's own account: the one its RoleBindings bind (the MLflow server's account has none).
        bound = {
            s.get("name") for o in objects if o["kind"] == "RoleBinding" for s in o.get("subjects", [])
            if s.get("kind") == "ServiceAccount"
        }  # fmt: skip
        accounts = [o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"]
        accounts = [a for a in accounts if a in bound] or accounts
        if len(accounts) != 1:
            raise ValueError(f"name the service account: the chart renders {accounts or 'none'}")
        service_account = accounts[0]
    roles = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Role"}
    rules: list[dict[str, Any]] = []
    for binding in (o for o in objects if o["kind"] == "RoleBinding"):
        bound = any(
            s.get("kind") == "ServiceAccount"
            and s.get("name") == service_account
            and s.get("namespace", namespace) == namespace
            for s in binding.get("subjects") or []
        )
        ref = binding["roleRef"]
        if bound and ref["kind"] == "Role" and ref["name"] in roles:
            rules += roles[ref["name"]].get("rules") or []
    if not rules:
        raise ValueError(f"the chart binds no Role to service account {service_account!r}")
    return rules


def forbidden(info: RequestInfo, user: str) -> dict[str, Any]:
    """The API server's 403 for an unauthorized request, word for word."""
    target = f'{info.resource} "{info.name}"' if info.name else info.resource
    base, _, _ = info.resource.partition("/")
    return status(
        403,
        "Forbidden",
        f'{target} is forbidden: User "{user}" cannot {info.verb} resource "{info.resource}" '
        f'in API group "{info.group}" in the namespace "{info.namespace}"',
        {"name": info.name, "group": info.group, "kind": base},
    )


def forbidden_create_on_update(info: RequestInfo, user: str) -> dict[str, Any]:
    """The 403 of an apply that would create an object the user may not create.

    handlers/update.go withAuthorization: ``errors.NewForbidden(group resource, name, reason)``, whose
    message is ``<resource>.<group> "<name>" is forbidden: <reason>``.
    """
    qualified = f"{info.resource}.{info.group}" if info.group else info.resource
    return status(
        403,
        "Forbidden",
        f'{qualified} "{info.name}" is forbidden: User "{user}" cannot create resource "{info.resource}" '
        f'in API group "{info.group}" in the namespace "{info.namespace}"',
        {"name": info.name, "group": info.group, "kind": info.resource},
    )


# --------------------------------------------------------------------------- the API server


WAITING_REASONS = ("ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError", "CrashLoopBackOff")


@dataclass
class Pod:
    """A pod as the stand-in knows it: labels, its one container's name, phase, why it is stuck or ended, its log."""

    name: str
    job: str
    labels: dict[str, str]
    container: str
    phase: str = "Pending"
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    log: list[tuple[datetime, str]] = field(default_factory=list)
    reason: str = ""  # Unschedulable, one of WAITING_REASONS, or a terminated reason (OOMKilled, Error)
    message: str = ""
    exit_code: int | None = None
    service_account: str = "default"

    def as_object(self, namespace: str) -> dict[str, Any]:
        container_status: dict[str, Any] = {
            "name": self.container, "image": "x", "imageID": "", "restartCount": 0, "ready": self.phase == "Running",
        }  # fmt: skip
        status: dict[str, Any] = {"phase": self.phase}
        if self.reason == "Unschedulable":
            status["conditions"] = [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": self.message}
            ]
        elif self.reason in WAITING_REASONS:
            container_status["state"] = {"waiting": {"reason": self.reason, "message": self.message}}
        elif self.exit_code is not None:
            terminated = {"reason": self.reason or "Completed", "exitCode": self.exit_code}
            container_status["state"] = {"terminated": terminated}
        if self.reason != "Unschedulable":
            status["containerStatuses"] = [container_status]
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": self.name, "namespace": namespace, "uid": self.uid, "labels": self.labels,
                         "creationTimestamp": now()},
            "spec": {"containers": [{"name": self.container, "image": "x"}],
                     "serviceAccountName": self.service_account},
            "status": status,
        }  # fmt: skip


class Kubelet(Protocol):
    """What runs a created workload's pods instead of the scripted operator."""

    def created(self, api: StandInAPI, kind: str, obj: dict[str, Any]) -> None: ...

    def job_status(self, api: StandInAPI, obj: dict[str, Any]) -> dict[str, Any]: ...

    def workload_status(self, api: StandInAPI, obj: dict[str, Any]) -> dict[str, Any]: ...

    def deleted(self, api: StandInAPI, kind: str, obj: dict[str, Any]) -> None: ...


class StandInAPI:
    """In-memory API server state; see the module docstring. ``rules=None`` authorizes everything."""

    def __init__(
        self,
        rules: list[dict[str, Any]] | None = None,
        user: str = DEFAULT_USER,
        admin_token: str = "cluster-admin",
        crds: list[crd_schema.CRD] | None = None,
    ) -> None:
        self.lock = threading.RLock()
        # Installed CustomResourceDefinitions, by (group, plural): their objects are pruned and validated
        # as the API server does (see validate_custom). A kind without one is stored as sent.
        self.crds: dict[tuple[str, str], crd_schema.CRD] = {(c.group, c.plural): c for c in crds or []}
        self._request = threading.local()  # this request's Warning headers
        self.warnings: list[str] = []  # every Warning header sent, in order
        self.rules = rules
        self.user = user
        self.admin_token = admin_token  # a bearer token with every right, for a test's own setup (not recorded)
        # API groups/versions served (a CRD not installed: remove its group); discovery lists these.
        self.installed: set[tuple[str, str]] = {(group, version) for group, version, _ in RESOURCES}
        # Cluster-scoped collections a test puts in place, by path: "/api/v1/nodes",
        # "/apis/karpenter.sh/v1/nodepools", "/apis/cloud.google.com/v1/computeclasses".
        self.cluster_objects: dict[str, list[dict[str, Any]]] = {}
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (plural, namespace, name) -> object
        # (plural, namespace, name) -> field manager -> the field paths it owns (see field_manager)
        self.managed: dict[tuple[str, str, str], dict[str, set[field_manager.Path]]] = {}
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []
        self.attempts: list[tuple[RequestInfo, bool]] = []  # every resource request and whether it was allowed
        self.script: list[tuple[str, str, str]] = []  # (condition type, reason, message) per job GET
        self.steps: dict[str, int] = {}
        self.pods: dict[str, Pod] = {}
        self.log_lines: list[str] = []
        self.pod_status: dict[str, Any] = {}  # Pod fields (reason, message, exit_code) the scripted main pod gets
        self.fail_job_gets = 0  # answer this many job GETs with 503 first
        self.ready_after_gets = 2  # workloads report one more ready replica per GET after this many
        self.workload_gets: dict[str, int] = {}
        self.kubelet: Kubelet | None = None
        # Labels of each namespace (e.g. pod-security.kubernetes.io/enforce: restricted); namespaces are
        # not objects here, a test sets their labels.
        self.namespace_labels: dict[str, dict[str, str]] = {}
        self.quota_used: dict[str, dict[str, Any]] = {}  # namespace -> ResourceQuota usage of admitted pods
        self.refused: set[tuple[str, str]] = set()  # (kind, name) of workloads whose pods admission refused
        self.url = ""

    # ------------------------------------------------------------- what was asked

    def calls(self, *, denied: bool | None = None) -> set[tuple[str, str, str]]:
        """(API group, resource, verb) of every resource request served; ``denied`` filters by the outcome."""
        with self.lock:
            return {
                (info.group, info.resource, info.verb)
                for info, allowed in self.attempts
                if denied is None or denied != allowed
            }

    # ------------------------------------------------------------- the scripted "operator"

    def _job_status(self, kind: str, name: str) -> dict[str, Any]:
        if (kind, name) in self.refused:  # no pod exists: the operator only reports events
            return {"conditions": [{"type": "Created", "status": "True", "reason": f"{kind}Created",
                                    "message": f"{kind} {name} is created.", "lastTransitionTime": now()}]}  # fmt: skip
        step = min(self.steps.get(name, 0), len(self.script) - 1)
        self.steps[name] = self.steps.get(name, 0) + 1
        conditions = []
        for i, (ctype, reason, message) in enumerate(self.script[: step + 1]):
            current = i == step or ctype == "Created"
            conditions.append(
                {"type": ctype, "status": "True" if current else "False", "reason": reason, "message": message,
                 "lastTransitionTime": now()}
            )  # fmt: skip
        ctype = self.script[step][0] if self.script else "Created"
        pod = next((p for p in self.pods.values() if p.job == name), None)
        if pod is not None:
            pod.phase = TERMINAL.get(ctype, "Pending" if ctype in ("Created", "") else "Running")
        return {"conditions": conditions} if conditions else {}

    def _start_job(self, kind: str, name: str) -> None:
        pod_name, labels, container = MAIN_POD[kind](name)
        start = datetime.now(UTC)
        self.pods[pod_name] = Pod(
            pod_name, name, labels, container,
            log=[(start + timedelta(microseconds=250 * i), line) for i, line in enumerate(self.log_lines)],
            **self.pod_status,
        )  # fmt: skip

    def _workload_status(self, obj: dict[str, Any]) -> dict[str, Any]:
        key = obj["metadata"]["name"]
        self.workload_gets[key] = self.workload_gets.get(key, 0) + 1
        want = obj["spec"].get("replicas", 1)
        ready = (
            0
            if self.ready_after_gets < 0 or (obj["kind"], key) in self.refused
            else max(0, min(want, self.workload_gets[key] - self.ready_after_gets))
        )
        return {"observedGeneration": obj["metadata"]["generation"], "replicas": want, "readyReplicas": ready,
                "updatedReplicas": ready, "availableReplicas": ready}  # fmt: skip

    # ------------------------------------------------------------- pods a controller creates

    def admit_pods(
        self, kind: str, obj: dict[str, Any], pods: list[tuple[str, dict[str, Any]]], *, accounts: bool = True
    ) -> bool:
        """Run admission (r1ov.testing.admission) on the pods a controller creates for ``obj``; on the first
        refusal no pod is created, the controller's Warning event is recorded and False returned.
        ``accounts=False`` skips the ServiceAccount check (the scripted operator's callers store none)."""
        namespace = obj["metadata"]["namespace"]
        labels = self.namespace_labels.get(namespace, {})
        used = self.quota_used.setdefault(namespace, {})
        for pod_name, spec in pods:
            _, refused = admission.admit(labels, self.objects, namespace, pod_name, spec, used, accounts=accounts)
            if refused is not None:
                self.refuse(kind, obj, pod_name, refused)
                return False
        return True

    def refuse(self, kind: str, obj: dict[str, Any], pod_name: str, message: str) -> None:
        """The event a controller records when the API server refuses its pod; the object gets no Failed
        condition (the controllers retry), only this event.

        - PyTorchJob: the training operator's pod control (kubeflow/training-operator,
          pkg/controller.v1/control/pod_control.go createPods): ``FailedCreatePod``, ``Error creating: ...``
          on the PyTorchJob;
        - TrainJob: JobSet creates a batch Job per replicated job, whose controller records ``FailedCreate``
          ``Error creating: ...`` on that Job (kubernetes pkg/controller/controller_utils.go
          RealPodControl.CreatePods), named ``<trainjob>-node-0``;
        - StatefulSet: ``FailedCreate``, ``create Pod <pod> in StatefulSet <name> failed error: ...``
          (pkg/controller/statefulset/stateful_pod_control.go recordPodEvent).
        """
        name, namespace = obj["metadata"]["name"], obj["metadata"]["namespace"]
        self.refused.add((kind, name))
        if kind == "PyTorchJob":
            involved = {"apiVersion": obj["apiVersion"], "kind": kind, "name": name, "uid": obj["metadata"]["uid"]}
            reason, text, component = "FailedCreatePod", f"Error creating: {message}", "pytorchjob-controller"
        elif kind == "TrainJob":
            involved = {"apiVersion": "batch/v1", "kind": "Job", "name": f"{name}-node-0", "uid": str(uuid.uuid4())}
            reason, text, component = "FailedCreate", f"Error creating: {message}", "job-controller"
        else:
            involved = {"apiVersion": obj["apiVersion"], "kind": kind, "name": name, "uid": obj["metadata"]["uid"]}
            reason = "FailedCreate"
            text = f"create Pod {pod_name} in {kind} {name} failed error: {message}"
            component = "statefulset-controller"
        event_name = f"{involved['name']}.{uuid.uuid4().hex[:16]}"
        self.objects[("events", namespace, event_name)] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": event_name, "namespace": namespace, "uid": str(uuid.uuid4())},
            "involvedObject": {**involved, "namespace": namespace},
            "reason": reason,
            "message": text,
            "type": "Warning",
            "count": 1,
            "firstTimestamp": now(),
            "lastTimestamp": now(),
            "source": {"component": component},
        }

    # ------------------------------------------------------------- REST

    def _discovery(self, group: str, version: str) -> tuple[int, Any]:
        """``GET /apis/<group>/<version>`` (or ``/api/v1``): the APIResourceList of a served group version
        (staging/src/k8s.io/apiserver/pkg/endpoints/discovery/version.go, APIVersionHandler). Discovery is
        open to every authenticated user (the system:discovery ClusterRole), so it is not authorized here."""
        if (group, version) not in self.installed:
            return 404, status(
                404, "NotFound", f"the server could not find the requested resource /apis/{group}/{version}"
            )
        resources = [
            {"name": plural, "singularName": "", "namespaced": True, "kind": kind,
             "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]}
            for (g, v, plural), kind in RESOURCES.items()
            if (g, v) == (group, version)
        ]  # fmt: skip
        group_version = f"{group}/{version}" if group else version
        return 200, {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        }

    def _self_subject_access_review(self, headers: Any, body: bytes) -> tuple[int, Any]:
        """``kubectl auth can-i``: may the requester (or, with ``Impersonate-User``, whom it impersonates) do this?

        kubernetes pkg/registry/authorization/selfsubjectaccessreview/rest.go (REST.Create): the spec's
        resourceAttributes become authorizer attributes for the requesting user
        (pkg/registry/authorization/util/helpers.go ResourceAttributesFrom) and the decision is returned
        in status.allowed; creating the review needs no grant (system:basic-user). Impersonation
        (staging/src/k8s.io/apiserver/pkg/endpoints/filters/impersonation.go) is allowed to the admin
        token only; the Role's rules apply to :attr:`user`, anyone else impersonated is granted nothing.
        """
        review = json.loads(body)
        admin = headers.get("Authorization") == f"Bearer {self.admin_token}"
        impersonated = headers.get("Impersonate-User")
        if impersonated and not admin:
            return 403, status(403, "Forbidden", f'users "{impersonated}" is forbidden: User "{self.user}" cannot '
                               'impersonate resource "users" in API group "" at the cluster scope')  # fmt: skip
        attributes = (review.get("spec") or {}).get("resourceAttributes") or {}
        resource = attributes.get("resource", "") + (
            f"/{attributes['subresource']}" if attributes.get("subresource") else ""
        )
        info = RequestInfo(
            attributes.get("group", ""), attributes.get("version", ""), resource, attributes.get("verb", ""),
            attributes.get("namespace", ""), attributes.get("name", ""),
        )  # fmt: skip
        subject = impersonated or (None if admin else self.user)
        if subject is None:
            allowed = True
        elif subject == self.user:
            allowed = self.rules is None or allows(self.rules, info)
        else:
            allowed = False
        review["status"] = {"allowed": allowed}
        if not allowed:
            review["status"]["reason"] = ""
        return 201, review

    def _authorized(self, info: RequestInfo, headers: Any) -> bool:
        """RBAC's decision for ``info``, recorded (a test's own admin token is neither checked nor recorded)."""
        if headers.get("Authorization") == f"Bearer {self.admin_token}":
            return True
        allowed = self.rules is None or allows(self.rules, info)
        self.attempts.append((info, allowed))
        return allowed

    @staticmethod
    def _create_on_apply(info: RequestInfo) -> RequestInfo:
        # kube-apiserver, staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go, PatchResource:
        # the authorization filter has already allowed `patch`; for a server-side apply the handler
        # may create the object (forceAllowCreate), and it builds createAuthorizerAttributes (verb
        # `create`, same resource and name) that withAuthorization (handlers/update.go) checks before
        # an object is created. A Role for apply therefore needs `create` and `patch`.
        return RequestInfo(info.group, info.version, info.resource, "create", info.namespace, info.name)

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> tuple[int, Any]:
        url = urlparse(raw_path)
        query = parse_qs(url.query)
        self._request.warnings = []
        with self.lock:
            self.requests.append((method, url.path, query))
            if method == "GET" and (group_version := _DISCOVERY.match(url.path)):
                return self._discovery(group_version["group"] or "", group_version["version"] or group_version["core"])
            if method == "POST" and url.path == _SSAR_PATH:
                return self._self_subject_access_review(headers, body)
            if method == "GET" and url.path in self.cluster_objects:
                # A cluster-scoped list (GET /apis/<group>/<version>/<plural>, no namespace): the test's
                # admin only; RBAC here models Roles, which cannot grant cluster-scoped reads.
                if headers.get("Authorization") != f"Bearer {self.admin_token}":
                    return 403, status(403, "Forbidden", f"{url.path} is forbidden at the cluster scope")
                items = [o for o in self.cluster_objects[url.path]
                         if _selector(query).items() <= (o["metadata"].get("labels") or {}).items()]  # fmt: skip
                return 200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": items}
            info = request_info(method, url.path, query)
            if info is not None and (info.group, info.version) not in self.installed and info.group:
                return 404, status(404, "NotFound", f"the server could not find the requested resource {url.path}")
            if info is None:
                return 404, status(404, "NotFound", f"the server could not find the requested resource {url.path}")
            if not self._authorized(info, headers):
                return 403, forbidden(info, self.user)
            if info.group == "" and info.resource == "pods/log":
                return self._log(info.name, query)
            if info.group == "" and info.resource == "pods":
                if info.verb == "list":
                    return self._list_pods(info.namespace, query)
                if info.verb == "get" and info.name in self.pods:
                    return 200, self.pods[info.name].as_object(info.namespace)
                return 404, status(404, "NotFound", f'pods "{info.name}" not found')
            kind = RESOURCES.get((info.group, info.version, info.resource))
            if kind is None:
                return 404, status(404, "NotFound", f"the server could not find the requested resource {url.path}")
            api_version = f"{info.group}/{info.version}" if info.group else info.version
            key = (info.resource, info.namespace, info.name)
            if info.verb == "create":
                return self._create(kind, api_version, info.resource, info.namespace, headers, query, body)
            if info.verb == "list":
                return self._list(kind, api_version, info.resource, info.namespace, query)
            if not info.name:
                return 405, status(405, "MethodNotAllowed", f"{method} on a collection")
            if info.verb == "get":
                return self._get(kind, key)
            if info.verb == "delete":
                if key not in self.objects:
                    return 404, status(404, "NotFound", f'{info.resource} "{info.name}" not found')
                obj = self.objects.pop(key)
                self.managed.pop(key, None)
                if self.kubelet is not None:
                    self.kubelet.deleted(self, kind, obj)
                return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
            if info.verb == "patch":
                if key not in self.objects and not self._authorized(self._create_on_apply(info), headers):
                    return 403, forbidden_create_on_update(info, self.user)
                return self._apply(kind, api_version, key, headers, query, body)
            return 405, status(405, "MethodNotAllowed", method)

    # ------------------------------------------------------------- custom resources

    def request_warnings(self) -> list[str]:
        """The Warning headers of the request this thread just handled."""
        return list(getattr(self._request, "warnings", []))

    def warn(self, text: str) -> None:
        """A ``Warning: 299 - "<text>"`` header on this response (apiserver pkg/warning, AddWarning)."""
        self._request.warnings.append(text)
        self.warnings.append(text)

    def validate_custom(self, plural: str, api_version: str, obj: dict[str, Any], query: dict[str, list[str]]):
        """Decode and validate a custom resource sent in a create, as kube-apiserver does; None when the
        object may be stored (pruned in place), else the (code, Status) to answer.

        - Pruning (:func:`crd_schema.prune`) happens in the decoder. What an unknown field does depends on
          the request's ``fieldValidation`` (apiserver pkg/endpoints/handlers/create.go, createHandler, and
          rest.go fieldValidation, whose default is ``Warn``): ``Strict`` fails the request with the
          decoder's strict error, turned by transformDecodeError (rest.go) into 400 BadRequest
          ``<Kind> in version "<v>" cannot be handled as a <Kind>: strict decoding error: unknown field
          "spec.x"``; ``Warn`` stores the pruned object and adds one Warning header per field
          (addStrictDecodingWarnings); ``Ignore`` prunes silently.
        - Then the schema (:class:`crd_schema.SchemaValidator`): 422 Invalid, one cause per field error
          (apimachinery pkg/api/errors/errors.go, NewInvalid).
        """
        group, _, version = api_version.rpartition("/")
        crd = self.crds.get((group, plural))
        if crd is None:
            return None
        directive = (query.get("fieldValidation") or ["Warn"])[0]
        if directive not in ("Ignore", "Strict", "Warn"):
            # create.go checks the options first (ValidateCreateOptions -> apimachinery
            # pkg/apis/meta/v1/validation/validation.go ValidateFieldValidation).
            detail = 'supported values: "", "Ignore", "Strict", "Warn"'
            return 422, status(
                422, "Invalid",
                f'CreateOptions.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: "{directive}": {detail}',
            )  # fmt: skip
        unknown = crd_schema.prune(obj, crd.schemas[version])
        if unknown and directive == "Strict":
            fields = ", ".join(f'unknown field "{path}"' for path in unknown)
            return 400, status(
                400, "BadRequest", f'{crd.kind} in version "{version}" cannot be handled as a {crd.kind}: '
                f"strict decoding error: {fields}",
            )  # fmt: skip
        if directive == "Warn":
            for path in unknown:
                self.warn(f'unknown field "{path}"')
        return self._invalid(crd, obj)

    @staticmethod
    def _invalid(crd: crd_schema.CRD, obj: dict[str, Any]) -> tuple[int, Any] | None:
        version = obj["apiVersion"].rpartition("/")[2]
        errors = crd.validator(version).errors(obj)
        if not errors:
            return None
        name = (obj.get("metadata") or {}).get("name", "")
        causes = [{"reason": e.type, "message": e.body(), "field": e.field} for e in errors]
        return 422, status(
            422, "Invalid", f'{crd.kind}.{crd.group} "{name}" is invalid: {crd_schema.aggregate(errors)}',
            {"name": name, "group": crd.group, "kind": crd.kind, "causes": causes},
        )  # fmt: skip

    def _undeclared_in_apply(self, plural: str, api_version: str, patch: dict[str, Any], key) -> tuple[int, Any] | None:
        """Server-side apply builds a typed object from the apply configuration with the CRD's schema
        before merging (apimachinery pkg/util/managedfields/internal/structuredmerge.go, Apply:
        ``failed to create typed patch object (<ns>/<name>; <gvk>): .spec.x: field not declared in
        schema``); the error is no API status, so the client gets 500 (apiserver
        pkg/endpoints/handlers/responsewriters/status.go, ErrorToAPIStatus), whatever fieldValidation says."""
        group, _, version = api_version.rpartition("/")
        crd = self.crds.get((group, plural))
        if crd is None:
            return None
        unknown = crd_schema.prune(copy.deepcopy(patch), crd.schemas[version])
        if not unknown:
            return None
        gvk = f"{api_version}, Kind={crd.kind}"
        where = "; ".join(f".{path}: field not declared in schema" for path in unknown)
        message = f"failed to create typed patch object ({key[1]}/{key[2]}; {gvk}): {where}"
        return 500, status(500, "", message)

    def _create(self, kind, api_version, plural, namespace, headers, query, body) -> tuple[int, Any]:
        if headers.get("Content-Type") != "application/json":
            return 415, status(415, "UnsupportedMediaType", str(headers.get("Content-Type")))
        obj = json.loads(body)
        if obj.get("kind") != kind or obj.get("apiVersion") != api_version:
            return 400, status(
                400, "BadRequest", f"the API version in the data ({obj.get('apiVersion')}) does not match"
            )
        if obj["metadata"].get("namespace", namespace) != namespace:
            return 400, status(400, "BadRequest", "the namespace of the provided object does not match")
        if (refused := self.validate_custom(plural, api_version, obj, query)) is not None:
            return refused
        if query.get("dryRun"):
            # dryRun=All: decoded, validated and admitted like a real create, never stored
            # (apiserver pkg/registry/generic/registry/dryrun.go, DryRunnableStorage.Create), so no
            # controller sees it. Its only value is All (apimachinery ValidateDryRun).
            if query["dryRun"] != ["All"]:
                return 422, status(422, "Invalid", f'CreateOptions.meta.k8s.io "" is invalid: dryRun: Unsupported '
                                   f'value: {json.dumps(query["dryRun"])}: supported values: "All"')  # fmt: skip
            key = (plural, namespace, obj["metadata"]["name"])
            if key in self.objects:
                return 409, status(409, "AlreadyExists", f'{plural} "{key[2]}" already exists')
            obj["metadata"].update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1, namespace=namespace)
            return 201, obj
        key = (plural, namespace, obj["metadata"]["name"])
        if key in self.objects:
            return 409, status(409, "AlreadyExists", f'{plural} "{key[2]}" already exists')
        # The creator owns every field it sent (fieldmanager.FieldManager.Update, operation Update); its
        # name is the fieldManager parameter, else the client's user agent (managerOrUserAgent).
        manager = (query.get("fieldManager") or [str(headers.get("User-Agent") or "unknown").split("/")[0]])[0]
        field_manager.record_update(obj, self.managed.setdefault(key, {}), manager)
        self._store(kind, key, obj)
        return 201, obj

    def _store(self, kind: str, key: tuple[str, str, str], obj: dict[str, Any]) -> None:
        obj["metadata"].update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1, namespace=key[1])
        self.objects[key] = obj
        if self.kubelet is not None:
            self.kubelet.created(self, kind, obj)
        elif kind in MAIN_POD:
            # Scripted mode models no ServiceAccounts (the kubelet mode does): admission without that check.
            if self.admit_pods(kind, obj, planned_pods(kind, obj), accounts=False):
                self._start_job(kind, key[2])
        elif kind in WORKLOAD_KINDS:
            self.admit_pods(kind, obj, planned_pods(kind, obj), accounts=False)

    def _get(self, kind: str, key: tuple[str, str, str]) -> tuple[int, Any]:
        if key not in self.objects:
            return 404, status(404, "NotFound", f'{key[0]} "{key[2]}" not found')
        obj = self.objects[key]
        if kind in JOB_KINDS:
            if self.fail_job_gets > 0:
                self.fail_job_gets -= 1
                return 503, status(503, "ServiceUnavailable", "etcd leader changed")
            obj["status"] = self.kubelet.job_status(self, obj) if self.kubelet else self._job_status(kind, key[2])
        elif kind in WORKLOAD_KINDS:
            obj["status"] = self.kubelet.workload_status(self, obj) if self.kubelet else self._workload_status(obj)
        return 200, obj

    def _apply(self, kind, api_version, key, headers, query, body) -> tuple[int, Any]:
        # Server-side apply: the content type and a field manager are mandatory.
        if headers.get("Content-Type") != "application/apply-patch+yaml":
            return 415, status(415, "UnsupportedMediaType", f"expected apply patch, got {headers.get('Content-Type')}")
        if not query.get("fieldManager"):
            return 422, status(422, "Invalid", "fieldManager is required for apply requests")
        obj = yaml.safe_load(body)
        if obj.get("kind") != kind or obj.get("apiVersion") != api_version or obj["metadata"]["name"] != key[2]:
            return 400, status(400, "BadRequest", "object does not match the request path")
        if (refused := self._undeclared_in_apply(key[0], api_version, obj, key)) is not None:
            return refused
        previous = self.objects.get(key)
        owners = self.managed.setdefault(key, {})
        owned_before = copy.deepcopy(owners)
        force = query.get("force", ["false"])[0] == "true"
        try:
            merged = field_manager.apply(previous, obj, owners, query["fieldManager"][0], force=force)
        except field_manager.ApplyConflict as exc:
            causes = [{"type": "FieldManagerConflict", "message": f'conflict with "{manager}"', "field": path}
                      for manager, paths in exc.conflicts.items() for path in paths]  # fmt: skip
            return 409, status(409, "Conflict", str(exc), {"name": key[2], "kind": key[0], "causes": causes})
        crd = self.crds.get((api_version.rpartition("/")[0], key[0]))
        if crd is not None and (refused := self._invalid(crd, merged)) is not None:
            # The merged object goes through the same validation as a create or update (validator.go).
            if previous is None:
                self.managed.pop(key, None)
            else:
                self.managed[key] = owned_before
            return refused
        if previous is None:
            merged["metadata"].setdefault("name", key[2])
            self._store(kind, key, merged)
            return 201, merged
        # The API server bumps metadata.generation when spec changes (each kind's PrepareForUpdate).
        changed = any(previous.get(f) != merged.get(f) for f in ("spec", "data", "stringData"))
        merged["metadata"]["generation"] = previous["metadata"].get("generation", 1) + int(changed)
        if "status" in previous:
            merged["status"] = previous["status"]
        self.objects[key] = merged
        return 200, merged

    def _list(self, kind, api_version, plural, namespace, query) -> tuple[int, Any]:
        wanted = _selector(query)
        fields = _field_selector(query)
        items = [
            obj
            for (obj_plural, obj_namespace, _), obj in self.objects.items()
            if obj_plural == plural
            and obj_namespace == namespace
            and wanted.items() <= (obj["metadata"].get("labels") or {}).items()
            and all(_field(obj, path) == value for path, value in fields.items())
        ]
        return 200, {"apiVersion": api_version, "kind": f"{kind}List", "metadata": {}, "items": items}

    def _list_pods(self, namespace: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        wanted = _selector(query)
        items = [pod.as_object(namespace) for pod in self.pods.values() if wanted.items() <= pod.labels.items()]
        return 200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}

    def _log(self, name: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        pod = self.pods.get(name)
        if pod is None:
            return 404, status(404, "NotFound", f'pods "{name}" not found')
        container = query.get("container", [pod.container])[0]
        if container != pod.container:
            return 400, status(400, "BadRequest", f"container {container} is not valid for pod {name}")
        if pod.phase == "Pending":
            return 400, status(400, "BadRequest", f'container "{container}" in pod "{name}" is waiting to start')
        lines = list(pod.log)
        if "sinceSeconds" in query:
            cutoff = datetime.now(UTC) - timedelta(seconds=int(query["sinceSeconds"][0]))
            lines = [(t, text) for t, text in lines if t >= cutoff]
        stamped = query.get("timestamps", ["false"])[0] == "true"
        text = "".join(
            f"{t.strftime('%Y-%m-%dT%H:%M:%S.%f')}000Z {line}\n" if stamped else f"{line}\n" for t, line in lines
        )
        return 200, text


def trainjob_pod_spec(job: dict[str, Any]) -> dict[str, Any]:
    """A TrainJob's node pod as Trainer v2 builds it: the runtime's ``node`` container with spec.trainer's
    image, command, env and resourcesPerNode, and the pod spec of its ``runtimePatches`` merged over it
    (the torch-distributed ClusterTrainingRuntime adds nothing else a check here reads)."""
    trainer = job["spec"].get("trainer") or {}
    pod: dict[str, Any] = {}
    for patch in job["spec"].get("runtimePatches") or []:
        for replicated in patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]:
            if replicated["name"] == "node":
                pod = {**pod, **(replicated["template"]["spec"]["template"].get("spec") or {})}
    patched = next((c for c in pod.get("containers") or [] if c.get("name") == "node"), {})
    container = {
        "name": "node",
        "image": trainer.get("image", ""),
        "command": trainer.get("command") or [],
        "env": trainer.get("env") or [],
        "resources": trainer.get("resourcesPerNode") or {},
        **{k: v for k, v in patched.items() if k not in ("name", "env")},
    }
    return {**pod, "containers": [container]}


def planned_pods(kind: str, obj: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(pod name, pod spec) of every pod the controller of ``obj`` creates."""
    name, spec = obj["metadata"]["name"], obj["spec"]
    if kind == "PyTorchJob":
        return [
            (f"{name}-{rtype.lower()}-{i}", replica["template"]["spec"])
            for rtype, replica in spec["pytorchReplicaSpecs"].items()
            for i in range(replica.get("replicas", 1))
        ]
    if kind == "TrainJob":
        pod = trainjob_pod_spec(obj)
        return [(f"{name}-node-0-{i}-x7k2p", pod) for i in range(int(spec["trainer"].get("numNodes", 1)))]
    return [(f"{name}-{i}", spec["template"]["spec"]) for i in range(spec.get("replicas", 1))]


def _selector(query: dict[str, list[str]]) -> dict[str, str]:
    return dict(part.split("=", 1) for part in query.get("labelSelector", [""])[0].split(",") if part)


def _field_selector(query: dict[str, list[str]]) -> dict[str, str]:
    """``fieldSelector=a.b=v,c=w`` (equality only). Events select on involvedObject.*, reason, type,
    source (pkg/registry/core/event/strategy.go ToSelectableFields); every object on metadata.name/namespace."""
    return dict(part.split("=", 1) for part in query.get("fieldSelector", [""])[0].split(",") if part)


def _field(obj: dict[str, Any], path: str) -> Any:
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return "" if node is None else str(node)


def _make_handler(api: StandInAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            code, payload = api.handle(self.command, self.path, self.headers, self.rfile.read(length))
            data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            self.send_response(code)
            for text in api.request_warnings():
                # apiserver pkg/endpoints/filters/warning.go via apimachinery pkg/util/net/http.go
                # NewWarningHeader: `299 - "<text>"`, the text quoted as Go's strconv.Quote does.
                self.send_header("Warning", f"299 - {json.dumps(text)}")
            self.send_header("Content-Type", "text/plain" if isinstance(payload, str) else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

    return Handler


@contextlib.contextmanager
def serve(api: StandInAPI, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``api`` over HTTP on a free port; yields (and sets ``api.url`` to) its base URL."""
    server = ThreadingHTTPServer((host, 0), _make_handler(api))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    api.url = f"http://{host}:{server.server_address[1]}"
    try:
        yield api.url
    finally:
        server.shutdown()
        server.server_close()


def kubeconfig(url: str, namespace: str = "r1ov", token: str = "stand-in") -> dict[str, Any]:
    """A kubeconfig document pointing at the stand-in (what a laptop's ``~/.kube/config`` would hold)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "stand-in", "cluster": {"server": url}}],
        "users": [{"name": "me", "user": {"token": token}}],
        "contexts": [{"name": "ctx", "context": {"cluster": "stand-in", "user": "me", "namespace": namespace}}],
        "current-context": "ctx",
    }
