"""The operator's ClusterRole, generated from the calls kube.py can make."""

from __future__ import annotations

from typing import Any

from .kube import PERMISSIONS

ROLE_NAME = "shadow-operator"


def cluster_role() -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": ROLE_NAME, "labels": {"app.kubernetes.io/name": "shadow-operator"}},
        "rules": [
            {"apiGroups": [p.group], "resources": list(p.resources), "verbs": list(p.verbs)} for p in PERMISSIONS
        ],
    }
