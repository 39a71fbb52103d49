"""The shapes the operator's Deployments share: the Deployment around a Pod template, and a `shadowctl` server container."""

from __future__ import annotations

from typing import Any

from ...contract.naming import metadata, role_labels
from ...contract.resource import ShadowDeployment
from .security import container_security


def deployment(
    sd: ShadowDeployment,
    role: str,
    replicas: int,
    template: dict[str, Any],
    strategy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`<name>-<role>`: `replicas` Pods of `template`, selected by the role's labels (the template must carry them)."""
    spec: dict[str, Any] = {"replicas": replicas}
    if strategy is not None:
        spec["strategy"] = strategy
    spec["selector"] = {"matchLabels": role_labels(sd, role)}
    spec["template"] = template
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata(sd, role), "spec": spec}


def server_container(
    name: str,
    image: str,
    args: list[str],
    ports: tuple[tuple[str, int], tuple[str, int]],
    resources: dict[str, Any],
    volume_mounts: list[dict[str, Any]],
) -> dict[str, Any]:
    """A `shadowctl` server (router, recorder, collector): its traffic and admin ports, probes on the admin one."""
    (http_name, http_port), (admin_name, admin_port) = ports
    return {
        "name": name,
        "image": image,
        "args": args,
        "ports": [
            {"name": http_name, "containerPort": http_port, "protocol": "TCP"},
            {"name": admin_name, "containerPort": admin_port, "protocol": "TCP"},
        ],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": admin_name}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": admin_name}, "periodSeconds": 10},
        "resources": resources,
        "securityContext": container_security(),
        "volumeMounts": volume_mounts,
    }
