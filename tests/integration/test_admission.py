"""The admission webhook on the real API server: a ShadowDeployment asks only for what its author may do.

Users are played by impersonation (`kubectl --as`), so the API server hands the webhook their real
userInfo and answers the operator's SubjectAccessReviews from real RBAC.
"""

from __future__ import annotations

import copy
import json

import pytest

from .conftest import CONTRACT_SPEC, shadow_deployment
from .harness import wait_for

pytestmark = pytest.mark.cluster

AUTHOR = "alice@example.com"
SHADOW_RIGHTS = {
    "apiGroups": ["shadow.mlops.dev"],
    "resources": ["shadowdeployments"],
    "verbs": ["get", "list", "create", "update", "patch"],
}
DEPLOYMENT_RIGHTS = {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["create", "get"]}
ISTIO_RIGHTS = {
    "apiGroups": ["networking.istio.io"],
    "resources": ["virtualservices", "destinationrules"],
    "verbs": ["create"],
}
SERVICE_CREATE = {"apiGroups": [""], "resources": ["services"], "verbs": ["create"]}


def grant(cluster, namespace: str, name: str, rules: list[dict], user: str = AUTHOR, group: str | None = None):
    subject = {"kind": "Group", "name": group} if group else {"kind": "User", "name": user}
    documents = [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name}, "rules": rules},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{**subject, "apiGroup": "rbac.authorization.k8s.io"}],
        },
    ]
    for document in documents:
        cluster.kubectl("-n", namespace, "apply", "-f", "-", stdin=json.dumps(document))


def as_author(cluster, namespace: str, verb: str, body: dict, *flags: str):
    return cluster.kubectl(
        "-n", namespace, verb, "--as", AUTHOR, *flags, "-f", "-", stdin=json.dumps(body), check=False
    )  # fmt: skip


def exists(cluster, namespace: str, name: str) -> bool:
    return cluster.kubectl("-n", namespace, "get", "shadowdeployment", name, check=False).returncode == 0


def builtin(name: str, service: str) -> dict:
    spec = copy.deepcopy(CONTRACT_SPEC)
    spec["traffic"] = {"router": "builtin", "mirrorPercent": 100}
    spec["service"] = {"name": service, "port": 80}
    return shadow_deployment(name, spec)


def make_service(cluster, namespace: str, name: str) -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    cluster.kubectl("-n", namespace, "apply", "-f", "-", stdin=json.dumps(service))


def test_an_author_who_may_not_run_deployments_is_refused_with_each_field_named(cluster, operator, namespace):
    grant(cluster, namespace, "author", [SHADOW_RIGHTS])
    body = shadow_deployment("recommender")  # istio mode, operator-run primary, Service absent
    for flags in (("--dry-run=server",), ()):
        result = as_author(cluster, namespace, "create", body, *flags)
        assert result.returncode != 0, "the webhook admitted an author with no right to run Deployments"
        message = result.stderr
        assert f"spec.candidate.image and spec.primary.image: {AUTHOR} may not create deployments" in message
        assert f"kubectl auth can-i create deployments.apps -n {namespace} --as {AUTHOR}" in message
        assert f"spec.service.name: {AUTHOR} may not create services" in message
        assert "spec.traffic.router" in message and "virtualservices" in message and "destinationrules" in message
    assert not exists(cluster, namespace, "recommender")


def test_an_author_cannot_put_their_model_behind_a_service_they_may_not_edit(cluster, operator, namespace):
    make_service(cluster, namespace, "payments")
    grant(cluster, namespace, "author", [SHADOW_RIGHTS, DEPLOYMENT_RIGHTS, SERVICE_CREATE])
    refused = as_author(cluster, namespace, "create", builtin("capture", "payments"))
    assert refused.returncode != 0
    assert f"spec.service.name: {AUTHOR} may not patch services/payments in namespace {namespace}" in refused.stderr
    assert "switches its selector to the router" in refused.stderr
    assert not exists(cluster, namespace, "capture")
    # The same author may shadow a Service that does not exist yet (the operator creates it)...
    assert as_author(cluster, namespace, "create", builtin("fresh", "recommender")).returncode == 0
    # ...and the Service named, once they may edit it themselves.
    grant(cluster, namespace, "payments-owner", [{"apiGroups": [""], "resources": ["services"],
                                                  "resourceNames": ["payments"], "verbs": ["patch"]}])  # fmt: skip
    admitted = as_author(cluster, namespace, "create", builtin("capture", "payments"))
    assert admitted.returncode == 0, admitted.stderr


def test_a_changed_spec_is_judged_again_and_the_operators_own_updates_are_not(cluster, operator, namespace):
    make_service(cluster, namespace, "payments")
    make_service(cluster, namespace, "billing")
    grant(cluster, namespace, "author", [SHADOW_RIGHTS, DEPLOYMENT_RIGHTS])
    grant(cluster, namespace, "payments-owner", [{"apiGroups": [""], "resources": ["services"],
                                                  "resourceNames": ["payments"], "verbs": ["patch"]}])  # fmt: skip
    body = builtin("recommender", "payments")
    assert as_author(cluster, namespace, "create", body).returncode == 0

    def finalised() -> bool:
        found = json.loads(
            cluster.kubectl("-n", namespace, "get", "shadowdeployment", "recommender", "-o", "json").stdout
        )
        return bool(found["metadata"].get("finalizers"))

    # The operator's own update (its finalizer) leaves the spec alone and passes admission.
    wait_for(finalised, timeout=30, what="the operator's finalizer on an admitted object")

    moved = copy.deepcopy(body)
    moved["spec"]["service"]["name"] = "billing"
    refused = as_author(cluster, namespace, "apply", moved)
    assert refused.returncode != 0
    assert f"may not patch services/billing in namespace {namespace}" in refused.stderr
    stored = json.loads(cluster.kubectl("-n", namespace, "get", "shadowdeployment", "recommender", "-o", "json").stdout)
    assert stored["spec"]["service"]["name"] == "payments"

    labelled = cluster.kubectl(
        "-n", namespace, "label", "--as", AUTHOR, "shadowdeployment", "recommender", "team=ml", check=False
    )  # fmt: skip
    assert labelled.returncode == 0, labelled.stderr


def test_rights_held_through_a_group_count(cluster, operator, namespace):
    """The review carries the user's groups: access granted to a group admits its members."""
    grant(cluster, namespace, "author", [SHADOW_RIGHTS])
    grant(cluster, namespace, "ml-team", [DEPLOYMENT_RIGHTS, SERVICE_CREATE, ISTIO_RIGHTS], group="ml-team")
    body = shadow_deployment("recommender")
    alone = as_author(cluster, namespace, "create", body, "--dry-run=server")
    assert alone.returncode != 0
    member = as_author(
        cluster, namespace, "create", body, "--as-group", "ml-team", "--as-group", "system:authenticated"
    )
    assert member.returncode == 0, member.stderr
