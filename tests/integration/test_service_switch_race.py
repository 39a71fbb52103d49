"""The builtin router's switch of an existing Service against a concurrent writer, on the real API server.

The switch is a JSON patch whose first operation tests metadata.resourceVersion: a Service edited between
the operator's read and its patch is refused by the API server, left as the other writer made it, and the
next pass (which reads it again) switches it keeping that edit, recorded so that restoring gives it back.
The reconcile's own switch and restore functions run in-process with a Kube on the admin's client; the
Service belongs to no ShadowDeployment, so the session's operator leaves it alone.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import kubernetes
import pytest

from shadow_operator.contract.naming import ROUTER_HTTP_PORT
from shadow_operator.contract.resource import parse
from shadow_operator.controller.builders.router import service_switch
from shadow_operator.controller.observed import ORIGINAL_ROUTING_ANNOTATION, ObservedService
from shadow_operator.controller.reconcile import TransientError
from shadow_operator.controller.service_switch import restore_service, switch_service
from shadow_operator.kube.client import Kube, KubeError

from .conftest import shadow_deployment
from .harness import apply_yaml

pytestmark = pytest.mark.cluster

SERVICE = "recommender-v1"
EDITED_SELECTOR = {"app": SERVICE, "tier": "web"}
REFUSED = "the server rejected our request due to an error in our request"


class EditedInBetween(Kube):
    """A Kube whose first JSON patch of the Service is preceded by another writer's edit of it."""

    def __init__(self, api_client: kubernetes.client.ApiClient) -> None:
        super().__init__(api_client)
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.edits = 0

    def json_patch(self, kind: str, namespace: str, name: str, operations: list[dict[str, Any]]) -> dict[str, Any]:
        if kind == "Service" and not self.edits:
            self.edits += 1
            self.core.patch_namespaced_service(
                name,
                namespace,
                {"metadata": {"labels": {"team": "search"}}, "spec": {"selector": EDITED_SELECTOR}},
            )
        return super().json_patch(kind, namespace, name, operations)


def test_a_service_edited_between_read_and_switch_is_not_overwritten_and_is_switched_next_pass(cluster, namespace):
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": SERVICE},
        "spec": {"selector": {"app": SERVICE}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }
    apply_yaml(cluster, [service], namespace)
    body = shadow_deployment("recommender")
    body["metadata"].update(namespace=namespace, uid=str(uuid.uuid4()), generation=1)
    body["spec"]["primary"] = {"deploymentRef": {"name": SERVICE}}
    body["spec"]["service"] = {"name": SERVICE, "port": 80}
    body["spec"]["traffic"] = {"router": "builtin"}
    switch = service_switch(parse(body))
    kube = EditedInBetween(cluster.api_client())

    def live() -> dict[str, Any]:
        return kube.get("Service", namespace, SERVICE)

    read = ObservedService.from_body(live())
    # Kubernetes 1.20 answers a failed JSON-patch `test` with a bare 422 (apiserver handlers/patch.go):
    # a race, retried with backoff (TransientError), not a spec error.
    with pytest.raises(TransientError) as refused:
        switch_service(kube, namespace, read, switch, "recommender")
    assert f"Service {SERVICE} changed while being switched" in str(refused.value)
    assert isinstance(refused.value.__context__, KubeError) and refused.value.__context__.status == 422
    assert kube.edits == 1
    after = live()
    assert after["spec"]["selector"] == EDITED_SELECTOR, "the other writer's change stands"
    assert after["spec"]["ports"][0]["targetPort"] == 8080
    assert ORIGINAL_ROUTING_ANNOTATION not in (after["metadata"].get("annotations") or {}), "nothing of the switch"

    # The next pass reads the Service again: the switch goes through, on top of the edit.
    switch_service(kube, namespace, ObservedService.from_body(after), switch, "recommender")
    switched = live()
    assert switched["spec"]["selector"] == switch.selector
    assert switched["spec"]["ports"][0]["targetPort"] == ROUTER_HTTP_PORT
    assert switched["metadata"]["labels"] == {"team": "search"}
    original = json.loads(switched["metadata"]["annotations"][ORIGINAL_ROUTING_ANNOTATION])
    assert original == {"owner": "recommender", "selector": EDITED_SELECTOR, "targetPort": 8080}

    # Restoring (deletion of the ShadowDeployment) gives back the Service as the other writer left it.
    restore_service(kube, namespace, ObservedService.from_body(switched))
    restored = live()
    assert restored["spec"]["selector"] == EDITED_SELECTOR
    assert restored["spec"]["ports"][0]["targetPort"] == 8080
    assert ORIGINAL_ROUTING_ANNOTATION not in (restored["metadata"].get("annotations") or {})
