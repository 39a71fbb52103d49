"""What the operator read from the cluster, reduced to the facts the pure layers need."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..contract.report import Report

# Written on a Service the builtin router took over, in the same patch as the switch, so
# the original routing can be restored even if the operator dies right after.
ORIGINAL_ROUTING_ANNOTATION = "shadow.mlops.dev/original-routing"
# Set to "true" by whoever may edit a Service to let a ShadowDeployment whose primary the operator
# runs (primary.image) put that primary behind it: without it such a spec is refused (issue 11).
ALLOW_ADOPTION_ANNOTATION = "shadow.mlops.dev/allow-adoption"


@dataclass(frozen=True)
class ObservedService:
    name: str
    selector: dict[str, str] | None
    ports: list[dict[str, Any]]
    owner_uids: frozenset[str]
    original_routing: dict[str, Any] | None
    resource_version: str = ""
    has_annotations: bool = False
    allows_adoption: bool = False

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ObservedService:
        metadata = body.get("metadata", {})
        annotation = (metadata.get("annotations") or {}).get(ORIGINAL_ROUTING_ANNOTATION)
        try:
            original = json.loads(annotation) if annotation else None
        except json.JSONDecodeError:
            original = None
        return cls(
            name=metadata["name"],
            selector=(body.get("spec") or {}).get("selector"),
            ports=list((body.get("spec") or {}).get("ports") or []),
            owner_uids=frozenset(ref.get("uid", "") for ref in metadata.get("ownerReferences") or []),
            original_routing=original,
            resource_version=metadata.get("resourceVersion", ""),
            has_annotations=bool(metadata.get("annotations")),
            allows_adoption=(metadata.get("annotations") or {}).get(ALLOW_ADOPTION_ANNOTATION) == "true",
        )

    def port(self, number: int) -> dict[str, Any] | None:
        return next((port for port in self.ports if port.get("port") == number), None)

    def serving_selector(self) -> dict[str, str] | None:
        """The selector that reaches the primary: the original one if the router took over."""
        if self.original_routing is not None:
            return self.original_routing.get("selector")
        return self.selector

    def serving_target_port(self, number: int) -> int | str | None:
        if self.original_routing is not None:
            return self.original_routing.get("targetPort")
        port = self.port(number)
        return None if port is None else port.get("targetPort", number)


@dataclass(frozen=True)
class ObservedDeployment:
    name: str
    generation: int
    replicas: int
    observed_generation: int
    available_replicas: int
    updated_replicas: int
    # status.replicas: every non-terminated Pod, older ReplicaSets' included (None: not reported).
    total_replicas: int | None = None
    pod_labels: dict[str, str] = field(default_factory=dict)
    images: tuple[str, ...] = ()
    container_names: tuple[str, ...] = ()

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ObservedDeployment:
        metadata, spec, status = body.get("metadata", {}), body.get("spec", {}), body.get("status") or {}
        template = spec.get("template", {})
        containers = (template.get("spec") or {}).get("containers") or []
        return cls(
            name=metadata["name"],
            generation=int(metadata.get("generation", 0)),
            replicas=int(spec.get("replicas", 1)),
            observed_generation=int(status.get("observedGeneration", 0)),
            available_replicas=int(status.get("availableReplicas", 0)),
            updated_replicas=int(status.get("updatedReplicas", 0)),
            total_replicas=int(status["replicas"]) if "replicas" in status else None,
            pod_labels=dict((template.get("metadata") or {}).get("labels") or {}),
            images=tuple(c.get("image", "") for c in containers),
            container_names=tuple(c.get("name", "") for c in containers),
        )

    @property
    def available(self) -> bool:
        """Rolled out at the current generation with every replica available, and no older Pod left.

        As `kubectl rollout status` waits ("old replicas are pending termination"): until the old
        ReplicaSet's Pods are gone they still answer, and availableReplicas counts them too. On a
        loaded real node a previous candidate's Pods answered for seconds after the new ones were
        ready, and their KeyErrors became the fixed candidate's evidence (status.shadowingSince).
        """
        return (
            self.observed_generation >= self.generation
            and self.updated_replicas >= self.replicas
            and self.available_replicas >= self.replicas
            and (self.total_replicas is None or self.total_replicas <= self.updated_replicas)
        )

    def availability(self) -> str:
        return f"{self.available_replicas}/{self.replicas} replicas available"


@dataclass(frozen=True)
class Observed:
    """Everything a reconcile read before deciding; the pure layers take only this."""

    service: ObservedService | None = None
    primary_ref: ObservedDeployment | None = None
    # Older ShadowDeployments that name the same Service, oldest first.
    rival_claims: tuple[str, ...] = ()
    # The comparison job's latest published report (contract.report.Report), if any and trusted.
    report: Report | None = None
    # Why the report ConfigMap was ignored (trusted_report), and its resourceVersion then.
    report_problem: str | None = None
    report_version: str = ""
    # builtin mode: the router Deployment as it is now (None before it exists).
    router: ObservedDeployment | None = None
