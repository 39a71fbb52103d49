"""The record collector: one per ShadowDeployment, the only Pod that keeps records.

Every router and recorder replica writes its records to a local emptyDir (a spool) and ships
them to `<name>-collector` (router/shipper.py); the comparison job downloads them from it.
This works on any cluster without setup: no ReadWriteMany volume is needed, and
`recording.sink.volume`, when given, is mounted by this one Pod, so ReadWriteOnce is enough.
docs/records.md has the design and what survives what.
"""

from __future__ import annotations

from typing import Any

from ...contract.naming import (
    COLLECTOR,
    COLLECTOR_ADMIN_PORT,
    COLLECTOR_HTTP_PORT,
    NAME_LABEL,
    child_name,
    metadata,
    role_labels,
)
from ...contract.resource import ShadowDeployment
from .pods import deployment, server_container
from .security import pod_security

MIB = 1 << 20
# Room over retention.maxBytes: retention runs after an append (one body of at most 8 MiB per
# connection), and an emptyDir past its sizeLimit gets the Pod evicted.
HEADROOM_BYTES = 64 * MIB


def mebibytes(n: int) -> str:
    """A quantity in whole Mi, rounded up."""
    return f"{-(-n // MIB)}Mi"


def collector_deployment(sd: ShadowDeployment, image: str) -> dict[str, Any]:
    sink = sd.spec.recording.sink
    retention = sink.retention
    volume = {
        "name": "records",
        **(sink.volume or {"emptyDir": {"sizeLimit": mebibytes(retention.max_bytes + HEADROOM_BYTES)}}),
    }
    args = ["collector", "--listen", f"0.0.0.0:{COLLECTOR_HTTP_PORT}", "--admin-listen", f"0.0.0.0:{COLLECTOR_ADMIN_PORT}",
            "--records", sink.path, "--retention-bytes", str(retention.max_bytes), "--retention-age", retention.max_age]  # fmt: skip
    container = server_container(
        COLLECTOR,
        image,
        args,
        ports=(("http", COLLECTOR_HTTP_PORT), ("admin", COLLECTOR_ADMIN_PORT)),
        # Memory: at most 16 connections each holding one body of at most 8 MiB.
        resources={"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "384Mi"}},
        volume_mounts=[{"name": "records", "mountPath": sink.path}],
    )
    template = {
        "metadata": {
            "labels": role_labels(sd, COLLECTOR),
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(COLLECTOR_ADMIN_PORT)},
        },
        "spec": {
            "securityContext": pod_security(),
            # Serves records over HTTP; never talks to the API server.
            "automountServiceAccountToken": False,
            "containers": [container],
            "volumes": [volume],
        },
    }
    # Recreate: a ReadWriteOnce volume cannot be mounted by the old and the new Pod at once,
    # and two collectors would split one writer's file between them.
    return deployment(sd, COLLECTOR, 1, template, strategy={"type": "Recreate"})


def collector_service(sd: ShadowDeployment) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(sd, COLLECTOR),
        "spec": {
            "selector": role_labels(sd, COLLECTOR),
            "ports": [
                {"name": "http", "port": COLLECTOR_HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
                {"name": "admin", "port": COLLECTOR_ADMIN_PORT, "targetPort": "admin", "protocol": "TCP"},
            ],
        },
    }


def collector_network_policy(
    sd: ShadowDeployment, extra_writers: list[dict[str, str]] | tuple[()] = ()
) -> dict[str, Any]:
    """Records in and out only for this ShadowDeployment's Pods; metrics and probes from anywhere.

    The routers, the model Pods with recorders and the comparison job all carry
    `shadow.mlops.dev/name: <name>`. `extra_writers` are selectors of Pods that ship records
    without that label: a referenced primary's Pods with a recorder sidecar the user added.
    """
    peers: list[dict[str, Any]] = [{"podSelector": {"matchLabels": {NAME_LABEL: sd.name}}}]
    peers += [{"podSelector": {"matchLabels": dict(selector)}} for selector in extra_writers if selector]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(sd, COLLECTOR),
        "spec": {
            "podSelector": {"matchLabels": role_labels(sd, COLLECTOR)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": peers, "ports": [{"port": COLLECTOR_HTTP_PORT, "protocol": "TCP"}]},
                # Prometheus may run in any namespace; /metrics carries no records.
                {"ports": [{"port": COLLECTOR_ADMIN_PORT, "protocol": "TCP"}]},
            ],
        },
    }


def collector_keys(sd: ShadowDeployment) -> set[tuple[str, str]]:
    name = child_name(sd, COLLECTOR)
    return {("Deployment", name), ("Service", name), ("NetworkPolicy", name)}
