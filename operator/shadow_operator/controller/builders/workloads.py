"""Model Deployments and the per-role Services in front of them."""

from __future__ import annotations

import copy
from typing import Any

from ...api.v1alpha1.containers import MODEL_CONTAINER
from ...api.v1alpha1.podtemplate import PodTemplate
from ...api.v1alpha1.workloads import CandidateSpec, PrimarySpec
from ...contract.naming import BASELINE, CANDIDATE, PRIMARY, child_name, metadata, role_labels
from ...contract.resource import ShadowDeployment
from ..observed import ObservedService
from .pods import deployment
from .security import model_container_security, restrict_pod_spec

# Lists in a user's podTemplate.spec are appended to the generated ones (sidecars, volumes);
# everything else it gives is added where the generated template is silent. The podTemplate is
# typed (api/v1alpha1/podtemplate.py): only its allowlisted fields ever reach here.
_APPENDED_LISTS = ("containers", "volumes")
# What a podTemplate entry named `model` adds to the model container: lists appended, the rest where it is silent.
_MODEL_LISTS = ("env", "envFrom", "volumeMounts")


def model_deployment(
    sd: ShadowDeployment, role: str, workload: PrimarySpec | CandidateSpec, extra_pod_labels: dict[str, str]
) -> dict[str, Any]:
    selector = role_labels(sd, role)
    container: dict[str, Any] = {
        "name": MODEL_CONTAINER,
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
        pod_template_wire(workload.pod_template),
    )
    pod = template["spec"]
    # Pod Security `restricted` for the model and any container the podTemplate adds: a securityContext
    # given there (merged in above) is kept where restricted allows it (controller/builders/security.py).
    restrict_pod_spec(pod)
    # A model serves HTTP: no Kubernetes API token in its Pod unless its podTemplate asks for one.
    pod.setdefault("automountServiceAccountToken", False)
    return deployment(sd, role, workload.replicas, template)


def pod_template_wire(pod_template: PodTemplate | None) -> dict[str, Any]:
    """The podTemplate as Kubernetes spells it; {} when there is none."""
    return pod_template.to_wire() if pod_template is not None else {}


def merge_pod_template(generated: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Merge user-given Pod template fields into the generated template; the generated selector labels win.

    A container entry named like a generated container (`model`) adds to it instead of being appended.
    """
    merged = copy.deepcopy(generated)
    extra_metadata = extra.get("metadata") or {}
    for key in ("labels", "annotations"):
        if extra_metadata.get(key):
            merged["metadata"][key] = {**extra_metadata[key], **merged["metadata"].get(key, {})}
    for key, value in (extra.get("spec") or {}).items():
        if key == "containers":
            value = [entry for entry in value if not _merge_into_generated(merged["spec"]["containers"], entry)]
        if key in _APPENDED_LISTS:
            merged["spec"][key] = [*merged["spec"].get(key, []), *copy.deepcopy(value)]
        elif key not in merged["spec"]:
            merged["spec"][key] = copy.deepcopy(value)
    return merged


def _merge_into_generated(containers: list[dict[str, Any]], entry: dict[str, Any]) -> bool:
    """Add `entry` to the generated container of its name, if there is one (True), else leave it (False)."""
    target = next((c for c in containers if c.get("name") == entry.get("name")), None)
    if target is None:
        return False
    for key, value in entry.items():
        if key in _MODEL_LISTS:
            target[key] = [*target.get(key, []), *copy.deepcopy(value)]
        elif key == "securityContext":
            # Restricted is enforced afterwards (controller/builders/security.py); the user's values win where it allows them.
            target[key] = {**target.get(key, {}), **copy.deepcopy(value)}
        elif key not in target:
            target[key] = copy.deepcopy(value)
    return True


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
    """A managed primary carries an existing Service's selector, so that Service keeps reaching it; but only
    when the Service opted in (ALLOW_ADOPTION_ANNOTATION): otherwise creating a ShadowDeployment would put
    any image behind a Service its author may not edit (controller/validation.py refuses that spec, naming the
    annotation)."""
    if service is None or not service.allows_adoption:
        return {}
    return dict(service.serving_selector() or {})


def candidate_pod_labels(sd: ShadowDeployment) -> dict[str, str]:
    template = sd.spec.candidate.pod_template
    extra = (template.metadata.labels if template and template.metadata else None) or {}
    return {**extra, **role_labels(sd, CANDIDATE)}


def candidate_service(sd: ShadowDeployment) -> dict[str, Any]:
    return role_service(sd, CANDIDATE, role_labels(sd, CANDIDATE), sd.spec.candidate.port)


def candidate_deployment(sd: ShadowDeployment) -> dict[str, Any]:
    return model_deployment(sd, CANDIDATE, sd.spec.candidate, {})


def primary_deployment(sd: ShadowDeployment, service: ObservedService | None) -> dict[str, Any]:
    return model_deployment(sd, PRIMARY, sd.spec.primary, primary_pod_labels(sd, service))


def baseline_deployment(sd: ShadowDeployment) -> dict[str, Any]:
    """The primary's image and settings again, under its own labels: no Service ever selects it for clients."""
    deployment = model_deployment(sd, BASELINE, sd.spec.primary, {})
    deployment["spec"]["replicas"] = sd.spec.analysis.baseline.replicas if sd.spec.analysis.baseline else 1
    return deployment


def baseline_service(sd: ShadowDeployment) -> dict[str, Any]:
    return role_service(sd, BASELINE, role_labels(sd, BASELINE), sd.spec.primary.port)


__all__ = [
    "baseline_deployment",
    "baseline_service",
    "candidate_deployment",
    "candidate_pod_labels",
    "candidate_service",
    "child_name",
    "entry_service",
    "merge_pod_template",
    "pod_template_wire",
    "primary_deployment",
    "role_service",
]
