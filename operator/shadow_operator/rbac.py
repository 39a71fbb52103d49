"""The ClusterRoles of the operator and of the comparison job, generated from kube.py."""

from __future__ import annotations

from typing import Any

from .kube import ANALYZER_PERMISSIONS, ANALYZER_ROLE, OPERATOR_ROLE, PERMISSIONS, Permission

ROLE_NAME = OPERATOR_ROLE


def _rule(permission: Permission) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "apiGroups": [permission.group],
        "resources": list(permission.resources),
        "verbs": list(permission.verbs),
    }
    if permission.resource_names:
        rule["resourceNames"] = list(permission.resource_names)
    return rule


def _cluster_role(name: str, permissions: tuple[Permission, ...]) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "shadow-operator"}},
        "rules": [_rule(permission) for permission in permissions],
    }


def cluster_role() -> dict[str, Any]:
    """The operator's: what kube.py's calls need, cluster-wide."""
    return _cluster_role(OPERATOR_ROLE, PERMISSIONS)


def analyzer_cluster_role() -> dict[str, Any]:
    """The comparison job's, bound per ShadowDeployment by a RoleBinding in its namespace."""
    return _cluster_role(ANALYZER_ROLE, ANALYZER_PERMISSIONS)
