"""Istio mode's capture points: a recorder sidecar in front of every model the operator runs.

Istio copies the request but keeps neither answer. The recorder (`shadowctl recorder`) is
the builtin router's proxy run in the model's Pod, in front of that one model: it forwards
unchanged and writes a one-sided record keyed by the request id, which Envoy gives the
original request and its mirrored copy alike; the comparison job joins the two sides.
Traffic reaches a recorder because the Service in front of the role targets the recorder's
port instead of the model's: `<name>-candidate` for mirrored copies, `<name>-primary` for
the live route of a primary the operator runs. A primary given as a deploymentRef is never
changed, so its answers are recorded only if its owner adds the sidecar
(docs/istio-recorder.md).
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

from ...contract.naming import (
    CANDIDATE,
    RECORDER,
    RECORDER_ADMIN_PORT,
    RECORDER_HTTP_PORT,
    child_name,
    role_labels,
    service_host,
)
from ...contract.resource import ShadowDeployment
from ..observed import Observed
from .router import CONFIG_DIR, config_configmap, proxy_container, router_config, spool_volume
from .workloads import role_service

CONFIG_FILE = "recorder.json"
CONTAINER_NAME = RECORDER
# Prefixed: these volumes join the user's own (podTemplate.spec.volumes) in the model's Pod.
CONFIG_VOLUME = "shadow-recorder-config"
RECORDS_VOLUME = "shadow-records"


def recorder_config(sd: ShadowDeployment) -> dict[str, Any]:
    """The router's config without what a recorder does not use.

    The upstream comes from --upstream and a recorder never mirrors; leaving out the URLs and the
    traffic settings keeps a mirrorPercent edit from changing the file, which would roll the
    model Pods (the primary's included) through the config-hash annotation. The candidate's image
    reaches only the candidate's recorder, as an argument, for the same reason.
    """
    unused = ("primary", "candidate", "baseline", "traffic")
    return {key: value for key, value in router_config(sd).items() if key not in unused}


def recorder_configmap(sd: ShadowDeployment) -> dict[str, Any]:
    return config_configmap(sd, RECORDER, CONFIG_FILE, recorder_config(sd))


def recorder_container(sd: ShadowDeployment, role: str, model_port: int, image: str) -> dict[str, Any]:
    # Loopback upstream: the model is in the same Pod, and Istio does not redirect 127.0.0.1.
    args = ["recorder", "--config", f"{CONFIG_DIR}/{CONFIG_FILE}", "--role", role]
    if role == CANDIDATE:
        args += ["--candidate-image", sd.spec.candidate.image]
    return proxy_container(
        CONTAINER_NAME,
        image,
        [*args, "--upstream", f"http://127.0.0.1:{model_port}"],
        ports=(("recorder", RECORDER_HTTP_PORT), ("recorder-admin", RECORDER_ADMIN_PORT)),
        # Smaller than the router's: one recorder sees only its own Pod's share of the traffic.
        resources={"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        volumes=(CONFIG_VOLUME, RECORDS_VOLUME),
        records_path=sd.spec.recording.sink.path,
    )


def with_recorder(sd: ShadowDeployment, deployment: dict[str, Any], role: str, image: str) -> dict[str, Any]:
    """A copy of a model Deployment built by the operator, its Pods fronted by a recorder sidecar."""
    workload = sd.spec.candidate if role == CANDIDATE else sd.spec.primary
    config_text = recorder_configmap(sd)["data"][CONFIG_FILE]
    result = copy.deepcopy(deployment)
    template = result["spec"]["template"]
    template["metadata"]["annotations"] = {
        **(template["metadata"].get("annotations") or {}),
        # A recording change rolls the model Pods: the recorder reads its file at start.
        "shadow.mlops.dev/config-hash": hashlib.sha256(config_text.encode()).hexdigest()[:16],
        # The recorder's metrics are what the Prometheus checks query; they win over a user's
        # annotation for the model's own port, as the generated selector labels win.
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(RECORDER_ADMIN_PORT),
    }
    pod = template["spec"]
    pod["containers"] = [*pod["containers"], recorder_container(sd, role, workload.port, image)]
    pod["volumes"] = [
        *(pod.get("volumes") or []),
        {"name": CONFIG_VOLUME, "configMap": {"name": child_name(sd, RECORDER)}},
        # A spool the recorder ships from (the collector keeps the records). The shipper keeps it under
        # its --spool-bytes; the sizeLimit, the router's, only catches a shipper that failed to (an
        # unbounded emptyDir would fill the node's disk instead). An emptyDir is writable whatever
        # user the model Pod runs as.
        spool_volume(sd, RECORDS_VOLUME),
    ]
    return result


def recorded_service(sd: ShadowDeployment, role: str) -> dict[str, Any]:
    """`<name>-<role>` in istio mode: the role's Pods, reached through their recorder."""
    return role_service(sd, role, role_labels(sd, role), RECORDER_HTTP_PORT)


def recorded_host(sd: ShadowDeployment, role: str) -> str:
    return service_host(child_name(sd, role), sd.namespace)


def primary_capture_gap(sd: ShadowDeployment, observed: Observed) -> str | None:
    """Why a referenced primary's answers go unrecorded in istio mode; None when they are recorded.

    The operator never changes that Deployment or its Service, so it can only say what is missing.
    """
    ref, primary = sd.spec.primary.deployment_ref, observed.primary_ref
    if sd.spec.traffic.router != "istio" or ref is None or primary is None:
        return None
    if CONTAINER_NAME not in primary.container_names:
        return (
            f"Deployment {ref.name} (primary) has no recorder sidecar, so only the candidate's answers are recorded "
            "and the comparison job reports them unpaired: add the sidecar as docs/istio-recorder.md shows."
        )
    port = sd.spec.service.port
    target = observed.service.serving_target_port(port) if observed.service else None
    if target not in (RECORDER_HTTP_PORT, "recorder"):
        return (
            f"Service {sd.spec.service.name}'s port {port} targets {target}, not the recorder sidecar of Deployment "
            f"{ref.name}, so the primary's answers are not recorded: set that targetPort to {RECORDER_HTTP_PORT} "
            "as docs/istio-recorder.md shows."
        )
    return None
