"""The demo's story through the operator on a real control plane (`make e2e`).

v1 already serves behind the Service `recommender`; a ShadowDeployment from examples/ puts v2 in
its shadow with the builtin router. Nothing runs Pods here, so the models and the router run as
local processes standing in for the Pods the operator asked for (the router from the very
router.json the operator wrote), the comparison job's command (from the CronJob the operator
made) runs locally under the job's own ServiceAccount, and `kubectl` shows the verdict.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time

import pytest
import yaml

from shadow_demo.replay import replay, schedule, week_start
from shadow_demo.stack import EXAMPLES, SHADOWCTL, Stack, free_port, scraped_up_to, start_prometheus
from shadow_operator.contract.report import REPORT_KEY

from .conftest import after_rollout_settled, condition, get_json, mark_available, wait_phase
from .harness import table, wait_for
from .prometheus_harness import ensure_prometheus

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

REQUESTS, SECONDS = 8000, 10


def failing_in_report(cluster, namespace: str) -> set[tuple[str, str, int | None, str]]:
    """(check, segment, hour, source) of every failing check in the published report (status keeps the first 40)."""
    report = json.loads(get_json(cluster, namespace, "configmap", "recommender-report")["data"][REPORT_KEY])
    checks = report["verdict"]["checks"]
    return {(c["name"], c["segment"], c["hour"], c["source"]) for c in checks if c.get("passed") is False}


def show(command: str, output: str) -> None:
    print(f"\n$ {command}\n{output.rstrip()}", flush=True)


def job_command(cronjob: dict, records: str) -> list[str]:
    """The comparison job's container command, reading the records the local router wrote.

    In a cluster the job downloads them from the `<name>-collector` Service; nothing resolves
    that name here, so the stand-ins keep their files (no collector) and the job reads those.
    tests/integration/test_collector.py runs the shipping path itself on loopback.
    """
    [container] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    args = list(container["args"])
    at = args.index("--records-from")
    del args[at : at + 2]
    return [*args, "--records", records]


def test_a_week_in_the_shadow_fails_v2_and_deleting_restores_v1s_routing(cluster, operator, apps, namespace, tmp_path):
    ensure_prometheus()
    applied = cluster.kubectl("-n", namespace, "apply", "-f", str(EXAMPLES / "recommender-v1.yaml")).stdout
    service_before = get_json(cluster, namespace, "service", "recommender")

    with Stack(tmp_path / "pods") as pods:
        admin_port = free_port()
        prometheus = start_prometheus(pods, [f"127.0.0.1:{admin_port}"])
        shadow = yaml.safe_load((EXAMPLES / "recommender.yaml").read_text())
        shadow["metadata"]["namespace"] = namespace
        shadow["spec"]["analysis"]["prometheus"]["url"] = prometheus
        (tmp_path / "recommender.yaml").write_text(yaml.safe_dump(shadow))
        applied += cluster.kubectl("-n", namespace, "apply", "-f", str(tmp_path / "recommender.yaml")).stdout
        show("kubectl apply -f examples/recommender-v1.yaml -f examples/recommender.yaml", applied)

        wait_phase(cluster, namespace, "recommender", "Deploying")
        for deployment in ("recommender-v1", "recommender-candidate", "recommender-router"):
            mark_available(apps, namespace, deployment)  # the kubelet's part
        wait_phase(cluster, namespace, "recommender", "Shadowing")
        after_rollout_settled()  # copies before that are not the candidate's evidence
        show("kubectl get shadowdeployments", cluster.kubectl("-n", namespace, "get", "shadowdeployments").stdout)

        # The Pods' stand-ins: the models, and the router run from the operator's own router.json.
        router_json = json.loads(get_json(cluster, namespace, "configmap", "recommender-router")["data"]["router.json"])
        assert router_json.pop("collector").startswith("http://recommender-collector.")  # see job_command
        v1, v2 = pods.model("v1"), pods.model("v2")
        port, _ = pods.router(router_json, v1, v2, tmp_path / "records", admin=admin_port)
        week = schedule(REQUESTS, week_start(time.time()))
        result = asyncio.run(replay("127.0.0.1", port, week, SECONDS))
        assert result.sent == len(week)
        assert result.statuses == {200: result.sent}, "users only ever get v1's answers"
        assert scraped_up_to(prometheus, time.time() + 0.5)
        pods.stop("router")

        # The comparison job's command, as the CronJob runs it, under the job's ServiceAccount.
        cronjob = get_json(cluster, namespace, "cronjob", "recommender-analysis")
        job_kubeconfig = cluster.service_account_kubeconfig(namespace, "recommender-analysis")
        job = subprocess.run(
            [SHADOWCTL, *job_command(cronjob, str(tmp_path / "records"))],
            env={**os.environ, "KUBECONFIG": str(job_kubeconfig)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert job.returncode == 0, job.stderr
        assert job.stdout.startswith("VERDICT  Failed (CandidateErrors)"), job.stdout[:400]

    status = wait_phase(cluster, namespace, "recommender", "Failed", timeout=30)
    listing = cluster.kubectl("-n", namespace, "get", "shadowdeployments").stdout
    show("kubectl get shadowdeployments", listing)
    [row] = table(listing)
    assert (row["PHASE"], row["VERDICT"]) == ("Failed", "CandidateErrors")

    first = status["verdict"]["checks"][0]
    # the cause, first in status, measured on the records over the whole period
    assert (first["name"], first["segment"], first["source"]) == ("errorRate", "history=<1", "records"), first
    assert "hour" not in first, first
    failing = failing_in_report(cluster, namespace)  # status keeps 40 checks; the report has them all
    assert ("errorRate", "history=<1", None, "records") in failing, failing  # the 8% without purchase history
    slower = {(name, "history=>=200", None, "records") for name in ("latencyP99Ratio", "latencyP50Ratio")}
    assert slower & failing  # collectors
    assert {("agreement", "all", hour, "records") for hour in (19, 20, 21, 22)} & failing  # the hourly trend
    assert ("errorRate", "all", None, "prometheus") in failing  # Prometheus saw the errors too
    assert condition(status, "Ready")["reason"] == "CandidateErrors"

    described = cluster.kubectl("-n", namespace, "describe", "shadowdeployment", "recommender").stdout
    show("kubectl describe shadowdeployment recommender", described)
    assert "history=<1" in described and "KeyError: 'purchase_history'" in described
    events = described[described.index("Events:") :]
    assert "CandidateErrors" in events, events

    report = subprocess.run(
        [SHADOWCTL, "report", "recommender", "-n", namespace, "-o", "summary"],
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    show("shadowctl report recommender -o summary", report.stdout)
    assert "KeyError: 'purchase_history'" in report.stdout

    switched = get_json(cluster, namespace, "service", "recommender")
    assert switched["spec"]["selector"] != service_before["spec"]["selector"]
    cluster.kubectl("-n", namespace, "delete", "shadowdeployment", "recommender", "--timeout=60s")
    restored = wait_for(
        lambda: (s := get_json(cluster, namespace, "service", "recommender"))["spec"] == service_before["spec"] and s,
        timeout=30,
        what="the Service restored to v1",
    )
    show(
        "kubectl delete shadowdeployment recommender && kubectl get service recommender -o jsonpath='{.spec.selector}'",
        json.dumps(restored["spec"]["selector"]),
    )


def test_istio_mode_recorders_give_the_job_both_sides_of_each_request(cluster, operator, apps, namespace, tmp_path):
    """Istio mode without Envoy: the recorder sidecars run locally from the operator's own config,
    and the test plays the mesh (the request to the primary's recorder, its mirrored copy with the
    same x-request-id to the candidate's). The job joins the one-sided records into the verdict."""
    shadow = yaml.safe_load((EXAMPLES / "recommender.yaml").read_text())
    shadow["metadata"]["namespace"] = namespace
    shadow["spec"]["traffic"] = {"router": "istio", "mirrorPercent": 100}
    shadow["spec"]["primary"] = {
        "image": "registry.example/recommender:v1",
        "args": ["python", "-m", "shadow_demo.serve", "--version", "v1", "--listen", "0.0.0.0:8080"],
        "port": 8080,
    }

    with Stack(tmp_path / "pods") as pods:
        admin_ports = {"primary": free_port(), "candidate": free_port()}
        prometheus = start_prometheus(pods, [f"127.0.0.1:{port}" for port in admin_ports.values()])
        shadow["spec"]["analysis"]["prometheus"]["url"] = prometheus
        (tmp_path / "recommender.yaml").write_text(yaml.safe_dump(shadow))
        cluster.kubectl("-n", namespace, "apply", "-f", str(tmp_path / "recommender.yaml"))
        wait_phase(cluster, namespace, "recommender", "Deploying")
        for deployment in ("recommender-primary", "recommender-candidate"):
            mark_available(apps, namespace, deployment)
        wait_phase(cluster, namespace, "recommender", "Shadowing")
        after_rollout_settled()  # copies before that are not the candidate's evidence

        # Each model's stand-in Pod: the model, and the recorder exactly as the operator's sidecar runs it.
        recorder_json = tmp_path / "recorder.json"
        configmap = get_json(cluster, namespace, "configmap", "recommender-recorder")
        recorder_json.write_text(configmap["data"]["recorder.json"])
        recorders = {}
        for role, version in (("primary", "v1"), ("candidate", "v2")):
            deployment = get_json(cluster, namespace, "deployment", f"recommender-{role}")
            [sidecar] = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "recorder"]
            args = list(sidecar["args"])
            args[args.index("--config") + 1] = str(recorder_json)
            args[args.index("--upstream") + 1] = f"http://127.0.0.1:{pods.model(version)}"
            args[args.index("--listen") + 1] = "127.0.0.1:0"
            args[args.index("--admin-listen") + 1] = f"127.0.0.1:{admin_ports[role]}"
            assert args[args.index("--role") + 1] == role
            # --collector "": no collector to ship to here (see job_command)
            words = pods.start(
                f"recorder-{role}", [SHADOWCTL, *args, "--records", str(tmp_path / role), "--collector", ""]
            )
            recorders[role] = int(words[1])

        # The mesh's part: every request to the primary, and the same request (same id) mirrored.
        week = schedule(REQUESTS, week_start(time.time()))
        served = asyncio.run(replay("127.0.0.1", recorders["primary"], week, SECONDS))
        mirrored = asyncio.run(replay("127.0.0.1", recorders["candidate"], week, SECONDS / 2))
        assert served.statuses == {200: len(week)}
        assert mirrored.statuses[500] > 0.05 * len(week)  # v2's KeyError, answered to the mesh, not to users
        assert scraped_up_to(prometheus, time.time() + 0.5)
        pods.stop("recorder-primary")
        pods.stop("recorder-candidate")

        cronjob = get_json(cluster, namespace, "cronjob", "recommender-analysis")
        args = job_command(cronjob, str(tmp_path / "primary"))
        args.insert(args.index("--records") + 2, str(tmp_path / "candidate"))
        job = subprocess.run(
            [SHADOWCTL, *args],
            env={
                **os.environ,
                "KUBECONFIG": str(cluster.service_account_kubeconfig(namespace, "recommender-analysis")),
            },
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert job.returncode == 0, job.stderr
        show("shadowctl analyze (one-sided records from both recorders)", job.stdout[:1500])

    status = wait_phase(cluster, namespace, "recommender", "Failed", timeout=30)
    assert status["coverage"]["samples"] == len(week), "every request joined into one pair"
    failing = failing_in_report(cluster, namespace)
    assert ("errorRate", "history=<1", None, "records") in failing
    assert ("errorRate", "all", None, "prometheus") in failing  # both recorders' metrics, by role
    assert "UnpairedRecord" not in job.stdout
