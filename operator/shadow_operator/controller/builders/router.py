"""The builtin mirroring router: its config, Deployment, Service and the Service switch."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ...api.v1alpha1.traffic import DEFAULT_MIRROR_METHODS
from ...contract.naming import (
    BASELINE,
    CANDIDATE,
    PRIMARY,
    ROUTER,
    ROUTER_ADMIN_PORT,
    ROUTER_HTTP_PORT,
    child_name,
    collector_url,
    metadata,
    role_labels,
    service_host,
)
from ...contract.resource import ShadowDeployment
from .collector import MIB, mebibytes
from .pods import deployment, server_container
from .security import pod_security

CONFIG_FILE = "router.json"
_OPERATOR_ONLY_TRAFFIC = ("routerReplicas", "routerGracePeriod")
DRAIN_DELAY = "5s"
# Not /etc/shadow: in every Debian-based image that is the password file, and a
# directory cannot be mounted over a file (the router Pods never started).
CONFIG_DIR = "/etc/shadow-operator"
# What a router or recorder keeps on local disk while the collector is unreachable (the
# shipper's default --spool-bytes); the spool emptyDir adds the file being written.
SPOOL_BYTES = 512 * MIB


@dataclass(frozen=True)
class ServiceSwitch:
    """The client-facing Service pointed at the router: its selector and the mirrored port's target."""

    service: str
    port: int
    selector: dict[str, str]
    target_port: int


def router_config(sd: ShadowDeployment) -> dict[str, Any]:
    """router.json: what the router does with each request, the same for every candidate image.

    Nothing here names the candidate's image, so a new candidate never rolls the router Pods that
    carry the primary's live traffic (they rolled twice per candidate when records named it). The
    job tells candidates apart by time instead: only records after the candidate rolled out
    (status.shadowingSince) are its evidence (job/job.py).
    """
    port = sd.spec.service.port
    recording = sd.spec.recording.to_wire()
    # The collector's settings: leaving them out keeps a retention or volume edit from rolling
    # the router Pods and the model Pods with recorders (config-hash annotation).
    recording["sink"] = {k: v for k, v in recording["sink"].items() if k not in ("volume", "retention")}
    config = {
        "name": sd.name,
        "namespace": sd.namespace,
        "primary": f"http://{service_host(child_name(sd, PRIMARY), sd.namespace)}:{port}",
        "candidate": f"http://{service_host(child_name(sd, CANDIDATE), sd.namespace)}:{port}",
        "collector": collector_url(sd),
        # What the router does with each request; how many routers run and when the Service leaves
        # them are the operator's business, and must not roll the router Pods when edited.
        "traffic": _router_traffic(sd),
        "recording": recording,
    }
    if sd.spec.analysis.baseline is not None and sd.spec.primary.deployment_ref is None:
        # The noise baseline: the primary's copy, sent the same mirrored copies as the candidate. Only
        # when set, so that routers without one keep their config (and config-hash) unchanged.
        config["baseline"] = f"http://{service_host(child_name(sd, BASELINE), sd.namespace)}:{port}"
    return config


def _router_traffic(sd: ShadowDeployment) -> dict[str, Any]:
    """The traffic settings the router applies (the match rules included: router/mirror_policy.py).

    `match` and `mirrorMethods` are left out at their defaults, which the router applies the same
    way, so that routers configured before the fields existed keep their config (and config-hash).
    """
    traffic = {k: v for k, v in sd.spec.traffic.to_wire().items() if k not in _OPERATOR_ONLY_TRAFFIC}
    if not traffic.get("match"):
        traffic.pop("match", None)
    if traffic.get("mirrorMethods") == list(DEFAULT_MIRROR_METHODS):
        del traffic["mirrorMethods"]
    return traffic


def spool_volume(sd: ShadowDeployment, name: str) -> dict[str, Any]:
    """The local spool of a router or recorder: always an emptyDir (the collector keeps the records).

    emptyDir survives a container restart, so a restarted router ships what its predecessor
    left. The limit covers the shipper's spool cap plus the file being written and the next.
    """
    return {"name": name, "emptyDir": {"sizeLimit": mebibytes(SPOOL_BYTES + 2 * sd.spec.recording.sink.rotate_bytes)}}


def config_configmap(sd: ShadowDeployment, role: str, file_name: str, config: dict[str, Any]) -> dict[str, Any]:
    """`<name>-<role>` holding one JSON file, stable byte for byte so its hash only moves when it changes."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(sd, role),
        "data": {file_name: json.dumps(config, sort_keys=True, indent=2)},
    }


def router_configmap(sd: ShadowDeployment) -> dict[str, Any]:
    return config_configmap(sd, ROUTER, CONFIG_FILE, router_config(sd))


def proxy_container(
    name: str,
    image: str,
    args: list[str],
    ports: tuple[tuple[str, int], tuple[str, int]],
    resources: dict[str, Any],
    volumes: tuple[str, str],
    records_path: str,
) -> dict[str, Any]:
    """A `shadowctl router|recorder` container: traffic and admin ports, probes, config and records mounts."""
    (_, http_port), (_, admin_port) = ports
    config_volume, records_volume = volumes
    return server_container(
        name,
        image,
        [*args, "--listen", f"0.0.0.0:{http_port}", "--admin-listen", f"0.0.0.0:{admin_port}"],
        ports,
        resources,
        [
            {"name": config_volume, "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": records_volume, "mountPath": records_path},
        ],
    )


def router_deployment(sd: ShadowDeployment, image: str) -> dict[str, Any]:
    config_text = router_configmap(sd)["data"][CONFIG_FILE]
    sink = sd.spec.recording.sink
    records_volume = spool_volume(sd, "records")
    container = proxy_container(
        "router",
        image,
        # Serving, not ready, for 5 s after SIGTERM: a deleted router Pod stays in the Service's iptables
        # rules until kube-proxy sees it leave the endpoints (router Pods roll on a traffic or recording edit).
        ["router", "--config", f"{CONFIG_DIR}/{CONFIG_FILE}", "--drain-delay", DRAIN_DELAY],
        ports=(("http", ROUTER_HTTP_PORT), ("admin", ROUTER_ADMIN_PORT)),
        resources={"requests": {"cpu": "250m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        volumes=("config", "records"),
        records_path=sink.path,
    )
    template = {
        "metadata": {
            "labels": role_labels(sd, ROUTER),
            "annotations": {
                # A config change rolls the router Pods, which read the file at start.
                "shadow.mlops.dev/config-hash": hashlib.sha256(config_text.encode()).hexdigest()[:16],
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(ROUTER_ADMIN_PORT),
            },
        },
        "spec": {
            # fsGroup: the spool is writable by the image's user on any volume type.
            "securityContext": pod_security(),
            # Proxies HTTP and ships records; never talks to the API server.
            "automountServiceAccountToken": False,
            # Room for the drain delay, in-flight requests and the final hand-off of records
            # to the collector (5 s) after SIGTERM; the default 30 s could cut the hand-off.
            "terminationGracePeriodSeconds": 45,
            "containers": [container],
            "volumes": [
                {"name": "config", "configMap": {"name": child_name(sd, ROUTER)}},
                records_volume,
            ],
        },
    }
    return deployment(sd, ROUTER, sd.spec.traffic.router_replicas, template)


def router_service(sd: ShadowDeployment) -> dict[str, Any]:
    """The router's own Service: what Prometheus scrapes and what operators port-forward to."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(sd, ROUTER),
        "spec": {
            "selector": role_labels(sd, ROUTER),
            "ports": [
                {"name": "http", "port": sd.spec.service.port, "targetPort": ROUTER_HTTP_PORT, "protocol": "TCP"},
                {"name": "admin", "port": ROUTER_ADMIN_PORT, "targetPort": ROUTER_ADMIN_PORT, "protocol": "TCP"},
            ],
        },
    }


def service_switch(sd: ShadowDeployment) -> ServiceSwitch:
    return ServiceSwitch(
        service=sd.spec.service.name,
        port=sd.spec.service.port,
        selector=role_labels(sd, ROUTER),
        target_port=ROUTER_HTTP_PORT,
    )
