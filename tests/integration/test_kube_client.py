"""The operator's API client (kube/client.py) on the real API server: the paths only errors reach.

Secrets read for notification URLs, refusals (403) on reads, watches and deletes, a delete whose
uid precondition no longer holds, SubjectAccessReviews carrying a user's uid, groups and extra,
and a webhook configuration that is not installed.
"""

from __future__ import annotations

import base64
import json
import uuid

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from shadow_operator.kube.client import Kube, KubeError, _error

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def admin(cluster) -> Kube:
    return Kube(cluster.api_client())


@pytest.fixture
def stranger(cluster, namespace) -> Kube:
    """A ServiceAccount with no grant at all: every read and write is refused."""
    cluster.kubectl("-n", namespace, "create", "serviceaccount", "stranger")
    kubeconfig = cluster.service_account_kubeconfig(namespace, "stranger")
    return Kube(kubernetes.config.new_client_from_config(config_file=str(kubeconfig)))


def _secret(cluster, namespace: str, name: str, data: dict[str, bytes]) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
    }
    cluster.kubectl("-n", namespace, "create", "-f", "-", stdin=json.dumps(body))


def test_a_secret_key_is_read_decoded_and_stripped(admin, cluster, namespace):
    _secret(cluster, namespace, "hooks", {"url": b"https://hooks.example/T0/B0\n"})
    assert admin.secret_value(namespace, "hooks", "url") == "https://hooks.example/T0/B0"


def test_a_missing_secret_key_or_secret_is_a_404_naming_what_is_missing(admin, cluster, namespace):
    _secret(cluster, namespace, "hooks", {"url": b"https://hooks.example/"})
    with pytest.raises(KubeError) as missing_key:
        admin.secret_value(namespace, "hooks", "webhook")
    assert missing_key.value.status == 404
    assert f"Secret {namespace}/hooks has no key 'webhook'" in str(missing_key.value)
    with pytest.raises(KubeError) as missing_secret:
        admin.secret_value(namespace, "nowhere", "url")
    assert missing_secret.value.status == 404
    assert "nowhere" in str(missing_secret.value)  # the API server's own message names the Secret


def test_a_secret_value_that_is_not_text_is_refused_not_decoded_into_garbage(admin, cluster, namespace):
    _secret(cluster, namespace, "hooks", {"url": b"\xff\xfe\x00binary"})
    with pytest.raises(KubeError) as error:
        admin.secret_value(namespace, "hooks", "url")
    assert error.value.status == 422
    assert "is not UTF-8 text" in str(error.value)


def test_reads_and_watches_without_a_grant_are_403_with_the_servers_reason(stranger, namespace):
    with pytest.raises(KubeError) as read:
        stranger.secret_value(namespace, "hooks", "url")
    assert read.value.status == 403
    assert "forbidden" in str(read.value)
    with pytest.raises(KubeError) as watch:
        next(stranger.watch_all("Deployment", "0", timeout_seconds=1))
    assert watch.value.status == 403
    assert "cannot watch resource" in str(watch.value) or "cannot list resource" in str(watch.value)


def test_a_delete_refused_by_rbac_raises_but_a_vanished_or_replaced_object_does_not(
    admin, stranger, cluster, namespace
):
    cluster.kubectl("-n", namespace, "create", "configmap", "keep")
    uid = json.loads(cluster.kubectl("-n", namespace, "get", "configmap", "keep", "-o", "json").stdout)["metadata"][
        "uid"
    ]
    with pytest.raises(KubeError) as refused:
        stranger.delete("ConfigMap", namespace, "keep", uid)
    assert refused.value.status == 403

    # the uid precondition: an object of the same name but another uid (a user's replacement) stays
    admin.delete("ConfigMap", namespace, "keep", str(uuid.uuid4()))
    assert cluster.kubectl("-n", namespace, "get", "configmap", "keep", check=False).returncode == 0

    admin.delete("ConfigMap", namespace, "keep", uid)
    admin.delete("ConfigMap", namespace, "keep", uid)  # already gone: nothing to do, no error
    assert cluster.kubectl("-n", namespace, "get", "configmap", "keep", check=False).returncode != 0


def test_an_access_review_carries_the_users_uid_groups_and_extra(admin, cluster, namespace):
    cluster.kubectl("-n", namespace, "create", "role", "deployers", "--verb=create", "--resource=deployments")
    cluster.kubectl("-n", namespace, "create", "rolebinding", "deployers", "--role=deployers", "--group=ml-platform")
    attributes = {"namespace": namespace, "verb": "create", "group": "apps", "resource": "deployments"}
    member = {"username": "alice", "uid": "b1f0", "groups": ["ml-platform"], "extra": {"team": ["recsys"]}}
    assert admin.may(member, attributes) is True
    assert admin.may({**member, "groups": ["someone-else"]}, attributes) is False
    assert admin.may({"username": "alice"}, attributes) is False


def test_an_absent_webhook_configuration_is_reported_not_created(admin, cluster):
    name = f"absent-{uuid.uuid4().hex[:6]}"
    assert admin.set_webhook_ca_bundle(name, base64.b64encode(b"pem").decode()) is False
    result = cluster.kubectl("get", "validatingwebhookconfiguration", name, check=False)
    assert result.returncode != 0  # the operator never creates webhook configurations


def test_an_error_whose_body_is_not_json_keeps_the_status_and_the_http_reason():
    error = _error(ApiException(status=502, reason="Bad Gateway"))
    assert (error.status, str(error)) == (502, "Bad Gateway")
    proxied = ApiException(status=503, reason="Service Unavailable")
    proxied.body = "<html>upstream connect error</html>"
    assert (_error(proxied).status, str(_error(proxied))) == (503, "Service Unavailable")
