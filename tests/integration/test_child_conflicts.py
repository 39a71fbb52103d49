"""Children the operator cannot or may not write, on the real API server: a name already taken by someone
else's object (left untouched, ChildNameConflict), a child the API server refuses by schema (422) and one RBAC
refuses (403): each ends in a status condition that names it, never in a retry storm or a takeover."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import kubernetes
import pytest

from shadow_operator.contract import reasons
from shadow_operator.controller.reconcile import Reconciler
from shadow_operator.kube.client import Kube

from .conftest import condition, get_json, shadow_deployment, wait_phase
from .harness import OPERATOR_USER, apply_yaml, describe, now, wait_for

pytestmark = pytest.mark.cluster


def _squatter(name: str) -> dict[str, Any]:
    """A Deployment someone else runs under the name the operator would give its candidate."""
    labels = {"app": "someone-else"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels, "annotations": {"owner": "team-search"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": "registry.example/search:7"}]},
            },
        },
    }


def test_a_child_name_taken_by_someone_elses_deployment_is_left_untouched(cluster, operator, namespace):
    apply_yaml(cluster, [_squatter("recommender-candidate")], namespace)
    before = get_json(cluster, namespace, "deployment", "recommender-candidate")
    started = now()
    apply_yaml(cluster, [shadow_deployment("recommender")], namespace)

    status = wait_phase(cluster, namespace, "recommender", "Error")
    ready, stalled = condition(status, "Ready"), condition(status, "Stalled")
    assert (ready["status"], ready["reason"]) == ("False", reasons.CHILD_NAME_CONFLICT)
    assert ready["message"] == (
        "Deployment recommender-candidate already exists and is not owned by ShadowDeployment recommender; "
        "rename or delete it, or rename the ShadowDeployment."
    )
    assert (stalled["status"], stalled["reason"]) == ("True", reasons.CHILD_NAME_CONFLICT)

    after = get_json(cluster, namespace, "deployment", "recommender-candidate")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["spec"] == before["spec"] and after["metadata"]["labels"] == before["metadata"]["labels"]
    assert after["metadata"]["annotations"] == before["metadata"]["annotations"]
    assert "ownerReferences" not in after["metadata"]
    writes = [w for w in cluster.writes(started) if w.split()[1] == "deployments"]
    assert not [w for w in writes if f"{namespace}/recommender-candidate " in w], writes

    # Once the name is free, the operator's own candidate takes it.
    cluster.kubectl("-n", namespace, "delete", "deployment", "recommender-candidate")
    wait_phase(cluster, namespace, "recommender", "Deploying", timeout=45)
    mine = get_json(cluster, namespace, "deployment", "recommender-candidate")
    assert [ref["name"] for ref in mine["metadata"]["ownerReferences"]] == ["recommender"]


def test_a_child_name_taken_by_someone_elses_configmap_is_seen_without_a_get_and_left_untouched(
    cluster, operator, namespace
):
    """ConfigMaps are watched whole by the operator's label only; the names others hold come from a
    metadata-only watch (kube/cache.py), so the conflict is found without asking the API server."""
    cluster.kubectl("-n", namespace, "create", "configmap", "recommender-report", "--from-literal=mine=yes")
    before = get_json(cluster, namespace, "configmap", "recommender-report")
    started = now()
    apply_yaml(cluster, [shadow_deployment("recommender")], namespace)

    status = wait_phase(cluster, namespace, "recommender", "Error")
    ready = condition(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", reasons.CHILD_NAME_CONFLICT)
    assert ready["message"].startswith("ConfigMap recommender-report already exists and is not owned by")
    after = get_json(cluster, namespace, "configmap", "recommender-report")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["data"] == {"mine": "yes"} and "ownerReferences" not in after["metadata"]
    requests = [describe(e) for e in cluster.audit_events(started, OPERATOR_USER) if e["verb"] != "watch"]
    assert not [r for r in requests if f"{namespace}/recommender-report" in r], requests
    assert not [r for r in requests if r.startswith("get configmaps")], requests  # no GET before a create


def test_a_child_the_api_server_refuses_by_schema_ends_in_apply_failed(cluster, operator, namespace):
    """The operator's own checks pass, the API server's do not (422): status carries the server's message."""
    spec = shadow_deployment("recommender")["spec"]
    spec["candidate"] = {**spec["candidate"], "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}
    started = now()
    apply_yaml(cluster, [shadow_deployment("recommender", spec)], namespace)

    status = wait_phase(cluster, namespace, "recommender", "Error")
    ready = condition(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", reasons.APPLY_FAILED)
    assert 'Deployment.apps "recommender-candidate" is invalid' in ready["message"]
    assert "must be less than or equal to cpu limit" in ready["message"], ready["message"]
    assert condition(status, "Stalled")["status"] == "True"
    refused = [
        describe(e)
        for e in cluster.audit_events(started, OPERATOR_USER)
        if e.get("objectRef", {}).get("namespace") == namespace and e.get("responseStatus", {}).get("code") == 422
    ]
    assert refused and all("deployments" in r and "recommender-candidate" in r for r in refused), refused
    assert get_json(cluster, namespace, "deployment", "recommender-candidate") is None


class ShadowDeploymentInMemory(Kube):
    """Children go to the real API server; the ShadowDeployment itself is kept here, so the session's running
    operator does not reconcile it too (it would create the children this test's identity may not)."""

    def __init__(self, api_client: kubernetes.client.ApiClient, body: dict[str, Any]) -> None:
        super().__init__(api_client)
        self.body = body
        self.events: list[tuple[str, str]] = []

    def get(self, kind: str, namespace: str, name: str, cached: bool = True) -> dict[str, Any] | None:
        if kind == "ShadowDeployment":
            return copy.deepcopy(self.body)
        return super().get(kind, namespace, name, cached=cached)

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.body["status"] = {k: v for k, v in {**(self.body.get("status") or {}), **status}.items() if v is not None}

    def post_event(self, involved, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason))


def test_a_child_rbac_refuses_ends_in_apply_failed(cluster, namespace):
    """Under a ServiceAccount that may read but not write (403 from the real authorizer)."""
    account = f"reader-{uuid.uuid4().hex[:6]}"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": account},
        "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": account},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
    }
    cluster.kubectl("-n", namespace, "create", "serviceaccount", account)
    apply_yaml(cluster, [role, binding], namespace)
    configuration = kubernetes.client.Configuration()
    kubeconfig = cluster.service_account_kubeconfig(namespace, account)
    kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)

    body = shadow_deployment("recommender")
    body["metadata"].update(namespace=namespace, uid=str(uuid.uuid4()), generation=1)
    kube = ShadowDeploymentInMemory(kubernetes.client.ApiClient(configuration), body)
    reconciler = Reconciler(kube, "shadow-operator:test")
    # The binding takes effect when the authorizer's informer sees it: until then even reads are refused.
    wait_for(lambda: _can_read(kube, namespace), timeout=30, what="the reader's Role in effect")

    reconciler.reconcile(body)  # returns: a 403 is not retried as a transient error

    status = kube.body["status"]
    assert status["phase"] == "Error"
    ready = condition(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", reasons.APPLY_FAILED)
    assert "is forbidden" in ready["message"], ready["message"]
    assert f'User "system:serviceaccount:{namespace}:{account}" cannot patch resource' in ready["message"]
    assert condition(status, "Stalled")["status"] == "True"
    assert kube.events == [("Warning", reasons.APPLY_FAILED)]
    listing = json.loads(
        cluster.kubectl("-n", namespace, "get", "deployments,configmaps,services", "-o", "json").stdout
    )
    assert [i["metadata"]["name"] for i in listing["items"] if i["metadata"].get("ownerReferences")] == []


def _can_read(kube: Kube, namespace: str) -> bool:
    try:
        kube.get("ConfigMap", namespace, "nothing-here")
    except Exception:
        return False
    return True
