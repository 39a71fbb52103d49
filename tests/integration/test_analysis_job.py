"""The comparison job against the cluster: its own identity, its report, the verdict in status."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ..support.week import KEY_ERROR, write_week
from ..unit.report_factory import make_report
from .conftest import (
    CONTRACT_SPEC,
    after_rollout_settled,
    condition,
    get_json,
    mark_available,
    shadow_deployment,
    status_of,
    wait_phase,
)
from .harness import apply_yaml, table, wait_for

pytestmark = pytest.mark.cluster

SEGMENTED_RECORDING = {
    "predictionPath": "$.prediction",
    "segments": [{"name": "history", "path": "$.features.purchase_count", "bounds": [1, 100]}],
    "features": ["$.features.purchase_count", "$.features.last_seen_days"],
}


def shadowctl(kubeconfig, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    return subprocess.run(
        [sys.executable, "-m", "shadow_operator.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


def kstatus(body: dict) -> str:
    """kstatus's generic rules for a custom resource, as Flux applies them."""
    status = body.get("status") or {}
    if status.get("observedGeneration") != body["metadata"]["generation"]:
        return "InProgress"
    conditions = {c["type"]: c for c in status.get("conditions", [])}
    if conditions.get("Reconciling", {}).get("status") == "True":
        return "InProgress"
    if conditions.get("Stalled", {}).get("status") == "True":
        return "Failed"
    if conditions.get("Ready", {}).get("status") == "False":
        return "InProgress"
    return "Current"


def test_the_job_publishes_a_failed_verdict_that_reaches_status_and_kubectl(
    cluster, operator, apps, namespace, tmp_path
):
    apply_yaml(cluster, [shadow_deployment("recommender", recording=SEGMENTED_RECORDING)], namespace)
    wait_phase(cluster, namespace, "recommender", "Deploying")
    for deployment in ("recommender-primary", "recommender-candidate"):
        mark_available(apps, namespace, deployment)
    wait_phase(cluster, namespace, "recommender", "Shadowing")
    shadowing = get_json(cluster, namespace, "shadowdeployment", "recommender")
    assert kstatus(shadowing) == "Current"
    assert condition(shadowing["status"], "Analyzed")["reason"] == "AwaitingAnalysis"

    records = tmp_path / "records"
    write_week(records, shadow=f"{namespace}/recommender", received=after_rollout_settled())
    # The job runs as the ServiceAccount the operator made for it: the RBAC it has is what it gets.
    job_kubeconfig = cluster.service_account_kubeconfig(namespace, "recommender-analysis")
    result = shadowctl(
        job_kubeconfig, "analyze", "--namespace", namespace, "--name", "recommender",
        "--records", str(records), "--publish", "--prometheus", "http://127.0.0.1:9",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("VERDICT  Failed (CandidateErrors)")

    status = wait_phase(cluster, namespace, "recommender", "Failed", timeout=30)
    verdict = status["verdict"]
    assert (verdict["result"], verdict["reason"]) == ("Failed", "CandidateErrors")
    failing = [c for c in verdict["checks"] if c.get("passed") is False]
    assert any((c["name"], c["segment"]) == ("errorRate", "history=<1") for c in failing)
    # Prometheus was unreachable: said in the report, and it cannot turn a decisive failure into a pass.
    ready = condition(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "CandidateErrors")
    assert condition(status, "Stalled")["status"] == "True"
    assert condition(status, "Analyzed")["reason"] == "CandidateErrors"
    assert status["coverage"]["samples"] == 168 * 40
    body = get_json(cluster, namespace, "shadowdeployment", "recommender")
    assert kstatus(body) == "Failed"

    [row] = table(cluster.kubectl("-n", namespace, "get", "shadowdeployments").stdout)
    assert (row["PHASE"], row["VERDICT"]) == ("Failed", "CandidateErrors")

    shown = shadowctl(cluster.kubeconfig, "report", "recommender", "--namespace", namespace)
    assert shown.returncode == 0, shown.stderr
    assert KEY_ERROR in shown.stdout and "history=<1" in shown.stdout
    as_json = json.loads(shadowctl(cluster.kubeconfig, "report", "recommender", "-n", namespace, "-o", "json").stdout)
    assert as_json["queries"] == {} and any(p["code"] == "MetricsError" for p in as_json["problems"])


def test_a_new_candidate_is_not_judged_by_the_old_report(cluster, operator, apps, namespace, tmp_path):
    apply_yaml(cluster, [shadow_deployment("recommender", recording=SEGMENTED_RECORDING)], namespace)
    for deployment in ("recommender-primary", "recommender-candidate"):
        mark_available(apps, namespace, deployment)
    wait_phase(cluster, namespace, "recommender", "Shadowing")
    records = tmp_path / "records"
    write_week(records, shadow=f"{namespace}/recommender", received=after_rollout_settled())
    result = shadowctl(
        cluster.kubeconfig, "analyze", "-n", namespace, "--name", "recommender", "--records", str(records), "--publish"
    )
    assert result.returncode == 0, result.stderr
    wait_phase(cluster, namespace, "recommender", "Failed")

    cluster.kubectl(
        "-n", namespace, "patch", "shadowdeployment", "recommender", "--type", "merge",
        "-p", '{"spec": {"candidate": {"image": "registry.example/recsys:2.0.1"}}}',
    )  # fmt: skip
    wait_for(
        lambda: (
            get_json(cluster, namespace, "deployment", "recommender-candidate")["spec"]["template"]["spec"][
                "containers"
            ][0]["image"]
            == "registry.example/recsys:2.0.1"
        ),
        what="the new candidate rolled out",
    )
    mark_available(apps, namespace, "recommender-candidate")
    status = wait_phase(cluster, namespace, "recommender", "Shadowing")
    assert "verdict" not in status
    assert condition(status, "Analyzed")["reason"] == "AwaitingAnalysis"


def test_only_the_objects_own_job_can_publish_its_verdict(cluster, operator, apps, namespace):
    """Issue 11: another object's job could publish Passed for this one. Now the operator makes the
    report ConfigMap, each job may write only its own, and a report for another object is ignored."""
    apply_yaml(
        cluster,
        [shadow_deployment("recommender"), shadow_deployment("other", service={"name": "other", "port": 80})],
        namespace,
    )
    for deployment in ("recommender-primary", "recommender-candidate"):
        mark_available(apps, namespace, deployment)
    wait_phase(cluster, namespace, "recommender", "Shadowing")
    uid = get_json(cluster, namespace, "shadowdeployment", "recommender")["metadata"]["uid"]
    wait_for(lambda: get_json(cluster, namespace, "configmap", "recommender-report"), what="the report ConfigMap")
    report_map = get_json(cluster, namespace, "configmap", "recommender-report")
    [owner] = report_map["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("ShadowDeployment", uid, True)
    assert not report_map.get("data"), "the operator creates the report ConfigMap empty; only the job writes it"

    # The other object's job identity can neither read this object nor write its report.
    wait_for(lambda: get_json(cluster, namespace, "rolebinding", "other-analysis"), what="other's RoleBinding")
    other_job = cluster.service_account_kubeconfig(namespace, "other-analysis")
    forged = make_report(result="Passed", reason="AllChecksPassed").model_copy(
        update={"shadow": f"{namespace}/recommender", "candidate": CONTRACT_SPEC["candidate"]["image"]}
    )
    patch = json.dumps({"data": {"report.json": forged.model_dump_json()}})
    denied = cluster.kubectl(
        "-n", namespace, "patch", "configmap", "recommender-report", "--type", "merge", "-p", patch,
        kubeconfig=other_job, check=False,
    )  # fmt: skip
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), denied.stdout + denied.stderr

    def can_i(kubeconfig, verb: str, what: str) -> str:
        answer = cluster.kubectl("-n", namespace, "auth", "can-i", verb, what, kubeconfig=kubeconfig, check=False)
        return answer.stdout.strip()

    for verb, what in (("get", "shadowdeployments.shadow.mlops.dev/recommender"), ("create", "configmaps")):
        assert can_i(other_job, verb, what) == "no", f"other's job may {verb} {what}"
    own_job = cluster.service_account_kubeconfig(namespace, "recommender-analysis")
    for verb in ("get", "patch", "update"):
        assert can_i(own_job, verb, "configmaps/recommender-report") == "yes", f"the job may not {verb} its report"
    assert can_i(own_job, "patch", "configmaps/other-report") == "no", "a job may write another object's report"
    assert can_i(own_job, "get", "shadowdeployments.shadow.mlops.dev/recommender") == "yes"

    # A report naming another object, even in the right ConfigMap, is ignored and said so.
    misnamed = forged.model_copy(update={"shadow": f"{namespace}/other"})
    patch = json.dumps({"data": {"report.json": misnamed.model_dump_json()}})
    cluster.kubectl("-n", namespace, "patch", "configmap", "recommender-report", "--type", "merge", "-p", patch)
    wait_for(
        lambda: (
            "UntrustedReport"
            in (condition(status_of(cluster, namespace, "recommender"), "Analyzed").get("message") or "")
        ),
        what="the Analyzed condition saying the report is ignored",
    )
    status = status_of(cluster, namespace, "recommender")
    assert status["phase"] == "Shadowing" and "verdict" not in status
    events = get_json(cluster, namespace, "events") or {"items": []}
    untrusted = [e for e in events["items"] if e.get("reason") == "UntrustedReport"]
    assert len(untrusted) == 1 and f"{namespace}/other" in untrusted[0]["message"]
