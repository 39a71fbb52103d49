"""Who may ask for what: the access a ShadowDeployment's author must hold themselves (pure).

The operator acts with its own, broad identity: it runs the spec's images, switches the named
Service to its router, routes that Service's host in Istio. Without a check, anyone allowed to
create a ShadowDeployment could make it do what they may not (a confused deputy). The admission
webhook (controller/handlers.py, controller/webhook.py) asks the API server, with a SubjectAccessReview per entry of
`required_access`, whether the requesting user may do each thing themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..contract.resource import ShadowDeployment


@dataclass(frozen=True)
class Access:
    """One thing the author must be allowed to do, and the spec field that asks for it."""

    field: str
    verb: str
    group: str
    resource: str
    name: str = ""
    why: str = ""

    def resource_attributes(self, namespace: str) -> dict[str, str]:
        attributes = {"namespace": namespace, "verb": self.verb, "group": self.group, "resource": self.resource}
        if self.name:
            attributes["name"] = self.name
        return attributes

    def can_i(self, namespace: str, user: str) -> str:
        """The kubectl command that answers the same question, for the refusal message."""
        target = f"{self.resource}.{self.group}" if self.group else self.resource
        if self.name:
            target += f"/{self.name}"
        return f"kubectl auth can-i {self.verb} {target} -n {namespace} --as {user}"


def required_access(sd: ShadowDeployment, service_exists: bool) -> list[Access]:
    """What the spec makes the operator do that reaches beyond the object's own children."""
    spec = sd.spec
    service = spec.service.name
    image_fields = ["spec.candidate.image"] + (["spec.primary.image"] if spec.primary.image else [])
    access = [
        Access(
            " and ".join(image_fields),
            "create",
            "apps",
            "deployments",
            why="the operator runs these images (and their podTemplate) as Deployments",
        )
    ]
    if spec.primary.deployment_ref is not None:
        access.append(
            Access(
                "spec.primary.deploymentRef.name",
                "get",
                "apps",
                "deployments",
                spec.primary.deployment_ref.name,
                why="the operator reads that Deployment and reports on it",
            )
        )
        if spec.promotion.patch_referenced_deployment:
            access.append(
                Access(
                    "spec.promotion.patchReferencedDeployment",
                    "patch",
                    "apps",
                    "deployments",
                    spec.primary.deployment_ref.name,
                    why="on promotion the operator sets that Deployment's image to the candidate's",
                )
            )
    seen: set[str] = set()
    for index, target in enumerate(spec.notifications):
        if target.url_from is None or target.url_from.secret_key_ref.name in seen:
            continue
        secret = target.url_from.secret_key_ref.name
        seen.add(secret)
        access.append(
            Access(
                f"spec.notifications[{index}].urlFrom.secretKeyRef.name",
                "get",
                "",
                "secrets",
                secret,
                why="the operator reads the notification URL from that Secret and sends to it",
            )
        )
    if service_exists:
        how = "switches its selector to the router" if spec.traffic.router == "builtin" else "routes its host"
        access.append(
            Access(
                "spec.service.name", "patch", "", "services", service, why=f"the operator {how} and mirrors its traffic"
            )
        )
    else:
        access.append(Access("spec.service.name", "create", "", "services", why="the operator creates that Service"))
    if spec.traffic.router == "istio":
        for plural in ("virtualservices", "destinationrules"):
            access.append(
                Access(
                    "spec.traffic.router",
                    "create",
                    "networking.istio.io",
                    plural,
                    why="istio mode mirrors through a VirtualService and DestinationRule",
                )
            )
    return access


def spec_changed(operation: str, new: Mapping[str, Any], old: Mapping[str, Any] | None) -> bool:
    """Whether a request asks for anything new: a create, or an update that touches the spec.

    The operator's own updates (finalizer, kopf's annotations) leave the spec alone and are not
    re-judged, so an object keeps working after its author loses a permission; the next change
    to its spec is judged against the access they hold then.
    """
    if operation != "UPDATE" or old is None:
        return True
    return (new.get("spec") or {}) != (old.get("spec") or {})


def refusal(user: str, namespace: str, denied: list[Access]) -> str:
    """The message `kubectl apply` shows: each field, what it needs, why, and how to check."""
    lines = [
        f"{d.field}: {user} may not {d.verb} {d.resource}{'/' + d.name if d.name else ''} in namespace "
        f"{namespace} ({d.why}); check with `{d.can_i(namespace, user)}`"
        for d in denied
    ]
    return (
        "a ShadowDeployment may only ask the operator for what its author may do: "
        + "; ".join(lines)
        + ". Ask an administrator for these permissions, or change the fields named."
    )
