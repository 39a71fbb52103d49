"""Specs only the operator can find wrong: phase Error, a clear message, an Event, no storm, recovery."""

from __future__ import annotations

import time

import pytest

from .conftest import condition, get_json, mark_available, shadow_deployment, status_of, wait_phase
from .harness import apply_yaml, now, wait_for

pytestmark = pytest.mark.cluster


def events_for(cluster, namespace: str, name: str) -> list[dict]:
    items = (get_json(cluster, namespace, "events") or {"items": []})["items"]
    return [e for e in items if e["involvedObject"].get("name") == name]


def test_missing_referenced_deployment_is_an_error_that_recovers_once_it_exists(cluster, operator, apps, namespace):
    spec = shadow_deployment("recommender")["spec"]
    spec["primary"] = {"deploymentRef": {"name": "recommender-v1"}}
    spec["service"] = {"name": "recommender-v1", "port": 80}
    apply_yaml(cluster, [shadow_deployment("recommender", spec)], namespace)

    status = wait_phase(cluster, namespace, "recommender", "Error")
    ready = condition(status, "Ready")
    assert ready["status"] == "False"
    assert ready["reason"] == "PrimaryDeploymentNotFound"
    assert "spec.primary.deploymentRef: Deployment recommender-v1 not found" in ready["message"]
    assert condition(status, "Stalled")["status"] == "True"
    warning = wait_for(lambda: events_for(cluster, namespace, "recommender"), what="an Event")
    assert [(e["type"], e["reason"]) for e in warning] == [("Warning", "PrimaryDeploymentNotFound")]

    # No retry storm: while nothing changes, the operator writes nothing at all.
    window_start = now()
    time.sleep(operator.resync_seconds * 3)
    assert [w for w in cluster.writes(window_start) if f" {namespace}/" in w] == []

    # Fixing the world (here: the Deployment and its Service appear) recovers without touching the object.
    apply_yaml(cluster, [_deployment("recommender-v1"), _service("recommender-v1")], namespace)
    status = wait_phase(cluster, namespace, "recommender", "Deploying")
    assert condition(status, "Stalled")["status"] == "False"
    mark_available(apps, namespace, "recommender-v1")
    mark_available(apps, namespace, "recommender-candidate")
    wait_phase(cluster, namespace, "recommender", "Shadowing")
    referenced = get_json(cluster, namespace, "deployment", "recommender-v1")
    assert not referenced["metadata"].get("ownerReferences"), "a referenced primary is never owned"


def test_unparseable_json_path_names_the_field_and_fixing_the_spec_recovers(cluster, operator, namespace):
    recording = dict(shadow_deployment("recommender")["spec"]["recording"])
    recording["features"] = ["$.features.purchase_count", "$.features[*].last_seen_days"]
    apply_yaml(cluster, [shadow_deployment("recommender", recording=recording)], namespace)

    ready = condition(wait_phase(cluster, namespace, "recommender", "Error"), "Ready")
    assert ready["reason"] == "InvalidJsonPath"
    assert ready["message"].startswith("spec.recording.features[1]: JSON path '$.features[*].last_seen_days'")
    assert get_json(cluster, namespace, "deployment", "recommender-candidate") is None, "nothing applied"

    cluster.kubectl(
        "-n", namespace, "patch", "shadowdeployment", "recommender", "--type", "json",
        "-p", '[{"op": "replace", "path": "/spec/recording/features/1", "value": "$.features.last_seen_days"}]',
    )  # fmt: skip
    wait_phase(cluster, namespace, "recommender", "Deploying")


def test_rules_beyond_the_schema_end_in_error_not_in_a_crash(cluster, operator, namespace):
    recording = dict(shadow_deployment("recommender")["spec"]["recording"])
    recording["segments"] = [{"name": "history", "path": "$.features.purchase_count", "bounds": [100, 1]}]
    apply_yaml(cluster, [shadow_deployment("recommender", recording=recording)], namespace)
    ready = condition(wait_phase(cluster, namespace, "recommender", "Error"), "Ready")
    assert ready["reason"] == "InvalidSpec"
    assert "spec.recording.segments[0]" in ready["message"] and "ascending" in ready["message"]
    assert operator.alive()


def test_two_shadow_deployments_cannot_claim_one_service(cluster, operator, namespace):
    apply_yaml(cluster, [shadow_deployment("first")], namespace)
    wait_phase(cluster, namespace, "first", "Deploying")
    apply_yaml(cluster, [shadow_deployment("second")], namespace)

    ready = condition(wait_phase(cluster, namespace, "second", "Error"), "Ready")
    assert ready["reason"] == "ServiceClaimed"
    assert "already shadowed by ShadowDeployment first" in ready["message"]
    assert status_of(cluster, namespace, "first")["phase"] == "Deploying", "the first keeps going"

    cluster.kubectl("-n", namespace, "delete", "shadowdeployment", "first")
    wait_phase(cluster, namespace, "second", "Deploying", timeout=45)


def test_a_service_port_that_does_not_exist_is_reported(cluster, operator, namespace):
    apply_yaml(cluster, [_deployment("recommender-v1"), _service("recommender-v1")], namespace)
    spec = shadow_deployment("recommender")["spec"]
    spec["primary"] = {"deploymentRef": {"name": "recommender-v1"}}
    spec["service"] = {"name": "recommender-v1", "port": 8081}
    apply_yaml(cluster, [shadow_deployment("recommender", spec)], namespace)
    ready = condition(wait_phase(cluster, namespace, "recommender", "Error"), "Ready")
    assert ready["reason"] == "ServicePortMismatch"
    assert "has no port 8081 (its ports: 80)" in ready["message"]


def _deployment(name: str) -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "model", "image": "registry.example/recsys:1.4.2"}]},
            },
        },
    }


def _service(name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }
