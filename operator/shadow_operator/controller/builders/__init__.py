"""Pure builders: a validated ShadowDeployment plus observed facts -> the desired child objects.

Nothing here talks to the cluster, so every shape is tested without one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...contract.analysis_state import state_name
from ...contract.naming import (
    BASELINE,
    CANDIDATE,
    PRIMARY,
    RECORDER,
    ROUTER,
    ROUTER_HTTP_PORT,
    child_name,
    role_labels,
    service_host,
)
from ...contract.report import report_name
from ...contract.resource import ShadowDeployment
from ..observed import Observed
from ..promotion import promoted
from .analysis import (
    analyzer_role,
    analyzer_role_binding,
    analyzer_service_account,
    comparison_cronjob,
    cron_schedule,
    report_configmap,
    state_configmap,
)
from .collector import collector_deployment, collector_keys, collector_network_policy, collector_service
from .istio import destination_rule, virtual_service
from .recorder import recorded_host, recorded_service, recorder_configmap, with_recorder
from .router import ServiceSwitch, router_configmap, router_deployment, router_service, service_switch
from .workloads import (
    baseline_deployment,
    baseline_service,
    candidate_deployment,
    candidate_pod_labels,
    candidate_service,
    entry_service,
    primary_deployment,
    role_service,
)


@dataclass(frozen=True)
class DesiredState:
    children: list[dict[str, Any]] = field(default_factory=list)
    # Set when the builtin router must take over an existing Service the operator does not own.
    switch: ServiceSwitch | None = None


def desired_state(sd: ShadowDeployment, observed: Observed, image: str, through_router: bool = True) -> DesiredState:
    """`through_router`: builtin mode only, whether the client Service should route through the router
    now (routing.decide_routing) or straight to the primary."""
    if promoted(sd):
        return promoted_state(sd, observed, image)
    spec = sd.spec
    builtin = spec.traffic.router == "builtin"
    managed_primary = spec.primary.deployment_ref is None
    service = observed.service
    owns_entry = service is None or sd.identity.uid in service.owner_uids

    baseline = spec.analysis.baseline is not None and managed_primary
    if builtin:  # the router records both answers
        children: list[dict[str, Any]] = [candidate_deployment(sd), candidate_service(sd)]
        if managed_primary:
            children.append(primary_deployment(sd, None if owns_entry else service))
        if baseline:
            children += [baseline_deployment(sd), baseline_service(sd)]
    else:  # a recorder sidecar in front of every model the operator runs
        children = [
            recorder_configmap(sd),
            with_recorder(sd, candidate_deployment(sd), CANDIDATE, image),
            recorded_service(sd, CANDIDATE),
        ]
        if managed_primary:
            children.append(with_recorder(sd, primary_deployment(sd, None if owns_entry else service), PRIMARY, image))
        if baseline:
            children += [with_recorder(sd, baseline_deployment(sd), BASELINE, image), recorded_service(sd, BASELINE)]
    if owns_entry:
        routed = builtin and through_router
        selector = role_labels(sd, ROUTER if routed else PRIMARY)
        target = ROUTER_HTTP_PORT if routed else spec.primary.port
        children.append(entry_service(sd, selector, target))

    switch = None
    if builtin:
        if managed_primary:
            primary_selector, primary_target = role_labels(sd, PRIMARY), spec.primary.port
        else:
            primary_selector = service.serving_selector() or {}
            primary_target = service.serving_target_port(spec.service.port) or spec.service.port
        children += [
            role_service(sd, PRIMARY, primary_selector, primary_target),
            router_configmap(sd),
            router_deployment(sd, image),
            router_service(sd),
        ]
        if not owns_entry and through_router:
            switch = service_switch(sd)
    else:
        if managed_primary:
            children.append(recorded_service(sd, PRIMARY))
            primary_host = recorded_host(sd, PRIMARY)
        else:  # not ours to change: the live route stays on the Service clients call
            primary_host = service_host(spec.service.name, sd.namespace)
        children += [destination_rule(sd), virtual_service(sd, primary_host)]
    children += collector_children(sd, observed, image)
    children += analysis_children(sd, image)
    return DesiredState(children=children, switch=switch)


def promoted_state(sd: ShadowDeployment, observed: Observed, image: str) -> DesiredState:
    """After promotion (controller/promotion.py): the primary alone serves, straight behind its Service.

    `sd` is the effective object, whose spec.primary is the promoted candidate workload while the
    spec has not caught up. Everything that copies traffic or runs the candidate is left out, so the
    cleanup deletes it: candidate, baseline, router (a Service it took over is restored: no switch),
    VirtualService and DestinationRule, recorder sidecars and their ConfigMap, the comparison job and
    its identity. The collector (the records) and the report ConfigMap (the verdict's evidence, read
    by `shadowctl report`) stay until the ShadowDeployment is deleted.
    """
    spec = sd.spec
    service = observed.service
    owns_entry = service is None or sd.identity.uid in service.owner_uids
    children: list[dict[str, Any]] = []
    if spec.primary.deployment_ref is None:
        children.append(primary_deployment(sd, None if owns_entry else service))
        children.append(role_service(sd, PRIMARY, role_labels(sd, PRIMARY), spec.primary.port))
    if owns_entry:
        children.append(entry_service(sd, role_labels(sd, PRIMARY), spec.primary.port))
    children += collector_children(sd, observed, image)
    children.append(report_configmap(sd))
    return DesiredState(children=children, switch=None)


def collector_children(sd: ShadowDeployment, observed: Observed, image: str) -> list[dict[str, Any]]:
    """The record collector, in both modes: every router and recorder ships its records to it."""
    extra_writers = []
    if sd.spec.traffic.router == "istio" and sd.spec.primary.deployment_ref is not None and observed.service:
        # A referenced primary's Pods never get the name label: let their recorder sidecar in too.
        extra_writers.append(observed.service.serving_selector() or {})
    return [
        collector_deployment(sd, image),
        collector_service(sd),
        collector_network_policy(sd, extra_writers),
    ]


def analysis_children(sd: ShadowDeployment, image: str) -> list[dict[str, Any]]:
    """The comparison job, its identity and the report ConfigMap it may write (and nothing else)."""
    return [
        analyzer_service_account(sd),
        analyzer_role(sd),
        analyzer_role_binding(sd),
        # Before the job's first run: the job may only update them, never create one.
        report_configmap(sd),
        state_configmap(sd),
        comparison_cronjob(sd, image),
    ]


def all_child_keys(sd: ShadowDeployment) -> set[tuple[str, str]]:
    """(kind, name) of every child any spec of this object could have: what cleanup checks."""
    return {
        ("Deployment", child_name(sd, CANDIDATE)),
        ("Deployment", child_name(sd, PRIMARY)),
        ("Deployment", child_name(sd, ROUTER)),
        ("Deployment", child_name(sd, BASELINE)),
        ("Service", child_name(sd, BASELINE)),
        ("Service", child_name(sd, CANDIDATE)),
        ("Service", child_name(sd, PRIMARY)),
        ("Service", child_name(sd, ROUTER)),
        ("Service", sd.spec.service.name),
        ("ConfigMap", child_name(sd, ROUTER)),
        ("ConfigMap", child_name(sd, RECORDER)),
        ("DestinationRule", child_name(sd, CANDIDATE)),
        ("VirtualService", sd.name),
        ("CronJob", child_name(sd, "analysis")),
        ("ServiceAccount", child_name(sd, "analysis")),
        ("Role", child_name(sd, "analysis")),
        ("RoleBinding", child_name(sd, "analysis")),
        ("ConfigMap", report_name(sd.name)),
        ("ConfigMap", state_name(sd.name)),
    } | collector_keys(sd)


__all__ = [
    "DesiredState",
    "ServiceSwitch",
    "all_child_keys",
    "candidate_pod_labels",
    "cron_schedule",
    "desired_state",
    "promoted_state",
]
