"""Istio mirror route: the Service's traffic goes 100% to the primary, a copy to the candidate.

The candidate gets its own host (`<name>-candidate`) instead of being a subset of the
client-facing Service: as a subset its Pods would have to be endpoints of that Service,
and any client outside the mesh (or a gateway without this route) would then reach the
candidate. The client-facing host keeps its own DestinationRules, which the operator
never touches.

The live route goes to `primary_host`: the client-facing host itself for a primary the
operator does not run, or `<name>-primary` (the primary's recorder) for one it runs.
"""

from __future__ import annotations

import copy
from typing import Any

from ...api.durations import parse_duration
from ...contract.naming import BASELINE, CANDIDATE, child_name, metadata, role_labels, service_host
from ...contract.resource import ShadowDeployment

ISTIO_API_VERSION = "networking.istio.io/v1beta1"


def destination_rule(sd: ShadowDeployment) -> dict[str, Any]:
    """The candidate's host with a `candidate` subset, its connection pool bounded by maxInFlight."""
    traffic = sd.spec.traffic
    timeout_seconds = parse_duration(traffic.candidate_timeout).total_seconds()
    return {
        "apiVersion": ISTIO_API_VERSION,
        "kind": "DestinationRule",
        "metadata": metadata(sd, CANDIDATE),
        "spec": {
            "host": service_host(child_name(sd, CANDIDATE), sd.namespace),
            "trafficPolicy": {
                "connectionPool": {
                    "tcp": {"connectTimeout": f"{max(timeout_seconds, 0.001):g}s"},
                    "http": {
                        "http1MaxPendingRequests": traffic.max_in_flight,
                        "http2MaxRequests": traffic.max_in_flight,
                    },
                },
            },
            "subsets": [{"name": CANDIDATE, "labels": role_labels(sd, CANDIDATE)}],
        },
    }


def virtual_service(sd: ShadowDeployment, primary_host: str) -> dict[str, Any]:
    """Every route sends 100% to the primary; the mirror rides only on the routes of what is copied.

    One route per traffic.match rule (one route for mirrorMethods alone when there are no rules),
    each with a match block per method it mirrors and the mirror; a last route without mirror
    takes everything else. Istio takes the first route that matches, and every route goes to the
    same primary, so which one a request takes decides only whether it is copied.
    """
    service = sd.spec.service
    destination = [{"destination": {"host": primary_host, "port": {"number": service.port}}, "weight": 100}]
    if sd.spec.traffic.mirror_percent <= 0:
        routes = [{"name": "primary", "route": destination}]
    else:
        mirror = _mirror(sd)
        routes = [
            {"name": name, "match": blocks, "route": copy.deepcopy(destination), **copy.deepcopy(mirror)}
            for name, blocks in match_blocks(sd)
        ]
        routes.append({"name": "primary", "route": destination})
    return {
        "apiVersion": ISTIO_API_VERSION,
        "kind": "VirtualService",
        "metadata": metadata(sd, "mirror", name=sd.name),
        "spec": {
            "hosts": [service_host(service.name, sd.namespace)],
            "http": routes,
        },
    }


def match_blocks(sd: ShadowDeployment) -> list[tuple[str, list[dict[str, Any]]]]:
    """(route name, HTTPMatchRequest blocks) per rule: the rule's conditions, once per method.

    Blocks of one route are ORed, conditions of one block ANDed, as the builtin router
    (router/mirror_policy.py) applies the same rules.
    """
    traffic = sd.spec.traffic
    mirror_methods = list(dict.fromkeys(traffic.mirror_methods))
    if not traffic.match:
        return [("mirror", [{"method": {"exact": method}} for method in mirror_methods])]
    routes = []
    for i, rule in enumerate(traffic.match):
        condition: dict[str, Any] = {}
        if rule.uri is not None:
            condition["uri"] = {"exact": rule.uri.exact} if rule.uri.exact is not None else {"prefix": rule.uri.prefix}
        if rule.headers:
            # Istio wants header keys lower case; an empty StringMatch checks presence only.
            condition["headers"] = {
                header.name.lower(): ({"exact": header.exact} if header.exact is not None else {})
                for header in rule.headers
            }
        methods = list(dict.fromkeys(rule.methods)) if rule.methods else mirror_methods
        routes.append((f"mirror-{i}", [{**copy.deepcopy(condition), "method": {"exact": m}} for m in methods]))
    return routes


def _mirror(sd: ShadowDeployment) -> dict[str, Any]:
    """The route's mirror fields: the candidate at mirrorPercent, and the baseline beside it when set."""
    port = {"number": sd.spec.service.port}
    candidate = {"host": service_host(child_name(sd, CANDIDATE), sd.namespace), "subset": CANDIDATE, "port": port}
    percentage = {"value": float(sd.spec.traffic.mirror_percent)}
    if sd.spec.analysis.baseline is not None and sd.spec.primary.deployment_ref is None:
        # `mirrors` (Istio 1.18+): the same request copied to the candidate and to the baseline.
        baseline = {"host": service_host(child_name(sd, BASELINE), sd.namespace), "port": port}
        return {
            "mirrors": [
                {"destination": candidate, "percentage": percentage},
                {"destination": baseline, "percentage": percentage},
            ]
        }
    return {"mirror": candidate, "mirrorPercentage": percentage}
