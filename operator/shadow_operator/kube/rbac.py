"""The operator's ClusterRole (or, for a namespaced install, Role) and each comparison job's Role.

All generated from kube/client.py's PERMISSIONS and ANALYZER_PERMISSIONS, so a role grants what the
code uses and nothing else.
"""

from __future__ import annotations

from typing import Any

from ..api.v1alpha1 import PLURAL
from ..contract.analysis_state import state_name
from ..contract.report import report_name
from .permissions import ANALYZER_PERMISSIONS, OPERATOR_ROLE, PERMISSIONS, Permission

RBAC_API_VERSION = "rbac.authorization.k8s.io/v1"
# Cluster-scoped: kopf lists and watches them to notice CRDs and namespaces appearing at run
# time; the admission webhook asks SubjectAccessReviews and fills in its configuration's CA. A
# namespaced install goes without (kopf then only warns that it will not notice them, and no
# webhook runs: see manifests/namespaced/kustomization.yaml).
CLUSTER_SCOPED = frozenset(
    {"customresourcedefinitions", "namespaces", "subjectaccessreviews", "validatingwebhookconfigurations"}
)
LABELS = {"app.kubernetes.io/name": "shadow-operator"}


def _rule(permission: Permission, resource_names: tuple[str, ...] = ()) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "apiGroups": [permission.group],
        "resources": list(permission.resources),
        "verbs": list(permission.verbs),
    }
    names = resource_names or permission.resource_names
    if names:
        rule["resourceNames"] = list(names)
    return rule


def _cluster_role(name: str, permissions: tuple[Permission, ...]) -> dict[str, Any]:
    return {
        "apiVersion": RBAC_API_VERSION,
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": dict(LABELS)},
        "rules": [_rule(permission) for permission in permissions],
    }


def cluster_role() -> dict[str, Any]:
    """The operator's: what kube/client.py's calls need, cluster-wide."""
    return _cluster_role(OPERATOR_ROLE, PERMISSIONS)


def namespaced_permissions() -> tuple[Permission, ...]:
    """The operator's permissions without the cluster-scoped ones (a Role cannot grant those)."""
    return tuple(p for p in PERMISSIONS if not set(p.resources) & CLUSTER_SCOPED)


def namespaced_role(namespace: str) -> dict[str, Any]:
    """The operator's permissions in one watched namespace (manifests/namespaced/)."""
    return {
        "apiVersion": RBAC_API_VERSION,
        "kind": "Role",
        "metadata": {"name": OPERATOR_ROLE, "namespace": namespace, "labels": dict(LABELS)},
        "rules": [_rule(permission) for permission in namespaced_permissions()],
    }


def analyzer_rules(shadow_name: str) -> list[dict[str, Any]]:
    """The comparison job's rules, each narrowed to its one ShadowDeployment or its two ConfigMaps (report, state)."""
    names = {PLURAL: (shadow_name,), "configmaps": (report_name(shadow_name), state_name(shadow_name))}
    rules = []
    for permission in ANALYZER_PERMISSIONS:
        (resource,) = permission.resources
        rules.append(_rule(permission, names[resource]))
    return rules
