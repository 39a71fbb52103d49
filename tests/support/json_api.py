"""A JSON-over-HTTP server on loopback standing in for the Kubernetes API where the real one
cannot be made to fail on cue (faults, discovery answers): subclasses say what to answer."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import kubernetes

from shadow_operator.kube.client import Kube


class JsonApiServer:
    """Serves every request with `answer(method, target, content_type, body)` in a thread of its own."""

    def __init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, body = server.answer(self.command, self.path, self.headers.get("Content-Type") or "", raw)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PATCH = do_POST = do_PUT = do_DELETE = _handle

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, method: str, target: str, content_type: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        raise NotImplementedError

    def kube(self) -> Kube:
        """The operator's client, pointed at this server."""
        configuration = kubernetes.client.Configuration()
        configuration.host = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        return Kube(kubernetes.client.ApiClient(configuration))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


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
