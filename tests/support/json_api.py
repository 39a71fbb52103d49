"""A JSON-over-HTTP server on loopback standing in for the Kubernetes API where the real one
cannot be made to fail on cue (faults, discovery answers): subclasses say what to answer."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

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
