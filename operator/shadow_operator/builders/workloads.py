"""Model Deployments and the per-role Services in front of them."""

from __future__ import annotations

import copy
from typing import Any

from ..api.v1alpha1.spec import CandidateSpec, PrimarySpec
from ..observed import ObservedService
from ..resource import ShadowDeployment
from .naming import CANDIDATE, PRIMARY, child_name, metadata, role_labels
from .security import model_container_security, restrict_pod_spec

# Lists in a user's podTemplate.spec are appended to the generated ones (extra sidecars,
# volumes); everything else they give is added where the generated template is silent.
_APPENDED_LISTS = ("containers", "initContainers", "volumes")


def model_deployment(
    sd: ShadowDeployment, role: str, workload: PrimarySpec | CandidateSpec, extra_pod_labels: dict[str, str]
) -> dict[str, Any]:
    selector = role_labels(sd, role)
    container: dict[str, Any] = {
        "name": "model",
        "image": workload.image,
        "ports": [{"name": "http", "containerPort": workload.port, "protocol": "TCP"}],
        "securityContext": model_container_security(),
    }
    if workload.args:
        container["args"] = list(workload.args)
    if workload.env:
        container["env"] = [variable.to_wire() for variable in workload.env]
    if workload.resources is not None and workload.resources.to_wire():
        container["resources"] = workload.resources.to_wire()
    template = merge_pod_template(
        {"metadata": {"labels": {**extra_pod_labels, **selector}}, "spec": {"containers": [container]}},
        workload.pod_template or {},
    )
    pod = template["spec"]
    # Pod Security `restricted` for the model and any container the podTemplate adds: a securityContext
    # given there (merged in above) is kept where restricted allows it (builders/security.py).
    restrict_pod_spec(pod)
    # A model serves HTTP: no Kubernetes API token in its Pod unless its podTemplate asks for one.
    pod.setdefault("automountServiceAccountToken", False)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(sd, role),
        "spec": {
            "replicas": workload.replicas,
            "selector": {"matchLabels": selector},
            "template": template,
        },
    }


def merge_pod_template(generated: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Merge user-given Pod template fields into the generated template; the generated selector labels win."""
    merged = copy.deepcopy(generated)
    extra_metadata = extra.get("metadata") or {}
    for key in ("labels", "annotations"):
        if extra_metadata.get(key):
            merged["metadata"][key] = {**extra_metadata[key], **merged["metadata"].get(key, {})}
    for key, value in (extra.get("spec") or {}).items():
        if key in _APPENDED_LISTS:
            merged["spec"][key] = [*merged["spec"].get(key, []), *copy.deepcopy(value)]
        elif key not in merged["spec"]:
            merged["spec"][key] = copy.deepcopy(value)
    return merged


def role_service(sd: ShadowDeployment, role: str, selector: dict[str, str], target_port: int | str) -> dict[str, Any]:
    """`<name>-primary` / `<name>-candidate`: one role's Pods behind the Service's port number."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(sd, role),
        "spec": {
            "selector": dict(selector),
            "ports": [{"name": "http", "port": sd.spec.service.port, "targetPort": target_port, "protocol": "TCP"}],
        },
    }


def entry_service(sd: ShadowDeployment, selector: dict[str, str], target_port: int) -> dict[str, Any]:
    """The client-facing Service, created only when it did not exist (then the operator owns it)."""
    service = role_service(sd, PRIMARY, selector, target_port)
    service["metadata"]["name"] = sd.spec.service.name
    return service


def primary_pod_labels(sd: ShadowDeployment, service: ObservedService | None) -> dict[str, str]:
    """A managed primary carries the existing Service's selector, so that Service keeps reaching it."""
    if service is None:
        return {}
    return dict(service.serving_selector() or {})


def candidate_pod_labels(sd: ShadowDeployment) -> dict[str, str]:
    extra = ((sd.spec.candidate.pod_template or {}).get("metadata") or {}).get("labels") or {}
    return {**extra, **role_labels(sd, CANDIDATE)}


def candidate_service(sd: ShadowDeployment) -> dict[str, Any]:
    return role_service(sd, CANDIDATE, role_labels(sd, CANDIDATE), sd.spec.candidate.port)


def candidate_deployment(sd: ShadowDeployment) -> dict[str, Any]:
    return model_deployment(sd, CANDIDATE, sd.spec.candidate, {})


def primary_deployment(sd: ShadowDeployment, service: ObservedService | None) -> dict[str, Any]:
    return model_deployment(sd, PRIMARY, sd.spec.primary, primary_pod_labels(sd, service))


__all__ = [
    "candidate_deployment",
    "candidate_pod_labels",
    "candidate_service",
    "child_name",
    "entry_service",
    "merge_pod_template",
    "primary_deployment",
    "role_service",
]
