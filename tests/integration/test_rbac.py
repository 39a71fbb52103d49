"""The operator runs as its own ServiceAccount: every request it made fits the generated ClusterRole."""

from __future__ import annotations

import pytest

from shadow_operator.kube.rbac import cluster_role

from .conftest import shadow_deployment, wait_phase
from .harness import OPERATOR_USER, apply_yaml, describe, wait_for
from .test_errors import _deployment, _service
from .test_routing import _builtin_with_existing_primary

pytestmark = pytest.mark.cluster


def granted(group: str, resource: str, verb: str) -> bool:
    return any(
        group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]
        for rule in cluster_role()["rules"]
    )


def test_every_request_of_the_operator_is_within_its_cluster_role(cluster, operator, namespace):
    # Exercise every kind of call: create, switch a Service, delete stale children, finalise.
    apply_yaml(cluster, [_deployment("recommender-v1"), _service("recommender-v1")], namespace)
    apply_yaml(cluster, [_builtin_with_existing_primary(namespace), shadow_deployment("other")], namespace)
    wait_phase(cluster, namespace, "recommender", "Deploying")
    cluster.kubectl(
        "-n", namespace, "patch", "shadowdeployment", "recommender", "--type", "merge",
        "-p", '{"spec": {"traffic": {"router": "istio"}}}',
    )  # fmt: skip
    wait_for(
        lambda: cluster.kubectl("-n", namespace, "get", "virtualservice", "recommender", check=False).returncode == 0
    )
    cluster.kubectl("-n", namespace, "delete", "shadowdeployment", "recommender", "other", "--timeout=30s")

    events = cluster.audit_events(user=OPERATOR_USER)
    assert len(events) > 50
    # Other tests delete their namespaces; a namespace being deleted refuses new objects with
    # a 403 too (the operator retries until its object goes). Those are not RBAC denials.
    namespace_deleted = {
        e["objectRef"]["name"]: e["requestReceivedTimestamp"]
        for e in cluster.audit_events()
        if e["verb"] == "delete" and e.get("objectRef", {}).get("resource") == "namespaces"
    }
    forbidden = [
        f"{describe(e)} at {e['requestReceivedTimestamp']}"
        for e in events
        if e.get("responseStatus", {}).get("code") == 403
        and not namespace_deleted.get(e["objectRef"].get("namespace"), "~") < e["requestReceivedTimestamp"]
    ]
    assert forbidden == []
    outside = set()
    for event in events:
        ref = event.get("objectRef")
        if not ref:
            continue  # discovery (/apis/...) needs no rule
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        if not granted(ref.get("apiGroup", ""), resource, event["verb"]):
            outside.add((ref.get("apiGroup", ""), resource, event["verb"]))
    assert outside == set()
    verbs_used = {
        (e["objectRef"].get("apiGroup", ""), e["objectRef"]["resource"], e["verb"])
        for e in events
        if e.get("objectRef")
    }
    # Server-side apply creates with a PATCH (audited as patch, answered 201) yet RBAC checks
    # `create` too: removing that verb from the role makes the first apply fail with 403.
    assert any(e["verb"] == "patch" and e.get("responseStatus", {}).get("code") == 201 for e in events)
    for needed in [("apps", "deployments", "patch"), ("", "services", "patch"), ("apps", "deployments", "delete"),
                   ("shadow.mlops.dev", "shadowdeployments", "list")]:  # fmt: skip
        assert needed in verbs_used, f"the scenario should have exercised {needed}"
