"""Transient and permanent API errors, over a real socket: a loopback server speaking just enough of the
Kubernetes API (objects by path, server-side apply, status merge patch, JSON patch, events) answers the
operator's Kube with a chosen status.

Transient (409, 429, 5xx, a namespace being deleted): the reconcile raises TransientError, kopf is told to
retry after the handler's backoff, and status is left alone. Permanent (403, 422, 400, an API not served):
the reconcile ends and the status says so (phase Error, Ready False and Stalled True, reason ApplyFailed,
the API server's own message).
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import kopf
import pytest

from shadow_operator.contract import reasons
from shadow_operator.controller import handlers
from shadow_operator.controller.observed import ALLOW_ADOPTION_ANNOTATION
from shadow_operator.controller.reconcile import Reconciler, TransientError

from ..support.json_api import JsonApiServer
from .factories import NOW, REFERENCED_PRIMARY, deployment_json, sd_body, service_json

SD_PATH = "/apis/shadow.mlops.dev/v1alpha1/namespaces/default/shadowdeployments/recommender"
APPLY = "application/apply-patch+yaml"
JSON_PATCH = "application/json-patch+json"


@dataclass
class Fault:
    """Answer `status` to requests matching `method` and `content_type` (None: any) whose path contains
    `path`, `times` times (None: always)."""

    method: str
    path: str
    status: int
    message: str
    content_type: str | None = None
    times: int | None = 1


class FakeApiServer(JsonApiServer):
    """Just enough of the Kubernetes API on 127.0.0.1, with faults injected by request."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str, str]] = []  # method, path, content type
        self.events: list[dict[str, Any]] = []
        self.status_patches: list[dict[str, Any]] = []
        # Called with (path, operations) before a JSON patch is applied: another writer's moment.
        self.before_json_patch: Callable[[str, list], None] | None = None
        self._version = 1000
        self._lock = threading.RLock()
        super().__init__()

    # -- the test's side ---------------------------------------------------------------------

    def fail(self, method: str, path: str, status: int, message: str, **kwargs: Any) -> None:
        self.faults.append(Fault(method, path, status, message, **kwargs))

    def put(self, path: str, body: dict[str, Any]) -> None:
        with self._lock:
            stored = copy.deepcopy(body)
            stored["metadata"]["resourceVersion"] = self._next_version()
            self.objects[path] = stored

    def writes(self) -> list[tuple[str, str, str]]:
        return [r for r in self.requests if r[0] != "GET"]

    # -- the API server's side ---------------------------------------------------------------

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def answer(self, method: str, target: str, content_type: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        path = urlsplit(target).path
        with self._lock:
            self.requests.append((method, path, content_type))
            for fault in self.faults:
                if (
                    fault.method == method
                    and fault.path in path
                    and (fault.content_type is None or fault.content_type == content_type)
                    and fault.times != 0
                ):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault.status, _status(fault.status, fault.message)
            body = json.loads(raw) if raw else None
            if method == "GET":
                if path == "/apis/batch/v1":
                    return 200, {"kind": "APIResourceList", "resources": [{"name": "jobs"}, {"name": "cronjobs"}]}
                found = self.objects.get(path)
                return (200, found) if found else (404, _status(404, f"{path} not found"))
            if method == "POST" and path.endswith("/events"):
                self.events.append(body)
                return 201, body
            if method == "DELETE":
                return (200, self.objects.pop(path)) if path in self.objects else (404, _status(404, "not found"))
            if method == "PATCH" and content_type == APPLY:
                return self._apply(path, body)
            if method == "PATCH" and path.endswith("/status"):
                self.status_patches.append(body)
                return self._merge_status(path.removesuffix("/status"), body["status"])
            if method == "PATCH" and content_type == JSON_PATCH:
                return self._json_patch(path, body)
        return 405, _status(405, f"{method} {path} is not served here")

    def _apply(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        existing = self.objects.get(path)
        stored = copy.deepcopy(body)
        metadata = stored["metadata"]
        metadata["uid"] = existing["metadata"]["uid"] if existing else f"uid-of-{metadata['name']}"
        metadata["resourceVersion"] = self._next_version()
        if existing and "status" in existing:
            stored["status"] = existing["status"]
        self.objects[path] = stored
        return (200 if existing else 201), stored

    def _merge_status(self, path: str, status: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        stored = self.objects.get(path)
        if stored is None:
            return 404, _status(404, "not found")
        stored["status"] = _merge(stored.get("status") or {}, status)
        stored["metadata"]["resourceVersion"] = self._next_version()
        return 200, stored

    def _json_patch(self, path: str, operations: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        if self.before_json_patch is not None:
            self.before_json_patch(path, operations)
        stored = self.objects.get(path)
        if stored is None:
            return 404, _status(404, "not found")
        patched = copy.deepcopy(stored)
        for op in operations:
            *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
            node = patched
            for part in parents:
                node = node[int(part)] if isinstance(node, list) else node[part]
            key = int(last) if isinstance(node, list) else last
            if op["op"] == "test" and node[key] != op["value"]:
                # As kube-apiserver 1.20 answers a failed `test` (apiserver/pkg/endpoints/handlers/patch.go;
                # tests/integration/test_service_switch_race.py sees it on the real one).
                return 422, _status(422, "the server rejected our request due to an error in our request")
            if op["op"] in ("add", "replace"):
                node[key] = op["value"]
            elif op["op"] == "remove":
                del node[key]
        patched["metadata"]["resourceVersion"] = self._next_version()
        self.objects[path] = patched
        return 200, patched


def _status(code: int, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "code": code}


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


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
    assert len(_child_applies(api)) == 1 + 16, "the refused apply, then every child once"


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
