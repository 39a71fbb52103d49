"""manifests/monitoring/: the Grafana dashboard's every query, and the scrape configs, against a real router.

A `shadowctl router` configured as the operator configures it (router.json and the router's Service from
the operator's own builders, the cluster addresses swapped for loopback ones) runs in front of a primary
and a candidate written here: the candidate fails for users without purchase history, is slow for
collectors (so copies past maxInFlight are dropped) and disagrees with the primary for a band of users;
the records are sampled at 0.5 and the collector only comes up after the router failed to reach it.

Debian's Prometheus scrapes the router with the jobs of prometheus-scrape.yaml, relabelling verbatim.
Debian builds Prometheus without Kubernetes discovery, so the targets kubernetes_sd_configs would
discover (with the __meta_kubernetes_* labels it would give them, from the operator's Services and
Pods, decoys included) come from a file_sd file, and the jobs' relabelling decides what is scraped.

Then every expression in dashboard.json, template variables substituted as Grafana would, must parse
and answer at least one series with a finite value, series split by role must show both models, and
each of its selectors must select something on its own (a typo behind `or 0 * ...` would answer 0).
The template variables' label_values() queries must offer the values substituted.
"""

from __future__ import annotations

import copy
import http.client
import json
import math
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from shadow_demo.stack import SHADOWCTL, Prometheus, Stack

from .harness import REPO, free_port, wait_for
from .prometheus_harness import ensure_prometheus

pytestmark = pytest.mark.timeout(120)

MONITORING = REPO / "manifests" / "monitoring"
DASHBOARD = MONITORING / "dashboard.json"
NAMESPACE = "shop"
IMAGE = "shadow-operator:0.1.0"
RATE_INTERVAL = "1m"  # what Grafana's $__rate_interval becomes; all the traffic is inside it
# The segment variable as Grafana fills it in: its default, and "All" (allValue).
SEGMENT_CHOICES = ("all", ".*")
ROLES = {"primary", "candidate"}
# One request in six each: no purchase history (the candidate's KeyError), 0 purchases, 3, 7 (the
# candidate says 1, the primary 0), 40, and a collector (150: the candidate takes 0.2 s).
PURCHASES = (None, 0, 3, 7, 40, 150)
REQUESTS, CLIENTS = 240, 8


# --- the dashboard -------------------------------------------------------------------------------


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(panel title, refId, expr) of every target, rows' nested panels included."""
    found = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                found.append((inner["title"], target["refId"], target["expr"]))
    return found


# A vector selector with its matchers: `name{...}` (every query names the ShadowDeployment, so has braces).
SELECTOR = re.compile(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\{[^{}]*\}")
VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


def substitute(expr: str, values: dict[str, str]) -> str:
    """`$name` and `${name}` replaced; a variable the dashboard does not define fails the test."""

    def one(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        assert name in values, f"{name!r} is neither a template variable of the dashboard nor $__rate_interval"
        return values[name]

    return VARIABLE.sub(one, expr)


def test_the_dashboard_is_an_importable_grafana_dashboard():
    dashboard = load_dashboard()
    assert dashboard["schemaVersion"] >= 36 and dashboard["uid"] and dashboard["title"]
    assert dashboard.get("id") is None, "an exported dashboard carries no instance id"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    datasource = variables["datasource"]
    assert (datasource["type"], datasource["query"]) == ("datasource", "prometheus")
    prometheus = {"type": "prometheus", "uid": "${datasource}"}
    for name, variable in variables.items():
        if variable["type"] == "query":
            assert variable["datasource"] == prometheus, name
            assert variable["query"]["query"] == variable["definition"], name
    assert {"namespace", "shadow", "segment"} <= variables.keys()

    ids, cells = set(), set()
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 10
    for panel in dashboard["panels"]:
        assert panel["id"] not in ids, f"panel id {panel['id']} twice"
        ids.add(panel["id"])
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps another panel"
                cells.add((x, y))
        if panel["type"] == "row":
            assert not panel.get("targets") and panel.get("panels") == [], panel["title"]
            continue
        assert panel["type"] in {"timeseries", "stat"}, panel["title"]
        assert panel["datasource"] == prometheus, panel["title"]
        assert panel["description"] and panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        assert panel["targets"], f"{panel['title']!r} has no query"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == prometheus and target["expr"].strip(), panel["title"]
    values = {name: "x" for name in variables} | {"__rate_interval": RATE_INTERVAL}
    for title, _, expr in queries(dashboard):
        substitute(expr, values)  # every variable used is defined
        assert 'shadow="$shadow"' in expr, f"{title!r}: every query is about the chosen ShadowDeployment"
        assert "[$__rate_interval]" in expr or "rate(" not in expr, title


# --- the operator's objects ----------------------------------------------------------------------


@dataclass
class OperatorObjects:
    shadow: str  # the `shadow` label: "<namespace>/<name>"
    router_config: dict[str, Any]
    router_service: dict[str, Any]
    router_pod: dict[str, Any]  # the Deployment's Pod template
    other_services: list[dict[str, Any]]  # collector, candidate: never scraped as routers
    model_pod: dict[str, Any]  # a model Pod with the recorder sidecar (Istio mode)


def operator_objects() -> OperatorObjects:
    """The sample builtin ShadowDeployment, built by the operator's own code (imported here only, so that
    the dashboard's shape test does not depend on where the operator keeps its builders)."""
    from shadow_operator.contract.naming import CANDIDATE
    from shadow_operator.contract.resource import parse
    from shadow_operator.controller.builders.collector import collector_service
    from shadow_operator.controller.builders.recorder import with_recorder
    from shadow_operator.controller.builders.router import router_config, router_deployment, router_service
    from shadow_operator.controller.builders.workloads import candidate_deployment, candidate_service

    body = yaml.safe_load((REPO / "manifests" / "samples" / "builtin.yaml").read_text())
    body["metadata"].update(namespace=NAMESPACE, uid="uid-dashboard")
    traffic, recording = body["spec"]["traffic"], body["spec"]["recording"]
    # Every copy mirrored but at most 4 in flight (2 per worker): the slow collectors make drops.
    traffic.update(mirrorPercent=100, maxInFlight=4, candidateTimeout="1s")
    recording["sampleRate"] = 0.5  # records sampled out: the "dropped" series
    sd = parse(body)
    return OperatorObjects(
        shadow=f"{NAMESPACE}/{sd.name}",
        router_config=router_config(sd),
        router_service=router_service(sd),
        router_pod=router_deployment(sd, IMAGE)["spec"]["template"],
        other_services=[collector_service(sd), candidate_service(sd)],
        model_pod=with_recorder(sd, candidate_deployment(sd), CANDIDATE, IMAGE)["spec"]["template"],
    )


def test_the_monitors_select_the_router_services_and_recorders_the_operator_creates():
    objects = operator_objects()
    service_monitor, pod_monitor = (d for d in yaml.safe_load_all((MONITORING / "servicemonitor.yaml").read_text()))
    assert (service_monitor["apiVersion"], service_monitor["kind"]) == ("monitoring.coreos.com/v1", "ServiceMonitor")
    assert (pod_monitor["apiVersion"], pod_monitor["kind"]) == ("monitoring.coreos.com/v1", "PodMonitor")

    selector = service_monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= objects.router_service["metadata"]["labels"].items()
    for other in objects.other_services:
        assert not selector.items() <= other["metadata"]["labels"].items(), other["metadata"]["name"]
    [endpoint] = service_monitor["spec"]["endpoints"]
    [port] = [p for p in objects.router_service["spec"]["ports"] if p["name"] == endpoint["port"]]
    [router] = objects.router_pod["spec"]["containers"]
    assert {"name": "admin", "containerPort": port["targetPort"], "protocol": "TCP"} in router["ports"]
    assert router["readinessProbe"]["httpGet"]["port"] == "admin" and endpoint["path"] == "/metrics"
    assert service_monitor["spec"]["namespaceSelector"] == {"any": True}

    [pod_endpoint] = pod_monitor["spec"]["podMetricsEndpoints"]
    named = {p["name"]: c["name"] for c in objects.model_pod["spec"]["containers"] for p in c.get("ports", [])}
    assert named.get(pod_endpoint["port"]) == "recorder", f"{pod_endpoint['port']!r} is not the recorder's admin port"
    assert pod_endpoint["path"] == "/metrics" and pod_monitor["spec"]["namespaceSelector"] == {"any": True}


# --- what kubernetes_sd_configs would discover ---------------------------------------------------


def _sanitize(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def _pod_meta(pod_name: str, namespace: str, template: dict[str, Any], phase: str = "Running") -> dict[str, str]:
    meta = {
        "__meta_kubernetes_namespace": namespace,
        "__meta_kubernetes_pod_name": pod_name,
        "__meta_kubernetes_pod_phase": phase,
        "__meta_kubernetes_pod_ready": "true" if phase == "Running" else "false",
        "__meta_kubernetes_pod_ip": "127.0.0.1",
    }
    for key, value in (template["metadata"].get("labels") or {}).items():
        meta[f"__meta_kubernetes_pod_label_{_sanitize(key)}"] = value
        meta[f"__meta_kubernetes_pod_labelpresent_{_sanitize(key)}"] = "true"
    for key, value in (template["metadata"].get("annotations") or {}).items():
        meta[f"__meta_kubernetes_pod_annotation_{_sanitize(key)}"] = value
    return meta


def endpoints_targets(service: dict[str, Any], pod: dict[str, Any] | None, ports: dict[str, int]) -> list[dict]:
    """role: endpoints: one target per (ready Pod, Service port), the port mapped to a loopback one."""
    meta = dict(_pod_meta(f"{service['metadata']['name']}-5d8c7b9f4-x7k2p", service["metadata"]["namespace"], pod))
    meta.update({
        "__meta_kubernetes_endpoints_name": service["metadata"]["name"],
        "__meta_kubernetes_service_name": service["metadata"]["name"],
        "__meta_kubernetes_endpoint_ready": "true",
        "__meta_kubernetes_endpoint_address_target_kind": "Pod",
        "__meta_kubernetes_endpoint_address_target_name": meta["__meta_kubernetes_pod_name"],
    })  # fmt: skip
    for key, value in service["metadata"]["labels"].items():
        meta[f"__meta_kubernetes_service_label_{_sanitize(key)}"] = value
        meta[f"__meta_kubernetes_service_labelpresent_{_sanitize(key)}"] = "true"
    targets = []
    for port in service["spec"]["ports"]:
        labels = {**meta, "__meta_kubernetes_endpoint_port_name": port["name"]}
        labels["__meta_kubernetes_endpoint_port_protocol"] = port["protocol"]
        targets.append({"targets": [f"127.0.0.1:{ports[port['name']]}"], "labels": labels})
    return targets


def pod_targets(pod_name: str, template: dict[str, Any], port: int, phase: str) -> list[dict]:
    """role: pod: one target per container port (all on one closed loopback port: never scraped for data)."""
    targets = []
    for container in template["spec"]["containers"]:
        for declared in container.get("ports", []):
            labels = _pod_meta(pod_name, NAMESPACE, template, phase)
            labels.update({
                "__meta_kubernetes_pod_container_name": container["name"],
                "__meta_kubernetes_pod_container_port_name": declared["name"],
                "__meta_kubernetes_pod_container_port_number": str(declared["containerPort"]),
                "__meta_kubernetes_pod_container_port_protocol": declared["protocol"],
            })  # fmt: skip
            targets.append({"targets": [f"127.0.0.1:{port}"], "labels": labels})
    return targets


def scrape_jobs(workdir: Path) -> dict[str, dict[str, Any]]:
    """prometheus-scrape.yaml's jobs, kubernetes_sd_configs swapped for a file_sd file each, scraped every second."""
    jobs = {}
    for job in yaml.safe_load((MONITORING / "prometheus-scrape.yaml").read_text())["scrape_configs"]:
        job = copy.deepcopy(job)
        [discovery] = job.pop("kubernetes_sd_configs")
        job["file_sd_configs"] = [{"files": [str(workdir / f"{job['job_name']}.json")], "refresh_interval": "1s"}]
        job.update(scrape_interval="1s", scrape_timeout="1s")
        job["_role"] = discovery["role"]
        jobs[job["job_name"]] = job
    assert {name: job["_role"] for name, job in jobs.items()} == {
        "shadow-router": "endpoints",
        "shadow-recorder": "pod",
    }
    for job in jobs.values():
        del job["_role"]
    return jobs


# --- models, collector, router, Prometheus -------------------------------------------------------


class _Model(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    candidate = False

    def log_message(self, *args):
        pass

    def do_POST(self):
        doc = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        purchases = (doc.get("features") or {}).get("purchase_count")
        status, answer = 200, {"prediction": int(purchases is not None and purchases >= 10)}
        if self.candidate:
            if purchases is None:
                status, answer = 500, {"error": "KeyError: 'purchase_history'"}
            else:
                if purchases >= 100:
                    time.sleep(0.2)  # pages through every purchase
                answer = {"prediction": int(purchases >= 5)}
        body = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Candidate(_Model):
    candidate = True


def serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def router_metrics(port: int) -> dict[tuple[str, frozenset], float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            name, _, labels = series.partition("{")
            samples[(name, frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels)))] = float(value)
    return samples


def total(samples: dict, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, pairs), v in samples.items() if n == name and wanted <= pairs)


def send_traffic(port: int, users: range) -> None:
    """Requests for these users from CLIENTS connections at once."""

    def client(first: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for i in users[first::CLIENTS]:
            purchases = PURCHASES[i % len(PURCHASES)]
            features = {} if purchases is None else {"purchase_count": purchases}
            connection.request("POST", "/predict", body=json.dumps({"user": i, "features": features}),
                               headers={"Content-Type": "application/json"})  # fmt: skip
            response = connection.getresponse()
            response.read()
            assert response.status == 200, "the primary answers every user"
        connection.close()

    with ThreadPoolExecutor(CLIENTS) as pool:
        for done in [pool.submit(client, n) for n in range(CLIENTS)]:
            done.result()


class PrometheusAPI:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        query = urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as answer:
                return json.load(answer)
        except urllib.error.HTTPError as error:  # 400 with {"status": "error", "error": "parse error ..."}
            return json.loads(error.read() or b"{}") or {"status": "error", "error": str(error)}

    def query(self, expr: str) -> dict[str, Any]:
        return self.get("/api/v1/query", query=expr)

    def scraped_after(self, instance: str, after: float) -> bool:
        """A successful scrape of `instance` that started after `after` (unix time)."""
        # timestamp() straight on the selector: on `up == 1` it would be the evaluation time.
        [stamp, up] = [
            self.query(f'{f}(up{{instance="{instance}"}})').get("data", {}).get("result", []) for f in ("timestamp", "")
        ]
        return len(stamp) == len(up) == 1 and up[0]["value"][1] == "1" and float(stamp[0]["value"][1]) > after


@dataclass
class Scraped:
    prometheus: PrometheusAPI
    objects: OperatorObjects
    router_admin: int
    recorder_port: int


@pytest.fixture(scope="module")
def scraped(tmp_path_factory) -> Iterator[Scraped]:
    try:
        binary = ensure_prometheus()
    except RuntimeError as error:
        pytest.fail(str(error))
    workdir = tmp_path_factory.mktemp("dashboard")
    objects = operator_objects()
    primary, candidate = serve(_Model), serve(_Candidate)
    router_http, router_admin, collector_port, recorder_port = free_port(), free_port(), free_port(), free_port()

    jobs = scrape_jobs(workdir)
    decoys = [
        endpoints_targets(service, objects.router_pod, {"http": free_port(), "admin": free_port()})
        for service in objects.other_services
    ]
    sd_files = {
        "shadow-router": [
            *endpoints_targets(
                objects.router_service, objects.router_pod, {"http": router_http, "admin": router_admin}
            ),
            *(target for targets in decoys for target in targets),
        ],
        "shadow-recorder": [
            *pod_targets("recommender-builtin-candidate-7f6b-q2w8e", objects.model_pod, recorder_port, "Running"),
            *pod_targets("recommender-builtin-candidate-7f6b-pend1", objects.model_pod, recorder_port, "Pending"),
        ],
    }
    for name, targets in sd_files.items():
        (workdir / f"{name}.json").write_text(json.dumps(targets))
    prometheus = Prometheus(workdir / "prometheus", [], str(binary), scrape_configs=list(jobs.values()))
    prometheus.start()
    config = workdir / "router.json"
    config.write_text(json.dumps(objects.router_config))

    stack = Stack(workdir / "processes")
    try:
        stack.start("router", [
            SHADOWCTL, "router", "--config", str(config), "--workers", "2",
            "--primary", f"http://127.0.0.1:{primary.server_address[1]}",
            "--candidate", f"http://127.0.0.1:{candidate.server_address[1]}",
            "--collector", f"http://127.0.0.1:{collector_port}", "--records", str(workdir / "spool"),
            "--listen", f"127.0.0.1:{router_http}", "--admin-listen", f"127.0.0.1:{router_admin}",
        ])  # fmt: skip
        prometheus.wait_ready(timeout=20)
        api, router = PrometheusAPI(prometheus.url), f"127.0.0.1:{router_admin}"
        # Discovery reaches the scrape loop within 5 s: a scrape from before the traffic, counters at 0.
        wait_for(lambda: api.scraped_after(router, 0), timeout=15, what="the first scrape of the router")
        # The traffic in two halves with a scrape between, so that every series, including the ones
        # the first half created, has grown between two samples: rate() > 0, quantiles not NaN.
        send_traffic(router_http, range(REQUESTS // 2))
        first_half = time.time()
        # The collector is not up yet: the first attempts to ship fail, the records wait in the spool.
        metrics = lambda: router_metrics(router_admin)  # noqa: E731
        wait_for(lambda: total(metrics(), "shadow_records_ship_failures_total"), timeout=10, what="a failed shipment")
        stack.start("collector", [
            SHADOWCTL, "collector", "--records", str(workdir / "collected"),
            "--listen", f"127.0.0.1:{collector_port}", "--admin-listen", "127.0.0.1:0",
        ])  # fmt: skip
        wait_for(lambda: api.scraped_after(router, first_half), timeout=10, what="a scrape after the first half")
        send_traffic(router_http, range(REQUESTS // 2, REQUESTS))
        wait_for(lambda: total(metrics(), "shadow_records_shipped_total"), timeout=15, what="records shipped")
        # What the panels are there to show did happen.
        samples = metrics()
        assert total(samples, "shadow_requests_total", role="candidate", outcome="http_5xx") > 0
        assert total(samples, "shadow_mirror_total", result="dropped") > 0, "no copy dropped at maxInFlight"
        assert total(samples, "shadow_records_dropped_total", reason="sampled_out") > 0
        assert total(samples, "shadow_pairs_total", segment="all", agree="false") > 0
        # Two scrapes after everything above (rate() needs two samples of each series).
        after = time.time() + 1.2
        wait_for(lambda: api.scraped_after(router, after), timeout=15, what="two scrapes of the router")
        yield Scraped(api, objects, router_admin, recorder_port)
    except BaseException:
        print("---- prometheus log (tail) ----\n" + prometheus.log_tail())
        for log in sorted((workdir / "processes").glob("*.log")):
            print(f"---- {log.name} (tail) ----\n" + log.read_text()[-2000:])
        raise
    finally:
        stack.stop("router")  # before the collector: its last hand-off goes through
        stack.stop_all()
        prometheus.stop()
        primary.shutdown()
        candidate.shutdown()


def test_the_scrape_config_keeps_the_router_admin_port_and_the_recorders_only(scraped):
    active = scraped.prometheus.get("/api/v1/targets", state="active")["data"]["activeTargets"]
    by_job: dict[str, list[dict]] = {}
    for target in active:
        by_job.setdefault(target["scrapePool"], []).append(target)
    # The router Service's admin port only: not its http port, nor the collector's or candidate's Services.
    scraped_ports = [t["labels"]["instance"] for t in by_job["shadow-router"]]
    assert scraped_ports == [f"127.0.0.1:{scraped.router_admin}"], scraped_ports
    [router] = by_job["shadow-router"]
    service = scraped.objects.router_service["metadata"]
    assert router["health"] == "up"
    assert router["labels"]["namespace"] == NAMESPACE
    assert router["labels"]["service"] == service["name"]
    assert router["labels"]["pod"].startswith(service["name"] + "-")
    # The Running Pod's recorder-admin port only: not the model's or the recorder's traffic port, nor a Pending Pod.
    recorders = [(t["labels"]["pod"], t["discoveredLabels"]["__meta_kubernetes_pod_container_port_name"])
                 for t in by_job["shadow-recorder"]]  # fmt: skip
    assert recorders == [("recommender-builtin-candidate-7f6b-q2w8e", "recorder-admin")], recorders
    [recorder] = by_job["shadow-recorder"]
    assert recorder["labels"]["namespace"] == NAMESPACE


def _variable_values(shadow: str) -> dict[str, str]:
    """The concrete values the test picks, as Grafana would substitute them."""
    return {"namespace": NAMESPACE, "shadow": shadow, "datasource": "prometheus", "__rate_interval": RATE_INTERVAL}


def test_the_template_variables_offer_the_routers_values(scraped):
    dashboard = load_dashboard()
    values = _variable_values(scraped.objects.shadow) | {"segment": "all"}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["definition"])
        assert match, f"{variable['name']}: expected label_values(selector, label), got {variable['definition']!r}"
        selector, label = substitute(match.group(1), values), match.group(2)
        answer = scraped.prometheus.get(f"/api/v1/label/{label}/values", **{"match[]": selector})
        assert answer["status"] == "success", (variable["name"], answer)
        offered = answer["data"]
        if variable.get("regex"):
            pattern = re.compile(variable["regex"].strip("/"))
            offered = [m.group(1) for m in map(pattern.search, offered) if m]
        assert values[variable["name"]] in offered, (variable["name"], selector, offered)


@pytest.mark.parametrize("segment", SEGMENT_CHOICES)
def test_every_dashboard_query_answers_from_the_router(scraped, segment):
    dashboard = load_dashboard()
    values = _variable_values(scraped.objects.shadow) | {"segment": segment}
    problems = []
    for title, ref, expr in queries(dashboard):
        promql = substitute(expr, values)
        answer = scraped.prometheus.query(promql)
        where = f"{title!r} {ref}: {promql}"
        if answer.get("status") != "success":
            problems.append(f"{where}\n  -> {answer.get('errorType')}: {answer.get('error')}")
            continue
        series = answer["data"]["result"]
        finite = [s for s in series if math.isfinite(float(s["value"][1]))]
        if not finite:
            problems.append(f"{where}\n  -> no series with a finite value ({len(series)} series)")
            continue
        roles = {s["metric"]["role"] for s in series if "role" in s["metric"]}
        if roles and roles != ROLES:
            problems.append(f"{where}\n  -> only {sorted(roles)}: both models must show")
        # Each selector on its own: a misspelled name or label value behind `or 0 * ...` answers 0, not nothing.
        for selector in SELECTOR.findall(promql):
            if not scraped.prometheus.query(f"count({selector})").get("data", {}).get("result"):
                problems.append(f"{where}\n  -> {selector} selects no series")
    assert not problems, f"{len(problems)} dashboard queries failed:\n" + "\n".join(problems)
