"""Pod Security admission for the stand-in: the "baseline" and "restricted" levels of a namespace label.

Follows k8s.io/pod-security-admission (kubernetes/kubernetes, staging/src/k8s.io/pod-security-admission):
``admission/admission.go`` reads the level from the namespace label
``pod-security.kubernetes.io/enforce`` and refuses a pod that fails a check of that level with
``violates PodSecurity "<level>:latest": <reason> (<detail>), ...``; the checks are the files of
``policy/`` named beside each function below. Workload objects (Deployments, StatefulSets, Jobs,
custom resources) are not refused: their controller's pod creation is, so the refusal shows up as an
event on the workload (see :mod:`r1ov.testing.kube_api`).

Not modelled: ``audit``/``warn`` modes, exemptions, version pinning (``-version`` labels: always
latest), AppArmor, SELinux, procMount, sysctls, Windows host process, user namespaces.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
LEVELS = ("privileged", "baseline", "restricted")

# policy/check_capabilities_baseline.go: what baseline lets a container add.
_BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
# policy/check_restrictedVolumes.go: the only inline volume sources restricted allows.
_RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip


def _containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    # policy/visitor.go visitContainers: init, regular and ephemeral containers alike.
    for field in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(field) or []


def _names(containers: list[dict[str, Any]]) -> str:
    word = "container" if len(containers) == 1 else "containers"
    return f"{word} " + ", ".join(f'"{c.get("name")}"' for c in containers)


def _baseline(spec: dict[str, Any]) -> list[str]:
    out = []
    sc = spec.get("securityContext") or {}
    # policy/check_hostNamespaces.go
    host = [f"{f}=true" for f in ("hostNetwork", "hostPID", "hostIPC") if spec.get(f)]
    if host:
        out.append(f"host namespaces ({', '.join(host)})")
    # policy/check_privileged.go
    privileged = [c for c in _containers(spec) if (c.get("securityContext") or {}).get("privileged")]
    if privileged:
        out.append(f"privileged ({_names(privileged)} must not set securityContext.privileged=true)")
    # policy/check_capabilities_baseline.go
    added = [
        c
        for c in _containers(spec)
        if set(((c.get("securityContext") or {}).get("capabilities") or {}).get("add") or []) - _BASELINE_CAPABILITIES
    ]
    if added:
        out.append(f"non-default capabilities ({_names(added)} must not include capabilities beyond the default set)")
    # policy/check_hostPathVolumes.go
    host_path = [v["name"] for v in spec.get("volumes") or [] if "hostPath" in v]
    if host_path:
        out.append(f"hostPath volumes (volumes {', '.join(repr(n) for n in host_path)})")
    # policy/check_hostPorts.go
    ports = [c for c in _containers(spec) if any(p.get("hostPort") for p in c.get("ports") or [])]
    if ports:
        out.append(f"hostPort ({_names(ports)} uses hostPorts)")
    # policy/check_seccompProfile_baseline.go
    unconfined = [c for c in _containers(spec) if ((c.get("securityContext") or {}).get("seccompProfile") or {})
                  .get("type") == "Unconfined"]  # fmt: skip
    if (sc.get("seccompProfile") or {}).get("type") == "Unconfined" or unconfined:
        out.append(
            'seccompProfile (pod or containers must not set securityContext.seccompProfile.type to "Unconfined")'
        )
    return out


def _restricted(spec: dict[str, Any]) -> list[str]:
    out = []
    sc = spec.get("securityContext") or {}
    containers = list(_containers(spec))
    # policy/check_restrictedVolumes.go
    bad_volumes = [v["name"] for v in spec.get("volumes") or [] if not _RESTRICTED_VOLUMES & (set(v) - {"name"})]
    if bad_volumes:
        out.append(f"restricted volume types (volumes {', '.join(repr(n) for n in bad_volumes)})")
    # policy/check_allowPrivilegeEscalation.go: every container must set it to false explicitly.
    escalating = [
        c for c in containers if (c.get("securityContext") or {}).get("allowPrivilegeEscalation") is not False
    ]
    if escalating:
        out.append(
            f"allowPrivilegeEscalation != false ({_names(escalating)} must set "
            "securityContext.allowPrivilegeEscalation=false)"
        )
    # policy/check_capabilities_restricted.go: drop ALL, add nothing but NET_BIND_SERVICE.
    not_dropped = [
        c for c in containers
        if "ALL" not in (((c.get("securityContext") or {}).get("capabilities") or {}).get("drop") or [])
    ]  # fmt: skip
    if not_dropped:
        out.append(
            f'unrestricted capabilities ({_names(not_dropped)} must set securityContext.capabilities.drop=["ALL"])'
        )
    added = [
        c for c in containers
        if set(((c.get("securityContext") or {}).get("capabilities") or {}).get("add") or []) - {"NET_BIND_SERVICE"}
    ]  # fmt: skip
    if added:
        out.append(
            f"unrestricted capabilities ({_names(added)} must not include capabilities other than NET_BIND_SERVICE)"
        )
    # policy/check_runAsNonRoot.go: true at pod level, or on every container; false nowhere.
    pod_non_root = sc.get("runAsNonRoot")
    explicit_false = [c for c in containers if (c.get("securityContext") or {}).get("runAsNonRoot") is False]
    implicit = [c for c in containers if (c.get("securityContext") or {}).get("runAsNonRoot") is None]
    if pod_non_root is False or explicit_false:
        out.append("runAsNonRoot != true (pod or containers must not set securityContext.runAsNonRoot=false)")
    elif pod_non_root is not True and implicit:
        out.append(f"runAsNonRoot != true (pod or {_names(implicit)} must set securityContext.runAsNonRoot=true)")
    # policy/check_runAsUser.go: never uid 0.
    root = [c for c in containers if (c.get("securityContext") or {}).get("runAsUser") == 0]
    if sc.get("runAsUser") == 0 or root:
        out.append("runAsUser=0 (pod and containers must not set runAsUser=0)")
    # policy/check_seccompProfile_restricted.go: RuntimeDefault or Localhost at pod level or on every container.
    allowed = ("RuntimeDefault", "Localhost")
    pod_profile = (sc.get("seccompProfile") or {}).get("type")
    unset = []
    for c in containers:
        own = ((c.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
        if own not in allowed and (own is not None or pod_profile not in allowed):
            unset.append(c)
    if unset:
        out.append(
            f"seccompProfile (pod or {_names(unset)} must set securityContext.seccompProfile.type to "
            '"RuntimeDefault" or "Localhost")'
        )
    return out


def violations(level: str, pod_spec: dict[str, Any]) -> list[str]:
    """The checks ``pod_spec`` fails at ``level`` (empty: admitted)."""
    if level not in LEVELS:
        raise ValueError(f"unknown Pod Security level {level!r}; expected one of {LEVELS}")
    if level == "privileged":
        return []
    out = _baseline(pod_spec)
    if level == "restricted":
        out += _restricted(pod_spec)
    return out


def refusal(level: str, pod_name: str, found: list[str]) -> str:
    """admission/admission.go's message for a refused pod."""
    return f'pods "{pod_name}" is forbidden: violates PodSecurity "{level}:latest": {", ".join(found)}'
