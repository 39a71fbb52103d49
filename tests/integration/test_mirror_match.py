"""What to mirror (traffic.match, traffic.mirrorMethods) against the real things:

- Istio mode: the VirtualService the operator builds from match rules is accepted by the API server
  under Istio's own CRD schema (third_party/istio), and the ShadowDeployment CRD refuses bad rules
  with the field named;
- builtin mode: `shadowctl router` as a subprocess over loopback sockets, configured with the
  router.json the operator writes, copies `/predict` to the candidate and not `POST /feedback`, a
  `DELETE` or a request that no rule selects, while the primary answers every one of them.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from shadow_operator.controller.builders.istio import virtual_service
from shadow_operator.controller.builders.router import router_config

from ..unit.factories import make_sd
from .harness import REPO, wait_for

RULES = {
    "match": [
        {"uri": {"prefix": "/predict"}},
        {"uri": {"exact": "/v2/models/recsys/infer"}, "methods": ["POST"]},
        {"headers": [{"name": "X-Tenant", "exact": "acme"}, {"name": "x-canary"}]},
    ]
}


# -- Istio mode: Istio's schema on the API server ----------------------------------------------------------


def _vs_for(namespace: str, traffic: dict, **spec) -> dict:
    vs = virtual_service(make_sd({"traffic": traffic, **spec}), f"recommender-primary.{namespace}.svc.cluster.local")
    vs["metadata"]["namespace"] = namespace
    vs["metadata"].pop("ownerReferences", None)  # no owner object in this namespace
    return vs


@pytest.mark.parametrize(
    ("traffic", "spec"),
    [
        (RULES, {}),
        ({**RULES, "mirrorMethods": ["POST", "GET", "PUT"], "mirrorPercent": 12.5}, {}),
        (RULES, {"analysis": {"baseline": {}}}),  # `mirrors`: candidate and baseline on every mirrored route
        ({}, {}),  # no rules: one route for mirrorMethods, then the rest
    ],
    ids=["rules", "rules-methods-percent", "rules-baseline", "methods-only"],
)
def test_istio_accepts_the_virtual_service_built_from_match_rules(cluster, namespace, traffic, spec):
    vs = _vs_for(namespace, traffic, **spec)
    assert len(vs["spec"]["http"]) >= 2 and "match" in vs["spec"]["http"][0]
    result = cluster.kubectl("-n", namespace, "create", "-f", "-", stdin=yaml.safe_dump(vs), check=False)
    assert result.returncode == 0, result.stderr
    stored = json.loads(
        cluster.kubectl("-n", namespace, "get", "virtualservice", vs["metadata"]["name"], "-o", "json").stdout
    )
    # Stored as built: the server pruned nothing (a field Istio does not know would be dropped).
    assert stored["spec"] == json.loads(json.dumps(vs["spec"]))


def test_istio_schema_refuses_a_malformed_match_block(cluster, namespace):
    """The same check fails for a match block Istio would refuse: it is Istio's schema that accepted ours."""
    vs = _vs_for(namespace, RULES)
    vs["metadata"]["name"] = "malformed"
    vs["spec"]["http"][0]["match"][0]["method"] = "POST"  # a StringMatch, not a string
    result = cluster.kubectl("-n", namespace, "create", "-f", "-", stdin=yaml.safe_dump(vs), check=False)
    assert result.returncode != 0
    assert "method" in result.stderr, result.stderr


# What the API server (1.20) says: the field without list indices, and what it wanted.
@pytest.mark.parametrize(
    ("traffic", "message"),
    [
        ({"match": [{}]}, "spec.traffic.match in body should have at least 1 properties"),
        (
            {"match": [{"uri": {"exact": "/a", "prefix": "/a"}}]},
            '"spec.traffic.match.uri" must validate one and only one schema',
        ),
        ({"match": [{"uri": {}}]}, '"spec.traffic.match.uri" must validate one and only one schema'),
        ({"match": [{"methods": ["FETCH"]}]}, 'spec.traffic.match.methods: Unsupported value: "FETCH": supported values'),
        ({"mirrorMethods": ["post"]}, 'spec.traffic.mirrorMethods: Unsupported value: "post": supported values: "GET"'),
        ({"match": [{"headers": [{"exact": "acme"}]}]}, "spec.traffic.match.headers.name: Required value"),
        ({"match": [{"uri": {"prefix": "predict"}}]}, "spec.traffic.match.uri.prefix in body should match"),
    ],
    ids=[
        "empty-rule", "exact-and-prefix", "neither", "unknown-method", "lower-case-method", "header-without-name",
        "no-slash",
    ],
)  # fmt: skip
def test_the_crd_refuses_bad_rules_naming_the_field(cluster, namespace, traffic, message):
    from .conftest import shadow_deployment

    body = shadow_deployment("bad-rules", traffic={"router": "istio", **traffic})
    # --validate=false: the API server's own answer, not kubectl's client-side check.
    result = cluster.kubectl(
        "-n",
        namespace,
        "create",
        "--dry-run=server",
        "--validate=false",
        "-f",
        "-",
        stdin=json.dumps(body),
        check=False,
    )
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_the_crd_accepts_good_rules_and_defaults_mirror_methods(cluster, namespace):
    from .conftest import shadow_deployment

    body = shadow_deployment("good-rules", traffic={"router": "istio", **RULES})
    result = cluster.kubectl(
        "-n", namespace, "create", "--dry-run=server", "-o", "json", "-f", "-", stdin=json.dumps(body), check=False
    )
    assert result.returncode == 0, result.stderr
    traffic = json.loads(result.stdout)["spec"]["traffic"]
    assert traffic["mirrorMethods"] == ["POST", "GET"]
    assert traffic["match"] == RULES["match"]


# -- builtin mode: the router over real sockets --------------------------------------------------------------


class _Model(BaseHTTPRequestHandler):
    """Answers every method 200 with a JSON prediction, and notes (method, path, headers) it was sent."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, str, dict[str, str]]]

    def _any(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        self.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
        out = json.dumps({"prediction": 1, "len": len(body)}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _any

    def do_HEAD(self) -> None:
        self.seen.append((self.command, self.path, {}))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def _model() -> tuple[ThreadingHTTPServer, list]:
    seen: list = []
    handler = type("Model", (_Model,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _metric(admin_port: int, name: str, **labels: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=5)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        found, _, label_text = series.partition("{")
        pairs = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', label_text))
        pairs.pop("shadow", None)
        if found == name and pairs == labels:
            return float(value)
    return 0.0


# (method, path, headers, copied to the candidate?)
REQUESTS = [
    ("POST", "/predict", {}, True),
    ("GET", "/predict?user=42", {}, True),
    ("POST", "/predictions/batch", {}, True),
    ("POST", "/feedback", {}, False),  # a side effect: no rule selects it
    ("DELETE", "/predict", {}, False),  # not in mirrorMethods
    ("PUT", "/predict", {}, False),
    ("POST", "/predict/../feedback", {}, False),  # resolved to /feedback before matching
    ("POST", "/v2/models/recsys/infer", {}, True),
    ("GET", "/v2/models/recsys/infer", {}, False),  # that rule takes POST only
    ("POST", "/score", {"X-Tenant": "acme", "X-Canary": "1"}, True),
    ("POST", "/score", {"X-Tenant": "acme"}, False),  # x-canary missing
    ("POST", "/score", {"X-Tenant": "other", "X-Canary": "1"}, False),
]


def test_the_router_copies_only_what_the_rules_select(tmp_path: Path):
    primary, primary_seen = _model()
    candidate, candidate_seen = _model()
    config = router_config(make_sd({"traffic": {"router": "builtin", **RULES}}))
    config_path = tmp_path / "router.json"
    config_path.write_text(json.dumps(config))
    port, admin_port = _free_port(), _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO / "operator")}
    process = subprocess.Popen(
        [sys.executable, "-m", "shadow_operator.cli", "router", "--config", str(config_path),
         "--primary", f"http://127.0.0.1:{primary.server_port}",
         "--candidate", f"http://127.0.0.1:{candidate.server_port}",
         "--collector", "", "--records", str(tmp_path / "records"), "--workers", "1",
         "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin_port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )  # fmt: skip
    try:
        line = process.stdout.readline()
        assert line.startswith("listening"), process.stderr.read()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for i, (method, path, headers, _) in enumerate(REQUESTS):
            body = json.dumps({"x": i}).encode() if method != "GET" else None
            conn.request(method, path, body=body, headers={**headers, "x-request-id": f"req-{i}"})
            response = conn.getresponse()
            response.read()
            assert response.status == 200, (method, path, response.status)
        conn.close()
        copied = [(m, p) for m, p, _, c in REQUESTS if c]
        wait_for(lambda: len(candidate_seen) >= len(copied), timeout=10, what=f"{len(copied)} copies")
        time.sleep(0.5)  # a copy that should not exist has had its chance to arrive
        # The primary answered every request, the candidate saw exactly the selected ones.
        assert [(m, p) for m, p, _ in primary_seen] == [(m, p) for m, p, _, _ in REQUESTS]
        assert sorted((m, p) for m, p, _ in candidate_seen) == sorted(copied)
        assert all(h.get("x-shadow-request") == "true" for _, _, h in candidate_seen)
        assert _metric(admin_port, "shadow_mirror_total", result="sampled") == len(copied)
        assert _metric(admin_port, "shadow_mirror_total", result="not_matched") == len(REQUESTS) - len(copied)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.wait(15)
        process.stdout.close()
        process.stderr.close()
        primary.shutdown()
        candidate.shutdown()
