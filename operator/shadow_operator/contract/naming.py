"""Names and labels of the objects a ShadowDeployment owns."""

from __future__ import annotations

from .resource import ShadowDeployment

MANAGED_BY = "shadow-operator"
NAME_LABEL = "shadow.mlops.dev/name"
ROLE_LABEL = "shadow.mlops.dev/role"
PRIMARY, CANDIDATE, ROUTER, ANALYSIS, RECORDER = "primary", "candidate", "router", "analysis", "recorder"
COLLECTOR = "collector"
# The noise baseline (spec.analysis.baseline): a second copy of the primary, fed the candidate's copies.
BASELINE = "baseline"
ROUTER_HTTP_PORT = 8080
ROUTER_ADMIN_PORT = 9901
COLLECTOR_HTTP_PORT = 8090
COLLECTOR_ADMIN_PORT = 9901
# The image's user (Dockerfile: USER 65532:65532); as fsGroup it makes a fresh volume writable.
IMAGE_UID = 65532
# The recorder sidecar shares the model's network namespace, so its ports must differ from the
# model's (validation refuses a model on them) and from Istio's own (15000-15090).
RECORDER_HTTP_PORT = 8480
RECORDER_ADMIN_PORT = 8481


def child_name(sd: ShadowDeployment, role: str) -> str:
    return f"{sd.name}-{role}"


def service_host(name: str, namespace: str) -> str:
    return f"{name}.{namespace}.svc.cluster.local"


def collector_url(sd: ShadowDeployment) -> str:
    """Where the routers and recorders ship records and the comparison job reads them."""
    return f"http://{service_host(child_name(sd, COLLECTOR), sd.namespace)}:{COLLECTOR_HTTP_PORT}"


def common_labels(sd: ShadowDeployment) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": sd.name,
        NAME_LABEL: sd.name,
    }


def role_labels(sd: ShadowDeployment, role: str) -> dict[str, str]:
    """Labels that select one role's Pods; stable, because Deployment selectors are immutable."""
    return {NAME_LABEL: sd.name, ROLE_LABEL: role}


def metadata(sd: ShadowDeployment, role: str, name: str | None = None) -> dict:
    return {
        "name": name or child_name(sd, role),
        "namespace": sd.namespace,
        "labels": {**common_labels(sd), ROLE_LABEL: role},
        "ownerReferences": [sd.identity.owner_reference()],
    }
