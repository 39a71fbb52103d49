"""The demo's story on real Pods: v2 Failed, v2.1 Passed, the Service restored, clients never refused.

Everything runs as it runs in a cluster: the operator installed with `kubectl apply -k manifests/`
from the image the Dockerfile builds; v1 from examples/recommender-v1.yaml; the ShadowDeployment
from examples/recommender.yaml (short cycle, the host's Prometheus); the router, the collector and
the models in Pods; the CronJob's Pod running `shadowctl analyze` on its schedule. A client on the
host calls the Service's ClusterIP, one new connection per request, the whole time.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.request

import pytest
import yaml

from shadow_demo.replay import schedule, week_start
from shadow_demo.stack import Prometheus
from shadow_operator.contract.report import REPORT_KEY

from ..integration.harness import KUBECTL, REPO, wait_for
from .conftest import Client, NodeCluster

pytestmark = [pytest.mark.node, pytest.mark.e2e]

EXAMPLES = REPO / "examples"
NAMESPACE = "demo"
RATE = 40  # client requests per second
GRACE_SECONDS = 10


def shadow_spec(prometheus_url: str) -> dict:
    """examples/recommender.yaml with a cycle short enough for a test and the host's Prometheus."""
    body = yaml.safe_load((EXAMPLES / "recommender.yaml").read_text())
    spec = body["spec"]
    spec["traffic"]["routerGracePeriod"] = f"{GRACE_SECONDS}s"
    # Two routers (the API's default): deleting one Pod must cost clients nothing. With one, its
    # deletion left the Service without a ready endpoint for ~2 s (80 refused connections).
    spec["traffic"]["routerReplicas"] = 2
    spec["analysis"].update(
        interval="1m", minDuration="3m", minSamples=1500, minSamplesPerSegment=100, prometheus={"url": prometheus_url}
    )
    # Every Pod of this one 2-core node shares the CPU, the CronJob's Python start-up each minute
    # included: v2.1's p99 read 1.78x v1's over 13,186 pairs (99.98% interval 0.89x to 4.41x), so
    # the example's 2x could not be confirmed either way. p50 still catches v2's slow collectors.
    spec["analysis"]["thresholds"]["latencyRatio"] = {"p50": 1.5, "p99": 4.0}
    return body


class PodTargets:
    """Prometheus targets from the API server: the Running Pods annotated prometheus.io/scrape, as
    kubernetes_sd_configs with the usual relabelling finds them. Debian's Prometheus is built without
    Kubernetes discovery, so a watch of the Pods writes a file_sd file instead; the same list."""

    def __init__(self, node: NodeCluster, path) -> None:
        self.node, self.path = node, path
        self.path.write_text("[]")
        self._stop = threading.Event()
        self._watch = subprocess.Popen(
            [str(KUBECTL), "--kubeconfig", str(node.kubeconfig), "get", "pods", "-A", "--watch", "-o", "json",
             "--output-watch-events"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self._thread = threading.Thread(target=self._run, name="pod-targets", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with self._watch as watch:
            pods: dict[str, dict] = {}
            decoder, buffer = json.JSONDecoder(), ""
            while not self._stop.is_set():
                line = watch.stdout.readline()
                if not line:
                    break
                buffer += line
                try:
                    event, _ = decoder.raw_decode(buffer.strip())
                except ValueError:
                    continue
                buffer = ""
                pod = event["object"]
                key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
                if event["type"] == "DELETED":
                    pods.pop(key, None)
                else:
                    pods[key] = pod
                self._write(pods)
            watch.terminate()

    def _write(self, pods: dict[str, dict]) -> None:
        targets = []
        for pod in pods.values():
            annotations = pod["metadata"].get("annotations") or {}
            ip = (pod.get("status") or {}).get("podIP")
            if annotations.get("prometheus.io/scrape") != "true" or pod["status"].get("phase") != "Running" or not ip:
                continue
            targets.append(
                {
                    "targets": [f"{ip}:{annotations.get('prometheus.io/port', '80')}"],
                    "labels": {"namespace": pod["metadata"]["namespace"], "pod": pod["metadata"]["name"]},
                }
            )
        staged = self.path.with_suffix(".tmp")
        staged.write_text(json.dumps(targets))
        staged.replace(self.path)  # Prometheus reads whole files only

    def stop(self) -> None:
        """Before the node goes: a client left running would retry the bridge address once it is gone."""
        self._stop.set()
        self._watch.terminate()
        self._watch.wait(10)


def pod_prometheus(node: NodeCluster, workdir) -> tuple[Prometheus, PodTargets]:
    """Debian's Prometheus on the host scraping the Pods the API server lists, listening on the bridge
    so the comparison job's Pod can query it."""
    workdir.mkdir(parents=True, exist_ok=True)
    targets = PodTargets(node, workdir / "pods.json")
    scrape = {
        "job_name": "kubernetes-pods",
        "file_sd_configs": [{"files": [str(workdir / "pods.json")], "refresh_interval": "1s"}],
    }
    prometheus = Prometheus(workdir, [], scrape_configs=[scrape], host=node.bridge_ip)
    prometheus.start()
    prometheus.wait_ready()
    return prometheus, targets


def scraped_pods(prometheus: Prometheus) -> set[str]:
    with urllib.request.urlopen(f"{prometheus.url}/api/v1/targets?state=active", timeout=5) as answer:
        targets = json.load(answer)["data"]["activeTargets"]
    return {t["labels"].get("pod", "") for t in targets if t["health"] == "up"}


def watch_phases(node: NodeCluster, until: str, timeout: float, seen: list[str]) -> dict:
    """Wait for a phase, printing `kubectl get shadowdeployments` each time the phase changes."""

    def phase() -> dict | None:
        body = node.json("-n", NAMESPACE, "get", "shadowdeployment", "recommender")
        status = body.get("status") or {}
        if status.get("phase") and (not seen or seen[-1] != status["phase"]):
            seen.append(status["phase"])
            node.show("-n", NAMESPACE, "get", "shadowdeployments")
        return status if status.get("phase") == until else None

    return wait_for(phase, timeout=timeout, interval=1, what=f"phase {until} (phases so far: {seen})")


def collector_ids(node: NodeCluster) -> set[str]:
    """Request ids of every record the collector holds, read through its Service from the host."""
    service = node.json("-n", NAMESPACE, "get", "service", "recommender-collector")
    address = f"{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"
    with urllib.request.urlopen(f"http://{address}/v1/records", timeout=30) as answer:
        lines = answer.read().decode().splitlines()
    return {json.loads(line)["id"] for line in lines if line.strip()}


def available(node: NodeCluster, name: str, namespace: str = NAMESPACE) -> bool:
    found = node.kubectl("-n", namespace, "get", "deployment", name, "-o", "json", check=False)
    status = (json.loads(found.stdout).get("status") or {}) if found.returncode == 0 else {}
    return (status.get("availableReplicas") or 0) > 0


@pytest.mark.timeout(1200)
def test_the_story_on_real_pods(node: NodeCluster, installed_operator: dict, tmp_path):
    # The operator as installed: its own ServiceAccount, the manifests' hardening, no restarts.
    operator_pod = installed_operator
    container = operator_pod["spec"]["containers"][0]
    assert operator_pod["spec"]["serviceAccountName"] == "shadow-operator"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert operator_pod["spec"]["securityContext"]["runAsUser"] == 65532

    node.kubectl("create", "namespace", NAMESPACE)
    node.show("-n", NAMESPACE, "apply", "-f", str(EXAMPLES / "recommender-v1.yaml"))
    node.kubectl("-n", NAMESPACE, "wait", "--for=condition=Available", "deployment/recommender-v1", "--timeout=120s")
    service_before = node.json("-n", NAMESPACE, "get", "service", "recommender")
    cluster_ip = service_before["spec"]["clusterIP"]

    prometheus, targets = pod_prometheus(node, tmp_path / "prometheus")
    events = schedule(20000, week_start(time.time()))
    phases: list[str] = []
    try:
        with Client(cluster_ip, 80, lambda i: events[i % len(events)].body(), rate=RATE) as client:
            wait_for(lambda: len(client.sent) >= RATE, timeout=30, what="the client's first second of traffic")

            # v2 in the shadow: Failed, naming the users without purchase history.
            spec = shadow_spec(prometheus.url)
            (tmp_path / "recommender.yaml").write_text(yaml.safe_dump(spec))
            applied = time.time()
            node.show("-n", NAMESPACE, "apply", "-f", str(tmp_path / "recommender.yaml"))
            wait_for(lambda: available(node, "recommender-router"), timeout=120, what="a router Pod available")
            wait_for(
                lambda: (
                    node.json("-n", NAMESPACE, "get", "service", "recommender")["spec"]["selector"].get(
                        "shadow.mlops.dev/role"
                    )
                    == "router"
                ),
                timeout=30,
                what="the Service switched to the router",
            )
            print(f"Service switched to the router {time.time() - applied:.1f}s after apply", flush=True)
            failed = watch_phases(node, "Failed", timeout=300, seen=phases)
            assert failed["verdict"]["reason"] == "CandidateErrors", failed["verdict"]

            # Prometheus's counters count from the first copy, the records only once the candidate's
            # rollout has settled: the first run can be decided on the counters while the records hold
            # no error text yet (seen: "34 of 286 requests", coverage 0%). A run or two later the
            # records decide too, and the verdict names what the failing answers said.
            def names_the_key_error() -> dict | None:
                status = node.json("-n", NAMESPACE, "get", "shadowdeployment", "recommender").get("status") or {}
                verdict = status.get("verdict") or {}
                return verdict if "KeyError: 'purchase_history'" in (verdict.get("message") or "") else None

            named = wait_for(names_the_key_error, timeout=200, interval=5, what="the verdict naming the KeyError")
            assert named["reason"] == "CandidateErrors", named

            # The first run may fail v2 on whatever slice had enough samples first; as records
            # accumulate, every run judges all of them again and names the segment.
            def failing_checks() -> set[tuple[str, str, str]] | None:
                # The published report: status keeps only the first 40 checks.
                data = node.json("-n", NAMESPACE, "get", "configmap", "recommender-report").get("data") or {}
                if REPORT_KEY not in data:
                    return None
                verdict = json.loads(data[REPORT_KEY])["verdict"]
                checks = verdict["checks"]
                failing = {(c["name"], c["segment"], c["source"]) for c in checks if c.get("passed") is False}
                return failing if ("errorRate", "history=<1", "records") in failing else None

            failing = wait_for(failing_checks, timeout=200, interval=5, what="errorRate on history=<1 failed")
            assert ("errorRate", "all", "prometheus") in failing, (
                "the job's Prometheus checks ran against Pods' metrics"
            )
            assert {p for p in scraped_pods(prometheus) if p.startswith("recommender-router")}, "router Pods scraped"
            node.show("-n", NAMESPACE, "get", "shadowdeployments")

            # v2.1: a new cycle, judged on its own answers only. The router's metrics do not say which
            # candidate answered (records do), so a Prometheus window starting at the change can still
            # count v2's last errors: this cycle is judged from records alone.
            node.kubectl(
                "-n", NAMESPACE, "patch", "shadowdeployment", "recommender", "--type", "merge", "-p",
                json.dumps({"spec": {"candidate": {
                    "image": "registry.example/recommender:v2.1",
                    "args": ["python", "-m", "shadow_demo.serve", "--version", "v2.1", "--listen", "0.0.0.0:8080"],
                }, "analysis": {"prometheus": None}}}),
            )  # fmt: skip
            watch_phases(node, "Shadowing", timeout=120, seen=phases)

            # A router Pod deleted mid-run hands its records off before it goes.
            wait_for(lambda: available(node, "recommender-router"), timeout=120, what="the new router Pod")
            time.sleep(20)
            router_pod, *_ = [
                p["metadata"]["name"]
                for p in node.json("-n", NAMESPACE, "get", "pods", "-l", "shadow.mlops.dev/role=router")["items"]
                if not p["metadata"].get("deletionTimestamp")
            ]
            deleted = time.time()
            node.kubectl("-n", NAMESPACE, "delete", "pod", router_pod, "--wait=false")
            time.sleep(15)

            passed = watch_phases(node, "Passed", timeout=420, seen=phases)
            assert passed["verdict"]["reason"] == "Passed", passed["verdict"]
            around = client.ids(deleted - 10, deleted + 10)
            lost = sorted(set(around) - collector_ids(node))
            print(
                f"router Pod {router_pod} deleted: {len(around)} requests answered in the 20 s around it, "
                f"{len(lost)} without a record at the collector {lost[:5]}",
                flush=True,
            )
            assert len(lost) <= len(around) // 100, f"records lost with the deleted router Pod: {lost[:10]}"

            node.show("-n", NAMESPACE, "describe", "shadowdeployment", "recommender")
            node.kubectl("-n", NAMESPACE, "delete", "shadowdeployment", "recommender", "--timeout=60s")
            restored = node.json("-n", NAMESPACE, "get", "service", "recommender")
            assert restored["spec"] == service_before["spec"], "the Service is exactly as before"
            time.sleep(10)  # clients keep calling across the restore and the router's removal
        total, failures = len(client.sent), client.failures()
        print(f"client: {total} requests through {cluster_ip}:80, {len(failures)} failed {failures[:5]}", flush=True)
        assert total > RATE * 60
        assert failures == [], "clients never see the shadow: not at the switch, during shadowing or at the restore"
        assert phases[-1] == "Passed" and "Failed" in phases
    finally:
        prometheus.stop()
        targets.stop()


def selector_role(node: NodeCluster, namespace: str) -> str | None:
    return node.json("-n", namespace, "get", "service", "recommender")["spec"]["selector"].get("shadow.mlops.dev/role")


@pytest.mark.timeout(900)
def test_the_service_leaves_a_router_that_cannot_serve_within_the_grace_period(
    node: NodeCluster, installed_operator: dict, tmp_path
):
    namespace = "gate"
    node.kubectl("create", "namespace", namespace)
    node.kubectl("-n", namespace, "apply", "-f", str(EXAMPLES / "recommender-v1.yaml"))
    node.kubectl("-n", namespace, "wait", "--for=condition=Available", "deployment/recommender-v1", "--timeout=120s")
    service_before = node.json("-n", namespace, "get", "service", "recommender")
    spec = shadow_spec("http://unused.invalid:9090")
    del spec["spec"]["analysis"]["prometheus"]
    spec["metadata"]["namespace"] = namespace
    (tmp_path / "gate.yaml").write_text(yaml.safe_dump(spec))
    events = schedule(5000, week_start(time.time()))
    node_name = node.settings["NODE_NAME"]

    with Client(service_before["spec"]["clusterIP"], 80, lambda i: events[i % len(events)].body(), RATE) as client:
        node.kubectl("-n", namespace, "apply", "-f", str(tmp_path / "gate.yaml"))
        wait_for(lambda: selector_role(node, namespace) == "router", timeout=120, what="the Service on the router")
        time.sleep(3)

        # 1. Scaled to zero by hand: the operator puts the replica back at once (it watches its
        #    Deployments), and the Service stays on the router throughout.
        scaled = time.time()
        node.kubectl("-n", namespace, "scale", "deployment", "recommender-router", "--replicas=0")
        wait_for(
            lambda: (
                node.json("-n", namespace, "get", "deployment", "recommender-router")["spec"]["replicas"]
                == spec["spec"]["traffic"]["routerReplicas"]
            ),
            timeout=30,
            what="the operator restoring the router's replicas",
        )
        wait_for(lambda: available(node, "recommender-router", namespace), timeout=60, what="the router back")
        time.sleep(3)
        scale_failures = client.failures(scaled)
        print(
            f"router scaled to 0: replicas restored by the operator; {len(scale_failures)} client failures", flush=True
        )
        assert len(scale_failures) <= RATE * GRACE_SECONDS

        # 2. Router Pods that cannot run (none can be scheduled): back to the primary after the grace period.
        node.kubectl("cordon", node_name)
        try:
            lost = time.time()
            node.kubectl("-n", namespace, "delete", "pods", "-l", "shadow.mlops.dev/role=router", "--wait=false")
            wait_for(lambda: selector_role(node, namespace) is None, timeout=GRACE_SECONDS + 30, what="back on v1")
            moved = time.time()
            status = node.json("-n", namespace, "get", "shadowdeployment", "recommender")["status"]
            [routing] = [c for c in status["conditions"] if c["type"] == "RouterAvailable"]
            assert (routing["status"], routing["reason"]) == ("False", "RoutedToPrimary"), routing
            assert node.json("-n", namespace, "get", "service", "recommender")["spec"] == service_before["spec"]
            time.sleep(5)
            outage = client.failures(lost, moved + 2)
            after = client.failures(moved + 2)
            print(
                f"no router Pod schedulable: Service back on v1 {moved - lost:.1f}s after the Pods went "
                f"(grace {GRACE_SECONDS}s); {len(outage)} client failures until then, {len(after)} after",
                flush=True,
            )
            assert moved - lost >= GRACE_SECONDS - 1
            assert len(outage) <= RATE * (GRACE_SECONDS + 5)
            assert len(after) <= 1, after  # kube-proxy's swap of the rules (see below); an outage would be many
        finally:
            node.kubectl("uncordon", node_name)
        wait_for(lambda: selector_role(node, namespace) == "router", timeout=120, what="the router serving again")
        back = time.time()
        time.sleep(5)
        # kube-proxy swapping the Service's rules can cost one new connection in flight (1 of ~200
        # once in three runs); an outage would be many.
        assert len(client.failures(back)) <= 1, "moving back to the router refuses (almost) nobody"
        node.kubectl("-n", namespace, "delete", "shadowdeployment", "recommender", "--timeout=60s")
    events_text = node.kubectl(
        "-n", namespace, "get", "events", "--field-selector", "involvedObject.kind=ShadowDeployment"
    ).stdout
    print(events_text, flush=True)
    assert "RoutedToPrimary" in events_text and "RoutedThroughRouter" in events_text
