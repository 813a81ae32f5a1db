"""Pod admission for the stand-in API server: what happens to a pod a controller asks to create.

Runs the admission plugins in kube-apiserver's order for a pod (mutating, then validating):

1. LimitRanger (plugin/pkg/admission/limitranger/admission.go, ``PodMutateLimitFunc``): containers
   without a limit or request get the namespace LimitRange's ``default`` / ``defaultRequest``; a
   request left unset then follows its limit (pkg/apis/core/v1/defaults.go, ``SetDefaults_Pod``).
2. ServiceAccount (plugin/pkg/admission/serviceaccount/admission.go): the pod's account must exist.
3. PodSecurity (see :mod:`r1ov.testing.pod_security`), at the namespace's enforce label.
4. ResourceQuota (plugin/pkg/admission/resourcequota/controller.go with the pod evaluator,
   pkg/quota/v1/evaluator/core/pods.go): with a quota on ``requests.*``/``limits.*`` every container
   must set that resource (``must specify ...``), and the pod's total plus the namespace's use must
   stay within ``hard`` (``exceeded quota ...``).

A refused pod is not created; the controller that asked records a Warning event on its object (see
:meth:`r1ov.testing.kube_api.StandInAPI.refuse`). Not modelled: LimitRange min/max/ratio checks,
quota scopes, object-count quotas, extended resources in quotas.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from kubernetes.utils import parse_quantity

from r1ov.testing import pod_security

COMPUTE = ("cpu", "memory")


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def apply_limit_ranges(spec: dict[str, Any], limit_ranges: list[dict[str, Any]]) -> dict[str, Any]:
    """The pod spec after LimitRanger's defaults and the API's request-follows-limit defaulting."""
    spec = copy.deepcopy(spec)
    items = [item for lr in limit_ranges for item in (lr.get("spec") or {}).get("limits") or []
             if item.get("type", "Container") == "Container"]  # fmt: skip
    for container in _containers(spec):
        resources = container.setdefault("resources", {})
        limits = resources.setdefault("limits", {})
        requests = resources.setdefault("requests", {})
        for item in items:
            for name, value in (item.get("default") or {}).items():
                limits.setdefault(name, value)
            for name, value in (item.get("defaultRequest") or {}).items():
                requests.setdefault(name, value)
        for name, value in limits.items():
            if name in COMPUTE:
                requests.setdefault(name, value)
        if not limits:
            del resources["limits"]
        if not requests:
            del resources["requests"]
    return spec


def pod_usage(spec: dict[str, Any]) -> dict[str, Decimal]:
    """What a pod counts against a quota: the sum over its containers (init containers: the largest,
    pkg/api/v1/resource PodRequests), as ``requests.cpu``, ``limits.memory``, ..."""
    usage: dict[str, Decimal] = {}
    for kind in ("requests", "limits"):
        for name in COMPUTE:
            regular = sum(
                (
                    parse_quantity(c.get("resources", {}).get(kind, {}).get(name, 0))
                    for c in spec.get("containers") or []
                ),
                Decimal(0),
            )
            init = max(
                (
                    parse_quantity(c.get("resources", {}).get(kind, {}).get(name, 0))
                    for c in spec.get("initContainers") or []
                ),
                default=Decimal(0),
            )
            usage[f"{kind}.{name}"] = max(regular, init)
    usage["cpu"], usage["memory"] = usage["requests.cpu"], usage["requests.memory"]
    return usage


def quota_refusal(spec: dict[str, Any], quotas: list[dict[str, Any]], used: dict[str, Decimal]) -> str | None:
    """ResourceQuota's message for a pod it refuses, else None."""
    usage = pod_usage(spec)
    for quota in quotas:
        hard = (quota.get("spec") or {}).get("hard") or {}
        name = quota["metadata"]["name"]
        missing = sorted(
            resource
            for resource in hard
            if resource.partition(".")[0] in ("requests", "limits")
            and any(resource.partition(".")[2] not in c.get("resources", {}).get(resource.partition(".")[0], {})
                    for c in _containers(spec))
        )  # fmt: skip
        if missing:
            return f"failed quota: {name}: must specify {','.join(missing)}"
        over = [r for r in sorted(hard) if r in usage and used.get(r, 0) + usage[r] > parse_quantity(hard[r])]
        if over:

            def listed(values: dict[str, Any], names: list[str] = over) -> str:
                return ",".join(f"{r}={values.get(r, 0)}" for r in names)

            return f"exceeded quota: {name}, requested: {listed(usage)}, used: {listed(used)}, limited: {listed(hard)}"
    return None


def admit(
    namespace_labels: dict[str, str],
    objects: dict[tuple[str, str, str], dict[str, Any]],
    namespace: str,
    pod_name: str,
    spec: dict[str, Any],
    used: dict[str, Decimal],
    *,
    accounts: bool = True,
) -> tuple[dict[str, Any], str | None]:
    """(the pod spec as stored, the refusal message or None) for a pod created in ``namespace``."""
    in_namespace = lambda plural: [o for (p, ns, _), o in objects.items() if p == plural and ns == namespace]  # noqa: E731
    spec = apply_limit_ranges(spec, in_namespace("limitranges"))
    account = spec.get("serviceAccountName") or "default"  # "default" exists in every namespace
    if accounts and account != "default" and ("serviceaccounts", namespace, account) not in objects:
        return spec, (
            f'pods "{pod_name}" is forbidden: error looking up service account {namespace}/{account}: '
            f'serviceaccount "{account}" not found'
        )
    level = namespace_labels.get(pod_security.ENFORCE_LABEL, "privileged")
    if found := pod_security.violations(level, spec):
        return spec, pod_security.refusal(level, pod_name, found)
    if refused := quota_refusal(spec, in_namespace("resourcequotas"), used):
        return spec, f'pods "{pod_name}" is forbidden: {refused}'
    for resource, value in pod_usage(spec).items():
        used[resource] = used.get(resource, Decimal(0)) + value
    return spec, None
