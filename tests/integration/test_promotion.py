"""Promotion on the real control plane: `shadowctl promote` refused until Passed, then the primary
runs the candidate and everything that shadowed it is gone; automatic promotion on the first Passed."""

from __future__ import annotations

import json

import pytest

from ..unit.report_factory import make_report
from .conftest import CONTRACT_SPEC, condition, get_json, mark_available, shadow_deployment, status_of, wait_phase
from .harness import apply_yaml, wait_for
from .test_analysis_job import shadowctl

pytestmark = pytest.mark.cluster

CANDIDATE = CONTRACT_SPEC["candidate"]["image"]
PRIMARY = CONTRACT_SPEC["primary"]["image"]
PROMOTE_ANNOTATION = "shadow.mlops.dev/promote"


def publish(cluster, namespace: str, name: str, result: str, reason: str, evaluated_at: str) -> None:
    """Write the report ConfigMap as the comparison job (`shadowctl analyze --publish`) would."""
    report = make_report(result=result, reason=reason)
    checks = report.verdict.checks if result == "Failed" else [c for c in report.verdict.checks if c.passed]
    verdict = report.verdict.model_copy(update={"evaluated_at": evaluated_at, "checks": checks})
    report = report.model_copy(update={"shadow": f"{namespace}/{name}", "candidate": CANDIDATE, "verdict": verdict})
    wait_for(lambda: get_json(cluster, namespace, "configmap", f"{name}-report"), what="the report ConfigMap")
    patch = json.dumps({"data": {"report.json": report.model_dump_json()}})
    cluster.kubectl("-n", namespace, "patch", "configmap", f"{name}-report", "--type", "merge", "-p", patch)


def image_of(cluster, namespace: str, deployment: str) -> str | None:
    body = get_json(cluster, namespace, "deployment", deployment)
    return body["spec"]["template"]["spec"]["containers"][0]["image"] if body else None


def shadowing(cluster, apps, namespace: str, name: str = "recommender", **changes) -> None:
    apply_yaml(cluster, [shadow_deployment(name, **changes)], namespace)
    wait_phase(cluster, namespace, name, "Deploying")
    for deployment in (f"{name}-primary", f"{name}-candidate"):
        mark_available(apps, namespace, deployment)
    wait_phase(cluster, namespace, name, "Shadowing")


def assert_promoted_and_torn_down(cluster, apps, namespace: str, name: str = "recommender") -> dict:
    wait_for(lambda: image_of(cluster, namespace, f"{name}-primary") == CANDIDATE, what="the primary on the candidate")
    primary = get_json(cluster, namespace, "deployment", f"{name}-primary")
    containers = primary["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["model"], "the recorder sidecar goes with the comparison"
    assert primary["spec"]["replicas"] == CONTRACT_SPEC["primary"]["replicas"], "the primary keeps its replicas"
    for kind, child in (
        ("deployment", f"{name}-candidate"),
        ("service", f"{name}-candidate"),
        ("virtualservice", name),
        ("destinationrule", f"{name}-candidate"),
        ("cronjob", f"{name}-analysis"),
    ):
        wait_for(lambda k=kind, c=child: get_json(cluster, namespace, k, c) is None, what=f"{kind} {child} deleted")
    mark_available(apps, namespace, f"{name}-primary")
    status = wait_for(
        lambda: (
            (s := status_of(cluster, namespace, name)).get("phase") == "Promoted"
            and condition(s, "Ready").get("reason") == "Promoted"
            and s
        ),
        what="phase Promoted with Ready True once the promoted primary is available",
    )
    assert condition(status, "Ready")["status"] == "True"
    assert condition(status, "Promoted")["status"] == "True"
    assert condition(status, "Mirroring")["status"] == "False"
    assert status["mirror"]["state"] == "Inactive"
    assert status["promotion"]["image"] == CANDIDATE and status["promotion"]["replaced"] == PRIMARY
    body = get_json(cluster, namespace, "shadowdeployment", name)
    assert body["spec"]["primary"]["image"] == PRIMARY, "the operator never changes the spec (GitOps owns it)"
    return status


def test_shadowctl_promote_is_refused_until_passed_then_promotes(cluster, operator, apps, namespace):
    shadowing(cluster, apps, namespace)
    refused = shadowctl(cluster.kubeconfig, "promote", "recommender", "-n", namespace)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"no verdict yet for {CANDIDATE}" in refused.stdout

    publish(cluster, namespace, "recommender", "Inconclusive", "CoverageIncomplete", "2025-03-03T10:00:00Z")
    wait_for(
        lambda: (status_of(cluster, namespace, "recommender").get("verdict") or {}).get("result") == "Inconclusive",
        what="the Inconclusive verdict in status",
    )
    refused = shadowctl(cluster.kubeconfig, "promote", "recommender", "-n", namespace)
    assert refused.returncode == 1
    assert "verdict is Inconclusive (CoverageIncomplete)" in refused.stdout
    annotations = get_json(cluster, namespace, "shadowdeployment", "recommender")["metadata"].get("annotations") or {}
    assert PROMOTE_ANNOTATION not in annotations, "a refused promote writes nothing"
    assert image_of(cluster, namespace, "recommender-primary") == PRIMARY

    # The annotation alone (what a pipeline sets) is refused by the operator too, and said so.
    cluster.kubectl("-n", namespace, "annotate", "shadowdeployment", "recommender", f"{PROMOTE_ANNOTATION}={CANDIDATE}")
    status = wait_for(
        lambda: (
            (c := condition(status_of(cluster, namespace, "recommender"), "Promoted")).get("status") == "False" and c
        ),
        what="the Promoted condition refusing",
    )
    assert status["reason"] == "PromotionRefused"
    assert "verdict is Inconclusive (CoverageIncomplete)" in status["message"]
    wait_for(
        lambda: any(
            e.get("reason") == "PromotionRefused" and "Inconclusive" in e.get("message", "")
            for e in (get_json(cluster, namespace, "events") or {"items": []})["items"]
        ),
        what="a PromotionRefused Event",
    )
    cluster.kubectl("-n", namespace, "annotate", "shadowdeployment", "recommender", f"{PROMOTE_ANNOTATION}-")
    assert image_of(cluster, namespace, "recommender-primary") == PRIMARY

    publish(cluster, namespace, "recommender", "Passed", "Passed", "2025-03-03T11:00:00Z")
    wait_phase(cluster, namespace, "recommender", "Passed")
    accepted = shadowctl(cluster.kubeconfig, "promote", "recommender", "-n", namespace, "--timeout", "60")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "promoted" in accepted.stdout
    status = assert_promoted_and_torn_down(cluster, apps, namespace)
    assert status["promotion"]["trigger"] == "manual"
    annotations = get_json(cluster, namespace, "shadowdeployment", "recommender")["metadata"].get("annotations") or {}
    assert PROMOTE_ANNOTATION not in annotations, "shadowctl promote removes its request once answered"
    events = (get_json(cluster, namespace, "events") or {"items": []})["items"]
    assert [e for e in events if e.get("reason") == "Promoted" and CANDIDATE in e.get("message", "")]


def test_automatic_promotion_on_the_first_passed_verdict(cluster, operator, apps, namespace):
    shadowing(cluster, apps, namespace, promotion={"mode": "automatic"})
    publish(cluster, namespace, "recommender", "Failed", "CandidateErrors", "2025-03-03T10:00:00Z")
    wait_phase(cluster, namespace, "recommender", "Failed")
    assert image_of(cluster, namespace, "recommender-primary") == PRIMARY, "a Failed verdict is never promoted"
    publish(cluster, namespace, "recommender", "Passed", "Passed", "2025-03-03T11:00:00Z")
    status = assert_promoted_and_torn_down(cluster, apps, namespace)
    assert status["promotion"]["trigger"] == "automatic"
