"""The comparison job's CronJob on both sides of Kubernetes 1.21: batch/v1 where it is served, batch/v1beta1
before (the integration cluster is 1.20, so only the older side is exercised there).

kube/client.py picks the version from API discovery, answered here by a loopback server: cronjobs listed in
batch/v1 -> batch/v1; batch/v1 unknown (404) or without cronjobs -> batch/v1beta1, with the applied body's
apiVersion rewritten to match; any other failure -> nothing applied and nothing remembered. The built
CronJob is checked against the schema of both versions: batch/v1beta1's from Kubernetes 1.20's own OpenAPI
document (vendored under tests/data/, origin inside), and batch/v1's, which Kubernetes 1.21 introduced with
the same CronJobSpec fields (none renamed or removed; `timeZone` came only in 1.24).
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes
import pytest

from shadow_operator.controller.builders import desired_state
from shadow_operator.controller.observed import Observed
from shadow_operator.kube.client import Kube, KubeError

from .factories import REFERENCED_PRIMARY, make_sd, make_service

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "data" / "kubernetes-1.20-cronjob-v1beta1.openapi.json"
V1BETA1 = "io.k8s.api.batch.v1beta1"

# batch/v1 CronJobSpec as Kubernetes 1.21 serves it (k8s.io/api/batch/v1/types.go, v0.21): the v1beta1
# fields unchanged, the same two required.
V1_CRONJOB_SPEC_FIELDS = {
    "schedule",
    "startingDeadlineSeconds",
    "concurrencyPolicy",
    "suspend",
    "jobTemplate",
    "successfulJobsHistoryLimit",
    "failedJobsHistoryLimit",
}
V1_CRONJOB_SPEC_REQUIRED = {"schedule", "jobTemplate"}

WITH_CRONJOBS = (
    200,
    {"kind": "APIResourceList", "groupVersion": "batch/v1", "resources": [{"name": "jobs"}, {"name": "cronjobs"}]},
)
# What Kubernetes 1.20 answers: batch/v1 exists, with Jobs only.
WITHOUT_CRONJOBS = (200, {"kind": "APIResourceList", "groupVersion": "batch/v1", "resources": [{"name": "jobs"}]})
NOT_FOUND = (404, {"kind": "Status", "code": 404, "message": "the server could not find the requested resource"})


# -- schemas ----------------------------------------------------------------------------------------


def _load_definitions() -> dict[str, Any]:
    document = json.loads(SCHEMA_FILE.read_text())
    assert "swagger.json" in document["x-origin"]["source"]
    definitions = copy.deepcopy(document["definitions"])
    for definition in definitions.values():
        if "properties" in definition:
            # A field the schema does not know is one the API server drops (or server-side apply
            # refuses): the built object must not depend on one.
            definition["additionalProperties"] = False
    definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = {"type": ["integer", "string"]}
    definitions["io.k8s.apimachinery.pkg.api.resource.Quantity"] = {"type": ["integer", "number", "string"]}
    return definitions


def _validator(version: str) -> jsonschema.Draft4Validator:
    definitions = _load_definitions()
    if version == "batch/v1":
        # batch/v1 (1.21): the v1beta1 CronJob, CronJobSpec and JobTemplateSpec under the v1 name.
        spec = definitions[f"{V1BETA1}.CronJobSpec"]
        assert set(spec["properties"]) == V1_CRONJOB_SPEC_FIELDS, "v1beta1 and v1 CronJobSpec fields differ"
        assert set(spec["required"]) == V1_CRONJOB_SPEC_REQUIRED
    root = f"{V1BETA1}.CronJob"
    schema = {"definitions": definitions, "$ref": f"#/definitions/{root}"}
    return jsonschema.Draft4Validator(schema)


def _errors(version: str, body: dict[str, Any]) -> list[str]:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator(version).iter_errors(body)]
    if body.get("apiVersion") != version or body.get("kind") != "CronJob":
        errors.append(f"apiVersion/kind {body.get('apiVersion')}/{body.get('kind')}, expected {version}/CronJob")
    return errors


def _cronjob(sd) -> dict[str, Any]:
    service = make_service("recsys", adoptable=False) if sd.spec.primary.deployment_ref else None
    state = desired_state(sd, Observed(service=service), "shadow-operator:test")
    [cronjob] = [child for child in state.children if child["kind"] == "CronJob"]
    return cronjob


SPECS = {
    "contract": {},
    "builtin-referenced": {
        **REFERENCED_PRIMARY,
        "service": {"name": "recsys", "port": 80},
        "traffic": {"router": "builtin"},
    },
    "hourly": {"analysis": {"interval": "6h"}},
}


@pytest.mark.parametrize("overrides", SPECS.values(), ids=SPECS.keys())
def test_the_built_cronjob_is_a_valid_batch_v1_cronjob(overrides):
    cronjob = _cronjob(make_sd(overrides))
    assert _errors("batch/v1", cronjob) == []
    assert set(cronjob["spec"]) <= V1_CRONJOB_SPEC_FIELDS


def test_the_schema_check_catches_what_batch_v1_refuses():
    """The check is not vacuous: a renamed field, a missing required one, a wrong type are each reported."""
    cronjob = _cronjob(make_sd())
    renamed = copy.deepcopy(cronjob)
    renamed["spec"]["timeZone"] = "Etc/UTC"  # 1.24+
    missing = copy.deepcopy(cronjob)
    del missing["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["name"]
    mistyped = copy.deepcopy(cronjob)
    mistyped["spec"]["successfulJobsHistoryLimit"] = "1"
    assert any("timeZone" in e for e in _errors("batch/v1", renamed))
    assert any("'name' is a required property" in e for e in _errors("batch/v1", missing))
    assert any("successfulJobsHistoryLimit" in e for e in _errors("batch/v1", mistyped))
    assert _errors("batch/v1beta1", cronjob) == ["apiVersion/kind batch/v1/CronJob, expected batch/v1beta1/CronJob"]


# -- the version kube/client.py applies with -----------------------------------------------------------------


class DiscoveryServer:
    """Answers GET /apis/batch/v1 from a script (the last answer repeats); records every other request."""

    def __init__(self, discovery: list[tuple[int, dict]]) -> None:
        self.discovery = list(discovery)
        self.requests: list[tuple[str, str, dict | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                path = urlsplit(self.path).path
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                server.requests.append((self.command, path, body))
                if path == "/apis/batch/v1":
                    status, answer = server.discovery.pop(0) if len(server.discovery) > 1 else server.discovery[0]
                elif self.command == "PATCH":
                    status, answer = 201, {**body, "metadata": {**body["metadata"], "uid": "cron-uid"}}
                else:
                    status, answer = 200, {"kind": "Status", "status": "Success"}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PATCH = do_DELETE = _handle

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def kube(self) -> Kube:
        configuration = kubernetes.client.Configuration()
        configuration.host = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        return Kube(kubernetes.client.ApiClient(configuration))

    def discoveries(self) -> int:
        return sum(1 for _, path, _ in self.requests if path == "/apis/batch/v1")

    def writes(self) -> list[tuple[str, str, dict | None]]:
        return [r for r in self.requests if r[0] != "GET"]


@pytest.fixture
def api() -> Iterator:
    servers: list[DiscoveryServer] = []

    def start(discovery: list[tuple[int, dict]]) -> DiscoveryServer:
        servers.append(DiscoveryServer(discovery))
        return servers[-1]

    yield start
    for server in servers:
        server.httpd.shutdown()
        server.httpd.server_close()


PATH = "/namespaces/default/cronjobs/recommender-analysis"


def test_cronjobs_served_in_batch_v1_are_applied_and_deleted_as_batch_v1(api):
    server = api([WITH_CRONJOBS])
    kube = server.kube()
    cronjob = _cronjob(make_sd())
    kube.apply(cronjob)
    kube.delete("CronJob", "default", "recommender-analysis", "cron-uid")
    [(method, path, body), (delete, delete_path, _)] = server.writes()
    assert (method, path, delete, delete_path) == ("PATCH", f"/apis/batch/v1{PATH}", "DELETE", f"/apis/batch/v1{PATH}")
    assert body == cronjob and _errors("batch/v1", body) == []
    assert server.discoveries() == 1


@pytest.mark.parametrize("answer", [NOT_FOUND, WITHOUT_CRONJOBS], ids=["batch-v1-unknown", "batch-v1-without-cronjobs"])
def test_an_older_server_gets_a_valid_batch_v1beta1_cronjob(api, answer):
    server = api([answer])
    kube = server.kube()
    cronjob = _cronjob(make_sd())
    kube.apply(cronjob)
    kube.apply(cronjob)
    kube.delete("CronJob", "default", "recommender-analysis", "cron-uid")
    (_, path, body), _, (_, delete_path, _) = server.writes()
    assert path == delete_path == f"/apis/batch/v1beta1{PATH}"
    assert body["apiVersion"] == "batch/v1beta1", "the body names the version of the path it is sent to"
    assert body == {**cronjob, "apiVersion": "batch/v1beta1"}
    assert _errors("batch/v1beta1", body) == []
    assert cronjob["apiVersion"] == "batch/v1", "the builder's object is not changed"
    assert server.discoveries() == 1, "an answer is remembered"


@pytest.mark.parametrize("status", [500, 503, 403, 429])
def test_a_failed_discovery_applies_nothing_and_is_asked_again(api, status):
    server = api([(status, {"kind": "Status", "code": status, "message": "not now"}), WITH_CRONJOBS])
    kube = server.kube()
    cronjob = _cronjob(make_sd())
    with pytest.raises(KubeError) as failed:
        kube.apply(cronjob)
    assert failed.value.status == status and "will ask again" in str(failed.value)
    assert server.writes() == [], "no guess at a version was sent"
    kube.apply(cronjob)
    [(_, path, body)] = server.writes()
    assert path == f"/apis/batch/v1{PATH}" and body["apiVersion"] == "batch/v1", "the fallback was not pinned"
    assert server.discoveries() == 2
