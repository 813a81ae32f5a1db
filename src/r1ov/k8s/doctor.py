"""`r1ov doctor`: what a platform engineer checks before the first submit, against the current kube context.

    checks = run(Target(namespace="r1ov", kfp_endpoint="http://localhost:8888"), api_client=...)
    print(table(checks)); sys.exit(0 if all(c.ok for c in checks) else 1)

Each check is one row: what was looked at, whether it is ready, what was found and, for a miss, the
command or value that fixes it. The checks:

- the training CRDs the launchers create, at the versions the code speaks (API discovery, open to
  every authenticated user: ``GET /apis/<group>/<version>``), and new enough for the fields the launchers
  set: a job as they build it is created with ``dryRun=All`` and ``fieldValidation=Strict``, which an
  older operator's CRD refuses (e.g. Trainer < v2.2 has no ``spec.runtimePatches``);
- every call the code makes from a pipeline pod, asked as the pipeline's service account
  (``kubectl auth can-i --as``: a SelfSubjectAccessReview sent with ``Impersonate-User``);
- the Secrets the pipeline maps into its pods, with the keys it reads;
- the GPU pools (Karpenter NodePools, GKE ComputeClasses or nodes) with the labels the code selects
  and the GPU taint;
- the KFP API server answering its health route;
- MLflow answering with the pipeline's credentials (the platform chart's basic-auth server);
- each image the bundle runs present in the registry (the settings ConfigMap's R1OV_IMAGE_REGISTRY and
  R1OV_IMAGE_TAG), asked anonymously through the registry API where it answers.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from kubernetes.client import ApiClient, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from r1ov.config import DistributedConfig
from r1ov.k8s import bundle, trainjobs

SERVICE_ACCOUNT = "r1ov-pipeline"  # charts/r1ov-platform serviceAccount.name
SETTINGS_CONFIGMAP = "r1ov-settings"

# (API group, version, plural, launcher) of each custom resource a launcher creates.
CRDS: tuple[tuple[str, str, str, str], ...] = (
    ("kubeflow.org", "v1", "pytorchjobs", "pytorchjob"),
    (trainjobs.TRAINER_GROUP, "v1alpha1", "trainjobs", "trainjob"),
)

# Every (API group, resource, verb) the code calls from a pipeline pod, and why; tests/test_rbac.py
# checks this table against the calls recorded while the code runs, so a new call is a new row.
CALLS: tuple[tuple[str, str, str, str], ...] = (
    *((g, r, v, "training launchers and the exit handler's sweep")
      for g, r in (("kubeflow.org", "pytorchjobs"), (trainjobs.TRAINER_GROUP, "trainjobs"))
      for v in ("create", "get", "list", "delete")),
    *(("apps", "statefulsets", v, "GRPO rollout servers (server-side apply)")
      for v in ("create", "patch", "get", "list", "delete")),
    *(("", "services", v, "GRPO rollout servers (server-side apply)") for v in ("create", "patch", "list", "delete")),
    *(("networking.k8s.io", "networkpolicies", v, "GRPO rollout servers' NetworkPolicy")
      for v in ("create", "patch", "list", "delete")),
    ("", "pods", "list", "following the trainers' logs"),
    ("", "pods/log", "get", "following the trainers' logs"),
    ("", "events", "list", "failing fast when admission refuses a job's pods"),
    ("apps", "deployments", "get", "promotion rolls the endpoint"),
    ("apps", "deployments", "patch", "promotion rolls the endpoint"),
    ("serving.kserve.io", "inferenceservices", "get", "promotion rolls a KServe endpoint"),
    ("serving.kserve.io", "inferenceservices", "patch", "promotion rolls a KServe endpoint"),
)  # fmt: skip
# Resources the Role may narrow to named objects (rbac.endpointDeployments): asked with the endpoint's name.
_NAMED = {("apps", "deployments"), ("serving.kserve.io", "inferenceservices")}

# Secret -> (keys the pipeline reads, whether the Secret is needed without workload identity).
SECRETS: dict[str, tuple[tuple[str, ...], str]] = {
    "r1ov-s3": (("access-key-id", "secret-access-key"), "object store credentials (none with IRSA/Workload Identity)"),
    "r1ov-mlflow": (("username", "password"), "the pipeline's MLflow user (the platform chart's basic-auth server)"),
}


@dataclass(frozen=True)
class Check:
    """One row of the report."""

    area: str
    item: str
    ok: bool
    found: str
    fix: str = ""


@dataclass
class Target:
    """Where the platform is meant to run."""

    namespace: str = "r1ov"
    service_account: str = SERVICE_ACCOUNT
    kfp_endpoint: str | None = None
    mlflow_uri: str | None = None  # default: MLFLOW_TRACKING_URI of the settings ConfigMap
    # The inference Deployment/InferenceService promotion rolls: the README's release `r1ov-serve`
    # (charts/r1ov-platform rbac.endpointDeployments grants the Role exactly these names).
    endpoint: str | None = "r1ov-serve-r1ov-inference"


def _get(api_client: ApiClient, path: str) -> Any:
    return api_client.call_api(
        path, "GET", response_type="object", auth_settings=["BearerToken"], _return_http_data_only=True,
        header_params={"Accept": "application/json"},
    )  # fmt: skip


def _dry_run_job(api_client: ApiClient, namespace: str, launcher: str) -> Check | None:
    """A MISS when the API server refuses a job as the launcher builds it (dry run: nothing is created), else
    None. Strict field validation makes a CRD that lacks a field refuse it instead of pruning it
    (r1ov.k8s.client.refused_job); admission webhooks run too (e.g. Trainer's, on the runtime)."""
    from r1ov.k8s import client

    dist = DistributedConfig(
        launcher=launcher, nnodes=2, nproc_per_node=1, cluster={"namespace": namespace, "active_deadline_s": 3600}
    )
    build = trainjobs.build_pytorchjob if launcher == "pytorchjob" else trainjobs.build_trainjob
    job = build("r1ov-doctor", ["torchrun", "-m", "r1ov.train.sft"], dist, {})
    group, version = job["apiVersion"].split("/")
    plural = next(p for g, v, p, _ in CRDS if (g, v) == (group, version))
    try:
        CustomObjectsApi(api_client).create_namespaced_custom_object(
            group, version, namespace, plural, job, dry_run="All", field_validation="Strict"
        )
    except ApiException as exc:
        item = f"{plural}.{group}/{version} fields"
        if exc.status == 403:  # this context may not create jobs: the fields stay unchecked, not wrong
            return Check("CRD", item, True, "not checked (dry-run create forbidden to this context)")
        refused = client.refused_job(job, exc) or client.JobFailed(str(exc.status), str(exc.reason))
        operator = trainjobs.SUPPORTED_OPERATOR[job["kind"]]
        return Check("CRD", item, False, refused.message, f"upgrade to {operator} (the release r1ov is tested with)")
    return None


def check_crds(api_client: ApiClient, namespace: str = "r1ov") -> list[Check]:
    """Each launcher's CRD is served at the version the code speaks, and takes a job as the launcher builds it."""
    out = []
    for group, version, plural, launcher in CRDS:
        item = f"{plural}.{group}/{version}"
        try:
            served = {r["name"] for r in _get(api_client, f"/apis/{group}/{version}").get("resources", [])}
        except ApiException as exc:
            served, why = set(), f"{group}/{version} not served ({exc.status})"
        else:
            why = f"{group}/{version} serves no {plural}"
        if plural in served:
            accepted = Check("CRD", item, True, "served; takes a job as the launcher builds it (dry run)")
            out.append(_dry_run_job(api_client, namespace, launcher) or accepted)
        else:
            operator = "Kubeflow Training Operator v1.9" if launcher == "pytorchjob" else "Kubeflow Trainer v2.3"
            out.append(Check("CRD", item, False, why,
                             f"install {operator}, or use distributed.launcher other than {launcher}"))  # fmt: skip
    return out


def check_access(api_client: ApiClient, target: Target) -> list[Check]:
    """Each call of :data:`CALLS`, asked as the pipeline's service account (``kubectl auth can-i --as``)."""
    user = f"system:serviceaccount:{target.namespace}:{target.service_account}"
    out = []
    for group, resource, verb, why in CALLS:
        base, _, sub = resource.partition("/")
        attributes = {"namespace": target.namespace, "verb": verb, "group": group, "resource": base}
        if sub:
            attributes["subresource"] = sub
        if (group, base) in _NAMED and target.endpoint:
            attributes["name"] = target.endpoint
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes},
        }
        item = f"{verb} {resource}" + (f".{group}" if group else "")
        try:
            answer = api_client.call_api(
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "POST", body=review,
                header_params={"Content-Type": "application/json", "Accept": "application/json",
                               "Impersonate-User": user},
                response_type="object", auth_settings=["BearerToken"], _return_http_data_only=True,
            )  # fmt: skip
        except ApiException as exc:
            out.append(Check("RBAC", item, False, f"could not ask as {user} ({exc.status})",
                             "run doctor with a context that may impersonate service accounts"))  # fmt: skip
            continue
        allowed = bool((answer.get("status") or {}).get("allowed"))
        fix = "" if allowed else (
            f"helm upgrade the r1ov-platform chart in {target.namespace} (its pipeline Role grants this), "
            f"or bind its Role to {target.service_account} (rbac.extraSubjects)"
        )  # fmt: skip
        out.append(Check("RBAC", item, allowed, ("allowed" if allowed else "denied") + f" ({why})", fix))
    return out


def check_secrets(api_client: ApiClient, target: Target) -> list[Check]:
    """The Secrets the pipeline maps into its pods exist and hold the keys it reads."""
    out = []
    for name, (keys, what) in SECRETS.items():
        try:
            data = _get(api_client, f"/api/v1/namespaces/{target.namespace}/secrets/{name}").get("data") or {}
        except ApiException as exc:
            found = "missing" if exc.status == 404 else f"not readable ({exc.status})"
            literals = " ".join(f"--from-literal={k}=..." for k in keys)
            out.append(Check("Secret", name, False, f"{found}: {what}",
                             f"kubectl -n {target.namespace} create secret generic {name} {literals}"))  # fmt: skip
            continue
        missing = [k for k in keys if not data.get(k)]
        if missing:
            fix = f"kubectl -n {target.namespace} edit secret {name}  # add {', '.join(missing)}"
            out.append(Check("Secret", name, False, f"no key {', '.join(missing)}", fix))
        else:
            out.append(Check("Secret", name, True, f"keys {', '.join(keys)}"))
    return out


# Where GPU pools are declared: Karpenter NodePools (EKS), GKE ComputeClasses, else existing nodes.
_POOL_SOURCES = (
    ("NodePool", "/apis/karpenter.sh/v1/nodepools"),
    ("ComputeClass", "/apis/cloud.google.com/v1/computeclasses"),
    ("Node", "/api/v1/nodes"),
)


def _pool_labels_and_taints(kind: str, obj: dict[str, Any]) -> tuple[dict[str, str], list[dict[str, Any]]]:
    if kind == "NodePool":  # karpenter.sh/v1: spec.template.{metadata.labels, spec.taints}
        template = obj.get("spec", {}).get("template", {})
        return (template.get("metadata") or {}).get("labels") or {}, (template.get("spec") or {}).get("taints") or []
    if kind == "ComputeClass":  # its nodes carry the class's name as the compute-class label
        config = obj.get("spec", {}).get("nodePoolConfig") or {}
        labels = {**(config.get("nodeLabels") or {}), bundle.COMPUTE_CLASS_LABEL: obj["metadata"]["name"]}
        # GKE taints GPU nodes nvidia.com/gpu=present:NoSchedule itself.
        gpu = any("gpu" in p for p in obj.get("spec", {}).get("priorities") or [])
        taints = list(config.get("taints") or []) + ([{**bundle.GPU_TAINT, "value": "present"}] if gpu else [])
        return labels, taints
    return obj["metadata"].get("labels") or {}, obj.get("spec", {}).get("taints") or []


def check_pools(api_client: ApiClient) -> list[Check]:
    """Each GPU pool exists with the labels the code selects (r1ov.k8s.bundle) and the GPU taint."""
    found: list[tuple[str, dict[str, Any]]] = []
    for kind, path in _POOL_SOURCES:
        try:
            found += [(kind, item) for item in _get(api_client, path).get("items", [])]
        except ApiException:
            continue  # that API is not installed, or not readable: the other sources may answer
    out = []
    for pool in bundle.GPU_POOLS:
        selector = bundle.pool_selector(pool)
        matches = [(k, o) for k, o in found if selector.items() <= _pool_labels_and_taints(k, o)[0].items()]
        item = f"{pool} ({selector[bundle.COMPUTE_CLASS_LABEL]})"
        fix = (f"helm install r1ov-gpu-nodepools charts/r1ov-gpu-nodepools --set namePrefix={bundle.POOL_PREFIX} "
               f"(or set R1OV_POOL_PREFIX / settings.poolPrefix to the pools' prefix)")  # fmt: skip
        if not matches:
            out.append(Check("GPU pool", item, False, "no NodePool, ComputeClass or node carries its labels", fix))
            continue
        tainted = [
            f"{k}/{o['metadata']['name']}"
            for k, o in matches
            if any(t.get("key") == bundle.GPU_TAINT["key"] and t.get("effect") == bundle.GPU_TAINT["effect"]
                   for t in _pool_labels_and_taints(k, o)[1])
        ]  # fmt: skip
        names = ", ".join(f"{k}/{o['metadata']['name']}" for k, o in matches)
        if tainted:
            out.append(Check("GPU pool", item, True, f"{', '.join(tainted)} (GPU taint)"))
        else:
            out.append(Check("GPU pool", item, False, f"{names} without the {bundle.GPU_TAINT['key']}:NoSchedule taint",
                             "taint its nodes nvidia.com/gpu:NoSchedule (the node-pool chart does), or CPU pods may "
                             "take GPU nodes"))  # fmt: skip
    return out


def _http(url: str, headers: dict[str, str] | None = None, timeout_s: float = 10) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read(2000).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(2000).decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(getattr(exc, "reason", exc))


def check_kfp(target: Target) -> list[Check]:
    """The KFP API server answers its health route (``/apis/v2beta1/healthz``)."""
    if not target.kfp_endpoint:
        fix = "pass --kfp-endpoint or set KF_PIPELINES_ENDPOINT (e.g. a port-forward of ml-pipeline-ui)"
        return [Check("KFP", "endpoint", False, "no endpoint given", fix)]
    code, text = _http(target.kfp_endpoint.rstrip("/") + "/apis/v2beta1/healthz")
    if code == 200:
        return [Check("KFP", target.kfp_endpoint, True, "healthz answers")]
    found = f"HTTP {code}" if code else f"unreachable: {text}"
    return [Check("KFP", target.kfp_endpoint, False, found,
                  "check the endpoint (kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80)")]  # fmt: skip


def check_mlflow(api_client: ApiClient, target: Target) -> list[Check]:
    """MLflow answers a search with the pipeline's credentials (the r1ov-mlflow Secret)."""
    uri = target.mlflow_uri
    if uri is None:
        try:
            settings = _get(api_client, f"/api/v1/namespaces/{target.namespace}/configmaps/{SETTINGS_CONFIGMAP}")
            uri = (settings.get("data") or {}).get("MLFLOW_TRACKING_URI")
        except ApiException:
            uri = None
    if not uri:
        return [Check("MLflow", "tracking URI", False, f"no MLFLOW_TRACKING_URI in ConfigMap {SETTINGS_CONFIGMAP}",
                      "install the r1ov-platform chart, or pass --mlflow-uri")]  # fmt: skip
    headers = {}
    try:
        data = _get(api_client, f"/api/v1/namespaces/{target.namespace}/secrets/r1ov-mlflow").get("data") or {}
        user, password = (base64.b64decode(data.get(k) or "").decode() for k in ("username", "password"))
        if user:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    except ApiException:
        pass
    code, text = _http(uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1", headers)
    if code == 200:
        return [Check("MLflow", uri, True, "answers with the pipeline's credentials")]
    if code in (401, 403):
        fix = f"create the pipeline's MLflow user and put it in Secret r1ov-mlflow in {target.namespace}"
        return [Check("MLflow", uri, False, f"HTTP {code}: the pipeline's credentials are refused", fix)]
    found = f"HTTP {code}" if code else f"unreachable: {text}"
    fix = "from a laptop, port-forward the MLflow Service and pass --mlflow-uri http://localhost:PORT"
    return [Check("MLflow", uri, False, found, fix)]


# What a pull accepts (OCI image index/manifest, Docker schema 2 list/manifest): a registry answers a
# manifest HEAD only for a media type the client accepts.
_MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
))  # fmt: skip
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
# Docker treats registries on 127.0.0.0/8 as insecure (plain HTTP) by default; every other one speaks HTTPS.
_PLAIN_HTTP_HOSTS = ("localhost", "127.")


def _head(url: str, headers: dict[str, str], timeout_s: float = 10) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, headers=headers, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, dict(response.headers), ""
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), ""
    except (urllib.error.URLError, OSError) as exc:
        return 0, {}, str(getattr(exc, "reason", exc))


def _bearer_token(challenge: str, repository: str) -> str | None:
    """An anonymous pull token from the realm a 401's ``WWW-Authenticate: Bearer realm=...,service=...,scope=...``
    names (distribution/distribution docs/spec/auth/token.md: GET <realm>?service=<service>&scope=
    repository:<name>:pull; the answer's ``token``, or ``access_token``)."""
    if not challenge.lower().startswith("bearer "):
        return None
    params = dict(_CHALLENGE.findall(challenge))
    if "realm" not in params:
        return None
    query = {"scope": params.get("scope") or f"repository:{repository}:pull"}
    if "service" in params:
        query["service"] = params["service"]
    code, text = _http(f"{params['realm']}?{urllib.parse.urlencode(query)}")
    if code != 200:
        return None
    try:
        answer = json.loads(text)
    except ValueError:
        return None
    return answer.get("token") or answer.get("access_token")


def manifest_status(image: str) -> tuple[int, str]:
    """(HTTP status, what was found) of ``HEAD /v2/<name>/manifests/<tag>`` for ``registry/name:tag``
    (OCI distribution-spec, "Checking if content exists in the registry": 200 present, 404 absent),
    following a 401's Bearer challenge once, anonymously. Status 0: the registry did not answer."""
    host, _, rest = image.partition("/")
    repository, _, tag = rest.rpartition(":")
    scheme = "http" if host.startswith(_PLAIN_HTTP_HOSTS) else "https"
    url = f"{scheme}://{host}/v2/{repository}/manifests/{tag}"
    headers = {"Accept": _MANIFEST_TYPES}
    code, answer, error = _head(url, headers)
    if code == 401:
        token = _bearer_token(answer.get("WWW-Authenticate") or answer.get("Www-Authenticate") or "", repository)
        if token:
            code, answer, error = _head(url, {**headers, "Authorization": f"Bearer {token}"})
    if code == 200:
        return code, f"present ({answer.get('Docker-Content-Digest') or 'no digest given'})"
    return code, error or f"HTTP {code}"


def _settings(api_client: ApiClient, target: Target) -> dict[str, str]:
    try:
        path = f"/api/v1/namespaces/{target.namespace}/configmaps/{SETTINGS_CONFIGMAP}"
        return _get(api_client, path).get("data") or {}
    except ApiException:
        return {}


def check_images(api_client: ApiClient, target: Target) -> list[Check]:
    """Each image of :data:`bundle.IMAGE_NAMES` is in the registry the namespace's pods pull from."""
    settings = _settings(api_client, target)
    registry = settings.get("R1OV_IMAGE_REGISTRY") or bundle.REGISTRY
    tag = settings.get("R1OV_IMAGE_TAG") or bundle.TAG
    out = []
    for kind in bundle.IMAGE_NAMES:
        image = bundle.image(kind, registry=registry, tag=tag)
        code, found = manifest_status(image)
        if code == 200:
            out.append(Check("Image", image, True, found))
        elif code == 404:
            out.append(Check("Image", image, False, f"{found}: no such image or tag",
                             f"build and push it (make images; docker push {image}), or set "
                             "settings.imageRegistry/imageTag of the platform chart to where it is"))  # fmt: skip
        elif code in (401, 403):
            out.append(Check("Image", image, False, f"{found}: the registry wants credentials (not checked)",
                             "nodes pull with their own credentials (ECR node role, Artifact Registry) or an "
                             "imagePullSecret; check with: docker manifest inspect " + image))  # fmt: skip
        else:
            fix = "check the registry name (settings.imageRegistry) and that nodes can reach it"
            out.append(Check("Image", image, False, f"registry did not answer: {found}", fix))
    return out


def run(target: Target, *, api_client: ApiClient) -> list[Check]:
    """Every check, in the order a platform engineer fixes them."""
    return [
        *check_crds(api_client, target.namespace),
        *check_access(api_client, target),
        *check_secrets(api_client, target),
        *check_pools(api_client),
        *check_kfp(target),
        *check_mlflow(api_client, target),
        *check_images(api_client, target),
    ]


def table(checks: list[Check]) -> str:
    """A plain-text table: area, item, ok/MISS, what was found, and the fix for each miss."""
    rows = [("AREA", "ITEM", "STATUS", "FOUND", "FIX")] + [
        (c.area, c.item, "ok" if c.ok else "MISS", c.found, c.fix) for c in checks
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(widths[i]) if i < 4 else cell for i, cell in enumerate(row)).rstrip() for row in rows]
    missed = sum(not c.ok for c in checks)
    lines.append(f"{len(checks) - missed} ok, {missed} to fix")
    return "\n".join(lines)
