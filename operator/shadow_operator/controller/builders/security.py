"""The one home of the securityContexts of generated Pods: every one passes Pod Security `restricted`.

https://kubernetes.io/docs/concepts/security/pod-security-standards/ — restricted asks of every
Pod and container: runAsNonRoot, no uid 0, seccomp RuntimeDefault (or Localhost), capabilities
drop ALL (add at most NET_BIND_SERVICE), no privilege escalation, plus baseline (no privileged,
host namespaces, hostPath, hostPort, unsafe sysctls, custom SELinux users or /proc mounts).

The operator's own containers (router, recorder, collector, job) run the operator's image as its
user with a read-only root filesystem. A model container gets the same restrictions except the
read-only root filesystem and the fixed user (a model image brings its own numeric USER); a
user's podTemplate may set its Pod's securityContext (runAsUser, fsGroup, seccomp Localhost, ...)
but only within restricted: `restrict_pod_spec` keeps what restricted allows and replaces the rest.
"""

from __future__ import annotations

import copy
from typing import Any, get_args

from ...api.v1alpha1.podtemplate import SAFE_SYSCTL
from ...contract.naming import IMAGE_UID

RUNTIME_DEFAULT = {"type": "RuntimeDefault"}
ALLOWED_SECCOMP = frozenset({"RuntimeDefault", "Localhost"})
# The only capability restricted lets a container add back after dropping ALL.
ALLOWED_ADDED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
ALLOWED_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t"})
# baseline's "safe" sysctls: one list, the API type's.
SAFE_SYSCTLS = frozenset(get_args(SAFE_SYSCTL))
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


def container_security(read_only_root: bool = True) -> dict[str, Any]:
    """An operator-run container: restricted, plus a read-only root filesystem (its writes go to emptyDirs)."""
    security: dict[str, Any] = {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": dict(RUNTIME_DEFAULT),
    }
    if read_only_root:
        security["readOnlyRootFilesystem"] = True
    return security


def model_container_security() -> dict[str, Any]:
    """A model container: restricted, root filesystem writable, seccomp left to the Pod (which a user may set)."""
    return {"runAsNonRoot": True, "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def pod_security() -> dict[str, Any]:
    """An operator-run Pod: the image's user, and fsGroup so a freshly provisioned volume (root-owned) is writable."""
    return {
        "runAsNonRoot": True,
        "runAsUser": IMAGE_UID,
        "runAsGroup": IMAGE_UID,
        "fsGroup": IMAGE_UID,
        "seccompProfile": dict(RUNTIME_DEFAULT),
    }


def model_pod_security(given: dict[str, Any] | None) -> dict[str, Any]:
    """A model Pod's securityContext: the user's (podTemplate.spec.securityContext) within restricted."""
    security = _restricted_common(copy.deepcopy(given) if isinstance(given, dict) else {})
    security["runAsNonRoot"] = True
    seccomp = security.get("seccompProfile")
    if not isinstance(seccomp, dict) or seccomp.get("type") not in ALLOWED_SECCOMP:
        security["seccompProfile"] = dict(RUNTIME_DEFAULT)
    sysctls = security.pop("sysctls", None)
    if isinstance(sysctls, list):
        safe = [s for s in sysctls if isinstance(s, dict) and s.get("name") in SAFE_SYSCTLS]
        if safe:
            security["sysctls"] = safe
    return security


def restrict_container(container: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """A container's securityContext: `defaults` where it says nothing, its own values only where restricted allows them."""
    given = container.get("securityContext")
    security = _restricted_common({**defaults, **(copy.deepcopy(given) if isinstance(given, dict) else {})})
    security.pop("privileged", None)
    security["allowPrivilegeEscalation"] = False
    if security.get("runAsNonRoot") is False:
        security["runAsNonRoot"] = True
    if security.get("procMount") not in (None, "Default"):
        security.pop("procMount")
    seccomp = security.get("seccompProfile")
    if seccomp is not None and (not isinstance(seccomp, dict) or seccomp.get("type") not in ALLOWED_SECCOMP):
        security.pop("seccompProfile")  # the Pod's RuntimeDefault applies
    capabilities = security.get("capabilities")
    capabilities = capabilities if isinstance(capabilities, dict) else {}
    added = [c for c in capabilities.get("add") or [] if c in ALLOWED_ADDED_CAPABILITIES]
    security["capabilities"] = {"drop": ["ALL"], **({"add": added} if added else {})}
    for port in container.get("ports") or []:
        if isinstance(port, dict):
            port.pop("hostPort", None)
            port.pop("hostIP", None)
    container["securityContext"] = security
    return container


def restrict_pod_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A model Pod spec made restricted in place: the Pod's and every container's securityContext, host namespaces."""
    spec["securityContext"] = model_pod_security(spec.get("securityContext"))
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        spec.pop(key, None)
    for key in CONTAINER_LISTS:
        for container in spec.get(key) or []:
            if isinstance(container, dict):
                restrict_container(container, model_container_security())
    return spec


def _restricted_common(security: dict[str, Any]) -> dict[str, Any]:
    """What Pod and container securityContexts share: no uid 0, no custom SELinux user/role/type, no hostProcess."""
    if security.get("runAsUser") == 0:
        security.pop("runAsUser")
    selinux = security.get("seLinuxOptions")
    if selinux is not None and (
        not isinstance(selinux, dict)
        or selinux.get("user")
        or selinux.get("role")
        or (selinux.get("type") or "") not in ALLOWED_SELINUX_TYPES
    ):
        security.pop("seLinuxOptions")
    windows = security.get("windowsOptions")
    if isinstance(windows, dict) and windows.get("hostProcess"):
        security["windowsOptions"] = {k: v for k, v in windows.items() if k != "hostProcess"}
    return security
