"""Transient and permanent API errors, over a real socket: a loopback server speaking just enough of the
Kubernetes API (objects by path, server-side apply, status merge patch, JSON patch, events) answers the
operator's Kube with a chosen status.

Transient (409, 429, 5xx, a namespace being deleted): the reconcile raises TransientError, kopf is told to
retry after the handler's backoff, and status is left alone. Permanent (403, 422, 400, an API not served):
the reconcile ends and the status says so (phase Error, Ready False and Stalled True, reason ApplyFailed,
the API server's own message).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import kopf
import pytest

from shadow_operator.contract import reasons
from shadow_operator.controller import handlers
from shadow_operator.controller.observed import ALLOW_ADOPTION_ANNOTATION
from shadow_operator.controller.reconcile import Reconciler, TransientError

from ..support.json_api import APPLY, FakeApiServer
from .factories import NOW, REFERENCED_PRIMARY, deployment_json, sd_body, service_json

SD_PATH = "/apis/shadow.mlops.dev/v1alpha1/namespaces/default/shadowdeployments/recommender"


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    server = FakeApiServer()
    yield server
    server.close()


def _reconciler(api: FakeApiServer) -> Reconciler:
    return Reconciler(api.kube(), "shadow-operator:test", clock=lambda: NOW)


def _memo(api: FakeApiServer) -> kopf.Memo:
    memo = kopf.Memo()
    memo.reconciler = _reconciler(api)
    memo.rechecks = handlers.Rechecks()
    return memo


def _stored_status(api: FakeApiServer) -> dict[str, Any]:
    return api.objects[SD_PATH].get("status") or {}


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


def _child_applies(api: FakeApiServer) -> list[str]:
    return [path for method, path, content_type in api.requests if method == "PATCH" and content_type == APPLY]


TERMINATING = 'configmaps "recommender-recorder" is forbidden: unable to create new content in namespace default because it is being terminated'


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (
            409,
            "Operation cannot be fulfilled on deployments.apps: the object has been modified; please apply your changes",
        ),
        (429, "Too many requests, please try again later."),
        (500, "Internal error occurred: etcdserver: leader changed"),
        (503, "the server is currently unable to handle the request"),
        (504, "Timeout: request did not complete within requested timeout 34s"),
        (403, TERMINATING),
    ],
    ids=["409-conflict", "429-throttled", "500", "503", "504", "403-namespace-terminating"],
)
def test_a_transient_error_is_retried_with_backoff_and_leaves_status_alone(api, status, message):
    api.put(SD_PATH, sd_body())
    api.fail("PATCH", "/namespaces/default/", status, message, content_type=APPLY)  # the first child's apply, once
    memo = _memo(api)

    with pytest.raises(kopf.TemporaryError) as retried:
        handlers._reconcile(api.objects[SD_PATH], memo, {}, "default", "recommender")
    assert retried.value.delay == handlers._RETRY_DELAY_SECONDS  # kopf retries after this backoff
    assert message in str(retried.value)
    assert isinstance(retried.value.__cause__, TransientError)
    assert api.status_patches == [] and api.events == [], "a transient error is not reported as a problem"

    # kopf's retry: the API server answers again, the pass completes and status says Deploying.
    handlers._reconcile(api.objects[SD_PATH], memo, {}, "default", "recommender")
    status_after = _stored_status(api)
    assert status_after["phase"] == "Deploying"
    assert _condition(status_after, reasons.STALLED)["status"] == "False"
    assert len(_child_applies(api)) == 1 + 17, "the refused apply, then every child once"


@pytest.mark.parametrize(
    ("status", "message", "shown"),
    [
        (
            403,
            'deployments.apps "recommender-candidate" is forbidden: User "system:serviceaccount:shadow-system:'
            'shadow-operator" cannot patch resource "deployments" in API group "apps" in the namespace "default"',
            None,
        ),
        (
            422,
            'Deployment.apps "recommender-candidate" is invalid: spec.template.spec.containers[0].image: '
            'Invalid value: " registry.example/recsys:2.0.0": must not have leading or trailing whitespace',
            None,
        ),
        (400, "the body of the request was in an unknown format", None),
        (
            404,
            "the server could not find the requested resource",
            "the API server does not serve virtualservices.networking.istio.io/v1beta1: install Istio's CRDs "
            "or set spec.traffic.router: builtin",
        ),
    ],
    ids=["403-rbac", "422-schema", "400", "404-api-not-served"],
)
def test_a_permanent_error_ends_in_a_status_condition(api, status, message, shown):
    api.put(SD_PATH, sd_body())
    kind_path = "/virtualservices/" if status == 404 else "/deployments/recommender-candidate"
    api.fail("PATCH", kind_path, status, message, content_type=APPLY, times=None)
    memo = _memo(api)

    handlers._reconcile(api.objects[SD_PATH], memo, {}, "default", "recommender")  # no retry asked of kopf

    stored = _stored_status(api)
    assert stored["phase"] == "Error"
    ready, stalled = _condition(stored, reasons.READY), _condition(stored, reasons.STALLED)
    assert (ready["status"], ready["reason"], ready["message"]) == ("False", reasons.APPLY_FAILED, shown or message)
    assert (stalled["status"], stalled["reason"]) == ("True", reasons.APPLY_FAILED)
    assert [(e["type"], e["reason"]) for e in api.events] == [("Warning", reasons.APPLY_FAILED)]

    # The next pass (resync) meets the same refusal: status already says it, nothing more is written.
    handlers._reconcile(api.objects[SD_PATH], memo, {}, "default", "recommender")
    assert len(api.status_patches) == 1 and len(api.events) == 1


def test_a_transient_error_while_writing_status_is_retried_too(api):
    """Status is the operator's only output: a 503 writing it is raised to kopf (which retries), not swallowed."""
    api.put(SD_PATH, sd_body())
    api.fail("PATCH", "/recommender/status", 503, "the server is currently unable to handle the request")
    memo = _memo(api)
    with pytest.raises(Exception) as failed:
        handlers._reconcile(api.objects[SD_PATH], memo, {}, "default", "recommender")
    assert "unable to handle the request" in str(failed.value)
    assert _stored_status(api) == {}
    handlers._reconcile(api.objects[SD_PATH], memo, {}, "default", "recommender")
    assert _stored_status(api)["phase"] == "Deploying"


# -- the builtin router's switch of a Service someone else edits meanwhile ---------------------------

SERVICE_PATH = "/api/v1/namespaces/default/services/recsys"
ROUTER_PATH = "/apis/apps/v1/namespaces/default/deployments/recommender-router"


def _builtin_world(api: FakeApiServer) -> dict[str, Any]:
    """A builtin ShadowDeployment over an existing Service and primary, its router Pod available."""
    body = sd_body(
        {**REFERENCED_PRIMARY, "service": {"name": "recsys", "port": 80}, "traffic": {"router": "builtin"}},
        status={"observedGeneration": 1},
    )
    api.put(SD_PATH, body)
    api.put(
        SERVICE_PATH,
        service_json("recsys", selector={"app": "recommender"}, annotations={ALLOW_ADOPTION_ANNOTATION: "true"}),
    )
    api.put("/apis/apps/v1/namespaces/default/deployments/recsys", deployment_json("recsys"))
    router = deployment_json("recommender-router", replicas=1)
    router["metadata"]["ownerReferences"] = [{"uid": "uid-1", "kind": "ShadowDeployment", "name": "recommender"}]
    api.put(ROUTER_PATH, router)
    return body


def _other_writer(api: FakeApiServer) -> Callable[[str, list], None]:
    """Edits the Service (a label) between the operator's read and its patch, once."""
    done = []

    def edit(path: str, operations: list) -> None:
        if path == SERVICE_PATH and not done:
            done.append(path)
            service = api.objects[path]
            service["metadata"].setdefault("labels", {})["team"] = "search"
            service["metadata"]["resourceVersion"] = api._next_version()

    return edit


def test_a_service_edited_during_the_switch_is_switched_on_the_next_pass_keeping_the_edit(api):
    body = _builtin_world(api)
    api.before_json_patch = _other_writer(api)
    reconciler = _reconciler(api)
    with pytest.raises(TransientError):  # a race, retried with backoff
        reconciler.reconcile(body)
    service = api.objects[SERVICE_PATH]
    assert service["spec"]["selector"] == {"app": "recommender"}, "the test op refused the stale patch"
    assert service["metadata"]["labels"]["team"] == "search"

    reconciler.reconcile(api.objects[SD_PATH])  # the next pass reads the edited Service afresh
    service = api.objects[SERVICE_PATH]
    assert service["spec"]["selector"] == {"shadow.mlops.dev/name": "recommender", "shadow.mlops.dev/role": "router"}
    assert service["metadata"]["labels"]["team"] == "search", "the other writer's change is kept"


def test_a_service_edited_during_the_switch_is_a_transient_error_not_a_stalled_object(api):
    body = _builtin_world(api)
    api.before_json_patch = _other_writer(api)
    with pytest.raises(TransientError):
        _reconciler(api).reconcile(body)
    assert _stored_status(api).get("phase") != "Error"
