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
    service = sd.spec.service
    route: dict[str, Any] = {
        "name": "primary",
        "route": [
            {
                "destination": {"host": primary_host, "port": {"number": service.port}},
                "weight": 100,
            }
        ],
    }
    if sd.spec.traffic.mirror_percent > 0:
        candidate = {
            "host": service_host(child_name(sd, CANDIDATE), sd.namespace),
            "subset": CANDIDATE,
            "port": {"number": service.port},
        }
        percentage = {"value": float(sd.spec.traffic.mirror_percent)}
        if sd.spec.analysis.baseline is not None and sd.spec.primary.deployment_ref is None:
            # `mirrors` (Istio 1.18+): the same request copied to the candidate and to the baseline.
            baseline = {"host": service_host(child_name(sd, BASELINE), sd.namespace), "port": {"number": service.port}}
            route["mirrors"] = [
                {"destination": candidate, "percentage": percentage},
                {"destination": baseline, "percentage": percentage},
            ]
        else:
            route["mirror"] = candidate
            route["mirrorPercentage"] = percentage
    return {
        "apiVersion": ISTIO_API_VERSION,
        "kind": "VirtualService",
        "metadata": metadata(sd, "mirror", name=sd.name),
        "spec": {
            "hosts": [service_host(service.name, sd.namespace)],
            "http": [route],
        },
    }
