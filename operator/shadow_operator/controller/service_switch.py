"""The builtin router's switch of an existing Service, and its undoing: two JSON patches.

The Service belongs to someone else; its original selector and target port are kept in an
annotation on it, so deleting the ShadowDeployment (or a restart of the operator) restores them.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ..kube.client import Kube, KubeError, TransientError, pointer_segment
from .builders import ServiceSwitch
from .observed import ORIGINAL_ROUTING_ANNOTATION, ObservedService

log = logging.getLogger(__name__)


def switch_service(kube: Kube, namespace: str, service: ObservedService, switch: ServiceSwitch, owner: str) -> None:
    """Point the Service at the router, remembering what it pointed at."""
    index = next(i for i, port in enumerate(service.ports) if port.get("port") == switch.port)
    original = {
        "owner": owner,
        "selector": service.selector,
        "targetPort": service.ports[index].get("targetPort", switch.port),
    }
    annotation = json.dumps(original, sort_keys=True)
    annotation_path = f"/metadata/annotations/{pointer_segment(ORIGINAL_ROUTING_ANNOTATION)}"
    log.info("switching Service %s/%s to the builtin router", namespace, service.name)
    operations: list[dict[str, Any]] = [
        # Fails if anyone changed the Service since it was read.
        {"op": "test", "path": "/metadata/resourceVersion", "value": service.resource_version},
        {"op": "add", "path": annotation_path, "value": annotation}
        if service.has_annotations
        else {"op": "add", "path": "/metadata/annotations", "value": {ORIGINAL_ROUTING_ANNOTATION: annotation}},
        {"op": "replace", "path": "/spec/selector", "value": switch.selector},
        {"op": "replace", "path": f"/spec/ports/{index}/targetPort", "value": switch.target_port},
    ]
    try:
        kube.json_patch("Service", namespace, service.name, operations)
    except KubeError as error:
        # The `test` failed: the 1.20 API server answers 422 with no detail ("an error in our
        # request"). A race, not a bad spec: retried with backoff, never reported as Error/Stalled.
        if error.status in (409, 422):
            raise TransientError(
                f"Service {service.name} changed while being switched to the router; trying again"
            ) from None
        raise


def restore_service(kube: Kube, namespace: str, service: ObservedService) -> None:
    """Put back the selector and target port the Service had before the router took over."""
    original = service.original_routing or {}
    operations: list[dict[str, Any]] = [
        {"op": "remove", "path": f"/metadata/annotations/{pointer_segment(ORIGINAL_ROUTING_ANNOTATION)}"},
        {"op": "replace", "path": "/spec/selector", "value": original.get("selector") or {}},
    ]
    port_numbers = [port.get("port") for port in service.ports]
    if len(port_numbers) == 1 and original.get("targetPort") is not None:
        operations.append({"op": "replace", "path": "/spec/ports/0/targetPort", "value": original["targetPort"]})
    log.info("restoring Service %s/%s to its original routing", namespace, service.name)
    kube.json_patch("Service", namespace, service.name, operations)
